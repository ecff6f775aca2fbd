//! Edge cases of the ops that random inputs rarely hit, through the public API on the emulator.

use ascend_cold::contracts::{
    cold_token, ColdParams, ColdShape, ExpandSegment, ExpandShape, ShrinkShape, COLD_NON_FINITE,
    COLD_SCORE_OVERFLOW,
};
use ascend_cold::ops::{self, AdapterIndices, ColdOutputs};
use ascend_cold::reference;
use ascend_cold::{Device, DeviceBuffer, Error, Stream};
use half::{bf16, f16};

fn stream() -> Stream {
    Stream::new(&Device::emulator().unwrap()).unwrap()
}

fn picks(s: &Stream, e: &[f32], a: &[f32], vocab: usize, alpha: f32, beta: f32) -> Vec<i64> {
    let d = s.device();
    let (de, da) = (
        DeviceBuffer::from_host(d, e).unwrap(),
        DeviceBuffer::from_host(d, a).unwrap(),
    );
    let shape = ColdShape {
        rows: e.len() / vocab,
        vocab,
    };
    ops::cold_score_host(
        s,
        de.view(),
        da.view(),
        shape,
        ColdParams::new(alpha, beta).unwrap(),
    )
    .unwrap()
    .iter()
    .map(|p| p.token)
    .collect()
}

#[test]
fn alpha_one_beta_zero_is_the_expert_argmax_with_ties_to_the_lowest_index() {
    let s = stream();
    // Row 0: ties at 2 and 5; row 1: all equal; row 2: the max at the very end (a long row, split).
    let vocab = 70_001;
    let mut e = vec![0f32; 3 * vocab];
    let a: Vec<f32> = (0..3 * vocab).map(|i| ((i * 7919) % 101) as f32).collect();
    e[2] = 5.0;
    e[5] = 5.0;
    e[2 * vocab + vocab - 1] = 1.0;
    assert_eq!(
        picks(&s, &e, &a, vocab, 1.0, 0.0),
        [2, vocab as i64, 2 * vocab as i64 + vocab as i64 - 1].map(|t| t % vocab as i64)
    );
}

#[test]
fn extreme_magnitudes_and_a_single_token_vocabulary() {
    let s = stream();
    let e = [1e30f32, -1e30, 3e38, -3e38, 0.0, 1e-30];
    let a = [0f32; 6];
    // Row 0: the huge logit wins; row 1: 3e38 is kept (-3e38 masked) but its score 1.5 x 3e38
    // overflows f32, a score overflow (-2, docs/SEMANTICS.md section 1); row 2: 1e-30 > 0.
    assert_eq!(picks(&s, &e, &a, 2, 0.1, 0.5), [0, -2, 1]);
    // With beta 0 the score is the logit itself: 3e38 wins.
    assert_eq!(picks(&s, &e, &a, 2, 0.1, 0.0), [0, 0, 1]);
    // V = 1: the only token, whatever alpha and beta.
    assert_eq!(
        picks(&s, &[-7.0, 9.0], &[100.0, -100.0], 1, 0.01, 3.0),
        [0, 0]
    );
    // f16 at its range limit (65504) and very negative values.
    let d = s.device();
    let e16: Vec<f16> = [65504.0f32, -65504.0, -65504.0, 65504.0]
        .map(f16::from_f32)
        .to_vec();
    let a16 = vec![f16::ZERO; 4];
    let (de, da) = (
        DeviceBuffer::from_host(d, &e16).unwrap(),
        DeviceBuffer::from_host(d, &a16).unwrap(),
    );
    let p = ops::cold_score_host(
        &s,
        de.view(),
        da.view(),
        ColdShape { rows: 2, vocab: 2 },
        ColdParams::new(0.5, 0.5).unwrap(),
    )
    .unwrap();
    assert_eq!((p[0].token, p[1].token), (0, 1));
}

#[test]
fn non_finite_rows_get_token_minus_one_and_others_are_unaffected() {
    let s = stream();
    let e = [
        1.0f32,
        f32::NAN,
        0.0,
        1.0,
        2.0,
        0.0,
        f32::INFINITY,
        0.0,
        0.0,
    ];
    let a = [0.0f32, 0.0, 0.0, 0.0, 0.0, f32::NEG_INFINITY, 0.0, 0.0, 0.0];
    assert_eq!(picks(&s, &e, &a, 3, 0.1, 0.5), [-1, -1, -1]);
    let e = [1.0f32, f32::NAN, 0.0, 1.0, 2.0, 0.0];
    let a = [0.0f32; 6];
    assert_eq!(picks(&s, &e, &a, 3, 0.1, 0.5), [-1, 1]);
}

