//! LoRA deltas on a device: one [`ops::bgmv_shrink`] and one [`ops::bgmv_expand`] per fused
//! projection group (docs/ARCHITECTURE.md, "The LoRA path").
//!
//! At construction the stacked adapters ([`StackedAdapters`]: per target A `[L, R, in]`, B
//! `[L, out, R]`, scaling folded into B) are re-stacked per (layer, [`LoraGroup`]) and uploaded once in
//! the kernels' dtype: the group's A matrices one above the other (`[L, R_q + R_k + R_v, in]`: one
//! shrink gives every target's rank vector), its B matrices block-diagonal (`[L, out_group, R_total]`:
//! one expand writes every target's columns of the group's output row, in place, through
//! `slice_offset`). A group whose ranks add up to more than the expand kernel takes
//! ([`MAX_EXPAND_RANK`]) is split into parts of consecutive targets, one shrink and expand each.
//!
//! Per call: the rows that have an adapter (not CoLD's amateur rows) are gathered, rounded to the
//! dtype and uploaded once for the whole group, shrunk and expanded into one device buffer, downloaded
//! once, and added in f32 into the group's output. The device buffers and the host staging are
//! reused from call to call (grown when a batch needs more), so a steady decode allocates nothing on
//! the device.

use super::adapter::StackedAdapters;
use super::config::LlamaConfig;
use super::lora::{check_delta_args, check_delta_input, check_delta_len, LoraDelta, LoraRows};
use super::targets::LoraGroup;
use crate::contracts::{ExpandShape, ShrinkShape};
use crate::ops::{self, AdapterIndices, LoraFloat};
use crate::tiling::MAX_EXPAND_RANK;
use crate::{DeviceBuffer, Result, Stream};
use std::sync::{Mutex, MutexGuard};

/// Consecutive targets of a group whose ranks fit one expand: one shrink and one expand write the
/// part's columns of the group's output.
struct Part<T: LoraFloat> {
    /// `R_part`: the sum of the (padded) ranks of the part's targets.
    rank: usize,
    /// First column of the part in the group's device output row.
    column: usize,
    /// Columns the part writes.
    width: usize,
    /// `[num_adapters, rank, in]`.
    a: DeviceBuffer<T>,
    /// `[num_adapters, width, rank]`, block-diagonal over the part's targets.
    b: DeviceBuffer<T>,
}

/// One (layer, group)'s weights on the device.
struct DeviceGroup<T: LoraFloat> {
    /// First and one-past-last column of the group's output row that any part writes: only these
    /// are computed on the device and downloaded.
    columns: std::ops::Range<usize>,
    parts: Vec<Part<T>>,
}

/// What a target contributes to a part while it is being stacked.
struct TargetBlock<'a> {
    column: usize,
    rank: usize,
    out: usize,
    a: &'a [f32],
    b: &'a [f32],
}

