//! Kernel tests through `HostKernel::run_blocks` with Vec-backed GM: every kernel and dtype against an
//! f64 reference, on shapes with tails, outputs poisoned (NaN bit patterns) before launch;
//! and one test per emulator rule, each proving a deliberately bad tiling or argument is caught.

use half::{bf16, f16};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{BlockCounters, EmuGmRegion, HostKernel};
use crate::contracts::{ColdParams, ColdShape, Float};
use crate::harness::{compare_cold, ColdResult};
use crate::profile::DeviceProfile;
use crate::reference;
use crate::tiling::*;
use std::mem::size_of_val;

const UB: u32 = 192 * 1024 - 256 - 8 * 1024;
const POISON_F32: u32 = 0x7fc0_dead; // a quiet NaN with a recognisable payload
const POISON_U16: u16 = 0x7e5a; // a NaN as f16 and as bf16

fn params(alpha: f32, beta: f32) -> ColdParams {
    ColdParams::new(alpha, beta).unwrap()
}

/// Device memory for one test: 8-byte aligned buffers and the regions the emulator checks against.
struct Gm {
    bufs: Vec<Vec<u64>>,
    lens: Vec<usize>,
}

impl Gm {
    fn new() -> Self {
        Gm {
            bufs: vec![],
            lens: vec![],
        }
    }
    fn add<T: bytemuck::Pod>(&mut self, data: &[T]) -> usize {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let mut v = vec![0u64; bytes.len().div_ceil(8).max(1)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut v)[..bytes.len()].copy_from_slice(bytes);
        self.bufs.push(v);
        self.lens.push(bytes.len());
        self.bufs.len() - 1
    }
    fn addr(&self, i: usize) -> u64 {
        self.bufs[i].as_ptr() as u64
    }
    fn get<T: bytemuck::Pod>(&self, i: usize) -> Vec<T> {
        let bytes = &bytemuck::cast_slice::<u64, u8>(&self.bufs[i])[..self.lens[i]];
        bytes
            .chunks_exact(std::mem::size_of::<T>())
            .map(bytemuck::pod_read_unaligned)
            .collect()
    }
    fn run(
        &mut self,
        name: &str,
        args: &[u64],
        blocks: u32,
        ub: u32,
    ) -> Result<Vec<BlockCounters>, String> {
        let kernel = HostKernel::find(name).unwrap_or_else(|| panic!("{name} registered"));
        let mut regions: Vec<EmuGmRegion> = self
            .bufs
            .iter()
            .zip(&self.lens)
            .map(|(b, &len)| EmuGmRegion {
                base: b.as_ptr() as usize,
                len,
            })
            .collect();
        regions.sort_by_key(|r| r.base);
        // SAFETY: every address passed is one of self.bufs (or 0 for an argument the kernel ignores),
        // described by `regions`, and nothing else touches them during the launch.
        unsafe { kernel.run_blocks(args, blocks, &regions, ub, 2) }
    }
}

fn total(c: &[BlockCounters]) -> (u64, u64) {
    c.iter().fold((0, 0), |(r, w), b| {
        (r + b.gm_read_bytes, w + b.gm_write_bytes)
    })
}

/// Below this minimal traffic, the tiling struct every block reads (40 to 48 bytes, scalar loads) is a
/// visible fraction of the total; above it, it must fit in the ratio like any other byte.
const SMALL_LAUNCH_BYTES: u64 = 64 * 1024;

/// Checks the GM bytes moved (read + written, every block of every launch in `counters`) against
/// `limit` x `minimal`. Tiny launches are checked without their tiling reads (counted, reported, but a
/// fixed cost per block), every other launch with everything it moved.
fn check_traffic(
    what: &str,
    counters: &[BlockCounters],
    minimal: u64,
    tiling_bytes: usize,
    limit: f64,
) -> f64 {
    let (rd, wr) = total(counters);
    let moved = rd + wr;
    let tiling = (tiling_bytes * counters.len()) as u64;
    let ratio = moved as f64 / minimal as f64;
    if minimal >= SMALL_LAUNCH_BYTES {
        assert!(ratio <= limit, "{what}: traffic ratio {ratio} > {limit}");
    } else {
        let r = (moved - tiling) as f64 / minimal as f64;
        assert!(
            r <= limit,
            "{what}: traffic ratio without the {tiling} tiling bytes {r} > {limit}"
        );
    }
    ratio
}

/// Random 16-bit values of `dtype` and their exact f64 values.
fn random16(rng: &mut StdRng, n: usize, dtype: DType, amp: f32) -> (Vec<u16>, Vec<f64>) {
    let mut bits = Vec::with_capacity(n);
    let mut vals = Vec::with_capacity(n);
    for _ in 0..n {
        let v: f32 = rng.gen_range(-amp..amp);
        let (b, x) = match dtype {
            DType::F16 => (f16::from_f32(v).to_bits(), f16::from_f32(v).to_f64()),
            DType::Bf16 => (bf16::from_f32(v).to_bits(), bf16::from_f32(v).to_f64()),
            DType::F32 => unreachable!(),
        };
        bits.push(b);
        vals.push(x);
    }
    (bits, vals)
}

fn to_f64(bits: u16, dtype: DType) -> f64 {
    match dtype {
        DType::F16 => f16::from_bits(bits).to_f64(),
        _ => bf16::from_bits(bits).to_f64(),
    }
}

/// Unit roundoff of a dtype (half an ulp at 1.0).
fn unit(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 2f64.powi(-11),
        DType::Bf16 => 2f64.powi(-8),
        DType::F32 => 2f64.powi(-24),
    }
}

