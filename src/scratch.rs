//! The scratch the ops keep on each stream, as data: a stream owns one by type (no downcast), and
//! `ops::scratch` fills and reuses it. It lives here, below both, so the stream need not know the
//! ops and the ops need not cast what the stream holds.

use crate::memory::DeviceBuffer;
use crate::module::Kernel;
use crate::profile::DeviceProfile;
use std::collections::HashMap;
use std::sync::Arc;

/// What the ops keep per stream: named device buffers, the bytes last uploaded into each (so an
/// unchanged tiling or index list is not uploaded again), and the kernels already looked up.
#[derive(Default)]
pub(crate) struct OpsScratch {
    /// Named regions (tiling, status words, indices, workspaces).
    pub(crate) buffers: HashMap<&'static str, DeviceBuffer<u8>>,
    /// Per uploaded region: the buffer's address and the bytes the stream has been told to put there.
    pub(crate) uploaded: HashMap<&'static str, (u64, Vec<u8>)>,
    /// Kernel handles by entry point.
    pub(crate) kernels: HashMap<&'static str, Kernel>,
    /// The device's profile, with the first kernel looked up.
    pub(crate) profile: Option<Arc<DeviceProfile>>,
    /// Small read-only launch data (tiling structs) by content: each distinct value is uploaded once
    /// and never written again, so launches that alternate between shapes (the four LoRA groups of
    /// a layer, a CoLD group between them) upload nothing in steady state.
    pub(crate) constants: HashMap<Vec<u8>, DeviceBuffer<u8>>,
}
