//! ops vs the f64 reference, on fresh random inputs, through the public API on the emulator (and on
//! the NPU named by `ASCEND_TEST_DEVICE=<id>`, when set).
//!
//! Outputs are poisoned before every launch (NaN bit patterns), so an element a kernel forgets to write
//! fails; rows with adapter index -1 must come back bit-identical.
//!
//! Tolerances (u = 2^-24, the f32 unit roundoff; inputs are generated in the kernel's dtype, so the
//! reference sees exactly the kernel's operands):
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

use ascend_cold::contracts::ColdParams;
use ascend_cold::contracts::Float;
use ascend_cold::contracts::{ColdShape, ExpandShape, ShrinkShape};
use ascend_cold::ops::{self, AdapterIndices, ColdOutputs};
use ascend_cold::reference;
use ascend_cold::tiling::{BgmvExpandTiling, BgmvShrinkTiling, ColdScoreTiling, DType};
use ascend_cold::{Device, DeviceBuffer, DeviceRepr, Stream};
use half::{bf16, f16};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

const U: f64 = 1.0 / (1u64 << 24) as f64;

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
    fn ulp_at(magnitude: f64) -> f64;
}
impl Elem for f16 {
    const DT: DType = DType::F16;
    fn ulp_at(m: f64) -> f64 {
        (2f64.powi(m.max(6.1e-5).log2().floor() as i32 - 10)).max(2f64.powi(-24))
    }
}
impl Elem for bf16 {
    const DT: DType = DType::Bf16;
    fn ulp_at(m: f64) -> f64 {
        2f64.powi(m.max(1e-38).log2().floor() as i32 - 7)
    }
}
impl Elem for f32 {
    const DT: DType = DType::F32;
    fn ulp_at(m: f64) -> f64 {
        2f64.powi(m.max(1e-38).log2().floor() as i32 - 23)
    }
}

fn random_vec<T: Float>(rng: &mut StdRng, n: usize, scale: f64) -> Vec<T> {
    (0..n)
        .map(|_| T::from_f64(rng.gen_range(-scale..scale)))
        .collect()
}

fn random_indices(rng: &mut StdRng, batch: usize, loras: usize) -> Vec<i64> {
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

/// A tiling for the shape with its knobs moved at random, kept only if the device accepts it.
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

fn expand_tiling(
    device: &Device,
    shape: ExpandShape,
    dt: DType,
    rng: &mut StdRng,
) -> Option<BgmvExpandTiling> {
    let profile = device.profile().unwrap();
    let base = BgmvExpandTiling::choose(shape, dt, true, &profile).unwrap();
    let t = BgmvExpandTiling {
        block_num: rng.gen_range(1..=profile.vector_cores),
        tile_h: 8 * rng.gen_range(1..=31),
        ..base
    };
    t.validate(shape, dt, &profile).is_ok().then_some(t)
}

fn poison<T: DeviceRepr>(n: usize) -> Vec<T> {
    // 0xFFFF... is a NaN in every float type and -1 / u32::MAX in the integer ones.
    bytemuck::cast_slice::<u8, T>(&vec![0xFFu8; n * std::mem::size_of::<T>()]).to_vec()
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
        for b in 0..batch {
            for r in 0..rank {
                let (got, want) = (y[b * rank + r], expected[b * rank + r]);
                if idx[b] < 0 {
                    assert_eq!(
                        got.to_bits(),
                        y0[b * rank + r].to_bits(),
                        "row {b} (index -1) was written"
                    );
                    continue;
                }
                let l = idx[b] as usize;
                let mag: f64 = (0..hidden)
                    .map(|h| {
                        (x[b * hidden + h].to_f64() * w[(l * rank + r) * hidden + h].to_f64()).abs()
                    })
                    .sum();
                let tol = (hidden as f64 + 1.0) * U * f64::from(scale) * mag + 1e-30;
                assert!(
                    (f64::from(got) - f64::from(want)).abs() <= tol,
                    "{:?} y[{b},{r}] = {got}, reference {want}, tol {tol} ({shape:?}, tiling {tiling:?})",
                    T::DT
                );
            }
        }
    }
}