/// Stacks the targets' A above each other and their B block-diagonally, for `num_adapters` adapters
/// with input width `inf`. The part's `column` is its first target's column in the group's row.
fn stack_part<T: LoraFloat>(
    blocks: &[TargetBlock<'_>],
    num_adapters: usize,
    inf: usize,
    stream: &Stream,
) -> Result<Part<T>> {
    let rank: usize = blocks.iter().map(|b| b.rank).sum();
    let first = blocks[0].column;
    let last = &blocks[blocks.len() - 1];
    let width = last.column + last.out - first;
    let mut a = vec![T::from_f64(0.0); num_adapters * rank * inf];
    let mut b = vec![T::from_f64(0.0); num_adapters * width * rank];
    for i in 0..num_adapters {
        let mut r0 = 0;
        for blk in blocks {
            let src_a = &blk.a[i * blk.rank * inf..(i + 1) * blk.rank * inf];
            let dst_a = &mut a[(i * rank + r0) * inf..(i * rank + r0 + blk.rank) * inf];
            for (d, &s) in dst_a.iter_mut().zip(src_a) {
                *d = T::from_f64(f64::from(s));
            }
            for o in 0..blk.out {
                let src = &blk.b[(i * blk.out + o) * blk.rank..(i * blk.out + o + 1) * blk.rank];
                let row = i * width + blk.column - first + o;
                let dst = &mut b[row * rank + r0..row * rank + r0 + blk.rank];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = T::from_f64(f64::from(s));
                }
            }
            r0 += blk.rank;
        }
    }
    let device = stream.device();
    Ok(Part {
        rank,
        column: first,
        width,
        a: DeviceBuffer::from_host(device, &a)?,
        b: DeviceBuffer::from_host(device, &b)?,
    })
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
        let blocks: Vec<TargetBlock<'_>> = group
            .columns(config)
            .filter_map(|(target, column)| {
                let m = stacked.module(layer, target)?;
                Some(TargetBlock {
                    column,
                    rank: m.rank,
                    out: m.out_features,
                    a: m.a,
                    b: m.b,
                })
            })
            .collect();
        let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
            return Ok(None);
        };
        let columns = first.column..last.column + last.out;
        let inf = group.dims(config).0;
        // Greedy split into runs whose ranks fit one expand (one run for every usual rank).
        let mut parts = Vec::new();
        let mut start = 0;
        while start < blocks.len() {
            let mut end = start + 1;
            let mut rank = blocks[start].rank;
            while end < blocks.len() && rank + blocks[end].rank <= MAX_EXPAND_RANK as usize {
                rank += blocks[end].rank;
                end += 1;
            }
            parts.push(stack_part(&blocks[start..end], stacked.len(), inf, stream)?);
            start = end;
        }
        for part in &mut parts {
            part.column -= columns.start;
        }
        Ok(Some(DeviceGroup { columns, parts }))
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
    /// Device allocation or copy failures.
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
            .flat_map(|g| &g.parts)
            .map(|p| (p.a.len() + p.b.len()) * elem)
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
        let max_rank = weights.parts.iter().map(|p| p.rank).max().unwrap_or(0);
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
        host_x.extend(active.iter().flat_map(|&r| {
            x[r * inf..(r + 1) * inf]
                .iter()
                .map(|&v| T::from_f64(f64::from(v)))
        }));
        ensure(dx, &self.stream, n * inf)?;
        ensure(mid, &self.stream, n * max_rank)?;
        ensure(dy, &self.stream, n * computed)?;
        // A synchronous upload (after the work queued on its buffer): a copy from pageable memory
        // returns only once it is done even when queued (docs/BOARD.md, "aclrtMemcpyAsync"), so
        // queueing it would only add a hand-over to the stream's worker.
        dx.slice_mut(..n * inf)?.copy_from_host(host_x)?;
        for part in &weights.parts {
            ops::bgmv_shrink(
                &self.stream,
                ops::BgmvShrink {
                    x: dx.slice(..n * inf)?,
                    weights: part.a.view(),
                    indices,
                    y: mid.slice_mut(..n * part.rank)?,
                    shape: ShrinkShape {
                        batch: n,
                        hidden_in: inf,
                        rank: part.rank,
                        num_loras: self.num_adapters,
                    },
                    scale: 1.0,
                },
                None,
            )?;
            ops::bgmv_expand(
                &self.stream,
                ops::BgmvExpand {
                    x: mid.slice(..n * part.rank)?,
                    weights: part.b.view(),
                    indices,
                    y: dy.slice_mut(..n * computed)?,
                    shape: ExpandShape {
                        batch: n,
                        rank: part.rank,
                        hidden_out: part.width,
                        hidden_full: computed,
                        slice_offset: part.column,
                        num_loras: self.num_adapters,
                    },
                    add_inputs: false,
                },
                None,
            )?;
        }
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
        // Only the parts' columns were written (targets no adapter adapts may lie between parts).
        for part in &weights.parts {
            let (from, to) = (part.column, part.column + part.width);
            for (k, &row) in active.iter().enumerate() {
                let out = &mut y[row * width + cols.start + from..row * width + cols.start + to];
                let d = &delta[k * computed + from..k * computed + to];
                for (o, d) in out.iter_mut().zip(d) {
                    *o += d.to_f64() as f32;
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
        let Some(queued) = queued else {
            return Ok(());
        };
        let width = group.dims(&self.config).1;
        check_delta_len(layer, group, "output y", y.len(), rows.len(), width)?;
        self.add_queued(group, queued, y)
    }
}
