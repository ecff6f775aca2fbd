//! The tilings at their edges, not only far past them.
//!
//! Each place where a default tiling (`choose`) changes its plan as one shape parameter grows is found by
//! asking `choose` itself on increasing sizes, so the edges follow the code and the device profile instead
//! of numbers copied from it. The default tiling is launched on both sides of each edge (of a regular run
//! of edges, the first ones and the one that ends the run); the result must equal `ascend_cold::reference`, and every block's Unified Buffer peak measured by the emulator must equal
//! the tiling's own `ub_bytes`: that is the figure `validate` holds against the budget, so it has to be
//! what the kernel really allocates. A caller's tiling exactly at the budget must launch, one 32-byte block
//! over must be refused before launch, naming the budget. Equal best scores must go to the lowest index
//! within a tile, across tiles, across vocabulary chunks and across cores.
//!
//! Tolerance 0: inputs lie on the quarter grid (|x| < 32 for logits, <= 2 for LoRA operands), exact in f16,
//! bf16 and f32. Every product of two such values is a multiple of 1/16 and every sum the kernels form stays
//! below 2^17 in magnitude, so f32 holds all of them exactly (21 significant bits at most) in any order of
//! summation; the f64 reference holds them exactly too. Scales and betas are 0.5 or 1 (exact). So y of
//! bgmv_shrink equals the reference exactly, bgmv_expand rounds the same exact value once (RINT, as the
//! reference's round-to-nearest-even), and cold_score's scores, best scores and tokens (ties included) are
//! the reference's. With alpha = 0.1 the threshold max + ln(alpha) sits at least 0.05 away from any grid
//! value, far beyond the f32 rounding of ln(alpha), so the mask is the reference's too.
//!
//! The emulator's launch history belongs to the device and is shared by this binary's tests: each test
//! holds a lock while it launches, so the records it reads back are its own.

mod common;

use ascend_cold::contracts::ColdParams;
use ascend_cold::contracts::{ColdPick, Float};
use ascend_cold::contracts::{ColdShape, ExpandShape, ShrinkShape};
use ascend_cold::ops::{self, AdapterIndices, ColdOutputs};
use ascend_cold::reference;
use ascend_cold::runtime::emu;
use ascend_cold::tiling::{BgmvExpandTiling, BgmvShrinkTiling, ColdScoreTiling, DType};
use ascend_cold::DeviceProfile;
use ascend_cold::{Device, DeviceBuffer, DeviceRepr, Error, Stream};
use half::{bf16, f16};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::ops::RangeInclusive;
use std::sync::{Mutex, MutexGuard};

const SCALE: f32 = 0.5;
const ALPHA: f32 = 0.1;
const BETA: f32 = 0.5;

/// The CoLD parameters of every case here.
fn params() -> ColdParams {
    ColdParams::new(ALPHA, BETA).unwrap()
}

static EMU0: Mutex<()> = Mutex::new(());

/// Emulated device 0, one stream on it, its profile, and the lock on its launch history.
struct Emu0 {
    device: Device,
    stream: Stream,
    profile: DeviceProfile,
    _serial: MutexGuard<'static, ()>,
}

impl Emu0 {
    fn new() -> Self {
        // A failed test poisons the lock; the others still run.
        let serial = EMU0.lock().unwrap_or_else(|e| e.into_inner());
        let device = common::emu(0);
        let stream = Stream::new(&device).unwrap();
        let profile = device.profile().unwrap();
        Emu0 {
            device,
            stream,
            profile,
            _serial: serial,
        }
    }

    fn budget(&self) -> u64 {
        u64::from(self.profile.ub_bytes)
    }

    fn launch_count(&self) -> u64 {
        emu::stats(0).unwrap().launches
    }
}

/// A launch the op must have made: its kernel, blocks, and the UB every block must have peaked at.
#[derive(Debug)]
struct Launch {
    kernel: String,
    blocks: u32,
    ub: u64,
}

/// Checks that the launches since `before` are exactly `expect`, each block at its UB figure. Returns the
/// bytes they read from global memory.
fn expect_launches(before: u64, expect: &[Launch], what: &str) -> u64 {
    let ran = emu::stats(0).unwrap().launches - before;
    assert_eq!(
        ran,
        expect.len() as u64,
        "{what}: launches made, expected {expect:?}"
    );
    let history = emu::last_launches(0).unwrap();
    let got = &history[history.len() - expect.len()..];
    for (record, want) in got.iter().zip(expect) {
        assert_eq!(record.fault, None, "{what}: {} faulted", record.kernel);
        assert_eq!(
            (&record.kernel, record.blocks),
            (&want.kernel, want.blocks),
            "{what}"
        );
        assert_eq!(record.counters.len(), want.blocks as usize, "{what}");
        for (block, c) in record.counters.iter().enumerate() {
            assert_eq!(
                c.ub_peak_bytes, want.ub,
                "{what}: {} block {block}: measured UB peak vs the tiling's ub_bytes",
                record.kernel
            );
        }
    }
    got.iter()
        .flat_map(|r| &r.counters)
        .map(|c| c.gm_read_bytes)
        .sum()
}

/// Every value of `range` after its first where the plan differs from the one just below: the first
/// size of each new plan.
fn plan_edges<P: PartialEq + Debug>(
    range: RangeInclusive<usize>,
    plan: impl Fn(usize) -> P,
) -> Vec<usize> {
    let mut edges = Vec::new();
    let mut prev = plan(*range.start());
    for x in range.clone().skip(1) {
        let p = plan(x);
        if p != prev {
            edges.push(x);
        }
        prev = p;
    }
    assert!(
        !edges.is_empty(),
        "no plan change in {range:?}: the edge moved out of the scanned range"
    );
    edges
}

/// The last size of the old plan, the first of the new one, and the one after.
fn sides(edges: &[usize]) -> Vec<usize> {
    let set: BTreeSet<usize> = edges.iter().flat_map(|&e| [e - 1, e, e + 1]).collect();
    set.into_iter().collect()
}

fn tasks_per_block(tasks: u32, blocks: u32) -> u32 {
    tasks.div_ceil(blocks)
}

fn poison<T: DeviceRepr>(n: usize) -> Vec<T> {
    // All-ones bytes: NaN in every float type, so an element a kernel forgets to write shows.
    bytemuck::cast_slice::<u8, T>(&vec![0xFFu8; n * std::mem::size_of::<T>()]).to_vec()
}

/// `n` values k/4 with |k| <= `quarters`.
fn grid<T: Float>(rng: &mut StdRng, n: usize, quarters: i32) -> Vec<T> {
    (0..n)
        .map(|_| T::from_f64(f64::from(rng.gen_range(-quarters..=quarters)) / 4.0))
        .collect()
}

fn exact<T: Float>(x: f64) -> T {
    let v = T::from_f64(x);
    assert_eq!(v.to_f64(), x, "{x} is not exact in the input dtype");
    v
}

// ---- bgmv_shrink ----------------------------------------------------------------------------------------