/// `extra`: columns of y outside the written slice (the slice offset is drawn from 0..=extra).
fn check_expand<T: Elem + ops::LoraFloat>(
    seed: u64,
    (batch, rank, h_out, extra, loras): (usize, usize, usize, usize, usize),
    add: bool,
    tiled: bool,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let offset = if extra > 0 {
        rng.gen_range(0..=extra)
    } else {
        0
    };
    let shape = ExpandShape {
        batch,
        rank,
        hidden_out: h_out,
        hidden_full: h_out + extra,
        slice_offset: offset,
        num_loras: loras,
    };
    let full = h_out + extra;
    let x: Vec<f32> = random_vec(&mut rng, batch * rank, 1.0);
    let w: Vec<T> = random_vec(&mut rng, loras * h_out * rank, 0.5);
    let idx = random_indices(&mut rng, batch, loras);
    // Poison outside the slice; inside, real values when adding (they are inputs), poison otherwise.
    let mut y0: Vec<T> = poison(batch * full);
    if add {
        for b in 0..batch {
            for o in 0..h_out {
                y0[b * full + offset + o] = T::from_f64(rng.gen_range(-2.0..2.0));
            }
        }
    }
    let mut expected = y0.clone();
    reference::bgmv_expand(&x, &w, &idx, &mut expected, shape, add).unwrap();
    for device in devices() {
        let stream = Stream::new(&device).unwrap();
        let (dx, dw) = (
            DeviceBuffer::from_host(&device, &x).unwrap(),
            DeviceBuffer::from_host(&device, &w).unwrap(),
        );
        let mut dy = DeviceBuffer::from_host(&device, &y0).unwrap();
        let tiling = if tiled {
            expand_tiling(&device, shape, T::DT, &mut rng)
        } else {
            None
        };
        ops::bgmv_expand(
            &stream,
            ops::BgmvExpand {
                x: dx.view(),
                weights: dw.view(),
                indices: AdapterIndices::Host(&idx),
                y: dy.view_mut(),
                shape,
                add_inputs: add,
            },
            tiling.as_ref(),
        )
        .unwrap();
        stream.synchronize().unwrap();
        let y = dy.to_vec().unwrap();
        for b in 0..batch {
            for c in 0..full {
                let (got, want, before) =
                    (y[b * full + c], expected[b * full + c], y0[b * full + c]);
                let in_slice = (offset..offset + h_out).contains(&c);
                if idx[b] < 0 || !in_slice {
                    assert_eq!(
                        bytemuck::bytes_of(&got),
                        bytemuck::bytes_of(&before),
                        "y[{b},{c}] outside the written set changed"
                    );
                    continue;
                }
                let (l, o) = (idx[b] as usize, c - offset);
                let mag: f64 = (0..rank)
                    .map(|r| {
                        (f64::from(x[b * rank + r]) * w[(l * h_out + o) * rank + r].to_f64()).abs()
                    })
                    .sum::<f64>()
                    + if add { before.to_f64().abs() } else { 0.0 };
                let tol = T::ulp_at(want.to_f64().abs().max(got.to_f64().abs()))
                    + (rank as f64 + 1.0) * U * mag;
                assert!(
                    (got.to_f64() - want.to_f64()).abs() <= tol,
                    "{:?} y[{b},{c}] = {}, reference {}, tol {tol} ({shape:?}, add {add}, tiling {tiling:?})",
                    T::DT, got.to_f64(), want.to_f64()
                );
            }
        }
    }
}

