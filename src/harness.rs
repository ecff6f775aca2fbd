//! The kernel harness (cargo feature `harness`, on by default: the `ascend-cold` binary needs it).
//!
//! What the kernel tools (`devices`, `run`, `check`, `tune`), the CLI tests and the kernel benches
//! share: device selection, host tensors and `.npy` files, tilings as JSON (read and validated),
//! the kernels run on a device with timing and the emulator's counters, random inputs, and the one
//! tolerance model a kernel is held to against the oracle ([`crate::reference`]): [`Errors`],
//! [`ulp_at`], `compare_*` (derived in tests/ops_props.rs).

use crate::contracts::{ColdParams, ColdShape, ExpandSegment, ExpandShape, Float, ShrinkShape};
use crate::npy::{NpyArray, NpyDtype};
use crate::ops::{self, AdapterIndices, ColdOutputs, LogitFloat, LoraFloat};
use crate::reference::cold_score_of;
use crate::runtime::emu::{self, BlockCounters, LaunchRecord};
use crate::tiling::{BgmvExpandTiling, BgmvShrinkTiling, ColdScoreTiling, DType};
use crate::{Device, DeviceBuffer, DeviceRepr, Error, Event, Provider, Result, Stream};
use half::{bf16, f16};
use std::path::Path;

// ---- devices ------------------------------------------------------------------------------------------

/// `--device`: the library's [`DeviceSpec`](crate::DeviceSpec) (`auto`, `emu[:N]`, `npu[:N]`).
pub use crate::DeviceSpec as DeviceArg;

/// Opens the device `arg` names, with a sentence saying which it is and why.
pub fn open_device(arg: DeviceArg) -> Result<(Device, String)> {
    arg.open()
}

// ---- kernels and dtypes on the command line -----------------------------------------------------------

/// The kernels the tools drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelName {
    /// `y[b] = scale * A[idx[b]] @ x[b]`.
    BgmvShrink,
    /// `y[b, off:off+H_out] (+)= B[idx[b]] @ x[b]`.
    BgmvExpand,
    /// CoLD's mask, score and argmax.
    ColdScore,
}

impl KernelName {
    /// The op's name in the library.
    pub fn op(self) -> &'static str {
        match self {
            KernelName::BgmvShrink => "bgmv_shrink",
            KernelName::BgmvExpand => "bgmv_expand",
            KernelName::ColdScore => "cold_score",
        }
    }
}

/// `--dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DTypeArg {
    /// IEEE half (`<f2`).
    F16,
    /// bfloat16 (bit patterns in `<u2` / `V2` files).
    Bf16,
    /// IEEE single (`<f4`).
    F32,
}

impl From<DTypeArg> for DType {
    fn from(d: DTypeArg) -> DType {
        match d {
            DTypeArg::F16 => DType::F16,
            DTypeArg::Bf16 => DType::Bf16,
            DTypeArg::F32 => DType::F32,
        }
    }
}

/// numpy's name of a dtype, for messages.
pub fn numpy_name(d: DType) -> &'static str {
    match d {
        DType::F16 => "float16 (<f2)",
        DType::Bf16 => "bfloat16 (<u2 / V2 bit patterns)",
        DType::F32 => "float32 (<f4)",
    }
}

// ---- host tensors and .npy files ----------------------------------------------------------------------

/// A host array of one of the kernels' float types.
#[derive(Debug, Clone, PartialEq)]
pub enum Floats {
    /// f16 values.
    F16(Vec<f16>),
    /// bf16 values.
    Bf16(Vec<bf16>),
    /// f32 values.
    F32(Vec<f32>),
}

impl Floats {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Floats::F16(_) => DType::F16,
            Floats::Bf16(_) => DType::Bf16,
            Floats::F32(_) => DType::F32,
        }
    }
    /// Whether any value in `range` is NaN or infinite.
    pub fn any_non_finite(&self, range: std::ops::Range<usize>) -> bool {
        match self {
            Floats::F16(v) => v[range].iter().any(|x| !x.is_finite()),
            Floats::Bf16(v) => v[range].iter().any(|x| !x.is_finite()),
            Floats::F32(v) => v[range].iter().any(|x| !x.is_finite()),
        }
    }
    /// `n` zeros of `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> Floats {
        match dtype {
            DType::F16 => Floats::F16(vec![f16::ZERO; n]),
            DType::Bf16 => Floats::Bf16(vec![bf16::ZERO; n]),
            DType::F32 => Floats::F32(vec![0.0; n]),
        }
    }
    /// As a `.npy` array of `shape` (bf16 as `<u2` bit patterns).
    pub fn to_npy(&self, shape: Vec<usize>) -> Result<NpyArray> {
        match self {
            Floats::F16(v) => NpyArray::from_values(NpyDtype::F16, shape, v),
            Floats::Bf16(v) => {
                let bits: Vec<u16> = v.iter().map(|x| x.to_bits()).collect();
                NpyArray::from_values(NpyDtype::Bits16, shape, &bits)
            }
            Floats::F32(v) => NpyArray::from_values(NpyDtype::F32, shape, v),
        }
    }
}