fn shrink_case(dtype: DType, b: usize, h: usize, r: usize, l: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (x, xv) = random16(&mut rng, b * h, dtype, 1.0);
    let (a, av) = random16(&mut rng, l * r * h, dtype, 1.0);
    let idx: Vec<i64> = (0..b)
        .map(|i| {
            if i % 3 == 1 {
                -1
            } else {
                rng.gen_range(0..l as i64)
            }
        })
        .collect();
    let scale = 0.5f32;
    let shape = ShrinkShape {
        batch: b,
        hidden_in: h,
        rank: r,
        num_loras: l,
    };
    let t = BgmvShrinkTiling::choose(shape, dtype, scale, &DeviceProfile::ascend_910b()).unwrap();
    let mut gm = Gm::new();
    let (xi, ai, ii) = (gm.add(&x), gm.add(&a), gm.add(&idx));
    let yi = gm.add(&vec![POISON_F32; b * r]);
    let si = gm.add(&vec![0xffff_ffffu32; b]);
    let ti = gm.add(&[t]);
    let name = format!("bgmv_shrink_{}", dtype.suffix());
    let args = [
        gm.addr(xi),
        gm.addr(ai),
        gm.addr(ii),
        gm.addr(yi),
        gm.addr(si),
        gm.addr(ti),
    ];
    let counters = gm.run(&name, &args, t.block_num, UB).unwrap();
    let y: Vec<u32> = gm.get(yi);
    assert_eq!(gm.get::<u32>(si), vec![0; b], "status words");
    let mut minimal = 12 * b as u64;
    for row in 0..b {
        for k in 0..r {
            let got = y[row * r + k];
            if idx[row] < 0 {
                assert_eq!(got, POISON_F32, "row {row} (idx -1) must stay untouched");
                continue;
            }
            let lo = idx[row] as usize;
            let terms = (0..h).map(|j| av[(lo * r + k) * h + j] * xv[row * h + j]);
            let (want, mag) = terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
            // f32 products are exact (11- or 8-bit mantissas); the f32 sum of h terms errs by at most
            // h * 2^-24 * sum |terms|, then one rounding for the scale.
            let tol = (h as f64 * 2f64.powi(-24) * mag + 1e-30) * 0.5 * 2.0 + 1e-6;
            let got = f32::from_bits(got) as f64;
            assert!(
                (got - 0.5 * want).abs() <= tol,
                "{name} row {row} rank {k}: got {got}, want {}",
                0.5 * want
            );
        }
        if idx[row] >= 0 {
            minimal += (h * 2 + r * h * 2 + r * 4) as u64;
        }
    }
    // Minimal traffic: 12 B per row (idx, status) + over rows with idx >= 0: x (H s) + A (R H s) + y (4 R).
    // Everything the kernel moves counts, the tiling struct (40 B per block) included.
    let what = format!("{name} {b}x{h} r{r}");
    check_traffic(&what, &counters, minimal, size_of_val(&t), 1.1);
}

#[test]
fn bgmv_shrink_matches_reference() {
    for (i, &(b, h, r, l)) in [
        (5, 1000, 7, 3),
        (1, 4103, 16, 2),
        (7, 64, 1, 1),
        (3, 8200, 33, 2),
    ]
    .iter()
    .enumerate()
    {
        shrink_case(DType::F16, b, h, r, l, 10 + i as u64);
        shrink_case(DType::Bf16, b, h, r, l, 20 + i as u64);
    }
}

#[test]
fn bgmv_bad_index_is_skipped_and_reported() {
    let (b, h, r, l) = (3, 200, 4, 2);
    let shape = ShrinkShape {
        batch: b,
        hidden_in: h,
        rank: r,
        num_loras: l,
    };
    let t =
        BgmvShrinkTiling::choose(shape, DType::F16, 1.0, &DeviceProfile::ascend_910b()).unwrap();
    let mut gm = Gm::new();
    let xi = gm.add(&vec![0x3c00u16; b * h]);
    let ai = gm.add(&vec![0x3c00u16; l * r * h]);
    let ii = gm.add(&[0i64, 2, -1]);
    let yi = gm.add(&vec![POISON_F32; b * r]);
    let si = gm.add(&vec![0xffff_ffffu32; b]);
    let ti = gm.add(&[t]);
    let args = [
        gm.addr(xi),
        gm.addr(ai),
        gm.addr(ii),
        gm.addr(yi),
        gm.addr(si),
        gm.addr(ti),
    ];
    gm.run("bgmv_shrink_f16", &args, t.block_num, UB).unwrap();
    assert_eq!(gm.get::<u32>(si), vec![0, 0x8000_0000 | (1 << 24), 0]);
    let y: Vec<u32> = gm.get(yi);
    assert!(y[..r].iter().all(|&v| f32::from_bits(v) == h as f32));
    assert!(
        y[r..].iter().all(|&v| v == POISON_F32),
        "bad and -1 rows untouched"
    );
}