/// Runs bgmv_shrink on grid inputs (row 1 of every 3 without an adapter) and checks y and the UB peaks.
fn shrink_case<T: ops::LoraFloat>(
    emu: &Emu0,
    shape: ShrinkShape,
    tiling: Option<&BgmvShrinkTiling>,
    seed: u64,
) {
    let ShrinkShape {
        batch,
        hidden_in: h,
        rank,
        num_loras,
    } = shape;
    let mut rng = StdRng::seed_from_u64(seed);
    let x: Vec<T> = grid(&mut rng, batch * h, 8);
    let w: Vec<T> = grid(&mut rng, num_loras * rank * h, 8);
    let idx: Vec<i64> = (0..batch)
        .map(|b| {
            if b % 3 == 1 {
                -1
            } else {
                (b % num_loras) as i64
            }
        })
        .collect();
    let y0: Vec<f32> = poison(batch * rank);
    let mut want = y0.clone();
    reference::bgmv_shrink(&x, &w, &idx, &mut want, shape, SCALE).unwrap();
    let used = match tiling {
        Some(t) => *t,
        None => BgmvShrinkTiling::choose(shape, T::DTYPE, SCALE, &emu.profile).unwrap(),
    };
    let (dx, dw) = (
        DeviceBuffer::from_host(&emu.device, &x).unwrap(),
        DeviceBuffer::from_host(&emu.device, &w).unwrap(),
    );
    let mut dy = DeviceBuffer::from_host(&emu.device, &y0).unwrap();
    let before = emu.launch_count();
    ops::bgmv_shrink(
        &emu.stream,
        ops::BgmvShrink {
            x: dx.view(),
            weights: dw.view(),
            indices: AdapterIndices::Host(&idx),
            y: dy.view_mut(),
            shape,
            scale: SCALE,
        },
        tiling,
    )
    .unwrap();
    emu.stream.synchronize().unwrap();
    let what = format!("bgmv_shrink {:?} {shape:?} {used:?}", T::DTYPE);
    expect_launches(
        before,
        &[Launch {
            kernel: format!("bgmv_shrink_{}", T::DTYPE.suffix()),
            blocks: used.block_num,
            ub: used.ub_bytes(T::DTYPE),
        }],
        &what,
    );
    let y = dy.to_vec().unwrap();
    for (i, (&got, &exp)) in y.iter().zip(&want).enumerate() {
        if idx[i / rank] < 0 {
            assert_eq!(got.to_bits(), exp.to_bits(), "{what}: y[{i}] written");
        } else {
            assert_eq!(got, exp, "{what}: y[{i}]");
        }
    }
}

fn shrink_plan(t: &BgmvShrinkTiling) -> (bool, u32, u32) {
    (
        t.hidden_in > t.tile_h, // the row no longer fits one tile
        t.rank_split,
        tasks_per_block(t.batch * t.rank_split, t.block_num),
    )
}

#[test]
fn shrink_default_tilings_on_both_sides_of_every_plan_edge() {
    let emu = Emu0::new();
    let p = &emu.profile;
    let choose = |batch, hidden_in, rank| {
        let shape = ShrinkShape {
            batch,
            hidden_in,
            rank,
            num_loras: 2,
        };
        (
            shape,
            BgmvShrinkTiling::choose(shape, DType::F16, SCALE, p).unwrap(),
        )
    };
    // H: the tile grows with H up to its cap, then the row takes two tiles (the last one ragged).
    let h_edges = plan_edges(1..=9000, |h| shrink_plan(&choose(2, h, 16).1));
    let first = h_edges[0];
    let (below, at) = (choose(2, first - 1, 16).1, choose(2, first, 16).1);
    assert!(below.tile_h == below.hidden_in && at.tile_h < at.hidden_in);
    // Rank: one more rank chunk per row each time the 10% re-read allowance admits it.
    let r_edges = plan_edges(1..=128, |r| shrink_plan(&choose(1, 256, r).1));
    assert_eq!(choose(1, 256, r_edges[0]).1.rank_split, 2);
    // Batch: rank chunks while rows leave cores idle; more tasks than cores.
    let b_edges = plan_edges(1..=100, |b| shrink_plan(&choose(b, 100, 16).1));
    assert!(b_edges
        .iter()
        .any(|&b| choose(b, 100, 16).1.rank_split == 1));
    assert!(b_edges
        .iter()
        .any(|&b| choose(b, 100, 16).1.block_num == p.vector_cores));
    eprintln!("bgmv_shrink edges: H {h_edges:?}, rank {r_edges:?}, batch {b_edges:?}");

    let mut seed = 0;
    for h in sides(&h_edges) {
        seed += 1;
        shrink_case::<f16>(&emu, choose(2, h, 16).0, None, seed);
        shrink_case::<bf16>(&emu, choose(2, h, 16).0, None, seed);
    }
    for r in sides(&r_edges[..2]) {
        seed += 1;
        shrink_case::<f16>(&emu, choose(1, 256, r).0, None, seed);
    }
    for b in sides(&b_edges) {
        seed += 1;
        shrink_case::<bf16>(&emu, choose(b, 100, 16).0, None, seed);
    }
}

// ---- bgmv_expand ----------------------------------------------------------------------------------------

fn expand_case<T: ops::LoraFloat>(
    emu: &Emu0,
    shape: ExpandShape,
    add: bool,
    tiling: Option<&BgmvExpandTiling>,
    seed: u64,
) {
    let ExpandShape {
        batch,
        rank,
        hidden_out,
        hidden_full,
        slice_offset,
        num_loras,
    } = shape;
    let mut rng = StdRng::seed_from_u64(seed);
    let x: Vec<f32> = grid(&mut rng, batch * rank, 8);
    let w: Vec<T> = grid(&mut rng, num_loras * hidden_out * rank, 8);
    let idx: Vec<i64> = (0..batch)
        .map(|b| {
            if b % 3 == 1 {
                -1
            } else {
                (b % num_loras) as i64
            }
        })
        .collect();
    let mut y0: Vec<T> = poison(batch * hidden_full);
    if add {
        let inputs: Vec<T> = grid(&mut rng, batch * hidden_out, 8);
        for b in 0..batch {
            y0[b * hidden_full + slice_offset..][..hidden_out]
                .copy_from_slice(&inputs[b * hidden_out..][..hidden_out]);
        }
    }
    let mut want = y0.clone();
    reference::bgmv_expand(&x, &w, &idx, &mut want, shape, add).unwrap();
    let used = match tiling {
        Some(t) => *t,
        None => BgmvExpandTiling::choose(shape, T::DTYPE, add, &emu.profile).unwrap(),
    };
    let (dx, dw) = (
        DeviceBuffer::from_host(&emu.device, &x).unwrap(),
        DeviceBuffer::from_host(&emu.device, &w).unwrap(),
    );
    let mut dy = DeviceBuffer::from_host(&emu.device, &y0).unwrap();
    let before = emu.launch_count();
    ops::bgmv_expand(
        &emu.stream,
        ops::BgmvExpand {
            x: dx.view(),
            weights: dw.view(),
            indices: AdapterIndices::Host(&idx),
            y: dy.view_mut(),
            shape,
            add_inputs: add,
        },
        tiling,
    )
    .unwrap();
    emu.stream.synchronize().unwrap();
    let what = format!("bgmv_expand {:?} {shape:?} add {add} {used:?}", T::DTYPE);
    expect_launches(
        before,
        &[Launch {
            kernel: format!("bgmv_expand_{}", T::DTYPE.suffix()),
            blocks: used.block_num,
            ub: used.ub_bytes(T::DTYPE),
        }],
        &what,
    );
    let y = dy.to_vec().unwrap();
    for (i, (got, exp)) in y.iter().zip(&want).enumerate() {
        let (b, c) = (i / hidden_full, i % hidden_full);
        let written = idx[b] >= 0 && (slice_offset..slice_offset + hidden_out).contains(&c);
        if written {
            assert_eq!(got.to_f64(), exp.to_f64(), "{what}: y[{b},{c}]");
        } else {
            assert_eq!(
                bytemuck::bytes_of(got),
                bytemuck::bytes_of(exp),
                "{what}: y[{b},{c}] outside the written set changed"
            );
        }
    }
}

