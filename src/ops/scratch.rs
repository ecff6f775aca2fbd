//! The per-stream scratch memory of the ops (see the module docs of [`crate::ops`]).

use crate::memory::{DeviceBuffer, DeviceView, DeviceViewMut};
use crate::{Result, Stream};
use std::collections::HashMap;

/// Named device buffers owned by one stream.
#[derive(Default)]
struct Scratch {
    buffers: HashMap<&'static str, DeviceBuffer<u8>>,
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
    let mut slot = stream
        .inner
        .scratch
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let scratch = slot
        .get_or_insert_with(|| Box::new(Scratch::default()))
        .downcast_mut::<Scratch>()
        .expect("only the ops put a Scratch in a stream's scratch slot");
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
pub(super) fn upload<'s>(
    stream: &'s Stream,
    name: &'static str,
    bytes: Vec<u8>,
) -> Result<DeviceView<'s, u8>> {
    let mut view = region(stream, name, bytes.len())?;
    stream.upload(view.reborrow(), bytes)?;
    // SAFETY: the same memory, now only read by the launches that follow on this stream.
    Ok(unsafe { DeviceView::from_raw(stream.device(), view.device_addr(), view.len()) })
}