fn expand_case(dtype: DType, b: usize, r: usize, h_out: usize, off: usize, add: bool, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let l = 3;
    let h_full = off + h_out + 5;
    let x: Vec<f32> = (0..b * r).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let (w, wv) = random16(&mut rng, l * h_out * r, dtype, 1.0);
    let (y0, _) = if add {
        random16(&mut rng, b * h_full, dtype, 1.0)
    } else {
        (vec![POISON_U16; b * h_full], vec![])
    };
    let idx: Vec<i64> = (0..b)
        .map(|i| {
            if i % 3 == 2 {
                -1
            } else {
                rng.gen_range(0..l as i64)
            }
        })
        .collect();
    let shape = ExpandShape {
        batch: b,
        rank: r,
        hidden_out: h_out,
        hidden_full: h_full,
        slice_offset: off,
        num_loras: l,
    };
    let t = BgmvExpandTiling::choose(shape, dtype, add, &DeviceProfile::ascend_910b()).unwrap();
    let mut gm = Gm::new();
    let (xi, wi, ii, yi) = (gm.add(&x), gm.add(&w), gm.add(&idx), gm.add(&y0));
    let si = gm.add(&vec![0xffff_ffffu32; b]);
    let ti = gm.add(&[t]);
    let name = format!("bgmv_expand_{}", dtype.suffix());
    let args = [
        gm.addr(xi),
        gm.addr(wi),
        gm.addr(ii),
        gm.addr(yi),
        gm.addr(si),
        gm.addr(ti),
    ];
    let counters = gm.run(&name, &args, t.block_num, UB).unwrap();
    let y: Vec<u16> = gm.get(yi);
    let mut minimal = 12 * b as u64;
    for row in 0..b {
        for c in 0..h_full {
            let got = y[row * h_full + c];
            let inside = c >= off && c < off + h_out;
            if idx[row] < 0 || !inside {
                assert_eq!(
                    got,
                    y0[row * h_full + c],
                    "{name} row {row} col {c} must stay untouched"
                );
                continue;
            }
            let lo = idx[row] as usize;
            let hh = c - off;
            let terms = (0..r).map(|k| wv[(lo * h_out + hh) * r + k] * x[row * r + k] as f64);
            let (mut want, mut mag) = terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
            if add {
                let prev = to_f64(y0[row * h_full + c], dtype);
                want += prev;
                mag += prev.abs();
            }
            // f32 accumulation of r + 1 terms, then one rounding to the dtype.
            let tol =
                (r as f64 + 2.0) * 2f64.powi(-24) * mag + unit(dtype) * want.abs() * 1.01 + 1e-7;
            let got = to_f64(got, dtype);
            assert!(
                (got - want).abs() <= tol,
                "{name} row {row} col {c}: got {got}, want {want}"
            );
        }
        if idx[row] >= 0 {
            minimal += (h_out * r * 2 + 4 * r + h_out * 2 * (1 + add as usize)) as u64;
        }
    }
    // Minimal traffic: 12 B per row (idx, status) + over rows with idx >= 0: Bw (H_out R s) + x (4 R)
    // + y written (H_out s) [+ y read (H_out s) when adding]. Everything moved counts (tiling included).
    let what = format!(
        "{name} {b}x{h_out} r{r} (tileH {}, hSplit {})",
        t.tile_h, t.h_split
    );
    check_traffic(&what, &counters, minimal, size_of_val(&t), 1.1);
}

#[test]
fn bgmv_expand_matches_reference() {
    for (i, &(b, r, h_out, off, add)) in [
        (4, 16, 1000, 3, true),
        (3, 7, 77, 0, false),
        (1, 64, 4099, 128, true),
        (2, 8, 520, 9, false),
        // Ranks past one 64-lane repeat: two WholeReduceSum chunks, the second masked to the tail.
        (2, 65, 300, 1, true),
        (3, 100, 1031, 7, false),
        (2, 127, 260, 0, true),
        (1, 128, 4096, 64, false),
        (4, 128, 777, 3, true),
    ]
    .iter()
    .enumerate()
    {
        expand_case(DType::F16, b, r, h_out, off, add, 30 + i as u64);
        expand_case(DType::Bf16, b, r, h_out, off, add, 40 + i as u64);
    }
}

/// The vLLM contract: every rank in 1..=128 (tails of both 64-lane chunks, the 16-element row padding).
#[test]
fn bgmv_expand_every_rank_up_to_128() {
    for r in 1..=128 {
        let dtype = if r % 2 == 0 { DType::F16 } else { DType::Bf16 };
        expand_case(dtype, 2, r, 40 + r, r % 5, r % 3 == 0, 1000 + r as u64);
    }
}

/// Logits of `dtype` with their exact f64 values; bits stored as the dtype's raw bytes.
fn logits(rng: &mut StdRng, n: usize, dtype: DType) -> (Vec<u8>, Vec<f64>) {
    let mut bytes = Vec::with_capacity(n * dtype.size() as usize);
    let mut vals = Vec::with_capacity(n);
    // xorshift64 seeded from rng: millions of logits per case stay cheap in a debug build.
    let mut state: u64 = rng.gen::<u64>() | 1;
    for _ in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let v = ((state >> 40) as f32 / (1u64 << 24) as f32) * 16.0 - 8.0;
        match dtype {
            DType::F32 => {
                bytes.extend_from_slice(&v.to_le_bytes());
                vals.push(v as f64);
            }
            _ => {
                let (b, _) = random16_one(v, dtype);
                bytes.extend_from_slice(&b.to_le_bytes());
                vals.push(to_f64(b, dtype));
            }
        }
    }
    (bytes, vals)
}

fn random16_one(v: f32, dtype: DType) -> (u16, ()) {
    match dtype {
        DType::F16 => (f16::from_f32(v).to_bits(), ()),
        _ => (bf16::from_f32(v).to_bits(), ()),
    }
}

fn set_value(bytes: &mut [u8], i: usize, v: f32, dtype: DType) {
    match dtype {
        DType::F32 => bytes[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes()),
        _ => bytes[2 * i..2 * i + 2].copy_from_slice(&random16_one(v, dtype).0.to_le_bytes()),
    }
}

struct ColdOut {
    tokens: Vec<i64>,
    best: Vec<f32>,
    scores: Vec<f32>,
    status: Vec<u32>,
    /// Every block of every launch.
    counters: Vec<BlockCounters>,
}

