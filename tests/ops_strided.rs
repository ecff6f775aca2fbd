//! `cold_score_strided`: expert and amateur rows interleaved in one matrix (the decoder's own row
//! order) are scored in one op with no copy, and pick exactly what the blocked layout picks.

mod common;

use ascend_cold::contracts::ColdParams;
use ascend_cold::contracts::ColdShape;
use ascend_cold::ops::{self, ColdOutputs, RowStrides};
use ascend_cold::{reference, DeviceBuffer, Error, Stream};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Interleaved `[2 * rows, vocab]` logits with ties: values on a coarse grid.
fn interleaved(rng: &mut StdRng, rows: usize, vocab: usize) -> Vec<f32> {
    (0..2 * rows * vocab)
        .map(|_| rng.gen_range(-16..16) as f32 * 0.25)
        .collect()
}

#[test]
fn interleaved_rows_pick_what_the_blocked_layout_picks() {
    let mut rng = StdRng::seed_from_u64(rand::random());
    for device in common::devices() {
        let stream = Stream::new(&device).unwrap();
        // Vocabularies with tails, one chunk and several (splits > 1 at few rows and a large vocabulary).
        for (rows, vocab) in [(1, 1), (3, 65), (2, 1000), (1, 70_000), (5, 4099)] {
            let shape = ColdShape { rows, vocab };
            let (alpha, beta) = (rng.gen_range(0.05..1.0), rng.gen_range(0.0..2.0));
            let logits = interleaved(&mut rng, rows, vocab);
            let (mut e, mut a) = (Vec::new(), Vec::new());
            for r in 0..rows {
                e.extend_from_slice(&logits[2 * r * vocab..(2 * r + 1) * vocab]);
                a.extend_from_slice(&logits[(2 * r + 1) * vocab..(2 * r + 2) * vocab]);
            }
            let dev_logits = DeviceBuffer::from_host(&device, &logits).unwrap();
            let mut tokens = DeviceBuffer::from_host(&device, &vec![i64::MIN; rows]).unwrap();
            let mut best = DeviceBuffer::from_host(&device, &vec![f32::NAN; rows]).unwrap();
            let mut scores =
                DeviceBuffer::from_host(&device, &vec![f32::NAN; rows * vocab]).unwrap();
            let out = ColdOutputs {
                tokens: tokens.view_mut(),
                best_scores: best.view_mut(),
                scores: Some(scores.view_mut()),
            };
            let amateur = dev_logits.slice(vocab..).unwrap();
            ops::cold_score_strided(
                &stream,
                dev_logits.view(),
                amateur,
                shape,
                RowStrides::interleaved(vocab),
                ColdParams::new(alpha, beta).unwrap(),
                out,
                None,
            )
            .unwrap();

            let e_dev = DeviceBuffer::from_host(&device, &e).unwrap();
            let a_dev = DeviceBuffer::from_host(&device, &a).unwrap();
            let blocked = ops::cold_score_host(
                &stream,
                e_dev.view(),
                a_dev.view(),
                shape,
                ColdParams::new(alpha, beta).unwrap(),
            )
            .unwrap();
            let mut want_scores = vec![0.0f32; rows * vocab];
            let oracle = reference::cold_score(
                &e,
                &a,
                shape,
                ColdParams::new(alpha, beta).unwrap(),
                Some(&mut want_scores),
            )
            .unwrap();

            let got: Vec<i64> = tokens.to_vec().unwrap();
            let blocked_tokens: Vec<i64> = blocked.iter().map(|p| p.token).collect();
            let oracle_tokens: Vec<i64> = oracle.iter().map(|p| p.token).collect();
            assert_eq!(
                got, blocked_tokens,
                "{device} {shape:?} alpha {alpha} beta {beta}"
            );
            assert_eq!(got, oracle_tokens, "{device} {shape:?}");
            assert_eq!(
                best.to_vec().unwrap(),
                blocked.iter().map(|p| p.best_score).collect::<Vec<_>>()
            );
            // Grid inputs: (1 + beta) e - beta a is exact up to one f32 rounding per product and sum.
            for (i, (g, w)) in scores
                .to_vec()
                .unwrap()
                .iter()
                .zip(&want_scores)
                .enumerate()
            {
                let ok = (g.is_infinite() && w.is_infinite() && g.signum() == w.signum())
                    || (g - w).abs() <= 4.0 * f32::EPSILON * (4.0 * (1.0 + 2.0 * beta));
                assert!(ok, "{device} {shape:?} score {i}: got {g}, want {w}");
            }
        }
    }
}

#[test]
fn strides_that_overlap_rows_or_overrun_the_view_are_refused() {
    let device = common::emu(0);
    let stream = Stream::new(&device).unwrap();
    let shape = ColdShape { rows: 2, vocab: 8 };
    let logits = DeviceBuffer::from_host(&device, &[0.0f32; 32]).unwrap();
    let mut tokens = DeviceBuffer::<i64>::zeroed(&device, 2).unwrap();
    let mut best = DeviceBuffer::<f32>::zeroed(&device, 2).unwrap();
    let mut run = |amateur_from: usize, strides: RowStrides| {
        let out = ColdOutputs {
            tokens: tokens.view_mut(),
            best_scores: best.view_mut(),
            scores: None,
        };
        let amateur = logits.slice(amateur_from..).unwrap();
        ops::cold_score_strided(
            &stream,
            logits.view(),
            amateur,
            shape,
            strides,
            ColdParams::new(0.1, 0.5).unwrap(),
            out,
            None,
        )
    };
    let overlap = run(
        8,
        RowStrides {
            expert: 7,
            amateur: 16,
        },
    );
    assert!(
        matches!(
            overlap,
            Err(Error::BadParameter {
                name: "cold_score expert row stride",
                ..
            })
        ),
        "{overlap:?}"
    );
    // The amateur view from element 20 holds 12 elements; rows 16 apart need 24.
    let short = run(20, RowStrides::interleaved(8));
    let message = short.unwrap_err().to_string();
    assert!(
        message.contains("amateur") && message.contains("at least 24 elements"),
        "{message}"
    );
}
