//! [`Event`]: a marker recorded on a stream, for cross-stream ordering and timing.

use crate::device::Device;
use crate::runtime::{record_drop_error, result};
use crate::stream::{check_generation, Stream};
use crate::Result;
use ascend_sys::aclrtEvent;
use std::any::Any;
use std::sync::{Arc, Mutex};

/// A marker on a stream: [`Event::record`] places it, [`Event::synchronize`] waits for it,
/// [`Stream::wait_event`] orders another stream after it, [`Event::elapsed_ms`] times two of them.
///
/// ```
/// use ascend_cold::{Device, Event, Stream};
/// let device = Device::emulator()?;
/// let (producer, consumer) = (Stream::new(&device)?, Stream::new(&device)?);
/// let (start, done) = (Event::new(&device)?, Event::new(&device)?);
/// start.record(&producer)?;
/// // ... queue work on `producer` ...
/// done.record(&producer)?;
/// consumer.wait_event(&done)?; // work queued on `consumer` from here on runs after it
/// done.synchronize()?;
/// assert!(start.elapsed_ms(&done)? >= 0.0);
/// # Ok::<(), ascend_cold::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    inner: Arc<EventInner>,
}

struct EventInner {
    device: Device,
    generation: u64,
    raw: aclrtEvent,
    /// Serialises calls on `raw`.
    lock: Mutex<()>,
}

// SAFETY: `raw` is an opaque runtime handle, passed to AscendCL only under `lock` (or by a stream call
// that holds the event alive), from threads bound to the event's device.
unsafe impl Send for EventInner {}
// SAFETY: as above.
unsafe impl Sync for EventInner {}

impl Event {
    /// Creates an event on `device`.
    ///
    /// # Errors
    /// AscendCL errors (e.g. out of event resources).
    pub fn new(device: &Device) -> Result<Event> {
        let ctx = device.enter(None, "event")?;
        let raw = result::event::create(ctx.fns)?;
        let generation = device.generation();
        drop(ctx);
        Ok(Event {
            inner: Arc::new(EventInner {
                device: device.clone(),
                generation,
                raw,
                lock: Mutex::new(()),
            }),
        })
    }

    /// The device the event belongs to.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    pub(crate) fn raw(&self) -> aclrtEvent {
        self.inner.raw
    }

    /// A handle that keeps the event alive while queued work refers to it.
    pub(crate) fn keep_alive(&self) -> Box<dyn Any + Send> {
        Box::new(Arc::clone(&self.inner))
    }

    /// Places the marker at the current end of `stream`'s queue.
    ///
    /// # Errors
    /// [`Error::BadParameter`](crate::Error::BadParameter) for a stream of another device; [`Error::DeviceReset`](crate::Error::DeviceReset); AscendCL errors.
    pub fn record(&self, stream: &Stream) -> Result<()> {
        self.device().expect_same(stream.device(), "stream")?;
        let keep = self.keep_alive();
        let inner = &*self.inner;
        stream.inner.with("stream", |ctx, raw, pending| {
            check_generation(&inner.device, Some(inner.generation), "event")?;
            let _lock = inner.lock.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: event and stream are live on the entered device (generations checked).
            unsafe { result::event::record(ctx.fns, inner.raw, raw) }?;
            pending.push(keep);
            Ok(())
        })
    }

    /// Waits until the latest record has completed (at once if never recorded).
    ///
    /// # Errors
    /// [`Error::DeviceReset`](crate::Error::DeviceReset); AscendCL errors.
    pub fn synchronize(&self) -> Result<()> {
        let inner = &*self.inner;
        let ctx = inner.device.enter(Some(inner.generation), "event")?;
        let _lock = inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the event is live (generation checked).
        unsafe { result::event::synchronize(ctx.fns, inner.raw) }
    }

    /// Milliseconds from this event's completion to `end`'s. Both must be recorded and completed.
    ///
    /// # Errors
    /// [`Error::BadParameter`](crate::Error::BadParameter) for events of different devices; AscendCL's
    /// `ACL_ERROR_RT_EVENT_TIMESTAMP_INVALID` if either has not completed.
    pub fn elapsed_ms(&self, end: &Event) -> Result<f32> {
        self.device().expect_same(end.device(), "end event")?;
        let (a, b) = (&*self.inner, &*end.inner);
        let ctx = a.device.enter(Some(a.generation), "event")?;
        check_generation(&b.device, Some(b.generation), "event")?;
        // SAFETY: both events are live (generations checked); the runtime only reads their timestamps.
        unsafe { result::event::elapsed_ms(ctx.fns, a.raw, b.raw) }
    }
}

impl Drop for EventInner {
    fn drop(&mut self) {
        if !self.device.is_current(self.generation) {
            return; // the reset already released it
        }
        let r = self
            .device
            .enter(Some(self.generation), "event")
            .and_then(|ctx| {
                // SAFETY: the event is live; streams that recorded or wait on it hold this inner alive, so
                // reaching here means no queued work refers to it; it is not used again.
                unsafe {
                    let sync = result::event::synchronize(ctx.fns, self.raw);
                    result::event::destroy(ctx.fns, self.raw)?;
                    sync
                }
            });
        if let Err(e) = r {
            record_drop_error(e);
        }
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Event({})", self.inner.device)
    }
}