fn run_cold(e: &[u8], a: &[u8], t: ColdScoreTiling, dtype: DType) -> ColdOut {
    let (n, v) = (t.rows as usize, t.vocab as usize);
    let mut gm = Gm::new();
    let (ei, ai) = (gm.add(e), gm.add(a));
    let toki = gm.add(&vec![0x5a5a_5a5a_5a5a_5a5ai64; n]);
    let besti = gm.add(&vec![POISON_F32; n]);
    let sci = gm.add(&vec![
        POISON_F32;
        if t.write_scores != 0 { n * v } else { 1 }
    ]);
    let sti = gm.add(&vec![0xffff_ffffu32; n]);
    let wsi = gm.add(&vec![POISON_F32; t.workspace_bytes() / 4]);
    let ti = gm.add(&[t]);
    let sc = if t.write_scores != 0 { gm.addr(sci) } else { 0 };
    let sfx = dtype.suffix();
    let mut counters = vec![];
    if t.splits > 1 {
        let c = gm
            .run(
                &format!("cold_local_{sfx}"),
                &[gm.addr(ei), gm.addr(ai), gm.addr(wsi), gm.addr(ti)],
                t.block_num,
                UB,
            )
            .unwrap();
        counters.extend(c);
    }
    let args = [
        gm.addr(ei),
        gm.addr(ai),
        gm.addr(toki),
        gm.addr(besti),
        sc,
        gm.addr(sti),
        gm.addr(wsi),
        gm.addr(ti),
    ];
    let c = gm
        .run(&format!("cold_score_{sfx}"), &args, t.block_num, UB)
        .unwrap();
    counters.extend(c);
    if t.splits > 1 {
        let args = [
            gm.addr(toki),
            gm.addr(besti),
            gm.addr(sti),
            gm.addr(wsi),
            gm.addr(ti),
        ];
        let c = gm.run("cold_reduce", &args, t.rows.min(40), UB).unwrap();
        counters.extend(c);
    }
    ColdOut {
        tokens: gm.get(toki),
        best: gm.get(besti),
        scores: gm.get(sci),
        status: gm.get(sti),
        counters,
    }
}

/// Runs cold_score on random logits [n, v] and checks every row against the reference under the
/// harness's tolerances (`harness::compare_cold`); returns the traffic ratio after checking it <= 1.5.
fn cold_case(
    dtype: DType,
    n: usize,
    v: usize,
    write_scores: bool,
    resident: Option<bool>,
    seed: u64,
) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut e, mut ev) = logits(&mut rng, n * v, dtype);
    let (a, av) = logits(&mut rng, n * v, dtype);
    let (alpha, beta) = (0.1f32, 0.5f32);
    // Row 1 (when present) carries a NaN in e; row 2 an inf in a... set in e to keep `a` shared.
    if n > 1 {
        set_value(&mut e, v + v / 2, f32::NAN, dtype);
        ev[v + v / 2] = f64::NAN;
    }
    let (mut a, mut av) = (a, av);
    if n > 2 {
        set_value(&mut a, 2 * v + v - 1, f32::INFINITY, dtype);
        av[2 * v + v - 1] = f64::INFINITY;
    }
    let params = ColdParams::new(alpha, beta).unwrap();
    let profile = DeviceProfile::ascend_910b();
    let mut t = ColdScoreTiling::choose(n, v, dtype, params, write_scores, &profile).unwrap();
    if let Some(r) = resident {
        t.resident = r as u32;
    }
    let out = run_cold(&e, &a, t, dtype);
    // The oracle on the same values (exact in f32), held to the harness's tolerances.
    let (e32, a32): (Vec<f32>, Vec<f32>) = (
        ev.iter().map(|&x| x as f32).collect(),
        av.iter().map(|&x| x as f32).collect(),
    );
    let shape = ColdShape { rows: n, vocab: v };
    let picks = reference::cold_score(&e32, &a32, shape, params, None).unwrap();
    let ref_tokens: Vec<i64> = picks.iter().map(|p| p.token).collect();
    let got = ColdResult {
        tokens: out.tokens.clone(),
        best: out.best.clone(),
        scores: write_scores.then(|| out.scores.clone()),
    };
    let errs = compare_cold(&ev, &av, shape, params, &ref_tokens, &got);
    let what = format!(
        "cold_score {dtype:?} {n}x{v} scores {write_scores} (splits {}, resident {})",
        t.splits, t.resident
    );
    assert!(errs.ok(), "{what}: {:?}", errs.first_failure);
    for (row, &token) in ref_tokens.iter().enumerate() {
        let status = if token < 0 {
            0x8000_0000 | (2 << 24)
        } else {
            0
        };
        assert_eq!(out.status[row], status, "{what}: status of row {row}");
    }
    // Minimal traffic: e and a read once (N V s each), token (8 B), best (4 B) and status (4 B) written
    // once per row, and the score row (4 N V) when asked for.
    let s = dtype.size() as u64;
    let minimal =
        (n * v) as u64 * 2 * s + 16 * n as u64 + if write_scores { 4 * (n * v) as u64 } else { 0 };
    check_traffic(&what, &out.counters, minimal, size_of_val(&t), 1.5)
}

#[test]
fn cold_score_matches_reference() {
    for (i, dtype) in [DType::F16, DType::Bf16, DType::F32]
        .into_iter()
        .enumerate()
    {
        let s = i as u64 * 100;
        // Many rows (more than the 48 cores), one launch. Score row with e resident in UB: e and a read once.
        let r = cold_case(dtype, 49, 5003, true, None, s + 1);
        assert!(r <= 1.01, "{dtype:?} resident ratio {r}");
        // Score row, e not resident (as for a row too long for UB): e read twice, under 4/3.
        let r = cold_case(dtype, 49, 5003, true, Some(false), s + 2);
        assert!(r <= 1.34, "{dtype:?} streamed ratio {r}");
        // Tokens only: the one-pass scan.
        let r = cold_case(dtype, 49, 5003, false, None, s + 6);
        assert!(r <= 1.02, "{dtype:?} one-pass ratio {r}");
        // Few rows: the vocabulary split over the cores, three launches; with the score row written.
        cold_case(dtype, 3, 32003, true, None, s + 3);
        // Split, tokens only.
        cold_case(dtype, 2, 40009, false, None, s + 5);
        cold_case(dtype, 1, 97, false, None, s + 4);
        cold_case(dtype, 1, 97, true, None, s + 7);
    }
}