/// Issue 14 through the op (f16 and f32 logits, every value finite): beta 1e38 overflows the score
/// of the kept token, and the row is a score overflow (-2), as the oracle says, whose error names
/// beta and the row; a NaN row in the same launch stays the non-finite fault (-1); the same logits
/// with beta 0.5 are answered.
#[test]
fn score_overflow_is_its_own_fault_through_the_op() {
    let s = stream();
    let d = s.device();
    let vocab = 5;
    let e = [1.0f32, 10.0, 2.0, 0.0, 0.0, 1.0, f32::NAN, 0.0, 0.0, 0.0];
    let a = [0.0f32; 10];
    let shape = ColdShape { rows: 2, vocab };
    for beta in [1e38f32, 0.5] {
        let params = ColdParams::new(0.1, beta).unwrap();
        let want = reference::cold_score(&e, &a, shape, params, None).unwrap();
        let e16: Vec<f16> = e.iter().map(|&v| f16::from_f32(v)).collect();
        let a16: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
        let (de, da) = (
            DeviceBuffer::from_host(d, &e).unwrap(),
            DeviceBuffer::from_host(d, &a).unwrap(),
        );
        let got = ops::cold_score_host(&s, de.view(), da.view(), shape, params).unwrap();
        let (de, da) = (
            DeviceBuffer::from_host(d, &e16).unwrap(),
            DeviceBuffer::from_host(d, &a16).unwrap(),
        );
        let got16 = ops::cold_score_host(&s, de.view(), da.view(), shape, params).unwrap();
        for picks in [&got, &got16] {
            let tokens: Vec<i64> = picks.iter().map(|p| p.token).collect();
            assert_eq!(
                tokens,
                want.iter().map(|p| p.token).collect::<Vec<_>>(),
                "beta {beta}"
            );
            assert_eq!(tokens[1], COLD_NON_FINITE);
        }
        let row0 = cold_token(got[0].token, 0, "row 0 logits", params);
        if beta > 1.0 {
            assert_eq!(got[0].token, COLD_SCORE_OVERFLOW);
            assert!(got[0].best_score.is_nan());
            let err = row0.unwrap_err();
            assert!(
                matches!(err, Error::BadParameter { name: "beta", .. }),
                "{err}"
            );
            assert!(err.to_string().contains("row 0"), "{err}");
        } else {
            assert_eq!(row0.unwrap(), 1);
        }
        let err = cold_token(got[1].token, 1, "row 1 logits", params).unwrap_err();
        assert!(matches!(err, Error::NonFinite { .. }), "{err}");
    }
}

#[test]
fn bad_parameters_and_shapes_are_refused_before_launch() {
    let s = stream();
    let d = s.device();
    let e = DeviceBuffer::from_host(d, &[0f32; 6]).unwrap();
    let mut tokens = DeviceBuffer::<i64>::zeroed(d, 2).unwrap();
    let mut best = DeviceBuffer::<f32>::zeroed(d, 2).unwrap();
    let mut run = |alpha: f32, beta: f32, shape: ColdShape| {
        let out = ColdOutputs {
            tokens: tokens.view_mut(),
            best_scores: best.view_mut(),
            scores: None,
        };
        let params = ColdParams::new(alpha, beta)?;
        ops::cold_score(&s, e.view(), e.view(), shape, params, out, None)
    };
    let ok = ColdShape { rows: 2, vocab: 3 };
    for (alpha, beta, what) in [
        (0.0, 0.5, "alpha"),
        (1.5, 0.5, "alpha"),
        (f32::NAN, 0.5, "alpha"),
        (0.1, -1.0, "beta"),
        (0.1, f32::INFINITY, "beta"),
    ] {
        let err = run(alpha, beta, ok).unwrap_err();
        assert!(
            matches!(err, Error::BadParameter { name, .. } if name == what),
            "{alpha} {beta}: {err}"
        );
    }
    assert!(matches!(
        run(0.1, 0.5, ColdShape { rows: 2, vocab: 0 }),
        Err(Error::BadShape { .. })
    ));
    let err = run(0.1, 0.5, ColdShape { rows: 3, vocab: 3 })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expert") && err.contains("9 elements") && err.contains("6"),
        "{err}"
    );
}