fn expand_shape(batch: usize, rank: usize, hidden_out: usize) -> ExpandShape {
    // A slice inside a wider row, so writes past either end of the slice show.
    ExpandShape {
        batch,
        rank,
        hidden_out,
        hidden_full: hidden_out + 5,
        slice_offset: 3,
        num_loras: 2,
    }
}

fn expand_plan(t: &BgmvExpandTiling) -> (u32, u32, u32) {
    (
        t.tile_h,
        t.h_split,
        tasks_per_block(t.batch * t.h_split, t.block_num),
    )
}

#[test]
fn expand_default_tilings_on_both_sides_of_every_plan_edge() {
    let emu = Emu0::new();
    let p = &emu.profile;
    let choose = |dt, batch, rank, h_out| {
        BgmvExpandTiling::choose(expand_shape(batch, rank, h_out), dt, true, p).unwrap()
    };
    let mut seed = 100;
    for dt in [DType::F16, DType::Bf16] {
        // Rank: the tile of output rows shrinks while the tiling's UB exceeds 3/4 of the budget. At each
        // rank the chosen tile is the largest (step 8, cap 248) within that limit: the loop's own edge.
        let three_quarters = u64::from(p.ub_bytes) * 3 / 4;
        for r in 1..=128 {
            let t = choose(dt, 1, r, 1000);
            assert!(t.ub_bytes(dt) <= three_quarters, "rank {r}: {t:?}");
            let bigger = BgmvExpandTiling {
                tile_h: t.tile_h + 8,
                ..t
            };
            assert!(
                t.tile_h == 248 || bigger.ub_bytes(dt) > three_quarters,
                "rank {r}: tile {} is not the largest within 3/4 of the budget",
                t.tile_h
            );
        }
        let r_edges = plan_edges(1..=128, |r| choose(dt, 1, r, 1000).tile_h);
        eprintln!("bgmv_expand {dt:?}: tile_h shrinks at ranks {r_edges:?}");
        for r in sides(&r_edges) {
            seed += 1;
            // One row more than a tile: a second task holding a single row.
            let h_out = choose(dt, 1, r, 1000).tile_h as usize + 1;
            let shape = expand_shape(1, r, h_out);
            if dt == DType::F16 {
                expand_case::<f16>(&emu, shape, seed % 2 == 0, None, seed);
            } else {
                expand_case::<bf16>(&emu, shape, seed % 2 == 0, None, seed);
            }
        }
    }
    // H_out: split over idle cores once it exceeds one tile; the split stops growing at the core count.
    let h_edges = plan_edges(1..=13_000, |h| expand_plan(&choose(DType::F16, 1, 16, h)));
    let first = h_edges[0];
    assert_eq!(choose(DType::F16, 1, 16, first - 1).h_split, 1);
    assert_eq!(choose(DType::F16, 1, 16, first).h_split, 2);
    // The split grows one chunk per tile of H_out until it would need more tasks than cores; there it
    // falls back to fewer, longer chunks.
    let split = |h| choose(DType::F16, 1, 16, h).h_split;
    let &last = h_edges
        .iter()
        .find(|&&h| split(h) < split(h - 1))
        .expect("the split falls back at the core count");
    assert_eq!(split(last - 1), p.vector_cores);
    // Batch: fewer H_out chunks as rows fill the cores, then more tasks than cores.
    let b_edges = plan_edges(1..=100, |b| expand_plan(&choose(DType::F16, b, 16, 600)));
    eprintln!(
        "bgmv_expand edges: H_out {:?}.., batch {b_edges:?}",
        &h_edges[..3]
    );
    for h in sides(&[first, last]) {
        seed += 1;
        expand_case::<f16>(&emu, expand_shape(1, 16, h), true, None, seed);
    }
    for b in sides(&b_edges) {
        seed += 1;
        expand_case::<bf16>(&emu, expand_shape(b, 16, 600), seed % 2 == 0, None, seed);
    }
}

// ---- cold_score -----------------------------------------------------------------------------------------

/// One cold_score launch to check.
struct ColdCase<'a, T> {
    rows: usize,
    vocab: usize,
    e: &'a [T],
    a: &'a [T],
    beta: f32,
    scores: bool,
    tiling: Option<&'a ColdScoreTiling>,
}

/// The tiling the op runs for `c`: the caller's with the op's own parameters, or the default.
fn cold_tiling<T: ops::LogitFloat>(emu: &Emu0, c: &ColdCase<'_, T>) -> ColdScoreTiling {
    match c.tiling {
        Some(t) => ColdScoreTiling {
            write_scores: c.scores.into(),
            ln_alpha: ALPHA.ln(),
            beta: c.beta,
            ..*t
        },
        None => ColdScoreTiling::choose(
            c.rows,
            c.vocab,
            T::DTYPE,
            ColdParams::new(ALPHA, c.beta).unwrap(),
            c.scores,
            &emu.profile,
        )
        .unwrap(),
    }
}

/// The launches `t` makes: one, or local, score and reduce (the reduce runs the f32 instantiation).
fn cold_launches(t: &ColdScoreTiling, dt: DType, cores: u32) -> Vec<Launch> {
    let launch = |kernel: String, blocks, dt| Launch {
        kernel,
        blocks,
        ub: t.ub_bytes(dt),
    };
    let score = launch(format!("cold_score_{}", dt.suffix()), t.block_num, dt);
    if t.splits == 1 {
        return vec![score];
    }
    vec![
        launch(format!("cold_local_{}", dt.suffix()), t.block_num, dt),
        score,
        launch("cold_reduce".into(), t.rows.min(cores), DType::F32),
    ]
}

