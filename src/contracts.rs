//! The contracts under the ops: the validated parameter and shape types of the three kernels, each
//! checked once where a value enters and trusted inside.
//!
//! - [`ShrinkShape`], [`ExpandShape`], [`ColdShape`]: operand extents, and the one check of operand
//!   lengths against them (`check_lens`);
//! - [`ColdParams`]: CoLD's `alpha` and `beta`, validated by [`ColdParams::new`] (the only place their
//!   domain is checked, with one message per parameter);
//! - [`CheckedIndices`]: host adapter indices validated against a number of adapters by
//!   [`CheckedIndices::new`] (the only host-side index check, [`Error::BadIndex`]);
//! - [`ColdPick`]: `cold_score`'s per-row result, and [`cold_token`], the one reading of its
//!   fault codes ([`COLD_NON_FINITE`], [`COLD_SCORE_OVERFLOW`]);
//! - [`Float`]: the element types the kernels read and write, widened to f64 by the oracle.
//!
//! This module imports only the error type: the tiling, the ops, the oracle (`reference`) and the
//! harness build on it (docs/ARCHITECTURE.md, layers).

use crate::{Error, Result};
use half::{bf16, f16};

/// A floating-point element the kernels read or write.
pub trait Float: Copy + Send + Sync + 'static {
    /// Widens to f64 exactly.
    fn to_f64(self) -> f64;
    /// Rounds from f64 to this type (round to nearest even).
    fn from_f64(value: f64) -> Self;
    /// Rounds from f32 (round to nearest even): the same value as `from_f64` of the widened f32,
    /// which is exact, so one rounding either way; the types here override it with a direct
    /// conversion for the host's per-step loops.
    fn from_f32(value: f32) -> Self {
        Self::from_f64(f64::from(value))
    }
    /// Widens to f32, where this type is at most as wide (exactly); f32 itself is returned as is.
    fn to_f32(self) -> f32 {
        self.to_f64() as f32
    }
}

impl Float for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(value: f64) -> Self {
        value as f32
    }
    fn from_f32(value: f32) -> Self {
        value
    }
    fn to_f32(self) -> f32 {
        self
    }
}

/// `value` rounded to f32 toward zero, with the lowest mantissa bit set when that was inexact (round to
/// odd): rounding this f32 to nearest even at a precision at least two bits lower (f16, bf16) gives the
/// same result as rounding `value` directly, with one rounding. Needed because half 2.7's f64 -> f16 /
/// bf16 conversions drop the f64's low 32 mantissa bits before rounding (its `src/bfloat/convert.rs`,
/// `f64_to_bf16`: "truncating the last 32-bits of mantissa"), which misrounds values just above a
/// halfway point.
fn f64_to_f32_round_to_odd(value: f64) -> f32 {
    let nearest = value as f32;
    if value.is_nan() || f64::from(nearest) == value {
        return nearest;
    }
    // Inexact: step back toward zero if rounding went away from it (same sign, so the bits do).
    let toward_zero = if f64::from(nearest).abs() > value.abs() {
        f32::from_bits(nearest.to_bits() - 1)
    } else {
        nearest
    };
    f32::from_bits(toward_zero.to_bits() | 1)
}

