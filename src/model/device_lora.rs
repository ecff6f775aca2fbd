//! LoRA deltas on a device: one [`ops::bgmv_shrink`] and one [`ops::bgmv_expand_segmented`] per fused
//! projection group (docs/ARCHITECTURE.md, "The LoRA path").
//!
//! At construction the stacked adapters ([`StackedAdapters`]: per target A `[L, R, in]`, B
//! `[L, out, R]`, scaling folded into B) are re-stacked per (layer, [`LoraGroup`]) and uploaded once in
//! the kernels' dtype: the group's A matrices one above the other (`[L, R_q + R_k + R_v, in]`: one
//! shrink gives every target's rank vector), and its B matrices one after another, each an
//! [`ExpandSegment`] of the group's block-diagonal B (one expand writes every target's columns of the
//! group's output row, in place, without multiplying the zeros between targets).
//!
//! Per call ([`LoraDelta::project`]): the rows that have an adapter (not CoLD's amateur rows) are
//! gathered, rounded to the dtype and uploaded once for the whole group, and its shrink and expand are
//! queued; the host then runs the group's base matmul while the device computes, downloads the delta
//! once and adds it in f32 into the group's output. The device buffers and the host staging are reused
//! from call to call (grown when a batch needs more), so a steady decode allocates nothing on the
//! device.

use super::adapter::StackedAdapters;
use super::config::LlamaConfig;
use super::lora::{check_delta_args, check_delta_input, check_delta_len, LoraDelta, LoraRows};
use super::targets::LoraGroup;
use crate::contracts::{ExpandSegment, ExpandShape, ShrinkShape};
use crate::ops::{self, AdapterIndices, LoraFloat};
use crate::tiling::MAX_EXPAND_RANK;
use crate::{DeviceBuffer, Error, Result, Stream};
use std::sync::{Mutex, MutexGuard};

/// One (layer, group)'s weights on the device.
struct DeviceGroup<T: LoraFloat> {
    /// First and one-past-last column of the group's output row that any target writes: only these
    /// are computed on the device and downloaded.
    columns: std::ops::Range<usize>,
    /// `R_group`: the sum of the targets' (padded) ranks, the shrink's output width.
    rank: usize,
    /// Per adapted target, its columns (from `columns.start`) and its lanes of the shrink's output.
    segments: Vec<ExpandSegment>,
    /// `[num_adapters, rank, in]`, the targets' A one above the other.
    a: DeviceBuffer<T>,
    /// The targets' B `[num_adapters, out_t, R_t]` one after another (the segments' layout).
    b: DeviceBuffer<T>,
}

impl<T: LoraFloat> DeviceGroup<T> {
    /// The group's weights of `layer`, or `None` when no adapter targets any of its projections.
    fn new(
        stacked: &StackedAdapters,
        layer: usize,
        group: LoraGroup,
        stream: &Stream,
    ) -> Result<Option<Self>> {
        let config = stacked.config();
        let modules: Vec<_> = group
            .columns(config)
            .filter_map(|(target, column)| Some((column, stacked.module(layer, target)?)))
            .collect();
        let (Some(first), Some(last)) = (modules.first(), modules.last()) else {
            return Ok(None);
        };
        if let Some((_, wide)) = modules
            .iter()
            .find(|(_, m)| m.rank > MAX_EXPAND_RANK as usize)
        {
            return Err(Error::parameter(
                "LoRA rank",
                format!("at most {MAX_EXPAND_RANK} per target (bgmv_expand's segment rank)"),
                format!("{} on {} of layer {layer}", wide.rank, wide.target),
            ));
        }
        let columns = first.0..last.0 + last.1.out_features;
        let inf = group.dims(config).0;
        let num_adapters = stacked.len();
        let rank: usize = modules.iter().map(|(_, m)| m.rank).sum();
        let to_dtype = |v: &f32| T::from_f64(f64::from(*v));
        let mut a = Vec::with_capacity(num_adapters * rank * inf);
        for i in 0..num_adapters {
            for (_, m) in &modules {
                a.extend(
                    m.a[i * m.rank * inf..(i + 1) * m.rank * inf]
                        .iter()
                        .map(to_dtype),
                );
            }
        }
        let b: Vec<T> = modules
            .iter()
            .flat_map(|(_, m)| m.b.iter().map(to_dtype))
            .collect();
        let mut rank_start = 0;
        let segments = modules
            .iter()
            .map(|&(column, m)| {
                let segment = ExpandSegment {
                    row_start: column - columns.start,
                    rows: m.out_features,
                    rank_start,
                    rank: m.rank,
                };
                rank_start += m.rank;
                segment
            })
            .collect();
        let device = stream.device();
        Ok(Some(DeviceGroup {
            columns,
            rank,
            segments,
            a: DeviceBuffer::from_host(device, &a)?,
            b: DeviceBuffer::from_host(device, &b)?,
        }))
    }
}