/// A float tensor read from a `.npy` file, with its shape.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The values.
    pub data: Floats,
    /// numpy's shape.
    pub shape: Vec<usize>,
}

pub use crate::npy::shape_text;

fn npy_descr(d: NpyDtype) -> &'static str {
    match d {
        NpyDtype::F16 => "float16 (<f2)",
        NpyDtype::F32 => "float32 (<f4)",
        NpyDtype::I64 => "int64 (<i8)",
        NpyDtype::Bits16 => "16-bit patterns (<u2 / V2)",
    }
}

/// Reads the float array `what` (e.g. "--x") of `ndim` dimensions from `path`. `bf16`: the 16-bit
/// pattern files are bfloat16 (`--dtype bf16`); without it they are refused, and with it `<f2` is.
pub fn load_floats(path: &Path, what: &str, ndim: usize, bf16_flag: bool) -> Result<Loaded> {
    let a = NpyArray::read(path)?;
    let file = path.display();
    if a.shape.len() != ndim {
        return Err(Error::shape(
            format!("{what} {file}"),
            format!("a {ndim}-D array"),
            format!("shape {} ({}-D)", shape_text(&a.shape), a.shape.len()),
        ));
    }
    let data = match (a.dtype, bf16_flag) {
        (NpyDtype::F16, false) => Floats::F16(a.values()?),
        (NpyDtype::F32, _) => Floats::F32(a.values()?),
        (NpyDtype::Bits16, true) => Floats::Bf16(
            a.values::<u16>()?
                .into_iter()
                .map(bf16::from_bits)
                .collect(),
        ),
        (NpyDtype::Bits16, false) => {
            return Err(Error::shape(
                format!("{what} {file} dtype"),
                "float16 or float32; 16-bit patterns (<u2 / V2) are read as bfloat16 only with --dtype bf16",
                npy_descr(a.dtype),
            ))
        }
        (NpyDtype::F16, true) => {
            return Err(Error::shape(
                format!("{what} {file} dtype"),
                "bfloat16 bit patterns (<u2 / V2, e.g. np.save of an ml_dtypes.bfloat16 array) with --dtype bf16",
                "float16 (<f2): drop --dtype bf16 or convert the file",
            ))
        }
        (d, _) => {
            return Err(Error::shape(
                format!("{what} {file} dtype"),
                "a float array",
                npy_descr(d),
            ))
        }
    };
    Ok(Loaded {
        data,
        shape: a.shape,
    })
}

/// Reads adapter indices: int64 `[batch]`.
pub fn load_indices(path: &Path, batch: usize) -> Result<Vec<i64>> {
    let a = NpyArray::read(path)?;
    let file = path.display();
    if a.dtype != NpyDtype::I64 {
        return Err(Error::shape(
            format!("--indices {file} dtype"),
            "int64 (<i8): save np.asarray(idx, dtype=np.int64)",
            npy_descr(a.dtype),
        ));
    }
    if a.shape != [batch] {
        return Err(Error::shape(
            format!("--indices {file}"),
            format!("shape ({batch},): one adapter index per row of --x"),
            format!("shape {}", shape_text(&a.shape)),
        ));
    }
    a.values()
}

// ---- tilings as JSON ----------------------------------------------------------------------------------

/// Reads a tiling of the kernel `kernel` from a JSON file (as `tune --out` writes it): see
/// [`parse_tiling`].
pub fn read_tiling<T: serde::de::DeserializeOwned>(path: &Path, kernel: &str) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_tiling(path, kernel, &bytes)
}

/// Parses the bytes of a tiling file (`path` names it in errors): a flat JSON object of the
/// tiling's fields, unknown fields rejected. This only deserialises: the op that takes the tiling
/// validates it against its shape, parameters and device before anything is launched
/// (`*Tiling::validate`).
///
/// # Errors
/// [`Error::InvalidFile`] naming the file and the kernel, with serde's reason.
pub fn parse_tiling<T: serde::de::DeserializeOwned>(
    path: &Path,
    kernel: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::InvalidFile {
        path: path.to_path_buf(),
        field: format!("{kernel} tiling"),
        detail: format!(
            "not a {kernel} tiling as `ascend-cold tune {kernel} --out` writes it: {e}"
        ),
    })
}

/// Writes a tiling as pretty JSON, whole or not at all.
pub fn write_tiling<T: serde::Serialize>(path: &Path, tiling: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(tiling).map_err(|e| Error::InvalidFile {
        path: path.to_path_buf(),
        field: "tiling".into(),
        detail: format!("cannot be written as JSON: {e}"),
    })?;
    crate::outfile::write_atomic(path, (text + "\n").as_bytes())
}