impl Float for f16 {
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn from_f64(value: f64) -> Self {
        f16::from_f32(f64_to_f32_round_to_odd(value))
    }
    fn from_f32(value: f32) -> Self {
        f16::from_f32(value)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

impl Float for bf16 {
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    fn from_f64(value: f64) -> Self {
        bf16::from_f32(f64_to_f32_round_to_odd(value))
    }
    fn from_f32(value: f32) -> Self {
        bf16::from_f32(value)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

/// `bgmv_shrink`: `x [batch, hidden_in]`, `A [num_loras, rank, hidden_in]`, `indices [batch]`,
/// `y [batch, rank]` (f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShrinkShape {
    /// Rows.
    pub batch: usize,
    /// Input width.
    pub hidden_in: usize,
    /// LoRA rank (rows of each adapter's A).
    pub rank: usize,
    /// Adapters stacked in A.
    pub num_loras: usize,
}

/// `bgmv_expand`: `x [batch, rank]` (f32), `Bw [num_loras, hidden_out, rank]`, `indices [batch]`,
/// `y [batch, hidden_full]`, written at columns `slice_offset..slice_offset + hidden_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpandShape {
    /// Rows.
    pub batch: usize,
    /// LoRA rank.
    pub rank: usize,
    /// Output width of this slice.
    pub hidden_out: usize,
    /// Full width of a row of `y`.
    pub hidden_full: usize,
    /// First column of `y` this slice writes.
    pub slice_offset: usize,
    /// Adapters stacked in Bw.
    pub num_loras: usize,
}

/// Most segments a block-diagonal `bgmv_expand` weight may have (`kernels/tiling.h`,
/// `COLD_EXPAND_MAX_SEGMENTS`): q, k and v of a fused projection need three.
pub const MAX_EXPAND_SEGMENTS: usize = 4;

/// One diagonal block of a block-diagonal `bgmv_expand` weight, stored without its zeros
/// (docs/SEMANTICS.md, "bgmv_expand"): output rows `row_start..row_start + rows` of the slice are
/// computed from x's lanes `rank_start..rank_start + rank`, with weights `[num_loras, rows, rank]`
/// stored right after the previous segment's. Rows no segment covers are not written.
///
/// A fused q/k/v projection with ranks 16, 8 and 16 and widths 576, 192, 192 is three segments over
/// an x row of 40 lanes (the shrink of the stacked A matrices):
///
/// ```
/// use ascend_cold::contracts::{ExpandSegment, ExpandShape};
/// let shape = ExpandShape { batch: 1, rank: 40, hidden_out: 960, hidden_full: 960, slice_offset: 0, num_loras: 2 };
/// let segments = [
///     ExpandSegment { row_start: 0, rows: 576, rank_start: 0, rank: 16 },
///     ExpandSegment { row_start: 576, rows: 192, rank_start: 16, rank: 8 },
///     ExpandSegment { row_start: 768, rows: 192, rank_start: 24, rank: 16 },
/// ];
/// let weights = 2 * (576 * 16 + 192 * 8 + 192 * 16);
/// shape.check_segmented_lens("bgmv_expand", &segments, 40, weights, 1, 960)?;
/// # Ok::<(), ascend_cold::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpandSegment {
    /// First output row of the slice the segment writes.
    pub row_start: usize,
    /// Output rows it writes.
    pub rows: usize,
    /// First lane of x's row it reads.
    pub rank_start: usize,
    /// Lanes of x's row it reads (its rank).
    pub rank: usize,
}

/// `cold_score`: expert and amateur logits `[rows, vocab]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdShape {
    /// Rows (requests).
    pub rows: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

/// Checks that `len` equals the product of `dims` (the operand's extents, each named in the error).
fn expect_len(
    op: &str,
    what: &str,
    len: usize,
    dims: &[usize],
    shape: &dyn std::fmt::Debug,
) -> Result<()> {
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match expected {
        Some(expected) if expected == len => Ok(()),
        Some(expected) => Err(Error::shape(
            format!("{op} {what}"),
            format!("{expected} elements for {shape:?}"),
            format!("{len} elements"),
        )),
        None => Err(Error::shape(
            format!("{op} {what}"),
            format!("a shape whose element count fits in usize ({shape:?} overflows)"),
            format!("{len} elements"),
        )),
    }
}

/// Refuses an extent of zero that would make an operand empty without saying so ("expected 0
/// elements"): a zero rank or width is a caller's mistake, not an empty batch.
fn expect_nonzero(op: &str, dims: &[(&str, usize)]) -> Result<()> {
    match dims.iter().find(|(_, d)| *d == 0) {
        Some((name, _)) => Err(Error::shape(format!("{op} {name}"), "at least 1", 0)),
        None => Ok(()),
    }
}

impl ShrinkShape {
    /// Checks operand lengths (`x`, `weights`, `indices`, `y`) against the shape; `op` names the
    /// caller in the error.
    pub fn check_lens(
        &self,
        op: &str,
        x: usize,
        weights: usize,
        indices: usize,
        y: usize,
    ) -> Result<()> {
        expect_nonzero(op, &[("hidden_in", self.hidden_in), ("rank", self.rank)])?;
        expect_len(op, "x", x, &[self.batch, self.hidden_in], self)?;
        let w = [self.num_loras, self.rank, self.hidden_in];
        expect_len(op, "weights", weights, &w, self)?;
        expect_len(op, "indices", indices, &[self.batch], self)?;
        expect_len(op, "y", y, &[self.batch, self.rank], self)
    }
}

impl ExpandShape {
    /// Checks that the slice fits in a row of `y` and the operand lengths (`x`, `weights`, `indices`,
    /// `y`) against the shape; `op` names the caller in the error.
    pub fn check_lens(
        &self,
        op: &str,
        x: usize,
        weights: usize,
        indices: usize,
        y: usize,
    ) -> Result<()> {
        self.check_segmented_lens(op, &[], x, weights, indices, y)
    }