/// Buffers reused by every call (grown on demand).
struct Staging<T: LoraFloat> {
    /// The gathered rows' inputs in the dtype.
    host_x: Vec<T>,
    /// The computed columns of the group's output rows, as downloaded.
    host_y: Vec<T>,
    x: DeviceBuffer<T>,
    mid: DeviceBuffer<f32>,
    y: DeviceBuffer<T>,
}

/// [`LoraDelta`] through the BGMV kernels on the stream's device, in `T` (f16 or bf16).
pub struct DeviceLora<T: LoraFloat> {
    stream: Stream,
    config: LlamaConfig,
    num_adapters: usize,
    /// Indexed by `layer * 4 + group position in LoraGroup::ALL`; `None` where no adapter targets
    /// the group.
    groups: Vec<Option<DeviceGroup<T>>>,
    staging: Mutex<Staging<T>>,
}

impl<T: LoraFloat> DeviceLora<T> {
    /// Uploads every stacked group to the stream's device.
    ///
    /// # Errors
    /// A target whose (padded) rank is above 128, which the expand kernel cannot take; device
    /// allocation or copy failures.
    pub fn new(stacked: &StackedAdapters, stream: &Stream) -> Result<Self> {
        let config = stacked.config().clone();
        let device = stream.device();
        let mut groups = Vec::with_capacity(config.num_hidden_layers * LoraGroup::ALL.len());
        for layer in 0..config.num_hidden_layers {
            for group in LoraGroup::ALL {
                groups.push(DeviceGroup::new(stacked, layer, group, stream)?);
            }
        }
        let staging = Staging {
            host_x: Vec::new(),
            host_y: Vec::new(),
            x: DeviceBuffer::zeroed(device, 1)?,
            mid: DeviceBuffer::zeroed(device, 1)?,
            y: DeviceBuffer::zeroed(device, 1)?,
        };
        Ok(DeviceLora {
            stream: stream.clone(),
            config,
            num_adapters: stacked.len(),
            groups,
            staging: Mutex::new(staging),
        })
    }

    /// Device bytes held by the stacked weights.
    pub fn device_bytes(&self) -> usize {
        let elem = std::mem::size_of::<T>();
        self.groups
            .iter()
            .flatten()
            .map(|g| (g.a.len() + g.b.len()) * elem)
            .sum()
    }

    fn group(&self, layer: usize, group: LoraGroup) -> Option<&DeviceGroup<T>> {
        let position = LoraGroup::ALL.iter().position(|&g| g == group)?;
        self.groups[layer * LoraGroup::ALL.len() + position].as_ref()
    }
}

/// Grows `buf` to at least `len` elements (to the next power of two, so a growing batch reallocates
/// rarely).
fn ensure<E: crate::DeviceRepr>(
    buf: &mut DeviceBuffer<E>,
    stream: &Stream,
    len: usize,
) -> Result<()> {
    if buf.len() < len {
        *buf = DeviceBuffer::zeroed(stream.device(), len.next_power_of_two())?;
    }
    Ok(())
}

/// A group's kernels queued on the stream ([`DeviceLora::queue`]), their result not yet downloaded.
struct Queued<'a, T: LoraFloat> {
    staging: MutexGuard<'a, Staging<T>>,
    weights: &'a DeviceGroup<T>,
    /// Rows with an adapter.
    active: &'a [usize],
}

