//! The shapes of the three kernels' operands, shared by the reference, the tiling and the ops.

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