    /// As [`Self::check_lens`] for a weight stored as `segments` ([`ExpandSegment`]; none: dense
    /// `[num_loras, hidden_out, rank]`). The segments must be at most [`MAX_EXPAND_SEGMENTS`], each
    /// non-empty and inside the slice and x's row, in order of rows and not overlapping.
    pub fn check_segmented_lens(
        &self,
        op: &str,
        segments: &[ExpandSegment],
        x: usize,
        weights: usize,
        indices: usize,
        y: usize,
    ) -> Result<()> {
        if self
            .slice_offset
            .checked_add(self.hidden_out)
            .is_none_or(|end| end > self.hidden_full)
        {
            return Err(Error::parameter(
                "slice_offset",
                format!(
                    "slice_offset + hidden_out <= hidden_full ({})",
                    self.hidden_full
                ),
                format!("{} + {}", self.slice_offset, self.hidden_out),
            ));
        }
        expect_nonzero(op, &[("rank", self.rank), ("hidden_out", self.hidden_out)])?;
        let per_lora = self.check_segments(op, segments)?;
        expect_len(op, "x", x, &[self.batch, self.rank], self)?;
        expect_len(op, "weights", weights, &[self.num_loras, per_lora], self)?;
        expect_len(op, "indices", indices, &[self.batch], self)?;
        expect_len(op, "y", y, &[self.batch, self.hidden_full], self)
    }

    /// Checks `segments` against the shape (as [`Self::check_segmented_lens`]); returns the weight
    /// elements per adapter.
    pub fn check_segments(&self, op: &str, segments: &[ExpandSegment]) -> Result<usize> {
        let overflow = || {
            Error::shape(
                format!("{op} weights"),
                "a size that fits in memory",
                "overflow",
            )
        };
        if segments.is_empty() {
            return self.hidden_out.checked_mul(self.rank).ok_or_else(overflow);
        }
        if segments.len() > MAX_EXPAND_SEGMENTS {
            return Err(Error::parameter(
                "segments",
                format!("at most {MAX_EXPAND_SEGMENTS}"),
                segments.len(),
            ));
        }
        let mut next_row = 0;
        let mut per_lora = 0usize;
        for (j, seg) in segments.iter().enumerate() {
            let rows_end = seg.row_start.checked_add(seg.rows);
            let lanes_end = seg.rank_start.checked_add(seg.rank);
            let fits = seg.rows > 0
                && seg.rank > 0
                && seg.row_start >= next_row
                && rows_end.is_some_and(|e| e <= self.hidden_out)
                && lanes_end.is_some_and(|e| e <= self.rank);
            if !fits {
                return Err(Error::parameter(
                    "segments",
                    format!(
                        "rows from {next_row} on within hidden_out {} and lanes within rank {}, \
                         both non-empty",
                        self.hidden_out, self.rank
                    ),
                    format!("segment {j}: {seg:?}"),
                ));
            }
            next_row = seg.row_start + seg.rows;
            per_lora = seg
                .rows
                .checked_mul(seg.rank)
                .and_then(|n| per_lora.checked_add(n))
                .ok_or_else(overflow)?;
        }
        Ok(per_lora)
    }
}

impl ColdShape {
    /// Checks the vocabulary is not empty and the logits' lengths; `scores` when a score row is wanted.
    pub fn check_lens(
        &self,
        op: &str,
        expert: usize,
        amateur: usize,
        scores: Option<usize>,
    ) -> Result<()> {
        if self.vocab == 0 {
            return Err(Error::shape(format!("{op} vocab"), "at least one token", 0));
        }
        let logits = [self.rows, self.vocab];
        expect_len(op, "expert", expert, &logits, self)?;
        expect_len(op, "amateur", amateur, &logits, self)?;
        match scores {
            Some(s) => expect_len(op, "scores", s, &logits, self),
            None => Ok(()),
        }
    }
}

/// `cold_score`'s token for a row holding a NaN or infinite logit (docs/SEMANTICS.md section 1).
pub const COLD_NON_FINITE: i64 = -1;
/// `cold_score`'s token for a row of finite logits whose winning score is not finite in f32: `beta`
/// is too large for these logits (docs/SEMANTICS.md section 1, score overflow).
pub const COLD_SCORE_OVERFLOW: i64 = -2;

/// The CoLD choice for one row: what `ops::cold_score_host` and `reference::cold_score` return, and
/// what `ops::cold_score` writes to its `tokens` and `best_scores` outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColdPick {
    /// The chosen token, or a fault code: [`COLD_NON_FINITE`], [`COLD_SCORE_OVERFLOW`].
    pub token: i64,
    /// The winning score (NaN for a faulted row).
    pub best_score: f32,
}