/// Runs cold_score and checks tokens, best scores and the score row against the reference exactly, and
/// the UB peaks. Returns the kernel's picks and the bytes its launches read.
fn cold_case<T: ops::LogitFloat>(emu: &Emu0, c: &ColdCase<'_, T>) -> (Vec<ColdPick>, u64) {
    let (rows, vocab) = (c.rows, c.vocab);
    let shape = ColdShape { rows, vocab };
    let mut want_scores = vec![0f32; rows * vocab];
    let want = reference::cold_score(
        c.e,
        c.a,
        shape,
        ColdParams::new(ALPHA, c.beta).unwrap(),
        c.scores.then_some(&mut want_scores[..]),
    )
    .unwrap();
    let used = cold_tiling(emu, c);
    let (de, da) = (
        DeviceBuffer::from_host(&emu.device, c.e).unwrap(),
        DeviceBuffer::from_host(&emu.device, c.a).unwrap(),
    );
    let mut tokens = DeviceBuffer::from_host(&emu.device, &vec![i64::MIN; rows]).unwrap();
    let mut best = DeviceBuffer::from_host(&emu.device, &poison::<f32>(rows)).unwrap();
    let mut scores = DeviceBuffer::from_host(
        &emu.device,
        &poison::<f32>(if c.scores { rows * vocab } else { 1 }),
    )
    .unwrap();
    let out = ColdOutputs {
        tokens: tokens.view_mut(),
        best_scores: best.view_mut(),
        scores: c.scores.then(|| scores.view_mut()),
    };
    let before = emu.launch_count();
    ops::cold_score(
        &emu.stream,
        de.view(),
        da.view(),
        shape,
        ColdParams::new(ALPHA, c.beta).unwrap(),
        out,
        c.tiling,
    )
    .unwrap();
    emu.stream.synchronize().unwrap();
    let what = format!(
        "cold_score {:?} [{rows}, {vocab}] scores {} {used:?}",
        T::DTYPE,
        c.scores
    );
    let read = expect_launches(
        before,
        &cold_launches(&used, T::DTYPE, emu.profile.vector_cores),
        &what,
    );
    let (tokens, best) = (tokens.to_vec().unwrap(), best.to_vec().unwrap());
    for n in 0..rows {
        assert_eq!(
            (tokens[n], best[n]),
            (want[n].token, want[n].best_score),
            "{what}: row {n}"
        );
    }
    if c.scores {
        let scores = scores.to_vec().unwrap();
        if let Some(i) = (0..rows * vocab).find(|&i| scores[i] != want_scores[i]) {
            panic!(
                "{what}: score[{}, {}] = {}, reference {}",
                i / vocab,
                i % vocab,
                scores[i],
                want_scores[i]
            );
        }
    }
    let picks = tokens
        .into_iter()
        .zip(best)
        .map(|(token, best_score)| ColdPick { token, best_score })
        .collect();
    (picks, read)
}

/// Grid logits for `rows` x `vocab` (many equal scores, so ties are everywhere) and the checks of
/// `cold_case`, with and without the score row.
fn cold_grid<T: ops::LogitFloat>(emu: &Emu0, rows: usize, vocab: usize, modes: &[bool], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let e: Vec<T> = grid(&mut rng, rows * vocab, 32);
    let a: Vec<T> = grid(&mut rng, rows * vocab, 32);
    for &scores in modes {
        cold_case(
            emu,
            &ColdCase {
                rows,
                vocab,
                e: &e,
                a: &a,
                beta: 0.5,
                scores,
                tiling: None,
            },
        );
    }
}

fn cold_plan(t: &ColdScoreTiling) -> (u32, u32, u32) {
    (
        t.splits,
        t.resident,
        tasks_per_block(t.rows * t.splits, t.block_num),
    )
}

fn cold_choose(
    p: &DeviceProfile,
    dt: DType,
    rows: usize,
    vocab: usize,
    scores: bool,
) -> ascend_cold::Result<ColdScoreTiling> {
    ColdScoreTiling::choose(rows, vocab, dt, params(), scores, p)
}

#[test]
fn cold_default_tilings_on_both_sides_of_every_split_edge() {
    let emu = Emu0::new();
    let p = &emu.profile;
    let plan =
        |rows, vocab, scores| cold_plan(&cold_choose(p, DType::F16, rows, vocab, scores).unwrap());
    // One row: the vocabulary splits into chunks over the idle cores, one more chunk per 4096 tokens,
    // until the core count caps the chunks and they grow instead (fewer of them).
    let v_edges = plan_edges(1..=200_000, |v| plan(1, v, false));
    assert_eq!(plan_edges(1..=200_000, |v| plan(1, v, true).0), v_edges);
    let (first, last) = (v_edges[0], *v_edges.last().unwrap());
    assert_eq!((plan(1, first - 1, true).0, plan(1, first, true).0), (1, 2));
    assert_eq!(
        plan(1, first - 1, true).1,
        1,
        "one chunk with the score row: resident"
    );
    assert!(plan(1, last, false).0 < plan(1, last - 1, false).0);
    assert_eq!(plan(1, last - 1, false).0, p.vector_cores);
    // Rows, at a vocabulary of two chunks: more tasks than cores, then one chunk once rows fill the cores.
    let vocab = 2 * (first - 1);
    let r_edges = plan_edges(1..=100, |r| plan(r, vocab, true));
    assert!(r_edges.contains(&(p.vector_cores as usize)));
    eprintln!(
        "cold_score edges: vocab (1 row) {:?} .. {last}, rows (vocab {vocab}) {r_edges:?}",
        &v_edges[..3]
    );
    let mut seed = 200;
    for v in sides(&[first, v_edges[1], last]) {
        seed += 1;
        cold_grid::<f16>(&emu, 1, v, &[false, true], seed);
    }
    for r in sides(&r_edges) {
        seed += 1;
        cold_grid::<bf16>(&emu, r, vocab, &[false, true], seed);
    }
}

#[test]
fn cold_resident_row_edge_in_every_dtype() {
    let emu = Emu0::new();
    let p = &emu.profile;
    // With the score row and one chunk (rows >= cores) the row stays in UB while the whole tiling fits.
    let rows = p.vector_cores as usize;
    let mut seed = 300;
    for dt in [DType::F16, DType::Bf16, DType::F32] {
        let edges = plan_edges(1..=140_000, |v| {
            cold_plan(&cold_choose(p, dt, rows, v, true).unwrap())
        });
        assert_eq!(edges.len(), 1, "{dt:?}: {edges:?}");
        let v = edges[0];
        let (fits, not) = (
            cold_choose(p, dt, rows, v - 1, true).unwrap(),
            cold_choose(p, dt, rows, v, true).unwrap(),
        );
        assert_eq!((fits.resident, not.resident), (1, 0), "{dt:?}");
        assert!(fits.ub_bytes(dt) <= emu.budget());
        assert!(ColdScoreTiling { resident: 1, ..not }.ub_bytes(dt) > emu.budget());
        eprintln!(
            "cold_score {dt:?}: resident up to vocab {} (UB {} of {}), not from {v}",
            v - 1,
            fits.ub_bytes(dt),
            emu.budget()
        );
        for v in [v - 1, v] {
            seed += 1;
            match dt {
                DType::F16 => cold_grid::<f16>(&emu, rows, v, &[true], seed),
                DType::Bf16 => cold_grid::<bf16>(&emu, rows, v, &[true], seed),
                DType::F32 => cold_grid::<f32>(&emu, rows, v, &[true], seed),
            }
        }
    }
}