/// GM traffic <= 1.5 x minimal in every mode (one launch / split, tokens only / score row, resident or
/// streamed) at real vocabulary sizes, checked against the reference too.
#[test]
fn cold_score_traffic_at_vocab_sizes() {
    let mut seed = 500;
    for v in [32000usize, 49152, 151936, 100003] {
        // A prime vocabulary (tails everywhere) at the split row counts; 64 rows behave like 8 per row.
        let rows: &[usize] = if v == 100003 { &[1, 8] } else { &[1, 8, 64] };
        for &n in rows {
            for write_scores in [false, true] {
                // f16 everywhere; f32 (twice the bytes, the tightest UB) on the largest vocabulary.
                let dtypes: &[DType] = if v == 151936 {
                    &[DType::F16, DType::F32]
                } else {
                    &[DType::F16]
                };
                for &dtype in dtypes {
                    seed += 1;
                    let r = cold_case(dtype, n, v, write_scores, None, seed);
                    eprintln!("cold_score {dtype:?} {n}x{v} scores {write_scores}: ratio {r:.4}");
                }
            }
        }
    }
}

/// A tile (or chunk) scored before the row's maximum was seen keeps a winner the final threshold masks;
/// the true answer in that range must be found by re-reading it.
#[test]
fn cold_score_rescans_a_range_whose_winner_the_final_threshold_masks() {
    let v = 20000;
    let mut e = vec![0u8; v * 4];
    let mut a = vec![0u8; v * 4];
    for i in 0..v {
        set_value(&mut e, i, -10.0, DType::F32);
    }
    // ln(0.1) = -2.30: the first range's own threshold is 6.0 - 2.3 = 3.7, so e = 5 (score 17.5) wins
    // there; the row's maximum 8.0 (near the end) lifts the threshold to 5.7, masking it.
    set_value(&mut e, 5, 5.0, DType::F32);
    set_value(&mut a, 5, -20.0, DType::F32);
    set_value(&mut e, 9, 6.0, DType::F32); // the answer: 1.5 * 6 + 5 = 14
    set_value(&mut a, 9, -10.0, DType::F32);
    set_value(&mut e, v - 3, 8.0, DType::F32); // the maximum: score 12
    for (rows_hint, write_scores) in [(1, false), (1, true), (64, false), (64, true)] {
        // rows_hint 1: split over the vocabulary; 64: one launch (tiling chosen for 64 rows, run on 1).
        let p = DeviceProfile::ascend_910b();
        let mut t =
            ColdScoreTiling::choose(rows_hint, v, DType::F32, params(0.1, 0.5), write_scores, &p)
                .unwrap();
        t.rows = 1;
        t.block_num = t.block_num.min(t.splits);
        t.ws_bytes = t.ws_bytes.min(t.splits * 32);
        let out = run_cold(&e, &a, t, DType::F32);
        let what = format!("splits {} scores {write_scores}", t.splits);
        assert_eq!(out.tokens[0], 9, "{what}");
        assert_eq!(out.best[0], 14.0, "{what}");
        assert_eq!(out.status[0], 0, "{what}");
        if write_scores {
            assert_eq!(out.scores[5], f32::NEG_INFINITY, "{what}");
            assert_eq!(out.scores[9], 14.0, "{what}");
        }
    }
}

/// A beta too large for finite logits (docs/SEMANTICS.md section 1, score overflow), in every mode
/// (one launch or split, tokens only or the score row), against the oracle. Row 0: the only kept
/// token scores inf - inf = NaN; row 1: a score overflows to +inf only under the one-pass scan's
/// provisional threshold, on a token the row's final threshold masks (no fault: the answer is the
/// finite winner); row 2: the only kept score overflows to -inf.
#[test]
fn cold_score_overflow_is_reported_in_every_mode() {
    let (n, v) = (3usize, 20000usize);
    let mut e = vec![0u8; n * v * 4];
    let mut a = vec![0u8; n * v * 4];
    let (mut ev, mut av) = (vec![-10.0f32; n * v], vec![0.0f32; n * v]);
    let mut put = |i: usize, x: f32, y: f32| {
        ev[i] = x;
        av[i] = y;
    };
    put(5, 40.0, 40.0); // 40 (1 + 1e37) = inf, 40e37 = inf: NaN
    put(v + 5, 20.0, -40.0); // 20 (1 + 1e37) = 2e38, -(-4e38) = +inf: kept only provisionally
    put(v + v - 3, 30.0, 30.0); // the maximum: 3e38 - 3e38 = 0
    put(2 * v + 7, -5.0, 40.0); // the maximum, -5e37 - 4e38 (inf) = -inf
    for i in 0..n * v {
        set_value(&mut e, i, ev[i], DType::F32);
        set_value(&mut a, i, av[i], DType::F32);
    }
    let params = params(0.5, 1e37);
    let shape = ColdShape { rows: n, vocab: v };
    let picks = reference::cold_score(&ev, &av, shape, params, None).unwrap();
    let tokens: Vec<i64> = picks.iter().map(|p| p.token).collect();
    assert_eq!(tokens, [-2, (v - 3) as i64, -2]);
    let p = DeviceProfile::ascend_910b();
    for (rows_hint, write_scores) in [(n, false), (n, true), (64, false), (64, true)] {
        let mut t =
            ColdScoreTiling::choose(rows_hint, v, DType::F32, params, write_scores, &p).unwrap();
        t.rows = n as u32;
        t.block_num = t.block_num.min(n as u32 * t.splits);
        t.ws_bytes = t.ws_bytes.min(n as u32 * t.splits * 32);
        let out = run_cold(&e, &a, t, DType::F32);
        let what = format!("splits {} scores {write_scores}", t.splits);
        assert_eq!(out.tokens, tokens, "{what}");
        assert_eq!(out.best[1], 0.0, "{what}");
        assert!(out.best[0].is_nan() && out.best[2].is_nan(), "{what}");
        let overflow = 0x8000_0000 | (3 << 24);
        assert_eq!(out.status, [overflow, 0, overflow], "{what}");
    }
}