// ---- running a kernel: outputs, device-side time, the emulator's counters -----------------------------

/// How often to run a kernel: `warmup` untimed launches, then `repeat` timed ones (at least one).
#[derive(Debug, Clone, Copy)]
pub struct Reps {
    /// Untimed launches first.
    pub warmup: usize,
    /// Timed launches (>= 1); the output is the last one's.
    pub repeat: usize,
}

impl Reps {
    /// One launch, no warm-up.
    pub const ONCE: Reps = Reps {
        warmup: 0,
        repeat: 1,
    };
}

/// What running a kernel measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Device-side milliseconds of each timed launch (events around the launches of one call).
    pub times_ms: Vec<f64>,
    /// The emulator's records of the last call's launches (empty on an NPU).
    pub launches: Vec<LaunchRecord>,
}

impl Measured {
    /// The median of the timed runs, in milliseconds.
    pub fn median_ms(&self) -> f64 {
        median(&self.times_ms)
    }
    /// Every block's counters over the last call's launches.
    pub fn counters(&self) -> Vec<BlockCounters> {
        self.launches
            .iter()
            .flat_map(|l| l.counters.iter().copied())
            .collect()
    }
    /// GM bytes read and written by the last call (emulator only; 0 on an NPU).
    pub fn gm_bytes(&self) -> (u64, u64) {
        self.counters().iter().fold((0, 0), |(r, w), c| {
            (r + c.gm_read_bytes, w + c.gm_write_bytes)
        })
    }
}

/// The median of `v` (0 for none).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// A step of [`timed`].
enum Phase {
    /// Queue the restoration of the outputs' initial values.
    Reset,
    /// Queue one kernel call.
    Call,
}

/// Runs `step(Call)` (which queues one kernel call on the stream) `reps` times, each after
/// `step(Reset)`; timed calls are bracketed by events. On the emulator the launch records of the last
/// call are kept.
fn timed(
    stream: &Stream,
    reps: Reps,
    mut step: impl FnMut(Phase) -> Result<()>,
) -> Result<Measured> {
    let device = stream.device().clone();
    let emu_id = (device.provider() == Provider::Emulator).then(|| device.id());
    let (start, end) = (Event::new(&device)?, Event::new(&device)?);
    let mut m = Measured::default();
    // Far past any useful count, and what keeps the loop bound from wrapping (a wrapped bound ran no
    // launch at all and reported the poisoned output).
    const MAX_LAUNCHES: usize = 1_000_000;
    for (name, count) in [("--warmup", reps.warmup), ("--repeat", reps.repeat)] {
        if count > MAX_LAUNCHES {
            return Err(Error::parameter(
                name,
                format!("at most {MAX_LAUNCHES}"),
                count,
            ));
        }
    }
    for i in 0..reps.warmup + reps.repeat.max(1) {
        step(Phase::Reset)?;
        let timed = i >= reps.warmup;
        let before = match emu_id {
            Some(id) => emu::stats(id)?.launches,
            None => 0,
        };
        if timed {
            start.record(stream)?;
        }
        step(Phase::Call)?;
        if timed {
            end.record(stream)?;
        }
        stream.synchronize()?;
        if timed {
            m.times_ms.push(f64::from(start.elapsed_ms(&end)?));
        }
        if let Some(id) = emu_id {
            let n = (emu::stats(id)?.launches - before) as usize;
            let all = emu::last_launches(id)?;
            m.launches = all[all.len().saturating_sub(n)..].to_vec();
            if let Some(fault) = m.launches.iter().find_map(|l| l.fault.clone()) {
                return Err(Error::KernelFault {
                    kernel: "emulated launch".into(),
                    detail: fault,
                });
            }
        }
    }
    Ok(m)
}

/// `bgmv_shrink` on `device`: returns y (`y0` where the index is negative) and the measurements.
#[allow(clippy::too_many_arguments)]
pub fn exec_shrink<T: LoraFloat>(
    device: &Device,
    x: &[T],
    w: &[T],
    idx: &[i64],
    y0: &[f32],
    shape: ShrinkShape,
    scale: f32,
    tiling: Option<&BgmvShrinkTiling>,
    reps: Reps,
) -> Result<(Vec<f32>, Measured)> {
    let stream = Stream::new(device)?;
    let (dx, dw) = (
        DeviceBuffer::from_host(device, x)?,
        DeviceBuffer::from_host(device, w)?,
    );
    let dy0 = DeviceBuffer::from_host(device, y0)?;
    let mut dy = DeviceBuffer::<f32>::zeroed(device, y0.len())?;
    let m = timed(&stream, reps, |phase| match phase {
        Phase::Reset => stream.copy(dy.view_mut(), dy0.view()),
        Phase::Call => ops::bgmv_shrink(
            &stream,
            ops::BgmvShrink {
                x: dx.view(),
                weights: dw.view(),
                indices: AdapterIndices::Host(idx),
                y: dy.view_mut(),
                shape,
                scale,
            },
            tiling,
        ),
    })?;
    Ok((dy.to_vec()?, m))
}

