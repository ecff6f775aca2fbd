//! The oracle: plain, obviously-correct host implementations of the three kernels, accumulating in f64.
//!
//! Semantics are those of docs/SEMANTICS.md sections 1 and 2 (vLLM's LoRA ops for BGMV). Every kernel test
//! compares against these; they are written for clarity, never for speed. Their inputs are checked
//! by the contracts ([`crate::contracts`]) exactly as the ops check theirs; nothing in the library
//! below the CLI's harness imports this module.

use crate::contracts::{
    CheckedIndices, ColdParams, ColdPick, ColdShape, ExpandSegment, ExpandShape, Float,
    ShrinkShape, COLD_NON_FINITE, COLD_SCORE_OVERFLOW,
};
use crate::Result;

/// `y[b] = scale * weights[indices[b]] @ x[b]` for rows with `indices[b] >= 0`; other rows untouched.
pub fn bgmv_shrink<T: Float>(
    x: &[T],
    weights: &[T],
    indices: &[i64],
    y: &mut [f32],
    shape: ShrinkShape,
    scale: f32,
) -> Result<()> {
    let ShrinkShape {
        batch: _,
        hidden_in: hidden,
        num_loras: num_adapters,
        rank,
    } = shape;
    shape.check_lens(
        "bgmv_shrink",
        x.len(),
        weights.len(),
        indices.len(),
        y.len(),
    )?;
    CheckedIndices::new(indices, num_adapters)?;
    for (b, &index) in indices.iter().enumerate() {
        if index < 0 {
            continue;
        }
        let x_row = &x[b * hidden..(b + 1) * hidden];
        for r in 0..rank {
            let w_row = &weights[(index as usize * rank + r) * hidden..][..hidden];
            let dot: f64 = x_row
                .iter()
                .zip(w_row)
                .map(|(a, w)| a.to_f64() * w.to_f64())
                .sum();
            y[b * rank + r] = (f64::from(scale) * dot) as f32;
        }
    }
    Ok(())
}

/// `y[b, off..off + hidden_out] (+)= weights[indices[b]] @ x[b]` for rows with `indices[b] >= 0`;
/// other rows and columns untouched. The sum is formed in f64 and rounded once to `T`.
pub fn bgmv_expand<T: Float>(
    x: &[f32],
    weights: &[T],
    indices: &[i64],
    y: &mut [T],
    shape: ExpandShape,
    add_inputs: bool,
) -> Result<()> {
    let ExpandShape {
        batch: _,
        rank,
        num_loras: num_adapters,
        hidden_out,
        hidden_full,
        slice_offset,
    } = shape;
    shape.check_lens(
        "bgmv_expand",
        x.len(),
        weights.len(),
        indices.len(),
        y.len(),
    )?;
    CheckedIndices::new(indices, num_adapters)?;
    for (b, &index) in indices.iter().enumerate() {
        if index < 0 {
            continue;
        }
        let x_row = &x[b * rank..(b + 1) * rank];
        for o in 0..hidden_out {
            let w_row = &weights[(index as usize * hidden_out + o) * rank..][..rank];
            let dot: f64 = x_row
                .iter()
                .zip(w_row)
                .map(|(&a, w)| f64::from(a) * w.to_f64())
                .sum();
            let out = &mut y[b * hidden_full + slice_offset + o];
            let base = if add_inputs { out.to_f64() } else { 0.0 };
            *out = T::from_f64(base + dot);
        }
    }
    Ok(())
}

/// [`bgmv_expand`] with a block-diagonal weight stored as `segments` (docs/SEMANTICS.md section 2):
/// for each segment, its rows of the slice from its lanes of x, its weights `[num_loras, rows, rank]`
/// after the previous segment's; rows no segment covers untouched. Written as the dense reference on
/// the weight made dense (zeros outside the segments), keeping only the covered rows.
pub fn bgmv_expand_segmented<T: Float>(
    x: &[f32],
    weights: &[T],
    indices: &[i64],
    y: &mut [T],
    shape: ExpandShape,
    segments: &[ExpandSegment],
    add_inputs: bool,
) -> Result<()> {
    shape.check_segmented_lens(
        "bgmv_expand",
        segments,
        x.len(),
        weights.len(),
        indices.len(),
        y.len(),
    )?;
    if segments.is_empty() {
        return bgmv_expand(x, weights, indices, y, shape, add_inputs);
    }
    let dense = dense_expand_weights(weights, shape, segments);
    let mut full = y.to_vec();
    bgmv_expand(x, &dense, indices, &mut full, shape, add_inputs)?;
    for (b, _) in indices.iter().enumerate().filter(|(_, &i)| i >= 0) {
        for seg in segments {
            let from = b * shape.hidden_full + shape.slice_offset + seg.row_start;
            y[from..from + seg.rows].copy_from_slice(&full[from..from + seg.rows]);
        }
    }
    Ok(())
}

