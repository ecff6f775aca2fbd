//! cold_score under the strict emulator (docs/KERNELS.md, "Ascend C API surface") against the oracle
//! `ascend_cold::reference::cold_score`, at the vocabularies whose tails the chip's whole-repeat compare
//! used to get wrong (1, 63, 64, 65, 100, a prime 100003, Qwen2's 151936), in f16, bf16 and f32, one row
//! and several, with and without the score row, on the default tiling and on a random valid one.
//!
//! Inputs: fresh random rows of three kinds: logits on a grid of quarters in [-8, 8] (exact in every
//! dtype; many equal maxima and many equal scores, so the lowest-index rule is exercised across tiles and
//! chunks), continuous logits in [-8, 8) rounded to the dtype, and (in multi-row launches) a row holding
//! NaN or an infinity. Outputs are poisoned before every launch (tokens i64::MIN, floats all-ones NaN).
//!
//! Tolerances, from the kernel's arithmetic (u = 2^-24; the inputs are exact in f32, the reference works in
//! f64 from the same values):
//! - threshold: the kernel adds the row maximum M (exact) to the host's f32 ln(alpha), which is within one
//!   ulp (<= 2u |ln alpha|) of ln(alpha), rounding once more (<= u |M + ln alpha|):
//!   tol_t = u (|M| + 3 |ln alpha|) (1 + 2u), and 0 for alpha = 1 (both steps exact). Tokens with e within tol_t of the f64 threshold may be kept
//!   or masked; the others must be as the reference says.
//! - score: the kernel computes fl(fl(e fl(1 + b)) - fl(a b)) in f32: three roundings on the e term and two
//!   on the a term give |s - S| <= u (3 (1 + b) |e| + 2 b |a|) (1 + 2u), the last factor covering the
//!   second-order terms and the f64 reference's own rounding.
//!
//! Checks per finite row: the token is in range and not surely masked; its f32 best equals its score within
//! tol_s; no surely kept token beats it by more than both tolerances; it equals the reference's token
//! whenever that one wins by more than the tolerances; no lower index surely kept holds the same (e, a)
//! (such a token scores bit for bit the same, so the lowest-index rule must pick it). Every score of the row
//! is within tol_s, -inf where surely masked. Non-finite rows: token -1, best NaN, every score written.

use ascend_cold::contracts::ColdParams;
use ascend_cold::contracts::ColdShape;
use ascend_cold::contracts::Float;
use ascend_cold::ops::{self, ColdOutputs};
use ascend_cold::reference;
use ascend_cold::tiling::ColdScoreTiling;
use ascend_cold::{Device, DeviceBuffer, DeviceRepr, Stream};
use half::{bf16, f16};
use rand::{rngs::StdRng, Rng, SeedableRng};

const U: f64 = 1.0 / (1u64 << 24) as f64;
const POISON_BITS: u32 = u32::MAX;
const VOCABS: [usize; 7] = [1, 63, 64, 65, 100, 100_003, 151_936];
const ALPHAS: [f32; 5] = [1.0, 0.5, 0.1, 1e-3, 1e-6];
const BETAS: [f32; 4] = [0.0, 0.5, 1.0, 3.0];

trait Logit: ops::LogitFloat + DeviceRepr + Float {}
impl Logit for f16 {}
impl Logit for bf16 {}
impl Logit for f32 {}

/// Rows of `vocab` logits: kind 0 on the quarter grid, 1 continuous, 2 the grid with one non-finite value.
fn random_rows<T: Logit>(rng: &mut StdRng, rows: usize, vocab: usize) -> (Vec<T>, Vec<T>) {
    let mut e = Vec::with_capacity(rows * vocab);
    let mut a = Vec::with_capacity(rows * vocab);
    for row in 0..rows {
        let kind = if rows > 1 && row == 1 { 2 } else { row % 2 };
        for _ in 0..vocab {
            let (x, y) = if kind == 1 {
                (rng.gen_range(-8.0..8.0), rng.gen_range(-8.0..8.0))
            } else {
                (
                    f64::from(rng.gen_range(-32i32..=32)) / 4.0,
                    f64::from(rng.gen_range(-32i32..=32)) / 4.0,
                )
            };
            e.push(T::from_f64(x));
            a.push(T::from_f64(y));
        }
        if kind == 2 {
            let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.gen_range(0..3)];
            let at = row * vocab + rng.gen_range(0..vocab);
            if rng.gen_bool(0.5) {
                e[at] = T::from_f64(bad);
            } else {
                a[at] = T::from_f64(bad);
            }
        }
    }
    (e, a)
}