impl<T: LoraFloat> DeviceLora<T> {
    /// Gathers the rows with an adapter (not CoLD's amateur rows: paying transfers and kernels for them
    /// would double the LoRA cost of a step), uploads them once for the whole group and queues its
    /// shrink and expand launches; `None` when there is nothing to compute. The arguments must have
    /// passed [`check_delta_input`].
    fn queue<'a>(
        &'a self,
        layer: usize,
        group: LoraGroup,
        x: &[f32],
        rows: &'a LoraRows,
    ) -> Result<Option<Queued<'a, T>>> {
        let Some(weights) = self.group(layer, group) else {
            return Ok(None);
        };
        let active = rows.active_rows();
        if active.is_empty() {
            return Ok(None);
        }
        let inf = group.dims(&self.config).0;
        let n = active.len();
        let computed = weights.columns.len();
        let indices = AdapterIndices::Checked(rows.active_checked());

        let mut staging = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        let Staging {
            host_x,
            x: dx,
            mid,
            y: dy,
            ..
        } = &mut *staging;
        host_x.clear();
        host_x.extend(
            active
                .iter()
                .flat_map(|&r| x[r * inf..(r + 1) * inf].iter().map(|&v| T::from_f32(v))),
        );
        ensure(dx, &self.stream, n * inf)?;
        ensure(mid, &self.stream, n * weights.rank)?;
        ensure(dy, &self.stream, n * computed)?;
        // A synchronous upload (after the work queued on its buffer): a copy from pageable memory
        // returns only once it is done even when queued (docs/BOARD.md, "aclrtMemcpyAsync"), so
        // queueing it would only add a hand-over to the stream.
        dx.slice_mut(..n * inf)?.copy_from_host(host_x)?;
        ops::bgmv_shrink(
            &self.stream,
            ops::BgmvShrink {
                x: dx.slice(..n * inf)?,
                weights: weights.a.view(),
                indices,
                y: mid.slice_mut(..n * weights.rank)?,
                shape: ShrinkShape {
                    batch: n,
                    hidden_in: inf,
                    rank: weights.rank,
                    num_loras: self.num_adapters,
                },
                scale: 1.0,
            },
            None,
        )?;
        ops::bgmv_expand_segmented(
            &self.stream,
            ops::BgmvExpand {
                x: mid.slice(..n * weights.rank)?,
                weights: weights.b.view(),
                indices,
                y: dy.slice_mut(..n * computed)?,
                shape: ExpandShape {
                    batch: n,
                    rank: weights.rank,
                    hidden_out: computed,
                    hidden_full: computed,
                    slice_offset: 0,
                    num_loras: self.num_adapters,
                },
                add_inputs: false,
            },
            &weights.segments,
            None,
        )?;
        Ok(Some(Queued {
            staging,
            weights,
            active,
        }))
    }

    /// Downloads the queued group's delta (waiting for its kernels) and adds it, in f32, into the
    /// group's output rows `y` (`[rows, out]`).
    fn add_queued(&self, group: LoraGroup, queued: Queued<'_, T>, y: &mut [f32]) -> Result<()> {
        let Queued {
            mut staging,
            weights,
            active,
        } = queued;
        let width = group.dims(&self.config).1;
        let cols = weights.columns.clone();
        let computed = cols.len();
        let n = active.len();
        let Staging { host_y, y: dy, .. } = &mut *staging;
        host_y.resize(n * computed, T::from_f64(0.0));
        // Synchronous, as the upload: it waits for the kernels.
        dy.slice(..n * computed)?.copy_to_host(host_y)?;
        let delta = &host_y[..];
        // Only the segments' columns were written (targets no adapter adapts may lie between them).
        for seg in &weights.segments {
            let (from, to) = (seg.row_start, seg.row_start + seg.rows);
            for (k, &row) in active.iter().enumerate() {
                let out = &mut y[row * width + cols.start + from..row * width + cols.start + to];
                let d = &delta[k * computed + from..k * computed + to];
                for (o, d) in out.iter_mut().zip(d) {
                    *o += d.to_f32();
                }
            }
        }
        Ok(())
    }
}

impl<T: LoraFloat> LoraDelta for DeviceLora<T> {
    fn num_adapters(&self) -> usize {
        self.num_adapters
    }

    fn add_delta(
        &self,
        layer: usize,
        group: LoraGroup,
        x: &[f32],
        rows: &LoraRows,
        y: &mut [f32],
    ) -> Result<()> {
        check_delta_args(&self.config, self.num_adapters, layer, group, x, rows, y)?;
        match self.queue(layer, group, x, rows)? {
            Some(queued) => self.add_queued(group, queued, y),
            None => Ok(()),
        }
    }

    /// Queues the group's kernels, runs `base` on the host while the device computes, then adds the
    /// downloaded delta.
    fn project(
        &self,
        layer: usize,
        group: LoraGroup,
        x: &[f32],
        rows: &LoraRows,
        base: &mut dyn FnMut(&mut Vec<f32>),
        y: &mut Vec<f32>,
    ) -> Result<()> {
        check_delta_input(&self.config, self.num_adapters, layer, group, x, rows)?;
        let queued = self.queue(layer, group, x, rows)?;
        base(y);
        let width = group.dims(&self.config).1;
        check_delta_len(layer, group, "output y", y.len(), rows.len(), width)?;
        match queued {
            Some(queued) => self.add_queued(group, queued, y),
            None => Ok(()),
        }
    }
}
