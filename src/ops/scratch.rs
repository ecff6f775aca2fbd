//! The per-stream scratch memory of the ops (see the module docs of [`crate::ops`]).

use crate::memory::{DeviceBuffer, DeviceView, DeviceViewMut};
use crate::module::Kernel;
use crate::profile::DeviceProfile;
use crate::scratch::OpsScratch as Scratch;
use crate::{Result, Stream};
use std::sync::Arc;

/// Distinct constants a stream keeps before it drops them all (a decode uses a few per batch size).
const MAX_CONSTANTS: usize = 256;

/// Runs `f` on the stream's scratch.
fn with_scratch<R>(stream: &Stream, f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = stream
        .inner
        .scratch
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    f(&mut scratch)
}

/// The kernel `name` and the device profile, if this stream looked them up before.
pub(super) fn cached_kernel(
    stream: &Stream,
    name: &'static str,
) -> Option<(Kernel, Arc<DeviceProfile>)> {
    with_scratch(stream, |s| {
        Some((
            s.kernels.get(name)?.clone(),
            Arc::clone(s.profile.as_ref()?),
        ))
    })
}

/// Remembers a kernel and the device profile for this stream. The stream lives no longer than its
/// device's current generation, so the handles stay valid for all its launches.
pub(super) fn cache_kernel(
    stream: &Stream,
    name: &'static str,
    kernel: &Kernel,
    profile: &Arc<DeviceProfile>,
) {
    with_scratch(stream, |s| {
        s.kernels.insert(name, kernel.clone());
        s.profile = Some(Arc::clone(profile));
    })
}

/// The stream's scratch region `name` with room for `bytes` bytes (grown when too small; the old
/// buffer stays allocated until the stream's next synchronisation, since queued work may still use it).
///
/// The view carries no use-tracking: the memory belongs to the stream and is only freed after its
/// final synchronisation, so a launch need not (and must not, or the stream would own itself) record it.
pub(super) fn region<'s>(
    stream: &'s Stream,
    name: &'static str,
    bytes: usize,
) -> Result<DeviceViewMut<'s, u8>> {
    let want = bytes.max(32).next_multiple_of(32);
    with_scratch(stream, |scratch| grow(stream, scratch, name, want, bytes))
}

/// The region `name` of at least `want` bytes, viewed as `bytes` bytes.
fn grow<'s>(
    stream: &'s Stream,
    scratch: &mut Scratch,
    name: &'static str,
    want: usize,
    bytes: usize,
) -> Result<DeviceViewMut<'s, u8>> {
    let addr = match scratch.buffers.get(name) {
        Some(buf) if buf.len() >= want => buf.device_addr(),
        _ => {
            let fresh =
                DeviceBuffer::<u8>::zeroed(stream.device(), want.max(256).next_power_of_two())?;
            let addr = fresh.device_addr();
            if let Some(old) = scratch.buffers.insert(name, fresh) {
                stream.inner.with("stream", |_, _, pending| {
                    pending.push(Box::new(old));
                    Ok(())
                })?;
            }
            addr
        }
    };
    // SAFETY: `addr` starts a live allocation of at least `want` bytes on the stream's device, owned by
    // the stream (freed only after its final synchronisation); work on it is ordered by the stream.
    Ok(unsafe { DeviceViewMut::from_raw(stream.device(), addr, bytes) })
}

/// Uploads `bytes` into the stream's scratch region `name` (queued on the stream) and returns a view.
/// When the region already holds exactly these bytes (the same tiling or indices as the previous op,
/// the steady state of a decode), nothing is copied or allocated: only uploads write these regions,
/// in stream order, so what the stream was last told to put there is what the next launch reads.
pub(super) fn upload<'s>(
    stream: &'s Stream,
    name: &'static str,
    bytes: &[u8],
) -> Result<DeviceView<'s, u8>> {
    let want = bytes.len().max(32).next_multiple_of(32);
    with_scratch(stream, |scratch| {
        let mut view = grow(stream, scratch, name, want, bytes.len())?;
        let addr = view.device_addr();
        let same = matches!(scratch.uploaded.get(name), Some((a, b)) if *a == addr && b == bytes);
        if !same {
            stream.upload(view.reborrow(), bytes.to_vec())?;
            let (a, b) = scratch.uploaded.entry(name).or_default();
            *a = addr;
            b.clear();
            b.extend_from_slice(bytes);
        }
        // SAFETY: the same memory, now only read by the launches that follow on this stream.
        Ok(unsafe { DeviceView::from_raw(stream.device(), addr, view.len()) })
    })
}

/// The device copy of `bytes`, read-only launch data such as a tiling struct: uploaded (queued on the
/// stream) the first time these bytes are asked for, then the same memory for every later launch.
pub(super) fn constant<'s>(stream: &'s Stream, bytes: &[u8]) -> Result<DeviceView<'s, u8>> {
    with_scratch(stream, |scratch| {
        if let Some(buf) = scratch.constants.get(bytes) {
            // SAFETY: memory owned by the stream's scratch, holding `bytes` since its upload was
            // queued, never written again, freed only after the stream's final synchronisation.
            return Ok(unsafe {
                DeviceView::from_raw(stream.device(), buf.device_addr(), bytes.len())
            });
        }
        if scratch.constants.len() >= MAX_CONSTANTS {
            // Queued launches may still read them: the stream frees them after its next sync.
            let old: Vec<DeviceBuffer<u8>> = scratch.constants.drain().map(|(_, b)| b).collect();
            stream.inner.with("stream", |_, _, pending| {
                pending.push(Box::new(old));
                Ok(())
            })?;
        }
        let buf = DeviceBuffer::<u8>::zeroed(stream.device(), bytes.len().max(32))?;
        let addr = buf.device_addr();
        scratch.constants.insert(bytes.to_vec(), buf);
        // SAFETY: the buffer just stored in the scratch, at least `bytes.len()` bytes; like every
        // scratch view it carries no use-tracking (the stream owns the memory).
        let view = unsafe { DeviceViewMut::from_raw(stream.device(), addr, bytes.len()) };
        stream.upload(view, bytes.to_vec())?;
        // SAFETY: as above; the upload is queued before any launch that reads this view.
        Ok(unsafe { DeviceView::from_raw(stream.device(), addr, bytes.len()) })
    })
}
