//! The shapes of the three kernels' operands, shared by the reference, the tiling and the ops, and
//! the one check of operand lengths against them.

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

fn expect_len(
    op: &str,
    what: &str,
    len: usize,
    expected: usize,
    shape: &dyn std::fmt::Debug,
) -> Result<()> {
    if len == expected {
        Ok(())
    } else {
        Err(Error::shape(
            format!("{op} {what}"),
            format!("{expected} elements for {shape:?}"),
            format!("{len} elements"),
        ))
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
        expect_len(op, "x", x, self.batch * self.hidden_in, self)?;
        expect_len(
            op,
            "weights",
            weights,
            self.num_loras * self.rank * self.hidden_in,
            self,
        )?;
        expect_len(op, "indices", indices, self.batch, self)?;
        expect_len(op, "y", y, self.batch * self.rank, self)
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
        expect_len(op, "x", x, self.batch * self.rank, self)?;
        expect_len(
            op,
            "weights",
            weights,
            self.num_loras * self.hidden_out * self.rank,
            self,
        )?;
        expect_len(op, "indices", indices, self.batch, self)?;
        expect_len(op, "y", y, self.batch * self.hidden_full, self)
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
        expect_len(op, "expert", expert, self.rows * self.vocab, self)?;
        expect_len(op, "amateur", amateur, self.rows * self.vocab, self)?;
        match scores {
            Some(s) => expect_len(op, "scores", s, self.rows * self.vocab, self),
            None => Ok(()),
        }
    }
}