fn check_cold<T: Elem + ops::LogitFloat>(
    e: &[T],
    a: &[T],
    shape: ColdShape,
    alpha: f32,
    beta: f32,
    with_scores: bool,
    tiling: Option<ColdScoreTiling>,
) {
    let ColdShape { rows, vocab } = shape;
    let picks =
        reference::cold_score(e, a, shape, ColdParams::new(alpha, beta).unwrap(), None).unwrap();
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
            ColdParams::new(alpha, beta).unwrap(),
            out,
            tiling.as_ref(),
        )
        .unwrap();
        stream.synchronize().unwrap();
        let (tokens, best, scores) = (
            tokens.to_vec().unwrap(),
            best.to_vec().unwrap(),
            scores.to_vec().unwrap(),
        );
        let b = f64::from(beta);
        for n in 0..rows {
            let row_e = &e[n * vocab..(n + 1) * vocab];
            let row_a = &a[n * vocab..(n + 1) * vocab];
            if picks[n].token < 0 {
                assert_eq!(
                    tokens[n], -1,
                    "row {n} holds a non-finite logit: token must be -1"
                );
                assert!(best[n].is_nan(), "row {n}: best must be NaN");
                continue;
            }
            let max = row_e
                .iter()
                .map(|v| v.to_f64())
                .fold(f64::NEG_INFINITY, f64::max);
            let ln_a = f64::from(alpha.ln());
            let threshold = max + ln_a;
            let tol_t = 2.0 * U * (max.abs() + ln_a.abs()) + 1e-300;
            let score = |i: usize| (1.0 + b) * row_e[i].to_f64() - b * row_a[i].to_f64();
            let tol_s = |i: usize| {
                4.0 * U * ((1.0 + b) * row_e[i].to_f64().abs() + b * row_a[i].to_f64().abs())
                    + 1e-300
            };
            let t = tokens[n];
            assert!(
                (0..vocab as i64).contains(&t),
                "row {n}: token {t} out of range"
            );
            let t = t as usize;
            let want = picks[n].token as usize;
            assert!(
                row_e[t].to_f64() >= threshold - tol_t,
                "row {n}: token {t} is below the alpha threshold"
            );
            let best_ref = score(want);
            assert!(
                score(t) >= best_ref - tol_s(t) - tol_s(want),
                "row {n}: token {t} scores {} < best {best_ref} (token {want})",
                score(t)
            );
            assert!(
                (f64::from(best[n]) - score(t)).abs() <= tol_s(t),
                "row {n}: best {} vs score {}",
                best[n],
                score(t)
            );
            let runner_up = (0..vocab)
                .filter(|&i| i != want && row_e[i].to_f64() >= threshold - tol_t)
                .map(|i| score(i) + tol_s(i))
                .fold(f64::NEG_INFINITY, f64::max);
            if best_ref - tol_s(want) > runner_up {
                assert_eq!(
                    t, want,
                    "row {n}: unique best by a margin, tokens must match"
                );
            }
            if with_scores {
                for i in 0..vocab {
                    let s = f64::from(scores[n * vocab + i]);
                    let ei = row_e[i].to_f64();
                    if ei >= threshold + tol_t {
                        assert!(
                            (s - score(i)).abs() <= tol_s(i),
                            "row {n}: score[{i}] = {s}, want {}",
                            score(i)
                        );
                    } else if ei < threshold - tol_t {
                        assert_eq!(s, f64::NEG_INFINITY, "row {n}: score[{i}] should be masked");
                    } else {
                        assert!(
                            s == f64::NEG_INFINITY || (s - score(i)).abs() <= tol_s(i),
                            "row {n}: score[{i}] = {s}"
                        );
                    }
                }
            }
        }
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
    let tiling = tiled.then(|| {
        let device = Device::emulator().unwrap();
        let profile = device.profile().unwrap();
        let base = ColdScoreTiling::choose(
            rows,
            vocab,
            T::DT,
            ColdParams::new(alpha, beta).unwrap(),
            with_scores,
            &profile,
        )
        .unwrap();
        let t = ColdScoreTiling {
            block_num: rng.gen_range(1..=profile.vector_cores),
            tile_len: 64 * rng.gen_range(1..=32),
            ..base
        };
        let t = ColdScoreTiling {
            chunk_len: t.chunk_len.div_ceil(t.tile_len) * t.tile_len,
            ..t
        };
        t.validate(
            rows,
            vocab,
            T::DT,
            ColdParams::new(alpha, beta).unwrap(),
            &profile,
        )
        .ok()
        .map(|_| t)
    });
    check_cold(&e, &a, shape, alpha, beta, with_scores, tiling.flatten());
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
        if bf { check_expand::<bf16>(seed, (batch, rank, h_out, extra, loras), add, tiled) } else { check_expand::<f16>(seed, (batch, rank, h_out, extra, loras), add, tiled) }
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
