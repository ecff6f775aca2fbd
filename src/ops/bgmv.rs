//! `bgmv_shrink` and `bgmv_expand`: each row of a batch through its own LoRA adapter, or none.

use super::{kernel, scratch, status_fault, AdapterIndices, LoraFloat, TrustedIndices};
use crate::contracts::{ExpandSegment, ExpandShape, ShrinkShape};
use crate::memory::{DeviceView, DeviceViewMut};
use crate::module::KernelArg;
use crate::tiling::{BgmvExpandTiling, BgmvShrinkTiling};
use crate::{Error, Result, Stream};

/// The kernels' status word for "adapter index >= number of adapters" (kernels/kernel_common.h).
const STATUS_BAD_ADAPTER_INDEX: u32 = 0x8000_0000 | (1 << 24);

/// Uploads checked host indices or takes the device's.
fn indices_on_device<'s>(
    stream: &'s Stream,
    indices: TrustedIndices<'s>,
) -> Result<DeviceView<'s, i64>> {
    match indices {
        TrustedIndices::Host(checked) => {
            let host = checked.as_slice();
            let bytes = scratch::upload(stream, "indices", bytemuck::cast_slice(host))?;
            // SAFETY: the same scratch memory, `host.len()` i64 values long.
            Ok(unsafe { DeviceView::from_raw(stream.device(), bytes.device_addr(), host.len()) })
        }
        TrustedIndices::Device(view) => Ok(view),
    }
}

/// Reads back the status words after the launch when the indices were not host-checked, and reports a
/// skipped row at the stream's next synchronisation.
fn watch_status(
    stream: &Stream,
    kernel_name: &str,
    status: DeviceView<'_, u32>,
    host_checked: bool,
    num_loras: usize,
) -> Result<()> {
    if host_checked {
        return Ok(());
    }
    let slot = stream.download(status)?.into_slot();
    let name = kernel_name.to_string();
    stream.check_after_sync(Box::new(move || {
        let words = slot.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
        status_fault(&name, &words, |row, word| {
            (word == STATUS_BAD_ADAPTER_INDEX).then(|| {
                format!("row {row}: adapter index >= {num_loras} (the number of adapters); the row was skipped")
            })
        })
    }));
    Ok(())
}

/// The operands of one [`bgmv_shrink`]: vLLM's `bgmv_shrink(inputs, lora_a_weights, output_tensor,
/// lora_indices_tensor, scaling)`, with the shape they are checked against.
pub struct BgmvShrink<'a, T: LoraFloat> {
    /// `[batch, hidden_in]`.
    pub x: DeviceView<'a, T>,
    /// The stacked A matrices, `[num_loras, rank, hidden_in]`.
    pub weights: DeviceView<'a, T>,
    /// Each row's adapter, or a negative index for none.
    pub indices: AdapterIndices<'a>,
    /// `[batch, rank]` f32; rows without an adapter are not written.
    pub y: DeviceViewMut<'a, f32>,
    /// The extents the lengths above must match.
    pub shape: ShrinkShape,
    /// The LoRA scaling (`lora_alpha / r`, or `/ sqrt(r)` with rsLoRA).
    pub scale: f32,
}

/// The operands of one [`bgmv_expand`]: vLLM's `bgmv_expand_slice(inputs, lora_b_weights,
/// output_tensor, lora_indices_tensor, slice_offset, slice_size, add_inputs)`, with the shape they are
/// checked against (`shape.slice_offset`, `shape.hidden_out` = the slice).
pub struct BgmvExpand<'a, T: LoraFloat> {
    /// `[batch, rank]` f32 (a shrink's output).
    pub x: DeviceView<'a, f32>,
    /// The stacked B matrices, `[num_loras, hidden_out, rank]`.
    pub weights: DeviceView<'a, T>,
    /// Each row's adapter, or a negative index for none.
    pub indices: AdapterIndices<'a>,
    /// `[batch, hidden_full]`; only the slice of rows with an adapter is written.
    pub y: DeviceViewMut<'a, T>,
    /// The extents the lengths above must match, and where the slice lies in a row of `y`.
    pub shape: ExpandShape,
    /// Add into `y` (true) or overwrite the slice (false).
    pub add_inputs: bool,
}