/// `bgmv_expand` on `device`: returns y and the measurements.
#[allow(clippy::too_many_arguments)]
pub fn exec_expand<T: LoraFloat>(
    device: &Device,
    x: &[f32],
    w: &[T],
    idx: &[i64],
    y0: &[T],
    shape: ExpandShape,
    add: bool,
    tiling: Option<&BgmvExpandTiling>,
    reps: Reps,
) -> Result<(Vec<T>, Measured)> {
    let stream = Stream::new(device)?;
    let (dx, dw) = (
        DeviceBuffer::from_host(device, x)?,
        DeviceBuffer::from_host(device, w)?,
    );
    let dy0 = DeviceBuffer::from_host(device, y0)?;
    let mut dy = DeviceBuffer::<T>::zeroed(device, y0.len())?;
    let m = timed(&stream, reps, |phase| match phase {
        Phase::Reset => stream.copy(dy.view_mut(), dy0.view()),
        Phase::Call => ops::bgmv_expand(
            &stream,
            ops::BgmvExpand {
                x: dx.view(),
                weights: dw.view(),
                indices: AdapterIndices::Host(idx),
                y: dy.view_mut(),
                shape,
                add_inputs: add,
            },
            tiling,
        ),
    })?;
    Ok((dy.to_vec()?, m))
}

/// What `cold_score` returned.
#[derive(Debug, Clone)]
pub struct ColdResult {
    /// Per row: the token, -1 for a row with a non-finite logit.
    pub tokens: Vec<i64>,
    /// Per row: the winning score (NaN for a non-finite row).
    pub best: Vec<f32>,
    /// The masked score rows, when asked for.
    pub scores: Option<Vec<f32>>,
}

/// `cold_score` on `device`.
#[allow(clippy::too_many_arguments)]
pub fn exec_cold<T: LogitFloat>(
    device: &Device,
    e: &[T],
    a: &[T],
    shape: ColdShape,
    params: ColdParams,
    with_scores: bool,
    tiling: Option<&ColdScoreTiling>,
    reps: Reps,
) -> Result<(ColdResult, Measured)> {
    let stream = Stream::new(device)?;
    let (de, da) = (
        DeviceBuffer::from_host(device, e)?,
        DeviceBuffer::from_host(device, a)?,
    );
    let rows = shape.rows;
    // Poisoned, so an output the kernel forgets to write shows (NaN, i64::MIN).
    let mut tokens = DeviceBuffer::from_host(device, &vec![i64::MIN; rows])?;
    let mut best = DeviceBuffer::from_host(device, &vec![f32::NAN; rows])?;
    let n_scores = if with_scores { rows * shape.vocab } else { 0 };
    let mut scores = DeviceBuffer::from_host(device, &vec![f32::NAN; n_scores.max(1)])?;
    let m = timed(&stream, reps, |phase| match phase {
        Phase::Reset => Ok(()),
        Phase::Call => {
            let out = ColdOutputs {
                tokens: tokens.view_mut(),
                best_scores: best.view_mut(),
                scores: with_scores.then(|| scores.view_mut()),
            };
            ops::cold_score(&stream, de.view(), da.view(), shape, params, out, tiling)
        }
    })?;
    let scores = if with_scores {
        Some(scores.to_vec()?)
    } else {
        None
    };
    Ok((
        ColdResult {
            tokens: tokens.to_vec()?,
            best: best.to_vec()?,
            scores,
        },
        m,
    ))
}

// ---- minimal traffic ----------------------------------------------------------------------------------

/// GM bytes of bgmv_shrink when every input is read once and every output written once: per row the
/// index (8 B) and status word (4 B), and for rows with an adapter x (H s), that adapter's A (R H s) and
/// y (4 R) (docs/KERNELS.md, "Traffic and UB").
pub fn shrink_min_bytes(shape: ShrinkShape, dtype: DType, idx: &[i64]) -> u64 {
    let s = dtype.size() as u64;
    let (h, r) = (shape.hidden_in as u64, shape.rank as u64);
    let active = idx.iter().filter(|&&i| i >= 0).count() as u64;
    12 * shape.batch as u64 + active * (h * s + r * h * s + 4 * r)
}

/// bgmv_expand's minimal GM bytes: per row 12 B, and for rows with an adapter B (H_out R s), x (4 R),
/// y written (H_out s) and, when adding, read (H_out s).
pub fn expand_min_bytes(shape: ExpandShape, dtype: DType, idx: &[i64], add: bool) -> u64 {
    let s = dtype.size() as u64;
    let (h, r) = (shape.hidden_out as u64, shape.rank as u64);
    let active = idx.iter().filter(|&&i| i >= 0).count() as u64;
    12 * shape.batch as u64 + active * (h * r * s + 4 * r + h * s * (1 + u64::from(add)))
}