#[test]
fn cold_tokens_only_tile_records_reach_the_budget() {
    // Tokens only, one chunk: 16 bytes of tile records per tile grow with the vocabulary until the tiling
    // no longer fits and `choose` refuses. Not launched: the rows that force one chunk (>= the core count)
    // would take gigabytes at that vocabulary.
    let p = common::emu(0).profile().unwrap();
    let rows = p.vector_cores as usize;
    for dt in [DType::F16, DType::Bf16, DType::F32] {
        let ok = |v: usize| cold_choose(&p, dt, rows, v, false).is_ok();
        let (mut lo, mut hi) = (1usize, (u32::MAX / 2) as usize);
        assert!(ok(lo) && !ok(hi));
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if ok(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let t = cold_choose(&p, dt, rows, lo, false).unwrap();
        assert!(ok(lo - 1) && t.splits == 1);
        assert!(t.ub_bytes(dt) <= u64::from(p.ub_bytes));
        let err = cold_choose(&p, dt, rows, hi, false).unwrap_err();
        assert!(
            matches!(&err, Error::BadParameter { name: "tiling UB", expected, .. }
                if expected.contains(&p.ub_bytes.to_string())),
            "{dt:?} vocab {hi}: {err}"
        );
        eprintln!(
            "cold_score {dt:?} tokens only: up to vocab {lo} (UB {}), refused from {hi}",
            t.ub_bytes(dt)
        );
    }
}

// ---- a caller's tiling at the budget ----------------------------------------------------------------------

/// Checks `validate`'s comparison itself: a profile whose budget is exactly the tiling's UB accepts it,
/// one 32-byte block less refuses it.
fn budget_is_inclusive(
    profile: &DeviceProfile,
    ub: u64,
    validate: impl Fn(&DeviceProfile) -> ascend_cold::Result<()>,
) {
    let at = DeviceProfile {
        ub_bytes: ub as u32,
        ..profile.clone()
    };
    validate(&at).unwrap();
    let below = DeviceProfile {
        ub_bytes: ub as u32 - 32,
        ..profile.clone()
    };
    expect_budget_error(validate(&below), &below);
}

fn expect_budget_error(r: ascend_cold::Result<()>, p: &DeviceProfile) {
    match r {
        Err(Error::BadParameter {
            name: "tiling UB",
            expected,
            ..
        }) if expected.contains(&format!("{} bytes", p.ub_bytes)) => {}
        other => panic!(
            "expected the UB budget ({} bytes) to refuse, got {other:?}",
            p.ub_bytes
        ),
    }
}

#[test]
fn shrink_tiling_at_the_budget_launches_and_one_block_over_is_refused() {
    let emu = Emu0::new();
    let budget = emu.budget();
    for dt in [DType::F16, DType::Bf16] {
        // UB grows with tileH (64 elements at a time) times rankPerTask, in steps too coarse to land on the
        // budget exactly: search both for the tiling closest to it from below (preferring the longest tile)
        // and the one closest from above. Validation is inclusive at the former's own figure.
        let template = BgmvShrinkTiling::choose(
            ShrinkShape {
                batch: 1,
                hidden_in: 1,
                rank: 1,
                num_loras: 1,
            },
            dt,
            SCALE,
            &emu.profile,
        )
        .unwrap();
        let probe = |tile_h: u32, rank_per_task: u32| {
            BgmvShrinkTiling {
                rank_per_task,
                tile_h,
                ..template
            }
            .ub_bytes(dt)
        };
        let all: Vec<(u64, u32, u32)> = (1..=64u32)
            .map(|k| 64 * k)
            .flat_map(|tile_h| (1..=255u32).map(move |r| (tile_h, r)))
            .map(|(tile_h, r)| (probe(tile_h, r), tile_h, r))
            .collect();
        let (at_ub, tile_h, rpt) = all
            .iter()
            .filter(|c| c.0 <= budget)
            .max_by_key(|c| (c.0, c.1))
            .copied()
            .unwrap_or_else(|| panic!("{dt:?}: no bgmv_shrink tiling within {budget} bytes of UB"));
        let shape = ShrinkShape {
            batch: 3,
            hidden_in: tile_h as usize + 7, // a full tile and a ragged one
            rank: rpt as usize,
            num_loras: 2,
        };
        let base = BgmvShrinkTiling::choose(shape, dt, SCALE, &emu.profile).unwrap();
        let at = BgmvShrinkTiling {
            tile_h,
            rank_split: 1,
            rank_per_task: rpt,
            block_num: 3,
            ..base
        };
        assert_eq!(at.ub_bytes(dt), at_ub);
        at.validate(shape, dt, &emu.profile).unwrap();
        budget_is_inclusive(&emu.profile, at_ub, |p| at.validate(shape, dt, p));
        if dt == DType::F16 {
            shrink_case::<f16>(&emu, shape, Some(&at), 400);
        } else {
            shrink_case::<bf16>(&emu, shape, Some(&at), 401);
        }
        let (over_ub, tile_h, rpt) = all
            .iter()
            .filter(|c| c.0 > budget && c.2 >= shape.rank as u32)
            .min_by_key(|c| (c.0, std::cmp::Reverse(c.1)))
            .copied()
            .unwrap();
        let over = BgmvShrinkTiling {
            tile_h,
            rank_per_task: rpt,
            ..at
        };
        assert!(over.ub_bytes(dt) == over_ub && over_ub > budget);
        let before = emu.launch_count();
        let r = if dt == DType::F16 {
            run_shrink_refused::<f16>(&emu, shape, &over)
        } else {
            run_shrink_refused::<bf16>(&emu, shape, &over)
        };
        expect_budget_error(r, &emu.profile);
        assert_eq!(emu.launch_count(), before, "refused before launch");
    }
}

fn run_shrink_refused<T: ops::LoraFloat>(
    emu: &Emu0,
    shape: ShrinkShape,
    t: &BgmvShrinkTiling,
) -> ascend_cold::Result<()> {
    let x = DeviceBuffer::<T>::zeroed(&emu.device, shape.batch * shape.hidden_in).unwrap();
    let w = DeviceBuffer::<T>::zeroed(&emu.device, shape.num_loras * shape.rank * shape.hidden_in)
        .unwrap();
    let mut y = DeviceBuffer::<f32>::zeroed(&emu.device, shape.batch * shape.rank).unwrap();
    let idx = vec![0i64; shape.batch];
    ops::bgmv_shrink(
        &emu.stream,
        ops::BgmvShrink {
            x: x.view(),
            weights: w.view(),
            indices: AdapterIndices::Host(&idx),
            y: y.view_mut(),
            shape,
            scale: SCALE,
        },
        Some(t),
    )
}

#[test]
fn expand_tiling_nearest_the_budget_launches_and_the_nearest_over_is_refused() {
    let emu = Emu0::new();
    let budget = emu.budget();
    for dt in [DType::F16, DType::Bf16] {
        // UB depends on tileH (8 at a time, <= 255) and the rank rounded up to 16. Its figures are
        // 32 (32 k m + 2 m + 4 k + [k odd] + 1) bytes for tileH = 8 k and the rounded rank 16 m: on the
        // default profile none lands on the budget itself or one block over it, so the nearest below is
        // launched (the budget's inclusiveness checked on a profile cut to that tiling) and the nearest
        // above is refused.
        let all: Vec<(u64, u32, usize)> = (1..=31u32)
            .map(|k| 8 * k)
            .flat_map(|tile_h| (1..=128usize).map(move |rank| (tile_h, rank)))
            .map(|(tile_h, rank)| {
                let t = BgmvExpandTiling::choose(expand_shape(1, rank, 1), dt, true, &emu.profile)
                    .unwrap();
                (BgmvExpandTiling { tile_h, ..t }.ub_bytes(dt), tile_h, rank)
            })
            .collect();
        let &(ub, tile_h, rank) = all.iter().filter(|c| c.0 <= budget).max().unwrap();
        let shape = expand_shape(2, rank, 2 * tile_h as usize + 3);
        let base = BgmvExpandTiling::choose(shape, dt, true, &emu.profile).unwrap();
        let near = BgmvExpandTiling {
            tile_h,
            h_split: 1,
            h_per_task: shape.hidden_out as u32,
            block_num: 2,
            ..base
        };
        assert_eq!(near.ub_bytes(dt), ub);
        eprintln!(
            "bgmv_expand {dt:?}: nearest the budget {budget}: {ub} (tileH {tile_h}, rank {rank})"
        );
        budget_is_inclusive(&emu.profile, ub, |p| near.validate(shape, dt, p));
        if dt == DType::F16 {
            expand_case::<f16>(&emu, shape, true, Some(&near), 500);
        } else {
            expand_case::<bf16>(&emu, shape, false, Some(&near), 501);
        }
        let &(over_ub, tile_h, rank) = all
            .iter()
            .filter(|c| c.0 > budget)
            .min()
            .expect("a bgmv_expand tiling over the budget");
        let shape = expand_shape(2, rank, 600);
        let over = BgmvExpandTiling {
            tile_h,
            ..BgmvExpandTiling::choose(shape, dt, true, &emu.profile).unwrap()
        };
        assert_eq!(over.ub_bytes(dt), over_ub);
        let before = emu.launch_count();
        let r = if dt == DType::F16 {
            run_expand_refused::<f16>(&emu, shape, &over)
        } else {
            run_expand_refused::<bf16>(&emu, shape, &over)
        };
        expect_budget_error(r, &emu.profile);
        assert_eq!(emu.launch_count(), before, "refused before launch");
    }
}

fn run_expand_refused<T: ops::LoraFloat>(
    emu: &Emu0,
    shape: ExpandShape,
    t: &BgmvExpandTiling,
) -> ascend_cold::Result<()> {
    let x = DeviceBuffer::<f32>::zeroed(&emu.device, shape.batch * shape.rank).unwrap();
    let w = DeviceBuffer::<T>::zeroed(&emu.device, shape.num_loras * shape.hidden_out * shape.rank)
        .unwrap();
    let mut y = DeviceBuffer::<T>::zeroed(&emu.device, shape.batch * shape.hidden_full).unwrap();
    let idx = vec![0i64; shape.batch];
    ops::bgmv_expand(
        &emu.stream,
        ops::BgmvExpand {
            x: x.view(),
            weights: w.view(),
            indices: AdapterIndices::Host(&idx),
            y: y.view_mut(),
            shape,
            add_inputs: true,
        },
        Some(t),
    )
}

/// One row in one chunk of `chunk_len` (the vocabulary), in tiles of `tile_len`; the other fields from
/// the default tiling of that row.
fn cold_single_chunk(
    p: &DeviceProfile,
    dt: DType,
    tile_len: u32,
    chunk_len: u32,
    scores: bool,
) -> ColdScoreTiling {
    ColdScoreTiling {
        block_num: 1,
        splits: 1,
        chunk_len,
        tile_len,
        resident: scores.into(),
        ws_bytes: 0,
        ..cold_choose(p, dt, 1, chunk_len as usize, scores).unwrap()
    }
}

/// The one-row tilings whose UB reaches the budget, as (UB, chunkLen, tileLen, resident): for each tile
/// length the chunk lengths up to the first over the budget. The score row's UB grows with the chunk only when the row
/// is resident, the tokens-only UB with its tile records.
fn cold_near_budget(p: &DeviceProfile, dt: DType, scores: bool) -> Vec<(u64, u32, u32, u32)> {
    // UB does not depend on the shape: search on one template, build the tiling for the row found.
    let template = cold_single_chunk(p, dt, 64, 64, scores);
    let budget = u64::from(p.ub_bytes);
    let residency: &[u32] = if scores { &[1, 0] } else { &[0] };
    let mut found = Vec::new();
    for &resident in residency {
        for tile_len in (1..=128u32).map(|k| 64 * k) {
            for m in 1u32.. {
                let chunk_len = m * tile_len;
                let ub = ColdScoreTiling {
                    tile_len,
                    chunk_len,
                    resident,
                    ..template
                }
                .ub_bytes(dt);
                found.push((ub, chunk_len, tile_len, resident));
                if ub > budget || (scores && resident == 0) {
                    break;
                }
            }
        }
    }
    found
}

fn cold_from(
    p: &DeviceProfile,
    dt: DType,
    scores: bool,
    pick: (u64, u32, u32, u32),
) -> ColdScoreTiling {
    let (_, chunk_len, tile_len, resident) = pick;
    ColdScoreTiling {
        resident,
        ..cold_single_chunk(p, dt, tile_len, chunk_len, scores)
    }
}

/// A caller's one-row tiling exactly at the budget (smallest vocabulary) launches; the nearest one over
/// it is refused before launch. Returns how far over that one is.
fn cold_budget<T: ops::LogitFloat>(emu: &Emu0, scores: bool, seed: u64) -> u64 {
    let dt = T::DTYPE;
    let budget = emu.budget();
    let near = cold_near_budget(&emu.profile, dt, scores);
    let at = near
        .iter()
        .filter(|c| c.0 == budget)
        .min_by_key(|c| c.1)
        .unwrap_or_else(|| panic!("{dt:?} scores {scores}: no one-row tiling at the budget"));
    let at = cold_from(&emu.profile, dt, scores, *at);
    assert_eq!(at.ub_bytes(dt), budget);
    let (rows, vocab) = (1, at.vocab as usize);
    at.validate(rows, vocab, dt, params(), &emu.profile)
        .unwrap();
    budget_is_inclusive(&emu.profile, budget, |p| {
        at.validate(rows, vocab, dt, params(), p)
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let e: Vec<T> = grid(&mut rng, vocab, 32);
    let a: Vec<T> = grid(&mut rng, vocab, 32);
    let case = ColdCase {
        rows,
        vocab,
        e: &e,
        a: &a,
        beta: 0.5,
        scores,
        tiling: Some(&at),
    };
    cold_case(emu, &case);

    let over = near
        .iter()
        .filter(|c| c.0 > budget)
        .min_by_key(|c| (c.0, c.1))
        .unwrap();
    let over = cold_from(&emu.profile, dt, scores, *over);
    let excess = over.ub_bytes(dt) - budget;
    eprintln!(
        "cold_score {dt:?} scores {scores}: at the budget with tileLen {} vocab {vocab}; nearest over by {excess}",
        at.tile_len
    );
    let (rows, vocab) = (1, over.vocab as usize);
    let e = vec![T::from_f64(0.0); vocab];
    let mut tokens = DeviceBuffer::<i64>::zeroed(&emu.device, rows).unwrap();
    let mut best = DeviceBuffer::<f32>::zeroed(&emu.device, rows).unwrap();
    let mut score_row = DeviceBuffer::<f32>::zeroed(&emu.device, rows * vocab).unwrap();
    let de = DeviceBuffer::from_host(&emu.device, &e).unwrap();
    let out = ColdOutputs {
        tokens: tokens.view_mut(),
        best_scores: best.view_mut(),
        scores: scores.then(|| score_row.view_mut()),
    };
    let before = emu.launch_count();
    let r = ops::cold_score(
        &emu.stream,
        de.view(),
        de.view(),
        ColdShape { rows, vocab },
        params(),
        out,
        Some(&over),
    );
    expect_budget_error(r, &emu.profile);
    assert_eq!(emu.launch_count(), before, "refused before launch");
    excess
}

#[test]
fn cold_tiling_at_the_budget_launches_and_one_block_over_is_refused() {
    let emu = Emu0::new();
    // f32 with the score row cannot land exactly one block over (its UB moves 8 blocks per 64 resident
    // elements, and by whole f32 tiles); its tokens-only tilings can. Every dtype must have one.
    for (dt, excess) in [
        (
            DType::F16,
            [
                cold_budget::<f16>(&emu, true, 600),
                cold_budget::<f16>(&emu, false, 601),
            ],
        ),
        (
            DType::Bf16,
            [
                cold_budget::<bf16>(&emu, true, 602),
                cold_budget::<bf16>(&emu, false, 603),
            ],
        ),
        (
            DType::F32,
            [
                cold_budget::<f32>(&emu, true, 604),
                cold_budget::<f32>(&emu, false, 605),
            ],
        ),
    ] {
        assert_eq!(
            excess.iter().min(),
            Some(&32),
            "{dt:?}: nearest over the budget {excess:?}"
        );
    }
}

// ---- ties -------------------------------------------------------------------------------------------------

/// A row whose best score S = 2 (1 + beta) is reached exactly at every index of `ties`, by different
/// (e, a) pairs (so the tie is not a copy of one input), every other kept token scoring at most
/// S - 1/4. The row maximum of e (3.5, scoring S - 1) sits at `max_at`, so alpha = 0.1 keeps e >= 1.25
/// (the ties' e are 2 to 2.75). `decoys` hold e = 0.5 with a huge score: masked by the row's threshold,
/// but kept by the lower threshold of a tile or chunk scanned before the maximum was seen, which makes
/// that tile or chunk dirty and re-read (the tokens-only path) — where a tie then meets an exact winner.
fn tie_row<T: Float>(
    rng: &mut StdRng,
    vocab: usize,
    ties: &[usize],
    max_at: usize,
    decoys: &[usize],
    beta: f64,
) -> (Vec<T>, Vec<T>) {
    let s = 2.0 * (1.0 + beta);
    let a_for = |e: f64, score: f64| ((1.0 + beta) * e - score) / beta;
    let mut e = Vec::with_capacity(vocab);
    let mut a = Vec::with_capacity(vocab);
    for _ in 0..vocab {
        let ei = f64::from(rng.gen_range(-16..=11)) / 4.0;
        let drop = f64::from(rng.gen_range(1..=16)) / 4.0;
        e.push(exact::<T>(ei));
        a.push(exact::<T>(a_for(ei, s - drop)));
    }
    for (k, &i) in ties.iter().enumerate() {
        let ei = [2.0, 2.5, 2.25, 2.75][k % 4];
        e[i] = exact(ei);
        a[i] = exact(a_for(ei, s));
    }
    e[max_at] = exact(3.5);
    a[max_at] = exact(a_for(3.5, s - 1.0));
    for &i in decoys {
        e[i] = exact(0.5);
        a[i] = exact(-10.0);
    }
    let threshold = 3.5 + f64::from(ALPHA.ln());
    for &i in ties {
        assert!(e[i].to_f64() >= threshold + 0.05, "tie {i} would be masked");
        let score = reference::cold_score_of(e[i].to_f64(), a[i].to_f64(), beta);
        assert_eq!(score, s);
    }
    (e, a)
}

/// One row's tie layout: the tied indices (ascending), where the maximum of e sits, the decoys.
#[derive(Debug, Clone)]
struct Ties {
    ties: Vec<usize>,
    max_at: usize,
    decoys: Vec<usize>,
}

fn ties(ties: &[usize], max_at: usize, decoys: &[usize]) -> Ties {
    Ties {
        ties: ties.to_vec(),
        max_at,
        decoys: decoys.to_vec(),
    }
}

fn tie_rows<T: Float>(
    seed: u64,
    vocab: usize,
    rows: &[Ties],
    beta: f64,
    decoys: bool,
) -> (Vec<T>, Vec<T>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut e, mut a) = (Vec::new(), Vec::new());
    for r in rows {
        let d: &[usize] = if decoys { &r.decoys } else { &[] };
        let (re, ra) = tie_row::<T>(&mut rng, vocab, &r.ties, r.max_at, d, beta);
        e.extend(re);
        a.extend(ra);
    }
    (e, a)
}

/// Runs every row layout in one launch per mode and dtype: the lowest tied index must win, and the
/// reference must agree (cold_case). `check` sees the tiling run, to assert what the layout exercises.
/// Tokens only, the rows are also run without their decoys: with them the launches must read more (the
/// dirty tiles or chunks re-read), or the decoys would not be testing the re-read path.
fn tie_case<T: ops::LogitFloat>(
    emu: &Emu0,
    vocab: usize,
    rows: &[Ties],
    tiling: Option<&ColdScoreTiling>,
    check: &dyn Fn(&ColdScoreTiling),
    seed: u64,
) {
    let any_decoys = rows.iter().any(|r| !r.decoys.is_empty());
    for (k, beta) in [(0, 1.0), (1, 0.5)] {
        let (e, a) = tie_rows::<T>(seed + k, vocab, rows, beta, true);
        let (plain_e, plain_a) = tie_rows::<T>(seed + k, vocab, rows, beta, false);
        let runs: &[(bool, &[T], &[T])] =
            &[(false, &e, &a), (false, &plain_e, &plain_a), (true, &e, &a)];
        let mut reads = Vec::new();
        for &(scores, e, a) in runs {
            let case = ColdCase {
                rows: rows.len(),
                vocab,
                e,
                a,
                beta: beta as f32,
                scores,
                tiling,
            };
            check(&cold_tiling(emu, &case));
            let (picks, read) = cold_case(emu, &case);
            reads.push(read);
            for (n, (pick, r)) in picks.iter().zip(rows).enumerate() {
                assert_eq!(
                    (pick.token, f64::from(pick.best_score)),
                    (r.ties[0] as i64, 2.0 * (1.0 + beta)),
                    "{:?} scores {scores} beta {beta}: row {n} {r:?}",
                    T::DTYPE
                );
            }
        }
        if any_decoys {
            assert!(
                reads[0] > reads[1],
                "{:?}: the decoys caused no re-read ({} vs {} bytes): {rows:?}",
                T::DTYPE,
                reads[0],
                reads[1]
            );
        }
    }
}

fn tie_all_dtypes(
    emu: &Emu0,
    vocab: usize,
    rows: &[Ties],
    tiling: Option<&ColdScoreTiling>,
    check: &dyn Fn(&ColdScoreTiling),
    seed: u64,
) {
    tie_case::<f16>(emu, vocab, rows, tiling, check, seed);
    tie_case::<bf16>(emu, vocab, rows, tiling, check, seed + 10);
    tie_case::<f32>(emu, vocab, rows, tiling, check, seed + 20);
}

fn tile_of(t: &ColdScoreTiling, i: usize) -> (usize, usize) {
    let chunk = i / t.chunk_len as usize;
    (chunk, (i % t.chunk_len as usize) / t.tile_len as usize)
}

fn core_of(t: &ColdScoreTiling, row: usize, i: usize) -> usize {
    (row * t.splits as usize + tile_of(t, i).0) % t.block_num as usize
}

#[test]
fn ties_within_one_tile_go_to_the_lowest_index() {
    let emu = Emu0::new();
    let p = emu.profile.clone();
    // The largest vocabulary one default chunk takes for one row: two or more tiles.
    let vocab = (1..=100_000)
        .take_while(|&v| cold_choose(&p, DType::F16, 1, v, false).unwrap().splits == 1)
        .last()
        .unwrap();
    let t = cold_choose(&p, DType::F16, 1, vocab, false).unwrap();
    let tile = t.tile_len as usize;
    assert!(vocab > tile);
    let layouts = [
        ties(&[700, 1500], vocab - 1, &[100, 1000]), // tile 0 dirty: rescanned
        ties(&[700, 1500], 0, &[]),                  // the maximum first: no rescan
        ties(&[tile - 2, tile - 1], vocab - 1, &[5]), // the last two lanes of a tile
        ties(&[tile, tile + 1, tile + 64], 3, &[]),  // across a 64-lane repeat, in tile 1
        ties(&[vocab - 3, vocab - 1], 1, &[]),
    ];
    for (k, l) in layouts.iter().enumerate() {
        let same_tile = move |t: &ColdScoreTiling| {
            let first = tile_of(t, l.ties[0]);
            assert!(l.ties.iter().all(|&i| tile_of(t, i) == first), "{l:?}");
        };
        tie_all_dtypes(
            &emu,
            vocab,
            std::slice::from_ref(l),
            None,
            &same_tile,
            700 + 100 * k as u64,
        );
    }
}

#[test]
fn ties_across_tiles_of_one_chunk_go_to_the_lowest_index() {
    let emu = Emu0::new();
    let p = emu.profile.clone();
    let vocab = (1..=100_000)
        .take_while(|&v| cold_choose(&p, DType::F16, 1, v, false).unwrap().splits == 1)
        .last()
        .unwrap();
    let tile = cold_choose(&p, DType::F16, 1, vocab, false)
        .unwrap()
        .tile_len as usize;
    let layouts = [
        ties(&[tile - 1, tile], vocab - 1, &[3]), // adjacent across the boundary, tile 0 dirty
        ties(&[5, vocab - 1], vocab - 2, &[6]),
        ties(&[5, vocab - 1], 0, &[]),
    ];
    let split_tiles = |l: &Ties, t: &ColdScoreTiling| {
        assert_eq!(t.splits, 1);
        assert!(
            tile_of(t, l.ties[0]) != tile_of(t, *l.ties.last().unwrap()),
            "{l:?}"
        );
    };
    for (k, l) in layouts.iter().enumerate() {
        let check = |t: &ColdScoreTiling| split_tiles(l, t);
        tie_all_dtypes(
            &emu,
            vocab,
            std::slice::from_ref(l),
            None,
            &check,
            1300 + 100 * k as u64,
        );
    }
    // Many short tiles in one chunk (a caller's tiling): ties in tiles 3 and 12, and three tiles apart.
    let mut t = cold_choose(&p, DType::F16, 1, vocab, false).unwrap();
    t.tile_len = 256;
    let l = ties(
        &[3 * 256 + 17, 12 * 256 + 17, 15 * 256],
        vocab - 1,
        &[10, 800, 3100],
    );
    let check = |t: &ColdScoreTiling| split_tiles(&l, t);
    tie_all_dtypes(
        &emu,
        vocab,
        std::slice::from_ref(&l),
        Some(&t),
        &check,
        1700,
    );
}

#[test]
fn ties_across_chunks_go_to_the_lowest_index() {
    let emu = Emu0::new();
    let p = emu.profile.clone();
    // One row over several default chunks, the last one short.
    let vocab = (1..=100_000)
        .find(|&v| cold_choose(&p, DType::F16, 1, v, false).unwrap().splits >= 5)
        .unwrap();
    let t = cold_choose(&p, DType::F16, 1, vocab, false).unwrap();
    let chunk = t.chunk_len as usize;
    let layouts = [
        ties(&[chunk - 1, chunk], vocab - 1, &[chunk - 5, 9]), // across a boundary, chunk 0 dirty
        ties(&[10, vocab - 1], vocab - 2, &[11]),              // first and last (short) chunk
        ties(&[chunk + 1, 2 * chunk + 1, 3 * chunk + 1], 0, &[]),
        ties(
            &[2 * chunk + 7, 3 * chunk + 7],
            vocab - 1,
            &[chunk + 3, 2 * chunk + 3],
        ),
    ];
    for (k, l) in layouts.iter().enumerate() {
        let check = |t: &ColdScoreTiling| {
            assert!(t.splits > 1);
            let chunks: BTreeSet<usize> = l.ties.iter().map(|&i| tile_of(t, i).0).collect();
            assert_eq!(chunks.len(), l.ties.len(), "{l:?}: one tie per chunk");
            let cores: BTreeSet<usize> = l.ties.iter().map(|&i| core_of(t, 0, i)).collect();
            assert_eq!(cores.len(), l.ties.len(), "{l:?}: one tie per core");
        };
        tie_all_dtypes(
            &emu,
            vocab,
            std::slice::from_ref(l),
            None,
            &check,
            1800 + 100 * k as u64,
        );
    }
    // Fewer blocks than chunks (a caller's tiling): one core takes several chunks, round-robin.
    let few = ColdScoreTiling { block_num: 2, ..t };
    let l = &layouts[2];
    let check = |t: &ColdScoreTiling| {
        assert_eq!(core_of(t, 0, l.ties[0]), core_of(t, 0, l.ties[2]));
    };
    tie_all_dtypes(
        &emu,
        vocab,
        std::slice::from_ref(l),
        Some(&few),
        &check,
        2300,
    );
}

#[test]
fn ties_in_rows_on_different_cores_go_to_the_lowest_index() {
    let emu = Emu0::new();
    let p = emu.profile.clone();
    // Several rows of one chunk each, a row per core.
    let rows = 6;
    let vocab = (1..=100_000)
        .take_while(|&v| cold_choose(&p, DType::F16, rows, v, false).unwrap().splits == 1)
        .last()
        .unwrap();
    let tile = cold_choose(&p, DType::F16, rows, vocab, false)
        .unwrap()
        .tile_len as usize;
    // Each row's winner at a different place, so a row that took another's state would show.
    let layouts: Vec<Ties> = vec![
        ties(&[3, 9], vocab - 1, &[1]),
        ties(&[tile - 1, tile], vocab - 1, &[2]),
        ties(&[vocab - 2, vocab - 1], 0, &[]),
        ties(&[100, 101, 102, 103], 7, &[]),
        ties(&[tile + 5, vocab - 1], tile + 6, &[tile + 4]),
        ties(&[0, vocab - 1], 1, &[]),
    ];
    let one_row_per_core = |t: &ColdScoreTiling| {
        assert_eq!((t.splits, t.block_num), (1, rows as u32));
    };
    tie_all_dtypes(&emu, vocab, &layouts, None, &one_row_per_core, 2400);
    // Two blocks for six rows: each core runs three rows in turn.
    let two = ColdScoreTiling {
        block_num: 2,
        ..cold_choose(&p, DType::F16, rows, vocab, false).unwrap()
    };
    tie_all_dtypes(&emu, vocab, &layouts, Some(&two), &|_| {}, 2500);
    // Rows split into chunks: chunks of one row and of different rows spread over the cores.
    let rows = 3;
    let vocab = 3 * vocab;
    let t = cold_choose(&p, DType::F16, rows, vocab, false).unwrap();
    let chunk = t.chunk_len as usize;
    let layouts = vec![
        ties(&[chunk - 1, chunk], vocab - 1, &[4]),
        ties(&[5, 2 * chunk + 5], chunk + 1, &[6]),
        ties(&[chunk + 2, 2 * chunk + 2], 0, &[]),
    ];
    let spread = |t: &ColdScoreTiling| {
        assert!(t.splits > 1 && t.block_num == t.rows * t.splits);
    };
    tie_all_dtypes(&emu, vocab, &layouts, None, &spread, 2600);
}
