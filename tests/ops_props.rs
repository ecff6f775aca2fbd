//! ops vs the f64 reference, on fresh random inputs, through the public API on the emulator (and on
//! the NPU named by `ASCEND_TEST_DEVICE=<id>`, when set).
//!
//! Outputs are poisoned before every launch (NaN bit patterns), so an element a kernel forgets to write
//! fails; rows with adapter index -1 must come back bit-identical.
//!
//! Tolerances (derived here, implemented once in `ascend_cold::harness::compare_*`, which `check`,
//! `tune` and the CLI tests use too; u = 2^-24, the f32 unit roundoff; inputs are generated in the
//! kernel's dtype, so the reference sees exactly the kernel's operands):
//! - bgmv_shrink: every product of two f16/bf16 values is exact in f32 (11 + 11 <= 24 significant bits);
//!   summing H of them in f32, in any order, errs by at most (H - 1) u sum|x w|; scaling adds one more
//!   rounding: |y - ref| <= (H + 1) u |scale| sum|x w|.
//! - bgmv_expand: each product of an f32 by an f16/bf16 value rounds once (u |x w|); R of them summed, plus
//!   the input y, errs by (R + 1) u (sum|x w| + |y0|) in f32; the final rounding to the output dtype may
//!   then land on the other side of a rounding boundary than the exactly-rounded reference: one ulp of
//!   the output dtype at the result's magnitude.
//! - cold_score: the kernel computes the threshold max + ln(alpha) and the score (1+b) e - b a in f32: at
//!   most 3 roundings, tol_s = 4 u ((1 + b)|e| + b |a|) per score and tol_t = 2 u (|max| + |ln alpha|) on
//!   the threshold. The kernel's token must be kept (e >= threshold - tol_t) and score within 2 tol_s of the
//!   reference's best; when the reference's best beats every other kept score by more than that, the
//!   tokens must be equal.

use ascend_cold::contracts::{
    ColdParams, ColdShape, ExpandSegment, ExpandShape, Float, ShrinkShape, MAX_EXPAND_SEGMENTS,
};
use ascend_cold::harness::{
    compare_cold, compare_expand_segmented, compare_shrink, poison, random_indices, random_vec,
    widen, ColdResult,
};
use ascend_cold::ops::{self, AdapterIndices, ColdOutputs};
use ascend_cold::reference;
use ascend_cold::tiling::{BgmvExpandTiling, BgmvShrinkTiling, ColdScoreTiling, DType};
use ascend_cold::{Device, DeviceBuffer, DeviceRepr, Stream};
use half::{bf16, f16};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn devices() -> Vec<Device> {
    let mut list = vec![Device::emulator().expect("the emulator is always there")];
    match std::env::var("ASCEND_TEST_DEVICE") {
        Ok(id) => {
            list.push(Device::npu(id.parse().expect("ASCEND_TEST_DEVICE=<id>")).expect("NPU"))
        }
        Err(_) => eprintln!("ASCEND_TEST_DEVICE not set: ops tested on the emulator only"),
    }
    list
}

trait Elem: DeviceRepr + Float {
    const DT: DType;
}
impl Elem for f16 {
    const DT: DType = DType::F16;
}
impl Elem for bf16 {
    const DT: DType = DType::Bf16;
}
impl Elem for f32 {
    const DT: DType = DType::F32;
}

fn shrink_tiling(
    device: &Device,
    shape: ShrinkShape,
    dt: DType,
    rng: &mut StdRng,
) -> Option<BgmvShrinkTiling> {
    let profile = device.profile().unwrap();
    let base = BgmvShrinkTiling::choose(shape, dt, 1.0, &profile).unwrap();
    let t = BgmvShrinkTiling {
        block_num: rng.gen_range(1..=profile.vector_cores),
        tile_h: 64 * rng.gen_range(1..=64),
        ..base
    };
    t.validate(shape, dt, &profile).is_ok().then_some(t)
}