/// The token `cold_score` gave row `row`, or the row's fault as an error: [`Error::NonFinite`] for a non-finite
/// logit, [`Error::BadParameter`] naming `beta` for a score overflow. `what` names the logits
/// (e.g. "logits of request 3") in the non-finite error.
///
/// # Errors
/// As above, and [`Error::KernelFault`] for any other negative token (a kernel that broke its
/// contract).
pub fn cold_token(token: i64, row: usize, what: &str, params: ColdParams) -> Result<u32> {
    match token {
        COLD_NON_FINITE => Err(Error::NonFinite {
            what: what.to_string(),
            rows: vec![row],
        }),
        COLD_SCORE_OVERFLOW => Err(Error::parameter(
            "beta",
            format!(
                "a value small enough that the CoLD score (1 + beta) e - beta a of row {row} \
                     stays finite in f32 for its finite logits ({what})"
            ),
            params.beta(),
        )),
        t => u32::try_from(t).map_err(|_| Error::KernelFault {
            kernel: "cold_score".into(),
            detail: format!("row {row}: token {t} is neither a token nor a fault code"),
        }),
    }
}

/// CoLD's parameters, validated: `alpha` in (0, 1] (the expert's mask, `e >= max(e) + ln(alpha)`),
/// `beta` finite and >= 0 (the amateur's penalty). [`ColdParams::new`] is the one check; the ops,
/// the tiling and the oracle take the validated value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColdParams {
    alpha: f32,
    beta: f32,
}

impl ColdParams {
    /// Checks and wraps `alpha` and `beta`.
    ///
    /// # Errors
    /// [`Error::BadParameter`] naming `alpha` (outside (0, 1]) or `beta` (negative, NaN or infinite).
    pub fn new(alpha: f32, beta: f32) -> Result<Self> {
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(Error::parameter("alpha", "a value in (0, 1]", alpha));
        }
        if !(beta.is_finite() && beta >= 0.0) {
            return Err(Error::parameter("beta", "a finite value >= 0", beta));
        }
        Ok(ColdParams { alpha, beta })
    }

    /// The mask parameter, in (0, 1].
    pub fn alpha(self) -> f32 {
        self.alpha
    }

    /// The penalty, finite and >= 0.
    pub fn beta(self) -> f32 {
        self.beta
    }

    /// `ln(alpha)` in f32, as the kernel's tiling carries it: finite and <= 0.
    pub fn ln_alpha(self) -> f32 {
        self.alpha.ln()
    }
}

/// Host adapter indices checked against a number of adapters: every index is negative ("no
/// adapter") or below `num_adapters`. [`CheckedIndices::new`] is the one host-side check; an op
/// given checked indices for at most its number of adapters does not scan them again.
#[derive(Debug, Clone, Copy)]
pub struct CheckedIndices<'a> {
    indices: &'a [i64],
    num_adapters: usize,
}

impl<'a> CheckedIndices<'a> {
    /// Checks every index is `< num_adapters` or negative.
    ///
    /// # Errors
    /// [`Error::BadIndex`] naming the first offending row.
    pub fn new(indices: &'a [i64], num_adapters: usize) -> Result<Self> {
        match indices
            .iter()
            .position(|&i| i >= 0 && i as u64 >= num_adapters as u64)
        {
            Some(row) => Err(Error::BadIndex {
                row,
                index: indices[row],
                num_adapters,
            }),
            None => Ok(CheckedIndices {
                indices,
                num_adapters,
            }),
        }
    }

    /// Indices the crate has already checked against `num_adapters` (a subset of a checked list,
    /// such as the rows of a batch that have an adapter): no scan.
    pub(crate) fn already_checked(indices: &'a [i64], num_adapters: usize) -> Self {
        debug_assert!(CheckedIndices::new(indices, num_adapters).is_ok());
        CheckedIndices {
            indices,
            num_adapters,
        }
    }

    /// The indices.
    pub fn as_slice(self) -> &'a [i64] {
        self.indices
    }

    /// The number of adapters they were checked against (valid for any set at least this large).
    pub fn num_adapters(self) -> usize {
        self.num_adapters
    }

    /// Rows.
    pub fn len(self) -> usize {
        self.indices.len()
    }

    /// No rows.
    pub fn is_empty(self) -> bool {
        self.indices.is_empty()
    }

    /// These indices for a set of `num_adapters` adapters: the same value when they were checked
    /// against at most that many (no rescan), else checked again.
    ///
    /// # Errors
    /// [`Error::BadIndex`] as [`CheckedIndices::new`].
    pub fn for_adapters(self, num_adapters: usize) -> Result<Self> {
        if self.num_adapters <= num_adapters {
            Ok(CheckedIndices {
                num_adapters,
                ..self
            })
        } else {
            CheckedIndices::new(self.indices, num_adapters)
        }
    }
}

