//! LoRA deltas on a device: every delta goes through [`ops::bgmv_shrink`] then [`ops::bgmv_expand`].
//!
//! The stacked adapters ([`StackedAdapters`]: A `[L, R, in]`, B `[L, out, R]` with the scaling folded
//! into B) are converted to the kernels' dtype and uploaded once. Per call the rows' activations are
//! rounded to that dtype and uploaded, shrunk to the rank in f32, expanded back, downloaded, and added
//! in f32 into the model's projection outputs for the rows that have an adapter.

use super::adapter::StackedAdapters;
use super::lora::{check_delta_args, LoraDelta, LoraTarget};
use crate::contracts::{ExpandShape, ShrinkShape};
use crate::ops::{self, AdapterIndices, LoraFloat};
use crate::{DeviceBuffer, Result, Stream};
use std::sync::Mutex;

/// One (layer, target) module's stacked weights on the device.
struct DeviceModule<T: LoraFloat> {
    rank: usize,
    in_features: usize,
    out_features: usize,
    a: DeviceBuffer<T>,
    b: DeviceBuffer<T>,
}

/// Device buffers reused by every call (grown on demand).
struct Staging<T: LoraFloat> {
    x: DeviceBuffer<T>,
    mid: DeviceBuffer<f32>,
    y: DeviceBuffer<T>,
}

/// [`LoraDelta`] through the BGMV kernels on the stream's device, in `T` (f16 or bf16).
pub struct DeviceLora<T: LoraFloat> {
    stream: Stream,
    config: super::LlamaConfig,
    num_adapters: usize,
    /// Indexed by `layer * 7 + target.index()`; `None` where no adapter targets the module.
    modules: Vec<Option<DeviceModule<T>>>,
    staging: Mutex<Staging<T>>,
}

fn to_dtype<T: LoraFloat>(values: &[f32]) -> Vec<T> {
    values.iter().map(|&v| T::from_f64(f64::from(v))).collect()
}

impl<T: LoraFloat> DeviceLora<T> {
    /// Uploads every stacked module to the stream's device.
    ///
    /// # Errors
    /// Device allocation or copy failures.
    pub fn new(stacked: &StackedAdapters, stream: &Stream) -> Result<Self> {
        let config = stacked.config().clone();
        let device = stream.device();
        let mut modules = Vec::with_capacity(config.num_hidden_layers * LoraTarget::ALL.len());
        for layer in 0..config.num_hidden_layers {
            for target in LoraTarget::ALL {
                modules.push(match stacked.module(layer, target) {
                    Some(m) => Some(DeviceModule {
                        rank: m.rank,
                        in_features: m.in_features,
                        out_features: m.out_features,
                        a: DeviceBuffer::from_host(device, &to_dtype::<T>(m.a))?,
                        b: DeviceBuffer::from_host(device, &to_dtype::<T>(m.b))?,
                    }),
                    None => None,
                });
            }
        }
        let staging = Staging {
            x: DeviceBuffer::zeroed(device, 1)?,
            mid: DeviceBuffer::zeroed(device, 1)?,
            y: DeviceBuffer::zeroed(device, 1)?,
        };
        Ok(DeviceLora {
            stream: stream.clone(),
            config,
            num_adapters: stacked.len(),
            modules,
            staging: Mutex::new(staging),
        })
    }

    /// Device bytes held by the stacked weights.
    pub fn device_bytes(&self) -> usize {
        let elem = std::mem::size_of::<T>();
        self.modules
            .iter()
            .flatten()
            .map(|m| (m.a.len() + m.b.len()) * elem)
            .sum()
    }
}

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

impl<T: LoraFloat> LoraDelta for DeviceLora<T> {
    fn num_adapters(&self) -> usize {
        self.num_adapters
    }

    fn add_delta(
        &self,
        layer: usize,
        target: LoraTarget,
        x: &[f32],
        adapters: &[i64],
        y: &mut [f32],
    ) -> Result<()> {
        check_delta_args(
            &self.config,
            self.num_adapters,
            layer,
            target,
            x,
            adapters,
            y,
        )?;
        let Some(module) = &self.modules[layer * LoraTarget::ALL.len() + target.index()] else {
            return Ok(());
        };
        // Only rows with an adapter go to the device: under CoLD half the batch is amateur rows (-1),
        // and paying the transfers and kernels for them would double the LoRA cost of a step.
        let rows: Vec<usize> = (0..adapters.len()).filter(|&r| adapters[r] >= 0).collect();
        if rows.is_empty() {
            return Ok(());
        }
        let (n, rank, inf, outf) = (
            rows.len(),
            module.rank,
            module.in_features,
            module.out_features,
        );
        let indices: Vec<i64> = rows.iter().map(|&r| adapters[r]).collect();
        let x_rows: Vec<T> = rows
            .iter()
            .flat_map(|&r| {
                x[r * inf..(r + 1) * inf]
                    .iter()
                    .map(|&v| T::from_f64(f64::from(v)))
            })
            .collect();
        let mut staging = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        let Staging { x: dx, mid, y: dy } = &mut *staging;
        ensure(dx, &self.stream, n * inf)?;
        ensure(mid, &self.stream, n * rank)?;
        ensure(dy, &self.stream, n * outf)?;
        self.stream.upload(dx.slice_mut(..n * inf)?, x_rows)?;
        let shrink = ShrinkShape {
            batch: n,
            hidden_in: inf,
            rank,
            num_loras: self.num_adapters,
        };
        ops::bgmv_shrink(
            &self.stream,
            ops::BgmvShrink {
                x: dx.slice(..n * inf)?,
                weights: module.a.view(),
                indices: AdapterIndices::Host(&indices),
                y: mid.slice_mut(..n * rank)?,
                shape: shrink,
                scale: 1.0,
            },
            None,
        )?;
        let expand = ExpandShape {
            batch: n,
            rank,
            hidden_out: outf,
            hidden_full: outf,
            slice_offset: 0,
            num_loras: self.num_adapters,
        };
        ops::bgmv_expand(
            &self.stream,
            ops::BgmvExpand {
                x: mid.slice(..n * rank)?,
                weights: module.b.view(),
                indices: AdapterIndices::Host(&indices),
                y: dy.slice_mut(..n * outf)?,
                shape: expand,
                add_inputs: false,
            },
            None,
        )?;
        let delta = self.stream.download(dy.slice(..n * outf)?)?.wait()?;
        for (k, &row) in rows.iter().enumerate() {
            let out = &mut y[row * outf..(row + 1) * outf];
            for (o, d) in out.iter_mut().zip(&delta[k * outf..(k + 1) * outf]) {
                *o += d.to_f64() as f32;
            }
        }
        Ok(())
    }
}