/// A valid tiling with the tile length and block count drawn at random, or None when the draw is invalid.
fn random_tiling<T: Logit>(
    device: &Device,
    rng: &mut StdRng,
    shape: ColdShape,
    alpha: f32,
    beta: f32,
    with_scores: bool,
) -> Option<ColdScoreTiling> {
    let profile = device.profile().unwrap();
    let base = ColdScoreTiling::choose(
        shape.rows,
        shape.vocab,
        T::DTYPE,
        ColdParams::new(alpha, beta).unwrap(),
        with_scores,
        &profile,
    )
    .unwrap();
    let tile_len = 64 * rng.gen_range(1..=32);
    let t = ColdScoreTiling {
        block_num: rng.gen_range(1..=profile.vector_cores),
        tile_len,
        chunk_len: base.chunk_len.div_ceil(tile_len) * tile_len,
        ..base
    };
    t.validate(
        shape.rows,
        shape.vocab,
        T::DTYPE,
        ColdParams::new(alpha, beta).unwrap(),
        &profile,
    )
    .ok()
    .map(|_| t)
}

struct Outputs {
    tokens: Vec<i64>,
    best: Vec<f32>,
    scores: Vec<f32>,
}

#[allow(clippy::too_many_arguments)] // the inputs, CoLD's parameters, the mode and the tiling
fn launch<T: Logit>(
    device: &Device,
    e: &[T],
    a: &[T],
    shape: ColdShape,
    alpha: f32,
    beta: f32,
    with_scores: bool,
    tiling: Option<&ColdScoreTiling>,
) -> Outputs {
    let stream = Stream::new(device).unwrap();
    let poison = |n: usize| vec![f32::from_bits(POISON_BITS); n];
    let (de, da) = (
        DeviceBuffer::from_host(device, e).unwrap(),
        DeviceBuffer::from_host(device, a).unwrap(),
    );
    let mut tokens = DeviceBuffer::from_host(device, &vec![i64::MIN; shape.rows]).unwrap();
    let mut best = DeviceBuffer::from_host(device, &poison(shape.rows)).unwrap();
    let mut scores = DeviceBuffer::from_host(device, &poison(shape.rows * shape.vocab)).unwrap();
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
        tiling,
    )
    .unwrap();
    stream.synchronize().unwrap();
    Outputs {
        tokens: tokens.to_vec().unwrap(),
        best: best.to_vec().unwrap(),
        scores: scores.to_vec().unwrap(),
    }
}

#[allow(clippy::too_many_arguments)] // the inputs, the oracle's picks, CoLD's parameters, the outputs
fn check<T: Logit>(
    what: &str,
    e: &[T],
    a: &[T],
    shape: ColdShape,
    alpha: f32,
    beta: f32,
    with_scores: bool,
    out: &Outputs,
) {
    let vocab = shape.vocab;
    let picks =
        reference::cold_score(e, a, shape, ColdParams::new(alpha, beta).unwrap(), None).unwrap();
    let (b, ln_a) = (f64::from(beta), f64::from(alpha).ln());
    for (n, pick) in picks.iter().enumerate() {
        let what = format!("{what}, row {n}");
        let row = n * vocab..(n + 1) * vocab;
        let (re, ra) = (&e[row.clone()], &a[row.clone()]);
        let scores = &out.scores[row];
        if with_scores {
            assert!(
                scores.iter().all(|s| s.to_bits() != POISON_BITS),
                "{what}: a score left unwritten"
            );
        }
        if pick.token < 0 {
            assert_eq!(out.tokens[n], -1, "{what}: non-finite row");
            assert!(
                out.best[n].is_nan(),
                "{what}: non-finite row, best {}",
                out.best[n]
            );
            continue;
        }
        let ev = |i: usize| re[i].to_f64();
        let av = |i: usize| ra[i].to_f64();
        let max = (0..vocab).map(ev).fold(f64::NEG_INFINITY, f64::max);
        let thr = max + ln_a;
        let tol_t = if alpha == 1.0 {
            0.0 // ln 1 is exactly 0 in f32 too, and M + 0 is exact: the kernel's threshold is M
        } else {
            U * (max.abs() + 3.0 * ln_a.abs()) * (1.0 + 2.0 * U)
        };
        let kept = |i: usize| ev(i) >= thr + tol_t;
        let masked = |i: usize| ev(i) < thr - tol_t;
        let score = |i: usize| reference::cold_score_of(ev(i), av(i), b);
        let tol_s = |i: usize| {
            U * (3.0 * (1.0 + b) * ev(i).abs() + 2.0 * b * av(i).abs()) * (1.0 + 2.0 * U)
        };

        let t = out.tokens[n];
        assert!((0..vocab as i64).contains(&t), "{what}: token {t}");
        let t = t as usize;
        assert!(
            !masked(t),
            "{what}: token {t} (e {}) is below the threshold {thr}",
            ev(t)
        );
        let best = f64::from(out.best[n]);
        assert!(
            (best - score(t)).abs() <= tol_s(t),
            "{what}: best {best} for token {t}, whose score is {}",
            score(t)
        );
        if let Some(i) = (0..vocab).find(|&i| kept(i) && score(i) - tol_s(i) > score(t) + tol_s(t))
        {
            panic!(
                "{what}: token {i} scores {} > token {t}'s {}",
                score(i),
                score(t)
            );
        }
        if let Some(i) = (0..t).find(|&i| {
            kept(i) && ev(i).to_bits() == ev(t).to_bits() && av(i).to_bits() == av(t).to_bits()
        }) {
            panic!("{what}: token {i} ties token {t} exactly and has the lower index");
        }
        let want = pick.token as usize;
        let runner_up = (0..vocab)
            .filter(|&i| i != want && !masked(i))
            .map(|i| score(i) + tol_s(i))
            .fold(f64::NEG_INFINITY, f64::max);
        if kept(want) && score(want) - tol_s(want) > runner_up {
            assert_eq!(t, want, "{what}: the reference's token wins by a margin");
        }
        if with_scores {
            for (i, &s) in scores.iter().enumerate() {
                let s = f64::from(s);
                let near = (s - score(i)).abs() <= tol_s(i);
                if kept(i) {
                    assert!(near, "{what}: score[{i}] = {s}, want {}", score(i));
                } else if masked(i) {
                    assert_eq!(s, f64::NEG_INFINITY, "{what}: score[{i}] must be masked");
                } else {
                    assert!(s == f64::NEG_INFINITY || near, "{what}: score[{i}] = {s}");
                }
            }
        }
    }
}

