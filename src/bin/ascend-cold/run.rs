//! `ascend-cold run <kernel>`: one kernel on `.npy` inputs, `.npy` outputs (docs/SEMANTICS.md section 4).
//!
//! Shapes and dtypes are checked before anything reaches the device, in numpy's terms (shapes as
//! tuples, dtypes as `<f2` / `float16`). `--repeat` / `--stats-json` time the kernel with device events
//! and, on the emulator, record its GM traffic: what `scripts/perf-report` reads.

use ascend_cold::contracts::{
    cold_token, ColdParams, ColdShape, ExpandShape, ShrinkShape, COLD_SCORE_OVERFLOW,
};
use ascend_cold::harness::{
    self as common, exec_cold, exec_expand, exec_shrink, load_floats, load_indices, numpy_name,
    read_tiling, shape_text, DTypeArg, DeviceArg, Floats, Loaded, Measured, Reps,
};
use ascend_cold::npy::{NpyArray, NpyDtype};
use ascend_cold::tiling::{BgmvExpandTiling, BgmvShrinkTiling, ColdScoreTiling, DType};
use ascend_cold::{outfile, Device, Error, Result};
use half::{bf16, f16};
use std::path::{Path, PathBuf};

/// Arguments of `run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(subcommand)]
    kernel: RunKernel,
}

#[derive(clap::Subcommand, Debug)]
enum RunKernel {
    /// y[b] = scale * A[idx[b]] @ x[b]: x [B,H], weights [L,R,H] (float16, or bfloat16 with --dtype
    /// bf16), indices int64 [B]; out float32 [B,R]; rows with a negative index keep --init (zeros).
    BgmvShrink(ShrinkRun),
    /// y[b, K:K+H_out] (+)= B[idx[b]] @ x[b]: x float32 [B,R], weights [L,H_out,R]; out [B,H_full] in
    /// the weights' dtype, H_full from --init or else K + H_out; adds into --init unless --no-add.
    BgmvExpand(ExpandRun),
    /// CoLD: logits [N,V] (float16, float32, or bfloat16 with --dtype bf16); out int64 tokens [N].
    /// A row with a NaN or infinite logit gets token -1, a row whose score overflows (--beta too large
    /// for its finite logits) token -2; each is named on stderr, and the exit code is 3.
    ColdScore(ColdRun),
}