/// cold_score's minimal GM bytes: e and a read once, token (8 B), best (4 B) and status (4 B) per row,
/// and the score row (4 V) when written.
pub fn cold_min_bytes(shape: ColdShape, dtype: DType, with_scores: bool) -> u64 {
    let nv = (shape.rows * shape.vocab) as u64;
    nv * 2 * dtype.size() as u64 + 16 * shape.rows as u64 + if with_scores { 4 * nv } else { 0 }
}

// ---- tolerances (derived in tests/ops_props.rs) -------------------------------------------------------

/// The f32 unit roundoff, 2^-24.
pub const U: f64 = 1.0 / (1u64 << 24) as f64;

/// One unit in the last place of `dtype` at magnitude `m`.
pub fn ulp_at(dtype: DType, m: f64) -> f64 {
    match dtype {
        DType::F16 => (2f64.powi(m.max(6.1e-5).log2().floor() as i32 - 10)).max(2f64.powi(-24)),
        DType::Bf16 => 2f64.powi(m.max(1e-38).log2().floor() as i32 - 7),
        DType::F32 => 2f64.powi(m.max(1e-38).log2().floor() as i32 - 23),
    }
}

/// Errors of one comparison, and the tolerance of the element that came closest to its bound.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    /// Elements compared.
    pub compared: usize,
    /// Largest |got - want|.
    pub max_abs: f64,
    /// Largest |got - want| / |want| (over want != 0).
    pub max_rel: f64,
    /// Largest |got - want| / tol.
    pub worst_ratio: f64,
    /// The tolerance at that element.
    pub tol_at_worst: f64,
    /// Elements over their tolerance, or that must be untouched and changed.
    pub failures: usize,
    /// The first failure, described.
    pub first_failure: Option<String>,
}

impl Errors {
    /// Records one element.
    pub fn add(&mut self, got: f64, want: f64, tol: f64, what: impl FnOnce() -> String) {
        self.compared += 1;
        let err = if got == want { 0.0 } else { (got - want).abs() };
        let err = if err.is_nan() { f64::INFINITY } else { err };
        self.max_abs = self.max_abs.max(err);
        if want != 0.0 && want.is_finite() {
            self.max_rel = self.max_rel.max(err / want.abs());
        }
        let ratio = err / tol.max(f64::MIN_POSITIVE);
        if ratio >= self.worst_ratio {
            self.worst_ratio = ratio;
            self.tol_at_worst = tol;
        }
        if err > tol {
            self.fail(format!(
                "{}: got {got}, reference {want}, tolerance {tol:.3e}",
                what()
            ));
        }
    }
    /// Records a failure that is not a numeric error (an element that must be untouched, a wrong token).
    pub fn fail(&mut self, detail: String) {
        self.failures += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(detail);
        }
    }
    /// Whether everything was within tolerance.
    pub fn ok(&self) -> bool {
        self.failures == 0
    }
}

/// Compares bgmv_shrink's y with the reference's: rows with a negative index bit-identical to `y0`,
/// others within (H + 1) u |scale| sum|x w| (f16/bf16 products are exact in f32; H roundings of the sum,
/// one of the scale).
#[allow(clippy::too_many_arguments)]
pub fn compare_shrink(
    x: &[f64],
    w: &[f64],
    idx: &[i64],
    y0: &[f32],
    got: &[f32],
    want: &[f32],
    shape: ShrinkShape,
    scale: f32,
) -> Errors {
    let (h, r) = (shape.hidden_in, shape.rank);
    let mut errs = Errors::default();
    for b in 0..shape.batch {
        for k in 0..r {
            let i = b * r + k;
            if idx[b] < 0 {
                if got[i].to_bits() != y0[i].to_bits() {
                    errs.fail(format!(
                        "y[{b},{k}] (index -1) changed from {} to {}",
                        y0[i], got[i]
                    ));
                }
                continue;
            }
            let l = idx[b] as usize;
            let mag: f64 = (0..h)
                .map(|j| (x[b * h + j] * w[(l * r + k) * h + j]).abs())
                .sum();
            let tol = (h as f64 + 1.0) * U * f64::from(scale).abs() * mag + 1e-30;
            errs.add(f64::from(got[i]), f64::from(want[i]), tol, || {
                format!("y[{b},{k}]")
            });
        }
    }
    errs
}

/// Compares bgmv_expand's y (as f64) with the reference's: untouched outside the slice and in rows with
/// a negative index; inside, (R + 1) u (sum|x w| + |y0| if adding) plus one ulp of the output dtype.
#[allow(clippy::too_many_arguments)]
pub fn compare_expand(
    dtype: DType,
    x: &[f64],
    w: &[f64],
    idx: &[i64],
    y0: &[f64],
    got: &[f64],
    want: &[f64],
    shape: ExpandShape,
    add: bool,
) -> Errors {
    compare_expand_segmented(dtype, x, w, idx, y0, got, want, shape, &[], add)
}

