//! The oracle: plain, obviously-correct host implementations of the three kernels, accumulating in f64.
//!
//! Semantics are those of docs/SEMANTICS.md sections 1 and 2 (vLLM's LoRA ops for BGMV). Every kernel test
//! compares against these; they are written for clarity, never for speed.

pub use crate::shapes::{ColdPick, ColdShape, ExpandShape, ShrinkShape};
use crate::{Error, Result};
use half::{bf16, f16};

/// A floating-point element the kernels read or write.
pub trait Float: Copy + Send + Sync + 'static {
    /// Widens to f64 exactly.
    fn to_f64(self) -> f64;
    /// Rounds from f64 to this type (round to nearest even).
    fn from_f64(value: f64) -> Self;
}

impl Float for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(value: f64) -> Self {
        value as f32
    }
}

impl Float for f16 {
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn from_f64(value: f64) -> Self {
        f16::from_f64(value)
    }
}

impl Float for bf16 {
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    fn from_f64(value: f64) -> Self {
        bf16::from_f64(value)
    }
}

/// Checks every index is -1..num_adapters (any negative index means "no adapter").
pub(crate) fn check_indices(indices: &[i64], num_adapters: usize) -> Result<()> {
    match indices
        .iter()
        .position(|&i| i >= 0 && i as u64 >= num_adapters as u64)
    {
        Some(row) => Err(Error::BadIndex {
            row,
            index: indices[row],
            num_adapters,
        }),
        None => Ok(()),
    }
}

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
    check_indices(indices, num_adapters)?;
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
    check_indices(indices, num_adapters)?;
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

/// Checks CoLD's parameters: `alpha` in (0, 1], `beta` finite and >= 0.
pub fn check_cold_params(alpha: f32, beta: f32) -> Result<()> {
    if !(alpha > 0.0 && alpha <= 1.0) {
        return Err(Error::parameter("alpha", "a value in (0, 1]", alpha));
    }
    if !(beta.is_finite() && beta >= 0.0) {
        return Err(Error::parameter("beta", "a finite value >= 0", beta));
    }
    Ok(())
}

/// CoLD per row (docs/SEMANTICS.md section 1): mask tokens with `e < max(e) + ln(alpha)`, score the rest
/// `(1 + beta) e - beta a`, pick the highest score (lowest index on ties). A row holding any non-finite
/// logit gets token -1. When `scores` is given it receives the masked score rows (`-inf` where masked;
/// NaN for a non-finite row).
pub fn cold_score<T: Float>(
    expert: &[T],
    amateur: &[T],
    shape: ColdShape,
    alpha: f32,
    beta: f32,
    mut scores: Option<&mut [f32]>,
) -> Result<Vec<ColdPick>> {
    let ColdShape { rows, vocab } = shape;
    check_cold_params(alpha, beta)?;
    shape.check_lens(
        "cold_score",
        expert.len(),
        amateur.len(),
        scores.as_deref().map(<[f32]>::len),
    )?;
    let (alpha, beta) = (f64::from(alpha), f64::from(beta));
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
        if e.iter().chain(&a).any(|v| !v.is_finite()) {
            if let Some(s) = score_row {
                s.fill(f32::NAN);
            }
            picks.push(ColdPick {
                token: -1,
                best_score: f32::NAN,
            });
            continue;
        }
        let threshold = e.iter().copied().fold(f64::NEG_INFINITY, f64::max) + alpha.ln();
        let mut best = ColdPick {
            token: -1,
            best_score: f32::NEG_INFINITY,
        };
        let mut best_score = f64::NEG_INFINITY;
        let mut row_scores = Vec::with_capacity(vocab);
        for i in 0..vocab {
            let score = if e[i] >= threshold {
                (1.0 + beta) * e[i] - beta * a[i]
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

#[cfg(test)]
mod tests {
    use super::*;

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
            0.1,
            0.5,
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
            1.0,
            0.0,
            None,
        );
        assert_eq!(picks.unwrap()[0].token, 1);
        assert!(cold_score(&e, &a, ColdShape { rows: 2, vocab: 3 }, 0.0, 0.5, None).is_err());
        assert!(cold_score(&e, &a, ColdShape { rows: 2, vocab: 3 }, 0.5, -1.0, None).is_err());
    }
}