fn check_shrink<T: Elem + ops::LoraFloat>(
    seed: u64,
    batch: usize,
    hidden: usize,
    rank: usize,
    loras: usize,
    tiled: bool,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shape = ShrinkShape {
        batch,
        hidden_in: hidden,
        rank,
        num_loras: loras,
    };
    let x: Vec<T> = random_vec(&mut rng, batch * hidden, 1.0);
    let w: Vec<T> = random_vec(&mut rng, loras * rank * hidden, 0.5);
    let idx = random_indices(&mut rng, batch, loras);
    let scale = rng.gen_range(0.1f32..4.0);
    let y0: Vec<f32> = poison(batch * rank);
    let mut expected = y0.clone();
    reference::bgmv_shrink(&x, &w, &idx, &mut expected, shape, scale).unwrap();
    for device in devices() {
        let stream = Stream::new(&device).unwrap();
        let (dx, dw) = (
            DeviceBuffer::from_host(&device, &x).unwrap(),
            DeviceBuffer::from_host(&device, &w).unwrap(),
        );
        let mut dy = DeviceBuffer::from_host(&device, &y0).unwrap();
        let tiling = if tiled {
            shrink_tiling(&device, shape, T::DT, &mut rng)
        } else {
            None
        };
        let indices = AdapterIndices::Host(&idx);
        ops::bgmv_shrink(
            &stream,
            ops::BgmvShrink {
                x: dx.view(),
                weights: dw.view(),
                indices,
                y: dy.view_mut(),
                shape,
                scale,
            },
            tiling.as_ref(),
        )
        .unwrap();
        stream.synchronize().unwrap();
        let y = dy.to_vec().unwrap();
        let errs = compare_shrink(
            &widen(&x),
            &widen(&w),
            &idx,
            &y0,
            &y,
            &expected,
            shape,
            scale,
        );
        assert!(
            errs.ok(),
            "{:?} {shape:?} tiling {tiling:?}: {:?}",
            T::DT,
            errs.first_failure
        );
    }
}

/// Up to MAX_EXPAND_SEGMENTS segments over `h_out` rows, in order, with random gaps before, between
/// and after them (rows nobody writes), each reading a random window of the `rank` lanes (windows may
/// overlap: the contract allows it).
fn random_segments(rng: &mut StdRng, h_out: usize, rank: usize) -> Vec<ExpandSegment> {
    let n = rng.gen_range(1..=MAX_EXPAND_SEGMENTS.min(h_out));
    // n distinct cut points split 0..h_out into n consecutive pieces; each piece loses a random tail
    // (a gap), keeping at least one row.
    let mut starts: Vec<usize> = rand::seq::index::sample(rng, h_out, n).into_vec();
    starts.sort_unstable();
    starts[0] = if rng.gen_bool(0.5) { 0 } else { starts[0] };
    (0..n)
        .map(|j| {
            let end = if j + 1 < n { starts[j + 1] } else { h_out };
            let rows = rng.gen_range(1..=end - starts[j]);
            let seg_rank = rng.gen_range(1..=rank.min(128));
            ExpandSegment {
                row_start: starts[j],
                rows,
                rank_start: rng.gen_range(0..=rank - seg_rank),
                rank: seg_rank,
            }
        })
        .collect()
}