/// [`compare_expand`] for a segmented weight: `w` is the dense weight the segments store
/// (`reference::dense_expand_weights`), and the slice's rows no segment covers must be untouched too.
#[allow(clippy::too_many_arguments)]
pub fn compare_expand_segmented(
    dtype: DType,
    x: &[f64],
    w: &[f64],
    idx: &[i64],
    y0: &[f64],
    got: &[f64],
    want: &[f64],
    shape: ExpandShape,
    segments: &[ExpandSegment],
    add: bool,
) -> Errors {
    let (r, h_out, full, off) = (
        shape.rank,
        shape.hidden_out,
        shape.hidden_full,
        shape.slice_offset,
    );
    let covered = |o: usize| {
        segments.is_empty()
            || segments
                .iter()
                .any(|s| (s.row_start..s.row_start + s.rows).contains(&o))
    };
    let mut errs = Errors::default();
    for b in 0..shape.batch {
        for c in 0..full {
            let i = b * full + c;
            let written = (off..off + h_out).contains(&c) && covered(c - off);
            if idx[b] < 0 || !written {
                if got[i].to_bits() != y0[i].to_bits() && !(got[i].is_nan() && y0[i].is_nan()) {
                    errs.fail(format!(
                        "y[{b},{c}] outside the written set changed from {} to {}",
                        y0[i], got[i]
                    ));
                }
                continue;
            }
            let (l, o) = (idx[b] as usize, c - off);
            let mag: f64 = (0..r)
                .map(|k| (x[b * r + k] * w[(l * h_out + o) * r + k]).abs())
                .sum::<f64>()
                + if add { y0[i].abs() } else { 0.0 };
            let tol = ulp_at(dtype, want[i].abs().max(got[i].abs())) + (r as f64 + 1.0) * U * mag;
            errs.add(got[i], want[i], tol, || format!("y[{b},{c}]"));
        }
    }
    errs
}

/// Checks cold_score's outputs against the reference, row by row, with the tolerances of
/// tests/ops_props.rs: the kernel computes the threshold (max + ln alpha) and the score
/// ((1 + b) e - b a) in f32, so tol_s = 4 u ((1 + b)|e| + b|a|) per score and tol_t = 2 u (|max| +
/// |ln alpha|) on the threshold. The kernel's token must be kept and score within 2 tol_s of the best;
/// when the reference's best wins by more than that margin, the tokens must be equal. A non-finite row
/// must give the reference's fault token (-1 non-finite, -2 score overflow) and best NaN. Errors are
/// those of the best score (and of every score, if given).
pub fn compare_cold(
    e: &[f64],
    a: &[f64],
    shape: ColdShape,
    params: ColdParams,
    ref_tokens: &[i64],
    got: &ColdResult,
) -> Errors {
    let (rows, v) = (shape.rows, shape.vocab);
    let b = f64::from(params.beta());
    let ln_a = f64::from(params.ln_alpha());
    let mut errs = Errors::default();
    for n in 0..rows {
        let (re, ra) = (&e[n * v..(n + 1) * v], &a[n * v..(n + 1) * v]);
        let t = got.tokens[n];
        if ref_tokens[n] < 0 {
            let fault = ref_tokens[n];
            if t != fault || !got.best[n].is_nan() {
                errs.fail(format!(
                    "row {n} is faulted: expected token {fault} and best NaN, got token {t}, best {}",
                    got.best[n]
                ));
            }
            // The kernel's score row of such a row is unspecified (ops::cold_score promises token -1
            // and best NaN; the reference writes NaN): not compared, as in tests/ops_props.rs.
            continue;
        }
        let max = re.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let threshold = max + ln_a;
        let tol_t = 2.0 * U * (max.abs() + ln_a.abs()) + 1e-300;
        let score = |i: usize| cold_score_of(re[i], ra[i], b);
        let tol_s = |i: usize| 4.0 * U * ((1.0 + b) * re[i].abs() + b * ra[i].abs()) + 1e-300;
        if !(0..v as i64).contains(&t) {
            errs.fail(format!("row {n}: token {t} is not in 0..{v}"));
            continue;
        }
        let (t, want) = (t as usize, ref_tokens[n] as usize);
        if re[t] < threshold - tol_t {
            errs.fail(format!("row {n}: token {t} is below the alpha threshold"));
        }
        let best_ref = score(want);
        if score(t) < best_ref - tol_s(t) - tol_s(want) {
            errs.fail(format!(
                "row {n}: token {t} scores {} < the best {best_ref} (token {want})",
                score(t)
            ));
        }
        let runner_up = (0..v)
            .filter(|&i| i != want && re[i] >= threshold - tol_t)
            .map(|i| score(i) + tol_s(i))
            .fold(f64::NEG_INFINITY, f64::max);
        if best_ref - tol_s(want) > runner_up && t != want {
            errs.fail(format!(
                "row {n}: token {t}, reference {want} (unique best by a margin)"
            ));
        }
        errs.add(f64::from(got.best[n]), score(t), tol_s(t), || {
            format!("best[{n}]")
        });
        if let Some(s) = &got.scores {
            for i in 0..v {
                let gs = f64::from(s[n * v + i]);
                if re[i] >= threshold + tol_t {
                    errs.add(gs, score(i), tol_s(i), || format!("scores[{n},{i}]"));
                } else if re[i] < threshold - tol_t {
                    if gs != f64::NEG_INFINITY {
                        errs.fail(format!("scores[{n},{i}] = {gs} should be masked (-inf)"));
                    }
                } else if gs != f64::NEG_INFINITY {
                    errs.add(gs, score(i), tol_s(i), || format!("scores[{n},{i}]"));
                }
            }
        }
    }
    errs
}