/// Bug (ops_props, `seed = 4719008545157703419, rows = 29, vocab = 45409`, f32, tokens only): a split
/// row returned a token the alpha-mask removes. `cold_score`'s resolve step sorted chunks as dirty
/// (rescanned) or not, but a chunk whose own maximum is below the row's threshold (empty) kept the
/// record of its local pass, a winner under its own, lower threshold, and `cold_reduce` could pick it.
/// Reproduces the property test's case exactly (same generator, same default tiling: 2 chunks per row).
#[test]
fn cold_score_split_chunk_below_the_row_threshold_keeps_no_winner() {
    let (seed, rows, vocab) = (4719008545157703419u64, 29usize, 45409usize);
    // tests/ops_props.rs random_cold::<f32>, draw for draw.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut e: Vec<f32> = (0..rows * vocab)
        .map(|_| f32::from_f64(rng.gen_range(-8.0..8.0)))
        .collect();
    let a: Vec<f32> = (0..rows * vocab)
        .map(|_| f32::from_f64(rng.gen_range(-8.0..8.0)))
        .collect();
    for n in 0..rows {
        if rng.gen_bool(0.15) {
            let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.gen_range(0..3)];
            let i = n * vocab + rng.gen_range(0..vocab);
            e[i] = f32::from_f64(bad);
        }
    }
    let alpha = [1.0f32, 0.5, 0.1, 0.01, 1e-4][rng.gen_range(0..5)];
    let beta = [0.0f32, 0.5, 1.0, 3.0][rng.gen_range(0..4)];
    let params = ColdParams::new(alpha, beta).unwrap();
    let t = ColdScoreTiling::choose(
        rows,
        vocab,
        DType::F32,
        params,
        false,
        &DeviceProfile::ascend_910b(),
    )
    .unwrap();
    assert!(t.splits > 1, "the case runs split (splits {})", t.splits);
    let shape = ColdShape { rows, vocab };
    let picks = reference::cold_score(&e, &a, shape, params, None).unwrap();
    let out = run_cold(
        bytemuck::cast_slice(&e),
        bytemuck::cast_slice(&a),
        t,
        DType::F32,
    );
    for (n, pick) in picks.iter().enumerate() {
        assert_eq!(
            out.tokens[n], pick.token,
            "row {n} (alpha {alpha}, beta {beta}, splits {})",
            t.splits
        );
    }
}

/// The smallest crafted split row for the same bug: two chunks of one 64-element tile, vocab 65. Chunk 1
/// holds only e = 0 (a = -10: score 5), its own maximum, so its local pass keeps it; the row's maximum
/// e = 1 in chunk 0 (score 1.5) sets the threshold 1 + ln 0.5 = 0.31, which masks all of chunk 1. The
/// answer is token 0; the stale record of chunk 1 made it 64.
#[test]
fn cold_score_split_chunk_below_the_row_threshold_crafted() {
    let v = 65;
    let mut e = vec![0u8; v * 4];
    let mut a = vec![0u8; v * 4];
    for i in 0..v {
        set_value(&mut e, i, -10.0, DType::F32);
    }
    set_value(&mut e, 0, 1.0, DType::F32);
    set_value(&mut e, 64, 0.0, DType::F32);
    set_value(&mut a, 64, -10.0, DType::F32);
    let t = ColdScoreTiling {
        rows: 1,
        vocab: v as u32,
        block_num: 2,
        splits: 2,
        chunk_len: 64,
        tile_len: 64,
        resident: 0,
        write_scores: 0,
        ln_alpha: 0.5f32.ln(),
        beta: 0.5,
        ws_bytes: 2 * 32,
        e_row_stride: v as u32,
        a_row_stride: v as u32,
        reserved: 0,
    };
    t.validate(
        1,
        v,
        DType::F32,
        params(0.5, 0.5),
        &DeviceProfile::ascend_910b(),
    )
    .unwrap();
    let out = run_cold(&e, &a, t, DType::F32);
    assert_eq!(out.tokens[0], 0);
    assert_eq!(out.best[0], 1.5);
    assert_eq!(out.status[0], 0);
}

#[test]
fn cold_score_ties_go_to_the_lowest_index() {
    for (n, v) in [(1usize, 20011usize), (45, 300)] {
        let mut e = vec![0u8; n * v * 4];
        let a = vec![0u8; n * v * 4];
        for row in 0..n {
            for i in 0..v {
                set_value(&mut e, row * v + i, -1.0, DType::F32);
            }
            // Equal maxima at 7 + row and at the end of the row (another chunk when split).
            set_value(&mut e, row * v + 7 + row, 3.0, DType::F32);
            set_value(&mut e, row * v + v - 2, 3.0, DType::F32);
        }
        let t = ColdScoreTiling::choose(
            n,
            v,
            DType::F32,
            params(0.5, 1.0),
            false,
            &DeviceProfile::ascend_910b(),
        )
        .unwrap();
        let out = run_cold(&e, &a, t, DType::F32);
        for row in 0..n {
            assert_eq!(
                out.tokens[row],
                7 + row as i64,
                "row {row} (splits {})",
                t.splits
            );
            assert_eq!(out.best[row], 6.0);
        }
    }
}