#[cfg(test)]
mod float_tests {
    use super::*;

    /// `from_f64` rounds once to nearest even: against an exact reference built from the f64's bits,
    /// on values just off the halfway points of f16 and bf16 (the low f64 bits decide), ties, and
    /// random f64 across the ranges, including past f32's range and subnormals.
    #[test]
    fn from_f64_rounds_once_to_nearest_even() {
        // Exact RNE of a finite f64 to `mant` mantissa bits with exponent range [emin, emax] (IEEE).
        fn rne(v: f64, mant: u32, emin: i32, emax: i32) -> f64 {
            if v == 0.0 || !v.is_finite() {
                return v;
            }
            let a = v.abs();
            // The binade from the bits (log2 could be off by one next to a power of two).
            let e = ((a.to_bits() >> 52) as i32 - 1023).max(emin);
            let ulp = 2f64.powi(e - mant as i32);
            let q = a / ulp; // exact: a power-of-two scaling
            let (fl, frac) = (q.floor(), q - q.floor());
            let r = if frac > 0.5 || (frac == 0.5 && fl % 2.0 != 0.0) {
                fl + 1.0
            } else {
                fl
            };
            let out = r * ulp;
            let max = (2.0 - 2f64.powi(-(mant as i32))) * 2f64.powi(emax);
            if out > max {
                f64::INFINITY.copysign(v)
            } else {
                out.copysign(v)
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..300_000u64 {
            let v = match i % 3 {
                // Halfway points of bf16 / f16 nudged by a few f64 ulps either way.
                0 => {
                    let base =
                        f64::from(f32::from_bits((next() as u32 & 0x8fff_0000) | 0x0000_8000));
                    f64::from_bits(base.to_bits().wrapping_add(next() % 7).wrapping_sub(3))
                }
                1 => {
                    let base =
                        f64::from(f32::from_bits((next() as u32 & 0x8fff_e000) | 0x0000_1000));
                    f64::from_bits(base.to_bits().wrapping_add(next() % 7).wrapping_sub(3))
                }
                _ => f64::from_bits(next()),
            };
            if !v.is_finite() {
                continue;
            }
            let want_bf = rne(v, 7, -126, 127);
            let want_h = rne(v, 10, -14, 15);
            assert_eq!(
                <bf16 as Float>::from_f64(v).to_f64(),
                want_bf,
                "bf16 of {v:e} ({:#x})",
                v.to_bits()
            );
            assert_eq!(
                <f16 as Float>::from_f64(v).to_f64(),
                want_h,
                "f16 of {v:e} ({:#x})",
                v.to_bits()
            );
        }
    }

    /// `from_f32` is `from_f64` of the widened value, and `to_f32` the exact widening, on every kind of
    /// f32: normal, subnormal, ties, overflow, infinities, NaN (compared by class for NaN).
    #[test]
    fn direct_f32_conversions_agree_with_the_f64_path() {
        fn check<T: Float + PartialEq + std::fmt::Debug>(bits: u32) {
            let v = f32::from_bits(bits);
            let (direct, via) = (T::from_f32(v), T::from_f64(f64::from(v)));
            if v.is_nan() {
                assert!(
                    direct.to_f64().is_nan() && via.to_f64().is_nan(),
                    "{bits:#x}"
                );
            } else {
                assert_eq!(direct, via, "{bits:#x}");
                assert_eq!(f64::from(direct.to_f32()), direct.to_f64(), "{bits:#x}");
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let specials = [
            0u32,
            0x8000_0000,
            0x0000_0001,
            0x7f7f_ffff,
            0x7f80_0000,
            0xff80_0000,
        ];
        let ties = (0..1u32 << 16).map(|m| 0x3f80_0000 | (m << 7) | 0x40); // bf16 halfway cases
        let f16_ties = (0..1u32 << 10).map(|m| 0x3f80_0000 | (m << 13) | 0x1000); // f16 halfway cases
        let random = std::iter::repeat_with(|| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u32
        })
        .take(200_000);
        for bits in specials
            .into_iter()
            .chain(ties)
            .chain(f16_ties)
            .chain(random)
        {
            check::<f16>(bits);
            check::<bf16>(bits);
            check::<f32>(bits);
        }
    }
}