/// bgmv_expand against the reference; with `segmented`, the weight stored as random segments
/// (`bgmv_expand_segmented`, checked against the dense reference on the weight the segments make, the
/// rows no segment covers untouched), else dense (`bgmv_expand`). `extra`: columns of y outside the
/// slice (the slice offset is drawn from 0..=extra); they, and the rows without an adapter, start
/// poisoned and must stay so. When adding, y starts with real values everywhere.
fn check_expand<T: Elem + ops::LoraFloat>(
    seed: u64,
    (batch, rank, h_out, extra, loras): (usize, usize, usize, usize, usize),
    add: bool,
    tiled: bool,
    segmented: bool,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let offset = rng.gen_range(0..=extra);
    let shape = ExpandShape {
        batch,
        rank,
        hidden_out: h_out,
        hidden_full: h_out + extra,
        slice_offset: offset,
        num_loras: loras,
    };
    let segments = if segmented {
        random_segments(&mut rng, h_out, rank)
    } else {
        Vec::new()
    };
    let per_lora = shape.check_segments("test", &segments).unwrap();
    let full = h_out + extra;
    let x: Vec<f32> = random_vec(&mut rng, batch * rank, 1.0);
    let w: Vec<T> = random_vec(&mut rng, loras * per_lora, 0.5);
    let idx = random_indices(&mut rng, batch, loras);
    let mut y0: Vec<T> = poison(batch * full);
    if add {
        for v in y0.iter_mut() {
            *v = T::from_f64(rng.gen_range(-2.0..2.0));
        }
    }
    let mut expected = y0.clone();
    reference::bgmv_expand_segmented(&x, &w, &idx, &mut expected, shape, &segments, add).unwrap();
    let dense = reference::dense_expand_weights(&w, shape, &segments);
    for device in devices() {
        let stream = Stream::new(&device).unwrap();
        let (dx, dw) = (
            DeviceBuffer::from_host(&device, &x).unwrap(),
            DeviceBuffer::from_host(&device, &w).unwrap(),
        );
        let mut dy = DeviceBuffer::from_host(&device, &y0).unwrap();
        let profile = device.profile().unwrap();
        // A random block count and tile over the default, when that tiling is valid.
        let tiling = tiled
            .then(|| {
                let base =
                    BgmvExpandTiling::choose_segmented(shape, &segments, T::DT, add, &profile)
                        .unwrap();
                BgmvExpandTiling {
                    block_num: rng.gen_range(1..=profile.vector_cores),
                    tile_h: 8 * rng.gen_range(1..=31),
                    ..base
                }
            })
            .filter(|t| {
                t.validate_segmented(shape, &segments, T::DT, &profile)
                    .is_ok()
            });
        let op = ops::BgmvExpand {
            x: dx.view(),
            weights: dw.view(),
            indices: AdapterIndices::Host(&idx),
            y: dy.view_mut(),
            shape,
            add_inputs: add,
        };
        if segmented {
            ops::bgmv_expand_segmented(&stream, op, &segments, tiling.as_ref()).unwrap();
        } else {
            ops::bgmv_expand(&stream, op, tiling.as_ref()).unwrap();
        }
        stream.synchronize().unwrap();
        let y = dy.to_vec().unwrap();
        let errs = compare_expand_segmented(
            T::DT,
            &widen(&x),
            &widen(&dense),
            &idx,
            &widen(&y0),
            &widen(&y),
            &widen(&expected),
            shape,
            &segments,
            add,
        );
        assert!(
            errs.ok(),
            "{:?} {shape:?} {segments:?} add {add} tiling {tiling:?}: {:?}",
            T::DT,
            errs.first_failure
        );
    }
}

fn check_cold<T: Elem + ops::LogitFloat>(
    e: &[T],
    a: &[T],
    shape: ColdShape,
    params: ColdParams,
    with_scores: bool,
    tiling: Option<ColdScoreTiling>,
) {
    let ColdShape { rows, vocab } = shape;
    let picks = reference::cold_score(e, a, shape, params, None).unwrap();
    let ref_tokens: Vec<i64> = picks.iter().map(|p| p.token).collect();
    for device in devices() {
        let stream = Stream::new(&device).unwrap();
        let (de, da) = (
            DeviceBuffer::from_host(&device, e).unwrap(),
            DeviceBuffer::from_host(&device, a).unwrap(),
        );
        let mut tokens = DeviceBuffer::from_host(&device, &vec![i64::MIN; rows]).unwrap();
        let mut best = DeviceBuffer::from_host(&device, &poison::<f32>(rows)).unwrap();
        let mut scores = DeviceBuffer::from_host(&device, &poison::<f32>(rows * vocab)).unwrap();
        let out = ColdOutputs {
            tokens: tokens.view_mut(),
            best_scores: best.view_mut(),
            scores: with_scores.then(|| scores.view_mut()),
        };
        ops::cold_score(
            &stream,
            de.view(),
            da.view(),
            shape,
            params,
            out,
            tiling.as_ref(),
        )
        .unwrap();
        stream.synchronize().unwrap();
        let got = ColdResult {
            tokens: tokens.to_vec().unwrap(),
            best: best.to_vec().unwrap(),
            scores: with_scores.then(|| scores.to_vec().unwrap()),
        };
        let errs = compare_cold(&widen(e), &widen(a), shape, params, &ref_tokens, &got);
        assert!(
            errs.ok(),
            "{:?} {shape:?} {params:?} tiling {tiling:?}: {:?}",
            T::DT,
            errs.first_failure
        );
    }
}