#[test]
fn smoke_add_through_the_queue_api() {
    let n = 1003u32;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let y: Vec<f32> = (0..n).map(|i| 0.25 * i as f32).collect();
    let mut gm = Gm::new();
    let (xi, yi, zi) = (
        gm.add(&x),
        gm.add(&y),
        gm.add(&vec![POISON_F32; n as usize]),
    );
    let ti = gm.add(&[SmokeAddTiling {
        n,
        tile_len: 256,
        block_num: 3,
        reserved: 0,
    }]);
    let args = [gm.addr(xi), gm.addr(yi), gm.addr(zi), gm.addr(ti)];
    gm.run("smoke_add_f32", &args, 3, UB).unwrap();
    let z: Vec<f32> = gm.get(zi);
    assert!((0..n as usize).all(|i| z[i] == 1.25 * i as f32));
}

// ---- One test per emulator rule --------------------------------------------------------------------

fn shrink_with(t: BgmvShrinkTiling, x_len: usize, ub: u32) -> String {
    let mut gm = Gm::new();
    let xi = gm.add(&vec![0u16; x_len]);
    let ai = gm.add(&vec![0u16; (t.num_loras * t.rank * t.hidden_in) as usize]);
    let ii = gm.add(&vec![0i64; t.batch as usize]);
    let yi = gm.add(&vec![0f32; (t.batch * t.rank) as usize]);
    let si = gm.add(&vec![0u32; t.batch as usize]);
    let ti = gm.add(&[t]);
    let args = [
        gm.addr(xi),
        gm.addr(ai),
        gm.addr(ii),
        gm.addr(yi),
        gm.addr(si),
        gm.addr(ti),
    ];
    gm.run("bgmv_shrink_f16", &args, t.block_num, ub)
        .unwrap_err()
}

fn shrink_tiling() -> BgmvShrinkTiling {
    let shape = ShrinkShape {
        batch: 2,
        hidden_in: 512,
        rank: 4,
        num_loras: 1,
    };
    BgmvShrinkTiling::choose(shape, DType::F16, 1.0, &DeviceProfile::ascend_910b()).unwrap()
}

#[test]
fn rule_ub_capacity() {
    let t = BgmvShrinkTiling {
        tile_h: 16384,
        ..shrink_tiling()
    };
    let err = shrink_with(t, 2 * 512, UB);
    assert!(
        err.contains("UB capacity") && err.contains("bgmv_shrink_f16"),
        "{err}"
    );
    let err = shrink_with(shrink_tiling(), 2 * 512, 4096);
    assert!(err.contains("UB capacity"), "{err}");
}

#[test]
fn rule_datacopy_length_multiple_of_32() {
    let t = BgmvShrinkTiling {
        tile_h: 8,
        ..shrink_tiling()
    }; // 16-byte DataCopy of f16
    let err = shrink_with(t, 2 * 512, UB);
    assert!(err.contains("DataCopy length"), "{err}");
}

#[test]
fn rule_gm_bounds() {
    let err = shrink_with(shrink_tiling(), 2 * 512 - 1, UB); // x one element short
    assert!(err.contains("GM bounds"), "{err}");
}

#[test]
fn rule_repeat_limit() {
    let shape = ExpandShape {
        batch: 1,
        rank: 8,
        hidden_out: 600,
        hidden_full: 600,
        slice_offset: 0,
        num_loras: 1,
    };
    let mut t =
        BgmvExpandTiling::choose(shape, DType::F16, false, &DeviceProfile::ascend_910b()).unwrap();
    t.tile_h = 256;
    t.h_per_task = 600;
    t.h_split = 1;
    t.block_num = 1;
    let mut gm = Gm::new();
    let xi = gm.add(&[0f32; 8]);
    let wi = gm.add(&vec![0u16; 600 * 8]);
    let ii = gm.add(&[0i64]);
    let yi = gm.add(&vec![0u16; 600]);
    let si = gm.add(&[0u32]);
    let ti = gm.add(&[t]);
    let args = [
        gm.addr(xi),
        gm.addr(wi),
        gm.addr(ii),
        gm.addr(yi),
        gm.addr(si),
        gm.addr(ti),
    ];
    let err = gm.run("bgmv_expand_f16", &args, 1, UB).unwrap_err();
    assert!(err.contains("repeat limit") && err.contains("256"), "{err}");
}

#[test]
fn rule_ub_address_alignment() {
    // A resident chunk with tiles of 100 f16 (200 bytes): the second tile starts at UB offset +200.
    let (n, v) = (1usize, 300usize);
    let mut t = ColdScoreTiling::choose(
        n,
        v,
        DType::F16,
        params(0.5, 0.5),
        false,
        &DeviceProfile::ascend_910b(),
    )
    .unwrap();
    t.tile_len = 100;
    t.chunk_len = 300;
    t.resident = 1;
    t.write_scores = 1;
    let e = vec![0u8; n * v * 2];
    let mut gm = Gm::new();
    let (ei, ai) = (gm.add(&e), gm.add(&e));
    let (toki, besti, sti) = (gm.add(&[0i64]), gm.add(&[0f32]), gm.add(&[0u32]));
    let sci = gm.add(&vec![0f32; n * v]);
    let wsi = gm.add(&[0u32; 8]);
    let ti = gm.add(&[t]);
    let args = [
        gm.addr(ei),
        gm.addr(ai),
        gm.addr(toki),
        gm.addr(besti),
        gm.addr(sci),
        gm.addr(sti),
        gm.addr(wsi),
        gm.addr(ti),
    ];
    let err = gm.run("cold_score_f16", &args, 1, UB).unwrap_err();
    assert!(err.contains("UB address alignment"), "{err}");
    let mut gm = Gm::new();
    let mi = gm.add(&[3u32]);
    let err = gm
        .run("emu_selftest_api_misuse", &[gm.addr(mi)], 1, UB)
        .unwrap_err();
    assert!(err.contains("UB address alignment"), "{err}");
}