/// `y[b] = scale * weights[indices[b]] @ x[b]` for rows with `indices[b] >= 0`; other rows of `y` are
/// left untouched. `x [batch, hidden_in]` and `weights [num_loras, rank, hidden_in]` in f16 or bf16,
/// `y [batch, rank]` f32, accumulation in f32. Queued on `stream`; `tiling` overrides the default
/// choice (it is validated against the device first).
///
/// ```
/// use ascend_cold::{ops, contracts::ShrinkShape, Device, DeviceBuffer, Stream};
/// use ascend_cold::half::f16;
/// let device = Device::emulator()?;
/// let stream = Stream::new(&device)?;
/// let x = DeviceBuffer::from_host(&device, &[f16::ONE; 8])?;
/// let a = DeviceBuffer::from_host(&device, &[f16::from_f32(0.5); 4])?;
/// let mut y = DeviceBuffer::from_host(&device, &[7.0f32, 7.0])?;
/// let op = ops::BgmvShrink {
///     x: x.view(),
///     weights: a.view(),
///     indices: ops::AdapterIndices::Host(&[0, -1]),
///     y: y.view_mut(),
///     shape: ShrinkShape { batch: 2, hidden_in: 4, rank: 1, num_loras: 1 },
///     scale: 2.0,
/// };
/// ops::bgmv_shrink(&stream, op, None)?;
/// stream.synchronize()?;
/// assert_eq!(y.to_vec()?, [4.0, 7.0]); // row 1 has no adapter: untouched
/// # Ok::<(), ascend_cold::Error>(())
/// ```
///
/// # Errors
/// Before launch: lengths that do not match `shape`, an index >= `num_loras` in host indices
/// ([`Error::BadIndex`](crate::Error::BadIndex), checked once at entry), a
/// non-finite `scale`, a tiling the device cannot run, memory of another device. At the next
/// synchronisation: a bad index in device-resident indices, naming the row.
pub fn bgmv_shrink<T: LoraFloat>(
    stream: &Stream,
    op: BgmvShrink<'_, T>,
    tiling: Option<&BgmvShrinkTiling>,
) -> Result<()> {
    let BgmvShrink {
        x,
        weights,
        indices,
        y,
        shape,
        scale,
    } = op;
    shape.check_lens(
        "bgmv_shrink",
        x.len(),
        weights.len(),
        indices.len(),
        y.len(),
    )?;
    let (batch, num_loras) = (shape.batch, shape.num_loras);
    let indices = indices.trusted(num_loras)?;
    if !scale.is_finite() {
        return Err(Error::parameter("scale", "a finite number", scale));
    }
    if batch == 0 {
        return Ok(());
    }
    let name = T::SHRINK_KERNEL;
    let (kernel, profile) = kernel(stream, name)?;
    let tiling = match tiling {
        Some(t) => {
            t.validate(shape, T::DTYPE, &profile)?;
            BgmvShrinkTiling { scale, ..*t }
        }
        None => BgmvShrinkTiling::choose(shape, T::DTYPE, scale, &profile)?,
    };
    let launch = BgmvLaunch {
        name,
        kernel,
        block_num: tiling.block_num,
        tiling: bytemuck::bytes_of(&tiling),
        batch,
        num_loras,
    };
    // SAFETY: lengths checked against `shape`, element types from `T`, the tiling validated for the
    // device; indices are checked on the host or by the kernel.
    unsafe { launch.run(stream, &x, &weights, indices, &y) }
}

/// `y[b, slice_offset..slice_offset + hidden_out] (+)= weights[indices[b]] @ x[b]` for rows with
/// `indices[b] >= 0` (added into `y` when `add_inputs`); other rows and columns untouched.
/// `x [batch, rank]` f32, `weights [num_loras, hidden_out, rank]` and `y [batch, hidden_full]` in f16 or
/// bf16. Queued on `stream`.
///
/// # Errors
/// As [`bgmv_shrink`], plus a slice that does not fit in `hidden_full`.
pub fn bgmv_expand<T: LoraFloat>(
    stream: &Stream,
    op: BgmvExpand<'_, T>,
    tiling: Option<&BgmvExpandTiling>,
) -> Result<()> {
    bgmv_expand_segmented(stream, op, &[], tiling)
}