fn random_cold<T: Elem + ops::LogitFloat>(
    seed: u64,
    rows: usize,
    vocab: usize,
    with_scores: bool,
    tiled: bool,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shape = ColdShape { rows, vocab };
    let mut e: Vec<T> = random_vec(&mut rng, rows * vocab, 8.0);
    let a: Vec<T> = random_vec(&mut rng, rows * vocab, 8.0);
    // A non-finite value in some rows, in either input.
    for n in 0..rows {
        if rng.gen_bool(0.15) {
            let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.gen_range(0..3)];
            let i = n * vocab + rng.gen_range(0..vocab);
            e[i] = T::from_f64(bad);
        }
    }
    let alpha = [1.0f32, 0.5, 0.1, 0.01, 1e-4][rng.gen_range(0..5)];
    let beta = [0.0f32, 0.5, 1.0, 3.0][rng.gen_range(0..4)];
    let params = ColdParams::new(alpha, beta).unwrap();
    let tiling = tiled.then(|| {
        let device = Device::emulator().unwrap();
        let profile = device.profile().unwrap();
        let base =
            ColdScoreTiling::choose(rows, vocab, T::DT, params, with_scores, &profile).unwrap();
        let t = ColdScoreTiling {
            block_num: rng.gen_range(1..=profile.vector_cores),
            tile_len: 64 * rng.gen_range(1..=32),
            ..base
        };
        let t = ColdScoreTiling {
            chunk_len: t.chunk_len.div_ceil(t.tile_len) * t.tile_len,
            ..t
        };
        t.validate(rows, vocab, T::DT, params, &profile)
            .ok()
            .map(|_| t)
    });
    check_cold(&e, &a, shape, params, with_scores, tiling.flatten());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn shrink_matches_reference(seed: u64, batch in 1usize..=256, hidden in 1usize..=2100, rank in 1usize..=128, loras in 1usize..=16, tiled: bool, bf: bool) {
        // Keep one case's reference work near a few million products.
        let batch = batch.min(1 + 3_000_000 / (hidden * rank));
        if bf { check_shrink::<bf16>(seed, batch, hidden, rank, loras, tiled) } else { check_shrink::<f16>(seed, batch, hidden, rank, loras, tiled) }
    }

    #[test]
    fn expand_matches_reference(seed: u64, batch in 1usize..=256, rank in 1usize..=128, h_out in 1usize..=2100, extra in 0usize..=40, loras in 1usize..=16, add: bool, tiled: bool, bf: bool) {
        let batch = batch.min(1 + 3_000_000 / (h_out * rank));
        if bf { check_expand::<bf16>(seed, (batch, rank, h_out, extra, loras), add, tiled, false) } else { check_expand::<f16>(seed, (batch, rank, h_out, extra, loras), add, tiled, false) }
    }

    /// Rank up to 300: a segmented weight's x row may be wider than one segment's 128 lanes.
    #[test]
    fn segmented_expand_matches_reference(seed: u64, batch in 1usize..=64, rank in 1usize..=300, h_out in 1usize..=2100, extra in 0usize..=40, loras in 1usize..=8, add: bool, tiled: bool, bf: bool) {
        let batch = batch.min(1 + 3_000_000 / (h_out * rank));
        if bf { check_expand::<bf16>(seed, (batch, rank, h_out, extra, loras), add, tiled, true) } else { check_expand::<f16>(seed, (batch, rank, h_out, extra, loras), add, tiled, true) }
    }

    #[test]
    fn cold_matches_reference(seed: u64, rows in 1usize..=64, vocab in 1usize..=70_000, with_scores: bool, tiled: bool, dt in 0u8..3) {
        let rows = rows.min(1 + 1_500_000 / vocab);
        match dt {
            0 => random_cold::<f16>(seed, rows, vocab, with_scores, tiled),
            1 => random_cold::<bf16>(seed, rows, vocab, with_scores, tiled),
            _ => random_cold::<f32>(seed, rows, vocab, with_scores, tiled),
        }
    }
}
