//! # ascend-cold
//!
//! Contrastive LoRA Decoding (CoLD) on Huawei Ascend NPUs. The crate is layered like cudarc:
//!
//! - [`ascend_sys`]: generated AscendCL FFI and the table of entry points ([`ascend_sys::AclFunctions`]);
//! - `runtime`: the thin checked layer over that table, and its two providers (`libascendcl.so`, or the
//!   emulator over host memory): every AscendCL call returns a [`Result`];
//! - the safe layer: devices, streams, buffers, events, kernel launch;
//! - [`ops`] (validated kernel launches), [`reference`](mod@reference) (the pure-Rust oracle);
//! - the model and the decoding loop on top.
//!
//! See `docs/ARCHITECTURE.md` for the contracts of each layer.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::missing_safety_doc)]

pub mod answer;
pub mod contracts;
pub mod decode;
mod device;
pub mod error;
mod event;
#[cfg(feature = "harness")]
pub mod harness;
pub mod host;
mod kernels;
mod memory;
pub mod model;
mod module;
pub mod npy;
pub mod ops;
pub mod outfile;
pub mod profile;
pub mod reference;
pub mod runtime;
mod scratch;
mod stream;
pub mod task;
pub mod tiling;

pub use ascend_sys;
pub use device::{Device, DeviceSpec};
pub use error::{Error, Result};
pub use event::Event;
/// The f16 / bf16 types of the ops' and the model's public signatures (re-exported so a caller's
/// version always matches ours).
pub use half;
pub use memory::{DeviceBuffer, DeviceRepr, DeviceView, DeviceViewMut};
pub use module::{Kernel, KernelArg, Module};
pub use profile::DeviceProfile;
pub use runtime::{KernelSource, Provider};
pub use stream::{HostFuture, HostSource, Stream};
/// The tokenizer type the model files and the decoder expose (re-exported for the same reason).
pub use tokenizers;