/// Every vocabulary, in dtype `T`: rows 1 and 5 (split over the cores when the vocabulary is long), 49
/// (more rows than cores: one launch, a row per task) for the short vocabularies; each with and without the
/// score row, on the default tiling and a random one; alpha and beta drawn per case.
fn every_vocabulary<T: Logit>(seed: u64) {
    let device = Device::emulator().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for vocab in VOCABS {
        let rows: &[usize] = if vocab <= 100 { &[1, 5, 49] } else { &[1, 5] };
        for &rows in rows {
            let shape = ColdShape { rows, vocab };
            let (e, a) = random_rows::<T>(&mut rng, rows, vocab);
            for with_scores in [false, true] {
                let alpha = ALPHAS[rng.gen_range(0..ALPHAS.len())];
                let beta = BETAS[rng.gen_range(0..BETAS.len())];
                let random = random_tiling::<T>(&device, &mut rng, shape, alpha, beta, with_scores);
                for tiling in [None, random.as_ref()] {
                    let what = format!(
                        "{:?} {rows}x{vocab} alpha {alpha} beta {beta} scores {with_scores} tiling {tiling:?}",
                        T::DTYPE
                    );
                    let out = launch(&device, &e, &a, shape, alpha, beta, with_scores, tiling);
                    check(&what, &e, &a, shape, alpha, beta, with_scores, &out);
                }
            }
        }
    }
}

#[test]
fn cold_score_matches_the_oracle_at_every_vocabulary_f16() {
    every_vocabulary::<f16>(0x5eed_0016);
}

#[test]
fn cold_score_matches_the_oracle_at_every_vocabulary_bf16() {
    every_vocabulary::<bf16>(0x5eed_b016);
}

#[test]
fn cold_score_matches_the_oracle_at_every_vocabulary_f32() {
    every_vocabulary::<f32>(0x5eed_0032);
}

/// A long vocabulary with as many rows as cores: one launch, every row on one core, tails in the last tile.
#[test]
fn cold_score_matches_the_oracle_with_a_row_per_core() {
    let device = Device::emulator().unwrap();
    let rows = device.profile().unwrap().vector_cores as usize;
    let shape = ColdShape {
        rows,
        vocab: 100_003,
    };
    let mut rng = StdRng::seed_from_u64(0x5eed_0048);
    let (e, a) = random_rows::<bf16>(&mut rng, rows, shape.vocab);
    for (with_scores, alpha, beta) in [(false, 0.1, 0.5), (true, 1e-3, 1.0)] {
        let what = format!("bf16 {rows}x{} scores {with_scores}", shape.vocab);
        let out = launch(&device, &e, &a, shape, alpha, beta, with_scores, None);
        check(&what, &e, &a, shape, alpha, beta, with_scores, &out);
    }
}