/// The dense `[num_loras, hidden_out, rank]` weight that `segments` store (zeros outside them);
/// `weights` must have passed [`ExpandShape::check_segmented_lens`].
pub fn dense_expand_weights<T: Float>(
    weights: &[T],
    shape: ExpandShape,
    segments: &[ExpandSegment],
) -> Vec<T> {
    let (loras, rows, rank) = (shape.num_loras, shape.hidden_out, shape.rank);
    if segments.is_empty() {
        return weights.to_vec();
    }
    let mut dense = vec![T::from_f64(0.0); loras * rows * rank];
    let mut at = 0;
    for seg in segments {
        for lora in 0..loras {
            for r in 0..seg.rows {
                let src = &weights[at + (lora * seg.rows + r) * seg.rank..][..seg.rank];
                let row = (lora * rows + seg.row_start + r) * rank + seg.rank_start;
                dense[row..row + seg.rank].copy_from_slice(src);
            }
        }
        at += loras * seg.rows * seg.rank;
    }
    dense
}

/// The CoLD score of one kept token, exactly (f64): `(1 + beta) e - beta a` (docs/SEMANTICS.md
/// section 1). The one statement of the formula the oracle and the harness's tolerances use.
pub fn cold_score_of(e: f64, a: f64, beta: f64) -> f64 {
    (1.0 + beta) * e - beta * a
}

/// The CoLD score of one kept token as the kernel forms it, in f32: `(1 + beta) e - beta a` with
/// each product and the difference rounded to f32. The oracle ranks tokens by the exact (f64)
/// score; this is only its judge of overflow (docs/SEMANTICS.md section 1, score overflow).
pub fn cold_score_f32(e: f32, a: f32, beta: f32) -> f32 {
    e * (1.0 + beta) - a * beta
}

/// CoLD per row (docs/SEMANTICS.md section 1): mask tokens with `e < max(e) + ln(alpha)`, score the rest
/// `(1 + beta) e - beta a`, pick the highest score (lowest index on ties). A row holding any non-finite
/// logit gets token [`COLD_NON_FINITE`]; a row of finite logits whose winning f32 score
/// ([`cold_score_f32`]) is not finite gets [`COLD_SCORE_OVERFLOW`]; both with best score NaN. When
/// `scores` is given it receives the masked score rows (`-inf` where masked; NaN for a faulted row).
pub fn cold_score<T: Float>(
    expert: &[T],
    amateur: &[T],
    shape: ColdShape,
    params: ColdParams,
    mut scores: Option<&mut [f32]>,
) -> Result<Vec<ColdPick>> {
    let ColdShape { rows, vocab } = shape;
    shape.check_lens(
        "cold_score",
        expert.len(),
        amateur.len(),
        scores.as_deref().map(<[f32]>::len),
    )?;
    let (alpha, beta) = (f64::from(params.alpha()), f64::from(params.beta()));
    let mut picks = Vec::with_capacity(rows);
    for n in 0..rows {
        let e: Vec<f64> = expert[n * vocab..(n + 1) * vocab]
            .iter()
            .map(|v| v.to_f64())
            .collect();
        let a: Vec<f64> = amateur[n * vocab..(n + 1) * vocab]
            .iter()
            .map(|v| v.to_f64())
            .collect();
        let score_row = scores
            .as_deref_mut()
            .map(|s| &mut s[n * vocab..(n + 1) * vocab]);
        let threshold = e.iter().copied().fold(f64::NEG_INFINITY, f64::max) + alpha.ln();
        if let Some(fault) = cold_row_fault(&e, &a, threshold, params.beta()) {
            if let Some(s) = score_row {
                s.fill(f32::NAN);
            }
            picks.push(ColdPick {
                token: fault,
                best_score: f32::NAN,
            });
            continue;
        }
        let mut best = ColdPick {
            token: -1,
            best_score: f32::NEG_INFINITY,
        };
        let mut best_score = f64::NEG_INFINITY;
        let mut row_scores = Vec::with_capacity(vocab);
        for i in 0..vocab {
            let score = if e[i] >= threshold {
                cold_score_of(e[i], a[i], beta)
            } else {
                f64::NEG_INFINITY
            };
            if score > best_score || best.token < 0 {
                best_score = score;
                best = ColdPick {
                    token: i as i64,
                    best_score: score as f32,
                };
            }
            row_scores.push(score as f32);
        }
        if let Some(s) = score_row {
            s.copy_from_slice(&row_scores);
        }
        picks.push(best);
    }
    Ok(picks)
}