/// [`bgmv_expand`] with a block-diagonal weight stored as `segments` ([`ExpandSegment`], at most
/// [`MAX_EXPAND_SEGMENTS`](crate::contracts::MAX_EXPAND_SEGMENTS); none: dense): `weights` holds
/// each segment's `[num_loras, rows, rank]` one after another, and the slice's rows no segment covers
/// are not written. One launch expands a fused projection's targets (q, k and v, say) from one shrink
/// output without multiplying the zeros between them; on each row the result is that of
/// [`bgmv_expand`] with the dense block-diagonal weight.
///
/// ```
/// use ascend_cold::contracts::{ExpandSegment, ExpandShape};
/// use ascend_cold::half::bf16;
/// use ascend_cold::{ops, Device, DeviceBuffer, Stream};
/// let device = Device::emulator()?;
/// let stream = Stream::new(&device)?;
/// // x = [1, 2 | 3]: lanes 0..2 feed output rows 0..2, lane 2 feeds row 3; row 2 has no segment.
/// let x = DeviceBuffer::from_host(&device, &[1.0f32, 2.0, 3.0])?;
/// let w: Vec<bf16> = [1.0, 1.0, 0.5, 0.0, 2.0].map(bf16::from_f32).to_vec();
/// let weights = DeviceBuffer::from_host(&device, &w)?;
/// let mut y = DeviceBuffer::from_host(&device, &[bf16::from_f32(9.0); 4])?;
/// let segments = [
///     ExpandSegment { row_start: 0, rows: 2, rank_start: 0, rank: 2 },
///     ExpandSegment { row_start: 3, rows: 1, rank_start: 2, rank: 1 },
/// ];
/// let op = ops::BgmvExpand {
///     x: x.view(),
///     weights: weights.view(),
///     indices: ops::AdapterIndices::Host(&[0]),
///     y: y.view_mut(),
///     shape: ExpandShape { batch: 1, rank: 3, hidden_out: 4, hidden_full: 4, slice_offset: 0, num_loras: 1 },
///     add_inputs: false,
/// };
/// ops::bgmv_expand_segmented(&stream, op, &segments, None)?;
/// stream.synchronize()?;
/// assert_eq!(y.to_vec()?, [3.0, 0.5, 9.0, 6.0].map(bf16::from_f32));
/// # Ok::<(), ascend_cold::Error>(())
/// ```
///
/// # Errors
/// As [`bgmv_expand`], plus segments out of order, overlapping, empty, outside the slice or x's
/// row, more than the kernel takes, or a segment rank above 128.
pub fn bgmv_expand_segmented<T: LoraFloat>(
    stream: &Stream,
    op: BgmvExpand<'_, T>,
    segments: &[ExpandSegment],
    tiling: Option<&BgmvExpandTiling>,
) -> Result<()> {
    let BgmvExpand {
        x,
        weights,
        indices,
        y,
        shape,
        add_inputs,
    } = op;
    shape.check_segmented_lens(
        "bgmv_expand",
        segments,
        x.len(),
        weights.len(),
        indices.len(),
        y.len(),
    )?;
    let (batch, num_loras) = (shape.batch, shape.num_loras);
    let indices = indices.trusted(num_loras)?;
    if batch == 0 {
        return Ok(());
    }
    let name = T::EXPAND_KERNEL;
    let (kernel, profile) = kernel(stream, name)?;
    let tiling = match tiling {
        Some(t) => {
            t.validate_segmented(shape, segments, T::DTYPE, &profile)?;
            BgmvExpandTiling {
                add_inputs: add_inputs.into(),
                ..*t
            }
        }
        None => {
            BgmvExpandTiling::choose_segmented(shape, segments, T::DTYPE, add_inputs, &profile)?
        }
    };
    let launch = BgmvLaunch {
        name,
        kernel,
        block_num: tiling.block_num,
        tiling: bytemuck::bytes_of(&tiling),
        batch,
        num_loras,
    };
    // SAFETY: lengths checked against `shape` and `segments`, element types from `T`, the tiling
    // validated for the device and carrying the same segments; indices are checked on the host or by
    // the kernel.
    unsafe { launch.run(stream, &x, &weights, indices, &y) }
}

/// What bgmv_shrink and bgmv_expand launch alike: `(x, weights, indices, y, status, tiling)`.
struct BgmvLaunch<'n> {
    name: &'n str,
    kernel: crate::module::Kernel,
    block_num: u32,
    tiling: &'n [u8],
    batch: usize,
    num_loras: usize,
}

impl BgmvLaunch<'_> {
    /// Uploads the indices (host-checked) and the tiling into the stream's scratch, launches, and
    /// watches the status words when the indices were not checked on the host.
    ///
    /// # Safety
    /// The operands match the kernel's contract for the tiling (lengths, element types).
    unsafe fn run(
        &self,
        stream: &Stream,
        x: &dyn KernelArg,
        weights: &dyn KernelArg,
        indices: TrustedIndices<'_>,
        y: &dyn KernelArg,
    ) -> Result<()> {
        let host_checked = matches!(indices, TrustedIndices::Host(_));
        let idx = indices_on_device(stream, indices)?;
        let status = status_view(stream, self.batch)?;
        let tiling = scratch::constant(stream, self.tiling)?;
        let args: [&dyn KernelArg; 6] = [x, weights, &idx, y, &status, &tiling];
        // SAFETY: the caller vouches for x, weights and y; the indices are in range or checked by the
        // kernel; status and tiling are scratch of the right sizes.
        unsafe { self.kernel.launch(stream, self.block_num, &args) }?;
        watch_status(
            stream,
            self.name,
            status.as_view(),
            host_checked,
            self.num_loras,
        )
    }
}

/// One status word per row in the stream's scratch.
pub(super) fn status_view(stream: &Stream, rows: usize) -> Result<DeviceViewMut<'_, u32>> {
    let bytes = scratch::region(stream, "status", rows * 4)?;
    // SAFETY: the same scratch memory, `rows` u32 words long.
    Ok(unsafe { DeviceViewMut::from_raw(stream.device(), bytes.device_addr(), rows) })
}
