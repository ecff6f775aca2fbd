//! Validated kernel launches: `bgmv_shrink`, `bgmv_expand` (dense or segmented) and `cold_score` on a [`Stream`].
//!
//! Contract: every op checks its inputs before anything is queued (shapes against lengths, dtypes by
//! type, devices, adapter indices when they are host-visible, a caller's tiling against the device),
//! then queues its launches and returns without waiting. Parameters arrive validated
//! ([`ColdParams`](crate::contracts::ColdParams)); host indices are checked once at the op's entry, or
//! not at all when they come as [`CheckedIndices`] for the op's adapters (docs/ARCHITECTURE.md,
//! where a value is checked). What only the device can see is
//! reported by the stream's next synchronisation: an adapter index >= the number of adapters in an
//! index tensor that already lives on the device (the row is skipped and named), or a kernel fault.
//! Non-finite logits are reported per row by `cold_score` (token -1).
//!
//! Semantics are those of docs/SEMANTICS.md sections 1 and 2 (vLLM's LoRA ops), which
//! [`crate::reference`] computes on the host for the tests.
//!
//! Scratch: each stream keeps the small device buffers the ops need (tiling structs, status words,
//! uploaded indices, the cold_score workspace) and reuses them; work on one stream runs in order, so a
//! later op cannot overwrite what an earlier one still reads.

mod bgmv;
mod cold;
mod scratch;

pub use bgmv::{bgmv_expand, bgmv_expand_segmented, bgmv_shrink, BgmvExpand, BgmvShrink};
pub use cold::{cold_score, cold_score_host, cold_score_strided, ColdOutputs, RowStrides};

use crate::contracts::{CheckedIndices, Float};
use crate::memory::{DeviceRepr, DeviceView};
use crate::module::{Kernel, Module};
use crate::profile::DeviceProfile;
use crate::tiling::DType;
use crate::{Device, Error, Result, Stream};
use once_cell::sync::Lazy;
use std::sync::{Arc, Mutex};

