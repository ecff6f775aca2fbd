//! `cold_score`: CoLD's alpha-mask, beta-penalty and argmax over the vocabulary, fused.

use super::bgmv::status_view;
use super::{kernel, scratch, LogitFloat};
use crate::contracts::{ColdParams, ColdPick, ColdShape};
use crate::memory::{DeviceBuffer, DeviceView, DeviceViewMut};
use crate::module::KernelArg;
use crate::tiling::ColdScoreTiling;
use crate::{Error, Result, Stream};

/// Where `cold_score` writes: per row the token (or a fault code:
/// [`COLD_NON_FINITE`](crate::contracts::COLD_NON_FINITE) for a row holding a non-finite logit,
/// [`COLD_SCORE_OVERFLOW`](crate::contracts::COLD_SCORE_OVERFLOW) for a row whose winning score
/// overflows f32) and its score, and optionally the masked score rows (`-inf` where masked).
/// [`cold_token`](crate::contracts::cold_token) turns a row's token into a token or its error.
pub struct ColdOutputs<'a> {
    /// `[rows]` i64.
    pub tokens: DeviceViewMut<'a, i64>,
    /// `[rows]` f32 (NaN for a faulted row).
    pub best_scores: DeviceViewMut<'a, f32>,
    /// `[rows, vocab]` f32, when wanted (for sampling or top-k on the scores). The row of a faulted
    /// token holds whatever the fused pass computed before the fault was known (NaN where a
    /// non-finite logit entered); only its token is meaningful.
    pub scores: Option<DeviceViewMut<'a, f32>>,
}

/// CoLD per row (docs/SEMANTICS.md section 1): mask tokens with `e < max(e) + ln(alpha)`, score the rest
/// `(1 + beta) e - beta a`, pick the highest score, lowest index on ties. `expert` and `amateur` are
/// logits `[rows, vocab]` in f16, bf16 or f32. A row holding a NaN or infinity gets token `-1`, a row
/// whose winning score overflows f32 (a `beta` too large for its logits) token `-2`: both are
/// reported, never turned into a confident token. Queued on `stream`.
///
/// ```
/// use ascend_cold::contracts::{ColdParams, ColdShape};
/// use ascend_cold::{ops, Device, DeviceBuffer, Stream};
/// let device = Device::emulator()?;
/// let stream = Stream::new(&device)?;
/// // The expert slightly prefers token 0, the amateur loves it: CoLD picks token 1.
/// let e = DeviceBuffer::from_host(&device, &[2.0f32, 1.9, -10.0])?;
/// let a = DeviceBuffer::from_host(&device, &[3.0f32, 0.0, -50.0])?;
/// let params = ColdParams::new(0.1, 0.5)?;
/// let picks = ops::cold_score_host(&stream, e.view(), a.view(), ColdShape { rows: 1, vocab: 3 }, params)?;
/// assert_eq!(picks[0].token, 1);
/// # Ok::<(), ascend_cold::Error>(())
/// ```
///
/// # Errors
/// Before launch: lengths that do not match `shape`, an empty vocabulary, a tiling the device cannot
/// run or made for other parameters, memory of another device.
pub fn cold_score<T: LogitFloat>(
    stream: &Stream,
    expert: DeviceView<'_, T>,
    amateur: DeviceView<'_, T>,
    shape: ColdShape,
    params: ColdParams,
    out: ColdOutputs<'_>,
    tiling: Option<&ColdScoreTiling>,
) -> Result<()> {
    shape.check_lens(
        "cold_score",
        expert.len(),
        amateur.len(),
        out.scores.as_ref().map(|s| s.len()),
    )?;
    let dense = RowStrides::dense(shape.vocab);
    cold_score_strided(stream, expert, amateur, shape, dense, params, out, tiling)
}

/// Where the rows of the two logits operands lie: row `i` of the expert starts `i * expert`
/// elements into its view, row `i` of the amateur `i * amateur` into its view. Both are at least the
/// vocabulary (rows never overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowStrides {
    /// Elements from one expert row to the next.
    pub expert: usize,
    /// Elements from one amateur row to the next.
    pub amateur: usize,
}

impl RowStrides {
    /// Rows back to back (`[rows, vocab]` matrices).
    pub fn dense(vocab: usize) -> Self {
        RowStrides {
            expert: vocab,
            amateur: vocab,
        }
    }