#[test]
fn adapter_indices_out_of_range_are_refused_on_the_host_and_reported_from_the_device() {
    let s = stream();
    let d = s.device();
    let shape = ShrinkShape {
        batch: 3,
        hidden_in: 8,
        rank: 2,
        num_loras: 2,
    };
    let x = DeviceBuffer::from_host(d, &[bf16::ONE; 24]).unwrap();
    let w = DeviceBuffer::from_host(d, &[bf16::ONE; 32]).unwrap();
    let mut y = DeviceBuffer::from_host(d, &[-3.0f32; 6]).unwrap();
    // Host-visible: refused before launch, y untouched.
    let err = ops::bgmv_shrink(
        &s,
        ops::BgmvShrink {
            x: x.view(),
            weights: w.view(),
            indices: AdapterIndices::Host(&[0, 2, -1]),
            y: y.view_mut(),
            shape,
            scale: 1.0,
        },
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadIndex {
                row: 1,
                index: 2,
                num_adapters: 2
            }
        ),
        "{err}"
    );
    assert_eq!(y.to_vec().unwrap(), [-3.0; 6]);
    // Device-resident: the kernel skips the row, the next synchronisation names it.
    let idx = DeviceBuffer::from_host(d, &[0i64, -1, 7]).unwrap();
    ops::bgmv_shrink(
        &s,
        ops::BgmvShrink {
            x: x.view(),
            weights: w.view(),
            indices: AdapterIndices::Device(idx.view()),
            y: y.view_mut(),
            shape,
            scale: 1.0,
        },
        None,
    )
    .unwrap();
    let err = s.synchronize().unwrap_err().to_string();
    assert!(
        err.contains("row 2") && err.contains("bgmv_shrink"),
        "{err}"
    );
    let y = y.to_vec().unwrap();
    assert_eq!(&y[..2], [8.0, 8.0], "row 0 computed");
    assert_eq!(
        &y[2..],
        [-3.0; 4],
        "rows 1 (no adapter) and 2 (bad index) untouched"
    );
    // The stream is usable again after the report.
    s.synchronize().unwrap();
}

/// Segments the kernel cannot take are refused before launch, naming what was wrong, and y is left
/// as it was: out of order, overlapping, empty, outside the slice or x's row, too many, a segment rank
/// over 128, and weights of another length than the segments store.
#[test]
fn bad_expand_segments_are_refused_before_launch() {
    let s = stream();
    let d = s.device();
    let seg = |row_start, rows, rank_start, rank| ExpandSegment {
        row_start,
        rows,
        rank_start,
        rank,
    };
    let shape = ExpandShape {
        batch: 1,
        rank: 200,
        hidden_out: 64,
        hidden_full: 64,
        slice_offset: 0,
        num_loras: 1,
    };
    let x = DeviceBuffer::from_host(d, &vec![1.0f32; 200]).unwrap();
    let y0 = vec![bf16::from_f32(3.0); 64];
    // (segments, weight elements (None: what the segments store), what the error names)
    let cases: Vec<(Vec<ExpandSegment>, Option<usize>, &str)> = vec![
        (vec![seg(8, 8, 0, 4), seg(0, 8, 4, 4)], None, "segment 1"),
        (vec![seg(0, 9, 0, 4), seg(8, 8, 4, 4)], None, "segment 1"),
        (vec![seg(0, 0, 0, 4)], None, "segment 0"),
        (vec![seg(0, 8, 0, 0)], None, "segment 0"),
        (vec![seg(60, 8, 0, 4)], None, "segment 0"),
        (vec![seg(0, 8, 198, 4)], None, "segment 0"),
        (vec![seg(0, 1, 0, 1); 5], None, "at most 4"),
        (vec![seg(0, 8, 0, 129)], None, "128"),
        // Weights sized for the dense [1, 64, 200], not the 256 elements two segments store.
        (
            vec![seg(0, 8, 0, 16), seg(8, 8, 16, 16)],
            Some(64 * 200),
            "256",
        ),
    ];
    for (segments, weights, says) in cases {
        let stored: usize = segments.iter().map(|s| s.rows * s.rank).sum();
        let len = weights.unwrap_or(stored).max(1);
        let w = DeviceBuffer::from_host(d, &vec![bf16::ONE; len]).unwrap();
        let mut y = DeviceBuffer::from_host(d, &y0).unwrap();
        let op = ops::BgmvExpand {
            x: x.view(),
            weights: w.view(),
            indices: AdapterIndices::Host(&[0]),
            y: y.view_mut(),
            shape,
            add_inputs: false,
        };
        let err = ops::bgmv_expand_segmented(&s, op, &segments, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{segments:?}: {err}");
        s.synchronize().unwrap();
        assert_eq!(y.to_vec().unwrap(), y0, "{segments:?} wrote y");
    }
}