/// Flags every `run` kernel takes.
#[derive(clap::Args, Debug)]
struct Common {
    /// Device: auto (NPU 0 when usable, else the emulator), emu[:N] or npu[:N].
    #[arg(long, default_value = "auto")]
    device: DeviceArg,
    /// Element type of the 16-bit inputs: required (bf16) for bfloat16 bit patterns in <u2 / V2 files;
    /// when given, every float input must be of it.
    #[arg(long)]
    dtype: Option<DTypeArg>,
    /// A tiling for this kernel and shape, as `ascend-cold tune --out` writes it (JSON).
    #[arg(long)]
    tiling: Option<PathBuf>,
    /// Timed launches (device events; the output is the last launch's).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Untimed launches before the timed ones.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Write the timing (median ms), minimal and (emulator) measured GM bytes as JSON here.
    #[arg(long)]
    stats_json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ShrinkRun {
    /// x [B, H].
    #[arg(long)]
    x: PathBuf,
    /// A [L, R, H], x's dtype.
    #[arg(long)]
    weights: PathBuf,
    /// int64 [B]; negative: no adapter.
    #[arg(long)]
    indices: PathBuf,
    /// The LoRA scaling.
    #[arg(long, allow_negative_numbers = true)]
    scale: f32,
    /// Output: float32 [B, R].
    #[arg(long)]
    out: PathBuf,
    /// Initial y, float32 [B, R] (zeros by default): rows with a negative index keep it.
    #[arg(long)]
    init: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
struct ExpandRun {
    /// x, float32 [B, R].
    #[arg(long)]
    x: PathBuf,
    /// B [L, H_out, R], float16 or bfloat16.
    #[arg(long)]
    weights: PathBuf,
    /// int64 [B]; negative: no adapter.
    #[arg(long)]
    indices: PathBuf,
    /// Output: [B, H_full] in the weights' dtype (bfloat16 as <u2 bit patterns).
    #[arg(long)]
    out: PathBuf,
    /// Initial y [B, H_full] in the weights' dtype (zeros of [B, K + H_out] by default).
    #[arg(long)]
    init: Option<PathBuf>,
    /// K: the first column of y the slice writes.
    #[arg(long, default_value_t = 0)]
    slice_offset: usize,
    /// Overwrite the slice instead of adding into it.
    #[arg(long)]
    no_add: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
struct ColdRun {
    /// Expert logits [N, V].
    #[arg(long)]
    expert: PathBuf,
    /// Base (amateur) logits [N, V], the expert's dtype.
    #[arg(long)]
    base: PathBuf,
    /// The alpha-mask on the expert, in (0, 1].
    #[arg(long, default_value_t = 0.1)]
    alpha: f32,
    /// The penalty on the base, >= 0.
    #[arg(long, default_value_t = 0.5)]
    beta: f32,
    /// Output: int64 tokens [N].
    #[arg(long)]
    out: PathBuf,
    /// Output: the masked scores, float32 [N, V] (-inf where masked).
    #[arg(long)]
    scores_out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// Runs the kernel; exit code 0, or 3 when a cold-score row got no token (non-finite logits, or a
/// score overflow: `--beta` too large for the row's logits).
pub fn run(args: &RunArgs) -> Result<u8> {
    let (outputs, inputs) = args.kernel.paths();
    outfile::refuse_overlap(&outputs, &inputs)?;
    match &args.kernel {
        RunKernel::BgmvShrink(a) => shrink(a),
        RunKernel::BgmvExpand(a) => expand(a),
        RunKernel::ColdScore(a) => cold(a),
    }
}

type Flags<'a> = Vec<(&'static str, Option<&'a Path>)>;

impl RunKernel {
    /// The run's output files and its input files, by flag (none may be another).
    fn paths(&self) -> (Flags<'_>, Flags<'_>) {
        let (c, mut outputs, mut inputs) = match self {
            RunKernel::BgmvShrink(r) => (
                &r.common,
                vec![("--out", Some(r.out.as_path()))],
                vec![
                    ("--x", Some(r.x.as_path())),
                    ("--weights", Some(r.weights.as_path())),
                    ("--indices", Some(r.indices.as_path())),
                    ("--init", r.init.as_deref()),
                ],
            ),
            RunKernel::BgmvExpand(r) => (
                &r.common,
                vec![("--out", Some(r.out.as_path()))],
                vec![
                    ("--x", Some(r.x.as_path())),
                    ("--weights", Some(r.weights.as_path())),
                    ("--indices", Some(r.indices.as_path())),
                    ("--init", r.init.as_deref()),
                ],
            ),
            RunKernel::ColdScore(r) => (
                &r.common,
                vec![
                    ("--out", Some(r.out.as_path())),
                    ("--scores-out", r.scores_out.as_deref()),
                ],
                vec![
                    ("--expert", Some(r.expert.as_path())),
                    ("--base", Some(r.base.as_path())),
                ],
            ),
        };
        outputs.push(("--stats-json", c.stats_json.as_deref()));
        inputs.push(("--tiling", c.tiling.as_deref()));
        (outputs, inputs)
    }
}

fn reps(c: &Common) -> Result<Reps> {
    if c.repeat == 0 {
        return Err(Error::parameter("--repeat", "at least 1", 0));
    }
    Ok(Reps {
        warmup: c.warmup,
        repeat: c.repeat,
    })
}

/// Loads a float input and checks it against `--dtype` when given.
fn load(path: &Path, what: &str, ndim: usize, c: &Common) -> Result<Loaded> {
    let bf16_flag = c.dtype == Some(DTypeArg::Bf16);
    let l = load_floats(path, what, ndim, bf16_flag)?;
    if let Some(d) = c.dtype {
        let want = DType::from(d);
        if l.data.dtype() != want {
            return Err(Error::shape(
                format!("{what} {} dtype", path.display()),
                format!("{} (--dtype {})", numpy_name(want), want.suffix()),
                numpy_name(l.data.dtype()),
            ));
        }
    }
    Ok(l)
}

fn dims_mismatch(what: String, expected: String, given: String) -> Error {
    Error::shape(what, expected, given)
}

fn lora_dtype(what: &str, path: &Path, d: DType, op: &str) -> Result<()> {
    if d == DType::F32 {
        return Err(Error::shape(
            format!("{what} {} dtype", path.display()),
            format!("float16 or bfloat16 ({op} keeps LoRA operands in 16 bits and accumulates in float32): convert with .astype(np.float16)"),
            "float32 (<f4)",
        ));
    }
    Ok(())
}

/// Writes `--stats-json`: `what` (kernel, dtype, shape, tiling) with the measurements.
fn stats_json(
    c: &Common,
    device: &Device,
    what: serde_json::Value,
    min_bytes: u64,
    m: &Measured,
) -> Result<()> {
    let Some(path) = &c.stats_json else {
        return Ok(());
    };
    let (rd, wr) = m.gm_bytes();
    let median = m.median_ms();
    let mut v = what;
    v["device"] = device.to_string().into();
    let more = serde_json::json!({
        "times_ms": m.times_ms,
        "median_ms": median,
        "min_bytes": min_bytes,
        "achieved_bytes_per_s": if median > 0.0 { min_bytes as f64 / (median * 1e-3) } else { 0.0 },
        "gm_read_bytes": rd,
        "gm_write_bytes": wr,
        "traffic_over_min": if rd + wr > 0 { (rd + wr) as f64 / min_bytes as f64 } else { 0.0 },
        "launches": m.launches.iter().map(|l| serde_json::json!({"kernel": l.kernel, "blocks": l.blocks})).collect::<Vec<_>>(),
    });
    for (k, x) in more.as_object().expect("an object") {
        v[k] = x.clone();
    }
    outfile::write_atomic(
        path,
        (serde_json::to_string_pretty(&v).expect("json") + "\n").as_bytes(),
    )
}

fn shrink(r: &ShrinkRun) -> Result<u8> {
    let c = &r.common;
    let x = load(&r.x, "--x", 2, c)?;
    let w = load(&r.weights, "--weights", 3, c)?;
    lora_dtype("--x", &r.x, x.data.dtype(), "bgmv_shrink")?;
    if w.data.dtype() != x.data.dtype() {
        return Err(Error::shape(
            format!("--weights {} dtype", r.weights.display()),
            format!("x's dtype, {}", numpy_name(x.data.dtype())),
            numpy_name(w.data.dtype()),
        ));
    }
    let (b, h) = (x.shape[0], x.shape[1]);
    let (l, rank, wh) = (w.shape[0], w.shape[1], w.shape[2]);
    if wh != h {
        return Err(dims_mismatch(
            format!("--weights {}", r.weights.display()),
            format!(
                "shape (L, R, {h}): its last dimension is x's hidden size (x has shape {})",
                shape_text(&x.shape)
            ),
            format!("shape {}", shape_text(&w.shape)),
        ));
    }
    let idx = load_indices(&r.indices, b)?;
    let y0: Vec<f32> = match &r.init {
        Some(p) => {
            let i = load_floats(p, "--init", 2, false)?;
            if i.shape != [b, rank] || i.data.dtype() != DType::F32 {
                return Err(Error::shape(
                    format!("--init {}", p.display()),
                    format!("float32 of shape ({b}, {rank}) (batch of x, rank of weights)"),
                    format!(
                        "{} of shape {}",
                        numpy_name(i.data.dtype()),
                        shape_text(&i.shape)
                    ),
                ));
            }
            match i.data {
                Floats::F32(v) => v,
                _ => unreachable!("checked above"),
            }
        }
        None => vec![0.0; b * rank],
    };
    let shape = ShrinkShape {
        batch: b,
        hidden_in: h,
        rank,
        num_loras: l,
    };
    let tiling: Option<BgmvShrinkTiling> = match &c.tiling {
        Some(p) => Some(read_tiling(p, "bgmv_shrink")?),
        None => None,
    };
    let (device, _) = common::open_device(c.device)?;
    let dtype = x.data.dtype();
    let (y, m) = match (x.data, w.data) {
        (Floats::F16(xv), Floats::F16(wv)) => exec_shrink::<f16>(
            &device,
            &xv,
            &wv,
            &idx,
            &y0,
            shape,
            r.scale,
            tiling.as_ref(),
            reps(c)?,
        )?,
        (Floats::Bf16(xv), Floats::Bf16(wv)) => exec_shrink::<bf16>(
            &device,
            &xv,
            &wv,
            &idx,
            &y0,
            shape,
            r.scale,
            tiling.as_ref(),
            reps(c)?,
        )?,
        _ => unreachable!("dtypes checked above"),
    };
    NpyArray::from_values(NpyDtype::F32, vec![b, rank], &y)?.write(&r.out)?;
    // The tiling the launch used (none for an empty batch, which launches nothing).
    let used = match tiling {
        Some(t) => Some(t),
        None => BgmvShrinkTiling::choose(shape, dtype, r.scale, &device.profile()?).ok(),
    };
    stats_json(
        c,
        &device,
        serde_json::json!({"kernel": "bgmv_shrink", "dtype": dtype.suffix(), "shape": serde_json::json!({"batch": b, "hidden_in": h, "rank": rank, "num_loras": l}), "tiling": serde_json::to_value(used).expect("json")}),
        common::shrink_min_bytes(shape, dtype, &idx),
        &m,
    )?;
    Ok(0)
}

fn expand(r: &ExpandRun) -> Result<u8> {
    let c = &r.common;
    let x = load_floats(&r.x, "--x", 2, false)?;
    if x.data.dtype() != DType::F32 {
        return Err(Error::shape(
            format!("--x {} dtype", r.x.display()),
            "float32 (<f4): bgmv_expand takes the float32 output of bgmv_shrink",
            numpy_name(x.data.dtype()),
        ));
    }
    let w = load(&r.weights, "--weights", 3, c)?;
    lora_dtype("--weights", &r.weights, w.data.dtype(), "bgmv_expand")?;
    let dtype = w.data.dtype();
    let (b, rank) = (x.shape[0], x.shape[1]);
    let (l, h_out, wr) = (w.shape[0], w.shape[1], w.shape[2]);
    if wr != rank {
        return Err(dims_mismatch(
            format!("--weights {}", r.weights.display()),
            format!(
                "shape (L, H_out, {rank}): its last dimension is x's rank (x has shape {})",
                shape_text(&x.shape)
            ),
            format!("shape {}", shape_text(&w.shape)),
        ));
    }
    let idx = load_indices(&r.indices, b)?;
    let off = r.slice_offset;
    // The output row is at least --slice-offset + H_out wide: checked, and its size refused before
    // anything is allocated when the host could not hold it.
    let min_full = off.checked_add(h_out).ok_or_else(|| {
        Error::parameter("--slice-offset", "slice_offset + H_out within usize", off)
    })?;
    let out_shape = common::KernelShape::Expand(ExpandShape {
        batch: b,
        rank,
        hidden_out: h_out,
        hidden_full: min_full,
        slice_offset: off,
        num_loras: l,
    });
    out_shape.check_memory(
        "--slice-offset",
        dtype.size() as usize,
        common::host_memory_budget(),
    )?;
    let (y0, full) = match &r.init {
        Some(p) => {
            let i = load(p, "--init", 2, c)?;
            if i.data.dtype() != dtype || i.shape[0] != b || i.shape[1] < min_full {
                return Err(Error::shape(
                    format!("--init {}", p.display()),
                    format!(
                        "{} of shape ({b}, H_full) with H_full >= --slice-offset + H_out = {min_full}",
                        numpy_name(dtype),
                    ),
                    format!(
                        "{} of shape {}",
                        numpy_name(i.data.dtype()),
                        shape_text(&i.shape)
                    ),
                ));
            }
            let full = i.shape[1];
            (i.data, full)
        }
        None => (Floats::zeros(dtype, b * min_full), min_full),
    };
    let shape = ExpandShape {
        batch: b,
        rank,
        hidden_out: h_out,
        hidden_full: full,
        slice_offset: off,
        num_loras: l,
    };
    let tiling: Option<BgmvExpandTiling> = match &c.tiling {
        Some(p) => Some(read_tiling(p, "bgmv_expand")?),
        None => None,
    };
    let add = !r.no_add;
    let (device, _) = common::open_device(c.device)?;
    let xv = match x.data {
        Floats::F32(v) => v,
        _ => unreachable!("checked above"),
    };
    let (y, m) = match (w.data, y0) {
        (Floats::F16(wv), Floats::F16(y0)) => {
            let (y, m) = exec_expand::<f16>(
                &device,
                &xv,
                &wv,
                &idx,
                &y0,
                shape,
                add,
                tiling.as_ref(),
                reps(c)?,
            )?;
            (Floats::F16(y), m)
        }
        (Floats::Bf16(wv), Floats::Bf16(y0)) => {
            let (y, m) = exec_expand::<bf16>(
                &device,
                &xv,
                &wv,
                &idx,
                &y0,
                shape,
                add,
                tiling.as_ref(),
                reps(c)?,
            )?;
            (Floats::Bf16(y), m)
        }
        _ => unreachable!("dtypes checked above"),
    };
    y.to_npy(vec![b, full])?.write(&r.out)?;
    // The tiling the launch used (none for an empty batch, which launches nothing).
    let used = match tiling {
        Some(t) => Some(t),
        None => BgmvExpandTiling::choose(shape, dtype, add, &device.profile()?).ok(),
    };
    stats_json(
        c,
        &device,
        serde_json::json!({"kernel": "bgmv_expand", "dtype": dtype.suffix(), "shape": serde_json::json!({"batch": b, "rank": rank, "hidden_out": h_out, "hidden_full": full, "slice_offset": off, "num_loras": l}), "tiling": serde_json::to_value(used).expect("json")}),
        common::expand_min_bytes(shape, dtype, &idx, add),
        &m,
    )?;
    Ok(0)
}

fn cold(r: &ColdRun) -> Result<u8> {
    let params = ColdParams::new(r.alpha, r.beta)?;
    let c = &r.common;
    let e = load(&r.expert, "--expert", 2, c)?;
    let a = load(&r.base, "--base", 2, c)?;
    if a.shape != e.shape || a.data.dtype() != e.data.dtype() {
        return Err(Error::shape(
            format!("--base {}", r.base.display()),
            format!(
                "the expert's shape {} and dtype {}",
                shape_text(&e.shape),
                numpy_name(e.data.dtype())
            ),
            format!(
                "shape {}, {}",
                shape_text(&a.shape),
                numpy_name(a.data.dtype())
            ),
        ));
    }
    let (n, v) = (e.shape[0], e.shape[1]);
    if v == 0 {
        return Err(Error::shape(
            format!("--expert {}", r.expert.display()),
            "a vocabulary of at least one token (shape (N, V) with V >= 1)",
            shape_text(&e.shape),
        ));
    }
    let shape = ColdShape { rows: n, vocab: v };
    let tiling: Option<ColdScoreTiling> = match &c.tiling {
        Some(p) => Some(read_tiling(p, "cold_score")?),
        None => None,
    };
    let with_scores = r.scores_out.is_some();
    let dtype = e.data.dtype();
    // Which input holds the non-finite values, for the message.
    let non_finite = |f: &Floats, row: usize| f.any_non_finite(row * v..(row + 1) * v);
    let (device, _) = common::open_device(c.device)?;
    let t = tiling.as_ref();
    let (res, m) = match (&e.data, &a.data) {
        (Floats::F16(ev), Floats::F16(av)) => {
            exec_cold::<f16>(&device, ev, av, shape, params, with_scores, t, reps(c)?)?
        }
        (Floats::Bf16(ev), Floats::Bf16(av)) => {
            exec_cold::<bf16>(&device, ev, av, shape, params, with_scores, t, reps(c)?)?
        }
        (Floats::F32(ev), Floats::F32(av)) => {
            exec_cold::<f32>(&device, ev, av, shape, params, with_scores, t, reps(c)?)?
        }
        _ => unreachable!("dtypes checked above"),
    };
    NpyArray::from_values(NpyDtype::I64, vec![n], &res.tokens)?.write(&r.out)?;
    if let (Some(p), Some(s)) = (&r.scores_out, &res.scores) {
        // A row without a token has no scores: NaN, as the reference defines it (the kernel leaves
        // that row unspecified).
        let mut s = s.clone();
        for row in (0..n).filter(|&row| res.tokens[row] < 0) {
            s[row * v..(row + 1) * v].fill(f32::NAN);
        }
        NpyArray::from_values(NpyDtype::F32, vec![n, v], &s)?.write(p)?;
    }
    // The tiling the launch used (none for an empty batch, which launches nothing).
    let used = match tiling {
        Some(t) => Some(t),
        None => ColdScoreTiling::choose(n, v, dtype, params, with_scores, &device.profile()?).ok(),
    };
    stats_json(
        c,
        &device,
        serde_json::json!({"kernel": "cold_score", "dtype": dtype.suffix(), "shape": serde_json::json!({"rows": n, "vocab": v, "scores": with_scores}), "tiling": serde_json::to_value(used).expect("json")}),
        common::cold_min_bytes(shape, dtype, with_scores),
        &m,
    )?;
    let bad: Vec<usize> = (0..n).filter(|&row| res.tokens[row] < 0).collect();
    for &row in &bad {
        let token = res.tokens[row];
        if token == COLD_SCORE_OVERFLOW {
            let what = "--expert and --base";
            if let Err(e) = cold_token(token, row, what, params) {
                eprintln!("ascend-cold: {e}; --beta: token {token} written for row {row}");
            }
            continue;
        }
        let which = match (non_finite(&e.data, row), non_finite(&a.data, row)) {
            (true, true) => "--expert and --base",
            (true, false) => "--expert",
            (false, true) => "--base",
            (false, false) => "the inputs",
        };
        eprintln!(
            "ascend-cold: row {row}: {which} holds a NaN or infinite logit; token {token} written"
        );
    }
    Ok(if bad.is_empty() { 0 } else { 3 })
}