    /// Expert and amateur rows interleaved in one `[2 * rows, vocab]` matrix (expert 0, amateur 0,
    /// expert 1, ...), as a decoder that batches each request's expert and amateur row together
    /// produces them: view the matrix from row 0 as the expert and from row 1 as the amateur.
    pub fn interleaved(vocab: usize) -> Self {
        RowStrides {
            expert: 2 * vocab,
            amateur: 2 * vocab,
        }
    }
}

/// [`cold_score`] over logits rows that need not be back to back: each operand's rows lie `strides`
/// apart, so interleaved expert/amateur rows of one matrix are scored in one launch with no copy.
/// Each view must hold at least `(rows - 1) * stride + vocab` elements; the outputs are dense.
///
/// ```
/// use ascend_cold::ops::{self, ColdOutputs, RowStrides};
/// use ascend_cold::contracts::{ColdParams, ColdShape};
/// use ascend_cold::{Device, DeviceBuffer, Stream};
/// let device = Device::emulator()?;
/// let stream = Stream::new(&device)?;
/// // Two requests, each an expert row then an amateur row of one [4, 3] logits matrix.
/// let logits = DeviceBuffer::from_host(&device, &[
///     2.0f32, 1.9, -10.0,   3.0, 0.0, -50.0,   // request 0: expert, amateur
///     0.0, 1.0, 2.0,        0.0, 0.0, 0.0,     // request 1: expert, amateur
/// ])?;
/// let shape = ColdShape { rows: 2, vocab: 3 };
/// let mut tokens = DeviceBuffer::<i64>::zeroed(&device, 2)?;
/// let mut best = DeviceBuffer::<f32>::zeroed(&device, 2)?;
/// let out = ColdOutputs { tokens: tokens.view_mut(), best_scores: best.view_mut(), scores: None };
/// ops::cold_score_strided(&stream, logits.view(), logits.slice(3..)?, shape,
///     RowStrides::interleaved(3), ColdParams::new(0.1, 0.5)?, out, None)?;
/// assert_eq!(tokens.to_vec()?, [1, 2]);
/// # Ok::<(), ascend_cold::Error>(())
/// ```
///
/// # Errors
/// As [`cold_score`], and a stride below the vocabulary or a view shorter than its rows span.
#[allow(clippy::too_many_arguments)] // logits, shape, layout, parameters, outputs, tiling
pub fn cold_score_strided<T: LogitFloat>(
    stream: &Stream,
    expert: DeviceView<'_, T>,
    amateur: DeviceView<'_, T>,
    shape: ColdShape,
    strides: RowStrides,
    params: ColdParams,
    out: ColdOutputs<'_>,
    tiling: Option<&ColdScoreTiling>,
) -> Result<()> {
    let ColdShape { rows, vocab } = shape;
    if vocab == 0 {
        return Err(Error::shape("cold_score vocab", "at least one token", 0));
    }
    expect_span(
        "cold_score expert row stride",
        "expert",
        expert.len(),
        strides.expert,
        shape,
    )?;
    expect_span(
        "cold_score amateur row stride",
        "amateur",
        amateur.len(),
        strides.amateur,
        shape,
    )?;
    if let Some(scores) = &out.scores {
        let dense = rows.checked_mul(vocab);
        if dense != Some(scores.len()) {
            return Err(Error::shape(
                "cold_score scores",
                format!("{rows} x {vocab} elements (dense rows)"),
                format!("{} elements", scores.len()),
            ));
        }
    }
    expect_rows(out.tokens.len(), out.best_scores.len(), rows)?;
    if rows == 0 {
        return Ok(());
    }
    let (score_kernel, profile) = kernel(stream, T::SCORE_KERNEL)?;
    let write_scores = out.scores.is_some();
    let chosen = match tiling {
        Some(t) => *t,
        None => ColdScoreTiling::choose(rows, vocab, T::DTYPE, params, write_scores, &profile)?,
    };
    let tiling = ColdScoreTiling {
        ln_alpha: params.ln_alpha(),
        beta: params.beta(),
        write_scores: write_scores.into(),
        e_row_stride: stride_u32("cold_score expert row stride", strides.expert)?,
        a_row_stride: stride_u32("cold_score amateur row stride", strides.amateur)?,
        ..chosen
    };
    tiling.validate(rows, vocab, T::DTYPE, params, &profile)?;
    let status = status_view(stream, rows)?;
    let workspace = scratch::region(stream, "cold_workspace", tiling.workspace_bytes())?;
    let tiling_dev = scratch::constant(stream, bytemuck::bytes_of(&tiling))?;
    // Without a score row the kernel never touches that argument; any valid address will do.
    let scores: &dyn KernelArg = match &out.scores {
        Some(s) => s,
        None => &status,
    };
    if tiling.splits > 1 {
        // Three launches in stream order (kernels/cold_score.cpp): per-chunk local maxima and winners,
        // then scoring against the row's threshold, then the per-row reduction of the chunk winners.
        let (local, _) = kernel(stream, T::LOCAL_KERNEL)?;
        let args: [&dyn KernelArg; 4] = [&expert, &amateur, &workspace, &tiling_dev];
        // SAFETY: e and a hold `rows` rows of `vocab` T at their strides (checked), the workspace holds
        // workspace_bytes(), the tiling is valid for the device.
        unsafe { local.launch(stream, tiling.block_num, &args) }?;
    }
    let args: [&dyn KernelArg; 8] = [
        &expert,
        &amateur,
        &out.tokens,
        &out.best_scores,
        scores,
        &status,
        &workspace,
        &tiling_dev,
    ];
    // SAFETY: lengths checked against `shape`, element types from `T`, the tiling validated for the
    // device, the score row present whenever the tiling says it is written.
    unsafe { score_kernel.launch(stream, tiling.block_num, &args) }?;
    if tiling.splits > 1 {
        let (reduce, _) = kernel(stream, "cold_reduce")?;
        let blocks = tiling.rows.min(profile.vector_cores).max(1);
        let args: [&dyn KernelArg; 5] = [
            &out.tokens,
            &out.best_scores,
            &status,
            &workspace,
            &tiling_dev,
        ];
        // SAFETY: as above; the reduce reads the workspace the score launch wrote, in stream order.
        unsafe { reduce.launch(stream, blocks, &args) }?;
    }
    Ok(())
}