#[test]
fn rule_queue_misuse() {
    for (mode, what) in [
        (0u32, "DeQue of an empty queue"),
        (1, "AllocTensor"),
        (2, "EnQue"),
        (4, "UB capacity"),
    ] {
        let mut gm = Gm::new();
        let mi = gm.add(&[mode]);
        let err = gm
            .run("emu_selftest_api_misuse", &[gm.addr(mi)], 1, UB)
            .unwrap_err();
        assert!(err.contains(what), "mode {mode}: {err}");
    }
}

fn misuse(words: &[u32]) -> (Result<Vec<BlockCounters>, String>, Vec<u32>) {
    let mut gm = Gm::new();
    let mi = gm.add(words);
    let result = gm.run("emu_selftest_api_misuse", &[gm.addr(mi)], 1, UB);
    (result, gm.get(mi))
}

/// Each strict rule of the emulator (docs/KERNELS.md, "Ascend C API surface") caught, its error naming the
/// call and the rule.
#[test]
fn rule_strict_api_misuse_is_named() {
    for (mode, call, rule) in [
        (5u32, "Compares", "whole number of 256-byte repeats"),
        (6, "DataCopyPad GM->UB route", "VECCALC"),
        (7, "DataCopy GM->UB route", "GM->VECIN"),
        (8, "DataCopy UB->GM route", "VECOUT->GM"),
        (9, "operand overlap: Add", "disjoint or identical"),
        (10, "ReduceMax sharedTmpBuffer", "need 16 elements"),
        (11, "stride limit: WholeReduceSum", "65536 outside 0..65535"),
        (12, "DataCopyPad blockCount", "4096 is outside 0..4095"),
        (13, "ReduceMax dst", "not 8-byte aligned"),
        (
            15,
            "GM address alignment: DataCopy GM->UB",
            "4-byte element",
        ),
        (21, "DataCopyPad UB->GM route", "VECIN->GM or VECOUT->GM"),
        (22, "Mul (level 0)", "mask 65 outside 0..64"),
        (
            23,
            "operand overlap: Mul (level 0)",
            "repeated source must be disjoint",
        ),
    ] {
        let err = misuse(&[mode]).0.unwrap_err();
        assert!(
            err.contains("emu_selftest_api_misuse") && err.contains(call) && err.contains(rule),
            "mode {mode}: {err}"
        );
    }
}

/// Each kind of pipe hazard caught (kernels/emu/hazard.h), the error naming both calls, their pipes and the
/// UB range.
#[test]
fn rule_pipe_hazards_are_named() {
    for (mode, second, first) in [
        (
            16u32,
            "Add src0 (V) reads UB [",
            "written by DataCopy GM->UB (MTE2)",
        ),
        (
            17,
            "Add src0 (V) reads UB [",
            "written by Duplicate dst (V)",
        ),
        (
            18,
            "DataCopy GM->UB (MTE2) writes UB [",
            "read by Add src1 (V)",
        ),
        (
            19,
            "DataCopyPad UB->GM (MTE3) reads UB [",
            "written by LocalTensor::SetValue (S)",
        ),
        (
            20,
            "LocalTensor::GetValue (S) reads UB [",
            "written by Duplicate dst (V)",
        ),
    ] {
        let mut words = [0u32; 8];
        words[0] = mode;
        let err = misuse(&words).0.unwrap_err();
        assert!(
            err.contains("emu_selftest_api_misuse")
                && err.contains("pipe hazard: ")
                && err.contains(second)
                && err.contains(first),
            "mode {mode}: {err}"
        );
    }
}

/// With both pad counts 0, DataCopyPad fills a block's tail with the block's first element (the GM->UB
/// page), not with `paddingValue`: a kernel summing the padded block sees 8 x, not x.
#[test]
fn rule_datacopypad_fills_the_tail_with_the_first_element() {
    let x = 1.5f32;
    let (result, words) = misuse(&[14, x.to_bits(), 0]);
    result.unwrap();
    assert_eq!(f32::from_bits(words[2]), 8.0 * x);
}

/// One block running several H_out chunks of a row: the task after the first reloads x into the buffer the
/// previous task's Mul read, a V -> MTE2 dependency no queue covers (the pipe model reports it without the
/// barrier in `LoadX`).
#[test]
fn bgmv_expand_reloads_x_only_after_the_previous_task_read_it() {
    let (r, h_out) = (16usize, 40usize);
    let shape = ExpandShape {
        batch: 1,
        rank: r,
        hidden_out: h_out,
        hidden_full: h_out,
        slice_offset: 0,
        num_loras: 1,
    };
    let p = DeviceProfile::ascend_910b();
    let t = BgmvExpandTiling {
        block_num: 1,
        tile_h: 8,
        h_per_task: 8,
        h_split: 5,
        ..BgmvExpandTiling::choose(shape, DType::F16, false, &p).unwrap()
    };
    t.validate(shape, DType::F16, &p).unwrap();
    let x: Vec<f32> = (0..r).map(|k| k as f32).collect();
    let mut gm = Gm::new();
    let (xi, wi) = (gm.add(&x), gm.add(&vec![0x3c00u16; h_out * r]));
    let (ii, yi) = (gm.add(&[0i64]), gm.add(&vec![POISON_U16; h_out]));
    let (si, ti) = (gm.add(&[u32::MAX]), gm.add(&[t]));
    let args = [xi, wi, ii, yi, si, ti].map(|i| gm.addr(i));
    gm.run("bgmv_expand_f16", &args, 1, UB).unwrap();
    let want = f16::from_f32((0..r).map(|k| k as f32).sum()).to_bits();
    assert_eq!(gm.get::<u16>(yi), vec![want; h_out]);
}