mod sealed {
    pub trait Sealed {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
    impl Sealed for f32 {}
}

/// An element type of LoRA activations and weights: `f16` or `bf16`.
pub trait LoraFloat: DeviceRepr + Float + sealed::Sealed {
    /// The kernels' dtype.
    const DTYPE: DType;
    /// The `bgmv_shrink` entry point for this dtype (kernels/kernel_entries.h).
    #[doc(hidden)]
    const SHRINK_KERNEL: &'static str;
    /// The `bgmv_expand` entry point for this dtype.
    #[doc(hidden)]
    const EXPAND_KERNEL: &'static str;
}
impl LoraFloat for half::f16 {
    const DTYPE: DType = DType::F16;
    const SHRINK_KERNEL: &'static str = "bgmv_shrink_f16";
    const EXPAND_KERNEL: &'static str = "bgmv_expand_f16";
}
impl LoraFloat for half::bf16 {
    const DTYPE: DType = DType::Bf16;
    const SHRINK_KERNEL: &'static str = "bgmv_shrink_bf16";
    const EXPAND_KERNEL: &'static str = "bgmv_expand_bf16";
}

/// An element type of logits: `f16`, `bf16` or `f32`.
pub trait LogitFloat: DeviceRepr + Float + sealed::Sealed {
    /// The kernels' dtype.
    const DTYPE: DType;
    /// The `cold_score` entry point for this dtype (kernels/kernel_entries.h).
    #[doc(hidden)]
    const SCORE_KERNEL: &'static str;
    /// The `cold_local` entry point for this dtype.
    #[doc(hidden)]
    const LOCAL_KERNEL: &'static str;
}
impl LogitFloat for half::f16 {
    const DTYPE: DType = DType::F16;
    const SCORE_KERNEL: &'static str = "cold_score_f16";
    const LOCAL_KERNEL: &'static str = "cold_local_f16";
}
impl LogitFloat for half::bf16 {
    const DTYPE: DType = DType::Bf16;
    const SCORE_KERNEL: &'static str = "cold_score_bf16";
    const LOCAL_KERNEL: &'static str = "cold_local_bf16";
}
impl LogitFloat for f32 {
    const DTYPE: DType = DType::F32;
    const SCORE_KERNEL: &'static str = "cold_score_f32";
    const LOCAL_KERNEL: &'static str = "cold_local_f32";
}

/// The adapter index of each row (`-1`, or any negative value: no adapter).
#[derive(Debug, Clone, Copy)]
pub enum AdapterIndices<'a> {
    /// Indices the host can read: checked at the op's entry ([`CheckedIndices::new`]), then uploaded.
    Host(&'a [i64]),
    /// Host indices already checked (once per step, by the caller) for at most the op's number of
    /// adapters: uploaded without another scan.
    Checked(CheckedIndices<'a>),
    /// Indices already on the device (a runtime's tensor): an index >= the number of adapters makes the
    /// kernel skip the row, and the stream's next synchronisation reports it.
    Device(DeviceView<'a, i64>),
}

/// Indices an op has accepted: checked on the host, or left to the kernel's device-side check.
#[derive(Clone, Copy)]
enum TrustedIndices<'a> {
    Host(CheckedIndices<'a>),
    Device(DeviceView<'a, i64>),
}

impl<'a> AdapterIndices<'a> {
    fn len(&self) -> usize {
        match self {
            AdapterIndices::Host(h) => h.len(),
            AdapterIndices::Checked(c) => c.len(),
            AdapterIndices::Device(d) => d.len(),
        }
    }

    /// The one host-side check of an op's indices against its `num_adapters`.
    fn trusted(self, num_adapters: usize) -> Result<TrustedIndices<'a>> {
        Ok(match self {
            AdapterIndices::Host(h) => TrustedIndices::Host(CheckedIndices::new(h, num_adapters)?),
            AdapterIndices::Checked(c) => TrustedIndices::Host(c.for_adapters(num_adapters)?),
            AdapterIndices::Device(d) => TrustedIndices::Device(d),
        })
    }
}

/// The loaded kernel module of one device, and its profile.
struct DeviceKernels {
    device: Device,
    module: Module,
    profile: Arc<DeviceProfile>,
}

static LOADED: Lazy<Mutex<Vec<Arc<DeviceKernels>>>> = Lazy::new(Default::default);

/// The kernel `name` on `stream`'s device and the device's profile. The stream's scratch caches both
/// after their first use, so a launch in steady state takes no process-wide lock and allocates
/// nothing; the process-wide table loads each device's module once (again after a reset).
fn kernel(stream: &Stream, name: &'static str) -> Result<(Kernel, Arc<DeviceProfile>)> {
    if let Some(hit) = scratch::cached_kernel(stream, name) {
        return Ok(hit);
    }
    let found = loaded_kernel(stream.device(), name)?;
    scratch::cache_kernel(stream, name, &found.0, &found.1);
    Ok(found)
}

/// The kernel `name` from the process-wide table, loading the device's module once.
fn loaded_kernel(device: &Device, name: &str) -> Result<(Kernel, Arc<DeviceProfile>)> {
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pos) = loaded.iter().position(|k| k.device == *device) {
        match loaded[pos].module.kernel(name) {
            Ok(k) => return Ok((k, Arc::clone(&loaded[pos].profile))),
            Err(Error::DeviceReset { .. }) => {
                loaded.remove(pos);
            }
            Err(e) => return Err(e),
        }
    }
    let entry = Arc::new(DeviceKernels {
        device: device.clone(),
        module: Module::load(device)?,
        profile: Arc::new(device.profile()?),
    });
    let k = entry.module.kernel(name)?;
    let profile = Arc::clone(&entry.profile);
    loaded.push(entry);
    Ok((k, profile))
}

fn status_fault(
    kernel: &str,
    statuses: &[u32],
    what: impl Fn(usize, u32) -> Option<String>,
) -> Result<()> {
    for (row, &word) in statuses.iter().enumerate() {
        if let Some(detail) = what(row, word) {
            return Err(Error::KernelFault {
                kernel: kernel.to_string(),
                detail,
            });
        }
    }
    Ok(())
}