/// [`cold_score`] with outputs allocated here, synchronised and returned per row.
///
/// # Errors
/// As [`cold_score`], and the stream's errors.
pub fn cold_score_host<T: LogitFloat>(
    stream: &Stream,
    expert: DeviceView<'_, T>,
    amateur: DeviceView<'_, T>,
    shape: ColdShape,
    params: ColdParams,
) -> Result<Vec<ColdPick>> {
    let device = stream.device();
    let mut tokens = DeviceBuffer::<i64>::zeroed(device, shape.rows)?;
    let mut best = DeviceBuffer::<f32>::zeroed(device, shape.rows)?;
    let out = ColdOutputs {
        tokens: tokens.view_mut(),
        best_scores: best.view_mut(),
        scores: None,
    };
    cold_score(stream, expert, amateur, shape, params, out, None)?;
    stream.synchronize()?;
    let (tokens, best) = (tokens.to_vec()?, best.to_vec()?);
    Ok(tokens
        .into_iter()
        .zip(best)
        .map(|(token, best_score)| ColdPick { token, best_score })
        .collect())
}

/// A logits view must reach the last element of its last row: `(rows - 1) * stride + vocab`.
fn expect_span(
    stride_name: &'static str,
    operand: &str,
    len: usize,
    stride: usize,
    shape: ColdShape,
) -> Result<()> {
    let ColdShape { rows, vocab } = shape;
    if stride < vocab {
        return Err(Error::parameter(
            stride_name,
            format!("at least the vocabulary ({vocab}): rows must not overlap"),
            stride,
        ));
    }
    let span = match rows.checked_sub(1) {
        None => 0,
        Some(r) => r
            .checked_mul(stride)
            .and_then(|s| s.checked_add(vocab))
            .ok_or_else(|| {
                Error::shape(
                    format!("cold_score {operand}"),
                    "a span that fits in usize",
                    format!("{rows} rows {stride} apart"),
                )
            })?,
    };
    if len < span {
        return Err(Error::shape(
            format!("cold_score {operand}"),
            format!("at least {span} elements ({rows} rows of {vocab}, {stride} apart)"),
            format!("{len} elements"),
        ));
    }
    Ok(())
}

/// A stride as the tiling's u32.
fn stride_u32(what: &'static str, stride: usize) -> Result<u32> {
    u32::try_from(stride).map_err(|_| Error::parameter(what, "at most u32::MAX elements", stride))
}

fn expect_rows(tokens: usize, best: usize, rows: usize) -> Result<()> {
    for (what, len) in [
        ("cold_score tokens", tokens),
        ("cold_score best_scores", best),
    ] {
        if len != rows {
            return Err(Error::shape(
                what,
                format!("{rows} elements (one per row)"),
                format!("{len} elements"),
            ));
        }
    }
    Ok(())
}