/// The fault of one row, if any: [`COLD_NON_FINITE`] for a NaN or infinite logit, else
/// [`COLD_SCORE_OVERFLOW`] when the winning f32 score of the tokens kept by `threshold` is not
/// finite (a kept score of NaN or +inf, or every kept score -inf).
fn cold_row_fault(e: &[f64], a: &[f64], threshold: f64, beta: f32) -> Option<i64> {
    if e.iter().chain(a).any(|v| !v.is_finite()) {
        return Some(COLD_NON_FINITE);
    }
    // Widened from T, so exactly representable in f32.
    let kept = e.iter().zip(a).filter(|(&e, _)| e >= threshold);
    let scores: Vec<f32> = kept
        .map(|(&e, &a)| cold_score_f32(e as f32, a as f32, beta))
        .collect();
    let high = scores.iter().any(|s| s.is_nan() || *s == f32::INFINITY);
    let all_low = scores.iter().all(|s| *s == f32::NEG_INFINITY);
    (high || all_low).then_some(COLD_SCORE_OVERFLOW)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use half::f16;

    #[test]
    fn shrink_hand_case_and_untouched_rows() {
        // x rows [1,2] and [3,4]; adapter 0 = [[1,0],[0,1]], adapter 1 = [[1,1],[2,-1]].
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let w = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, -1.0];
        let mut y = [7.0f32; 4];
        let dims = ShrinkShape {
            batch: 2,
            hidden_in: 2,
            num_loras: 2,
            rank: 2,
        };
        bgmv_shrink(&x, &w, &[1, -1], &mut y, dims, 0.5).unwrap();
        assert_eq!(y, [1.5, 0.0, 7.0, 7.0]);
        let err = bgmv_shrink(&x, &w, &[0, 2], &mut y, dims, 1.0).unwrap_err();
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
    }

    #[test]
    fn expand_hand_case_with_offset_and_add() {
        let x = [1.0f32, -1.0];
        let w = [
            f16::from_f32(2.0),
            f16::from_f32(1.0),
            f16::from_f32(0.5),
            f16::from_f32(0.5),
        ];
        let mut y = [f16::from_f32(1.0); 4];
        let dims = ExpandShape {
            batch: 1,
            rank: 2,
            num_loras: 1,
            hidden_out: 2,
            hidden_full: 4,
            slice_offset: 1,
        };
        bgmv_expand(&x, &w, &[0], &mut y, dims, true).unwrap();
        assert_eq!(y.map(f16::to_f32), [1.0, 2.0, 1.0, 1.0]);
        bgmv_expand(&x, &w, &[0], &mut y, dims, false).unwrap();
        assert_eq!(y.map(f16::to_f32), [1.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn cold_masks_penalises_and_reports_non_finite() {
        // Expert prefers token 0 slightly; amateur loves token 0, so CoLD moves to token 1.
        // Token 2 is far below the alpha threshold and is masked despite the amateur hating it.
        let e = [2.0f32, 1.9, -10.0, f32::NAN, 0.0, 0.0];
        let a = [3.0f32, 0.0, -50.0, 0.0, 0.0, 0.0];
        let mut s = [0.0f32; 6];
        let picks = cold_score(
            &e,
            &a,
            ColdShape { rows: 2, vocab: 3 },
            ColdParams::new(0.1, 0.5).unwrap(),
            Some(&mut s),
        )
        .unwrap();
        assert_eq!(picks[0].token, 1);
        assert!((picks[0].best_score - 2.85).abs() < 1e-6);
        assert_eq!(s[2], f32::NEG_INFINITY);
        assert_eq!(picks[1].token, -1);
        assert!(s[3..].iter().all(|v| v.is_nan()));
        // alpha = 1, beta = 0 is the expert's argmax; ties go to the lowest index.
        let picks = cold_score(
            &[1.0f32, 3.0, 3.0],
            &[0.0f32, 9.0, 0.0],
            ColdShape { rows: 1, vocab: 3 },
            ColdParams::new(1.0, 0.0).unwrap(),
            None,
        );
        assert_eq!(picks.unwrap()[0].token, 1);
        assert!(ColdParams::new(0.0, 0.5).is_err());
        assert!(ColdParams::new(0.5, -1.0).is_err());
    }

    #[test]
    fn cold_score_overflow_is_its_own_fault() {
        // Finite logits, beta 1e38: (1 + beta) * 10 overflows f32 (and so does beta * 10: inf - inf).
        let shape = ColdShape { rows: 2, vocab: 2 };
        let e = [10.0f32, 9.0, 1.0, 0.5];
        let a = [10.0f32, 0.0, f32::INFINITY, 0.0];
        let mut s = [0.0f32; 4];
        let params = ColdParams::new(0.1, 1e38).unwrap();
        let picks = cold_score(&e, &a, shape, params, Some(&mut s)).unwrap();
        assert_eq!(picks[0].token, COLD_SCORE_OVERFLOW);
        assert!(picks[0].best_score.is_nan() && s[..2].iter().all(|v| v.is_nan()));
        // A genuinely non-finite input stays the non-finite fault, whatever beta.
        assert_eq!(picks[1].token, COLD_NON_FINITE);
        // The same logits with a modest beta are answered.
        let params = ColdParams::new(0.1, 0.5).unwrap();
        let picks = cold_score(
            &e[..2],
            &a[..2],
            ColdShape { rows: 1, vocab: 2 },
            params,
            None,
        );
        assert_eq!(picks.unwrap()[0].token, 1);
        // A losing score that overflows to -inf does not change the pick: no fault.
        let params = ColdParams::new(1e-30, 1e38).unwrap();
        let picks = cold_score(
            &[0.0f32, -10.0],
            &[0.0f32, 10.0],
            ColdShape { rows: 1, vocab: 2 },
            params,
            None,
        );
        assert_eq!(picks.unwrap()[0].token, 0);
    }
}
