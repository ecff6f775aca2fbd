//! The shapes of the three kernels' operands and `cold_score`'s per-row result, shared by the
//! reference, the tiling and the ops, and the one check of operand lengths against them.

use crate::{Error, Result};

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
        expect_len(op, "x", x, &[self.batch, self.rank], self)?;
        let w = [self.num_loras, self.hidden_out, self.rank];
        expect_len(op, "weights", weights, &w, self)?;
        expect_len(op, "indices", indices, &[self.batch], self)?;
        expect_len(op, "y", y, &[self.batch, self.hidden_full], self)
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

/// The CoLD choice for one row: what `ops::cold_score_host` and `reference::cold_score` return, and
/// what `ops::cold_score` writes to its `tokens` and `best_scores` outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColdPick {
    /// The chosen token, or -1 when the row held a non-finite logit.
    pub token: i64,
    /// The winning score (NaN for a non-finite row).
    pub best_score: f32,
}