// ---- random inputs ------------------------------------------------------------------------------------

/// The values of `v` as f64 (exact): what the `compare_*` functions take.
pub fn widen<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// `n` values uniform in (-amp, amp), rounded to `T`.
pub fn random_vec<T: Float>(rng: &mut impl rand::Rng, n: usize, amp: f64) -> Vec<T> {
    (0..n)
        .map(|_| T::from_f64(rng.gen_range(-amp..amp)))
        .collect()
}

/// Adapter indices: a quarter of the rows without an adapter (-1), the rest uniform in 0..loras.
pub fn random_indices(rng: &mut impl rand::Rng, batch: usize, loras: usize) -> Vec<i64> {
    (0..batch)
        .map(|_| {
            if rng.gen_bool(0.25) {
                -1
            } else {
                rng.gen_range(0..loras as i64)
            }
        })
        .collect()
}

/// The bit pattern 0xFF.. of `T` (NaN in every float type): outputs start poisoned, so an element a
/// kernel forgets to write cannot pass.
pub fn poison<T: DeviceRepr>(n: usize) -> Vec<T> {
    let mut v: Vec<T> = bytemuck::zeroed_vec(n);
    bytemuck::cast_slice_mut::<T, u8>(&mut v).fill(0xFF);
    v
}

// ---- shapes on the command line -----------------------------------------------------------------------

/// One kernel's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelShape {
    /// bgmv_shrink.
    Shrink(ShrinkShape),
    /// bgmv_expand.
    Expand(ExpandShape),
    /// cold_score.
    Cold(ColdShape),
}

impl KernelShape {
    /// Host bytes a trial of this shape holds at once: every operand in `elem` bytes, the f64
    /// reference's copy of the output, and the output read back; `None` when that overflows.
    pub fn trial_bytes(&self, elem: usize) -> Option<usize> {
        let mul = |dims: &[usize]| dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let (inputs, output) = match *self {
            KernelShape::Shrink(s) => (
                mul(&[s.batch, s.hidden_in])?.checked_add(mul(&[
                    s.num_loras,
                    s.rank,
                    s.hidden_in,
                ])?)?,
                mul(&[s.batch, s.rank])?,
            ),
            KernelShape::Expand(s) => (
                mul(&[s.batch, s.rank])?.checked_add(mul(&[s.num_loras, s.hidden_out, s.rank])?)?,
                mul(&[s.batch, s.hidden_full])?,
            ),
            KernelShape::Cold(s) => (mul(&[2, s.rows, s.vocab])?, mul(&[s.rows, s.vocab])?),
        };
        // Inputs once, the output three times (poisoned upload, download, f64 reference at 8 bytes).
        inputs
            .checked_mul(elem)?
            .checked_add(output.checked_mul(2 * elem.max(4) + 8)?)
    }

    /// Refuses a shape whose trial needs more host memory than `limit` bytes, saying how much;
    /// `param` is the flag that set the shape.
    pub fn check_memory(&self, param: &'static str, elem: usize, limit: usize) -> Result<()> {
        match self.trial_bytes(elem) {
            Some(bytes) if bytes <= limit => Ok(()),
            Some(bytes) => Err(Error::parameter(
                param,
                format!(
                    "a shape whose trial fits in {} MiB of host memory (half of what is available)",
                    limit >> 20
                ),
                format!("{self:?}, which needs {} MiB", bytes >> 20),
            )),
            None => Err(Error::parameter(
                param,
                "a shape whose size fits in usize",
                format!("{self:?}"),
            )),
        }
    }

    /// The kernel.
    pub fn kernel(&self) -> KernelName {
        match self {
            KernelShape::Shrink(_) => KernelName::BgmvShrink,
            KernelShape::Expand(_) => KernelName::BgmvExpand,
            KernelShape::Cold(_) => KernelName::ColdScore,
        }
    }
}

impl std::fmt::Display for KernelShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelShape::Shrink(s) => write!(
                f,
                "b={},h={},r={},l={}",
                s.batch, s.hidden_in, s.rank, s.num_loras
            ),
            KernelShape::Expand(s) => write!(
                f,
                "b={},r={},h={},full={},off={},l={}",
                s.batch, s.rank, s.hidden_out, s.hidden_full, s.slice_offset, s.num_loras
            ),
            KernelShape::Cold(s) => write!(f, "n={},v={}", s.rows, s.vocab),
        }
    }
}

/// The keys `--shape` takes per kernel, for help texts.
pub const SHAPE_HELP: &str = "comma-separated KEY=N: bgmv-shrink b,h,r,l (batch, hidden, rank, \
    adapters); bgmv-expand b,r,h,l[,full,off] (h = H_out; full defaults to off + h); cold-score n,v \
    (rows, vocab). E.g. b=4,h=4096,r=16,l=4";

/// Parses `--shape` for `kernel` (see [`SHAPE_HELP`]).
pub fn parse_shape(kernel: KernelName, spec: &str) -> Result<KernelShape> {
    let mut kv = std::collections::BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| Error::parameter("--shape", SHAPE_HELP, spec))?;
        let v: usize = v
            .trim()
            .parse()
            .map_err(|_| Error::parameter("--shape", "non-negative integers", part))?;
        let key = match k.trim() {
            "b" | "batch" => "b",
            "h" | "hidden" | "hidden_in" | "hidden_out" => "h",
            "r" | "rank" => "r",
            "l" | "loras" | "num_loras" => "l",
            "full" | "hidden_full" => "full",
            "off" | "offset" | "slice_offset" => "off",
            "n" | "rows" => "n",
            "v" | "vocab" => "v",
            _ => return Err(Error::parameter("--shape", SHAPE_HELP, spec)),
        };
        kv.insert(key, v);
    }
    let keys: &[&str] = match kernel {
        KernelName::BgmvShrink => &["b", "h", "r", "l"],
        KernelName::BgmvExpand => &["b", "r", "h", "l", "full", "off"],
        KernelName::ColdScore => &["n", "v"],
    };
    if let Some(k) = kv.keys().find(|k| !keys.contains(k)) {
        return Err(Error::parameter(
            "--shape",
            format!("keys {keys:?} for {}", kernel.op()),
            format!("{k} in {spec:?}"),
        ));
    }
    // Every extent but the slice offset at least 1: a zero batch or width makes empty operands that
    // tell the user nothing ("expected 0 elements").
    let need = |k: &str| match kv.get(k).copied() {
        Some(0) => Err(Error::parameter(
            "--shape",
            format!("{k} at least 1"),
            format!("{k}=0 in {spec:?}"),
        )),
        Some(v) => Ok(v),
        None => Err(Error::parameter(
            "--shape",
            format!("a value for {k} ({SHAPE_HELP})"),
            spec,
        )),
    };
    Ok(match kernel {
        KernelName::BgmvShrink => KernelShape::Shrink(ShrinkShape {
            batch: need("b")?,
            hidden_in: need("h")?,
            rank: need("r")?,
            num_loras: need("l")?,
        }),
        KernelName::BgmvExpand => {
            let off = kv.get("off").copied().unwrap_or(0);
            let h = need("h")?;
            let full = match kv.get("full").copied() {
                Some(full) => full,
                None => off
                    .checked_add(h)
                    .ok_or_else(|| Error::parameter("--shape", "off + h within usize", spec))?,
            };
            KernelShape::Expand(ExpandShape {
                batch: need("b")?,
                rank: need("r")?,
                hidden_out: h,
                hidden_full: full,
                slice_offset: off,
                num_loras: need("l")?,
            })
        }
        KernelName::ColdScore => KernelShape::Cold(ColdShape {
            rows: need("n")?,
            vocab: need("v")?,
        }),
    })
}

/// Prints why AscendCL could not be loaded: every path tried and what failed there, a library that
/// lacks an entry point, and the remedy; each line starts with `indent`.
pub fn print_load_error(error: &ascend_sys::LoadError, indent: &str) {
    for attempt in error.attempts() {
        println!("{indent}tried {attempt}");
    }
    if let Some(sym) = error.missing_symbol() {
        println!(
            "{indent}a library was found but lacks {sym}: its CANN is older than the bindings"
        );
    }
    println!(
        "{indent}remedy: source the CANN set_env.sh (sets ASCEND_HOME_PATH), or set \
         ASCEND_ACL_LIB=/path/to/libascendcl.so"
    );
}

/// Host memory a tool may use for one trial: half of `MemAvailable` (Linux `/proc/meminfo`), or
/// 4 GiB where that cannot be read.
pub fn host_memory_budget() -> usize {
    crate::host::available_memory().map_or(4 << 30, |bytes| bytes / 2)
}
