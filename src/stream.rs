//! [`Stream`]: an in-order queue of device work, asynchronous to the host.
//!
//! # Keeping host data alive
//! An async copy reads or writes host memory when the stream reaches it, after the call returned. So
//! async copies take the host data by value ([`HostSource`]: `Vec`, `Box<[T]>`, `Arc<[T]>`, `'static`
//! slices) or hand back a [`HostFuture`] that owns the destination. The stream keeps that data (and the
//! events and modules its queued work uses) alive until the next [`Stream::synchronize`] (or its drop),
//! so nothing a queued task touches is freed early, even if the caller forgets a handle
//! (`mem::forget` included). No borrow-based guard is offered: a guard can be leaked, and then the borrow
//! would end while the copy is still queued.
//!
//! # Threads
//! `Stream` is `Send + Sync`: every AscendCL call on one stream is made under that stream's lock, so
//! concurrent use from several threads is serialised rather than relying on the runtime for it.

use crate::device::{Ctx, Device};
use crate::event::Event;
use crate::memory::{DeviceRepr, DeviceView, DeviceViewMut};
use crate::runtime::{record_drop_error, result};
use crate::scratch::OpsScratch;
use crate::{Error, Result};
use ascend_sys::aclrtStream;
use std::any::Any;
use std::sync::{Arc, Mutex};

/// A queue of device work on one device. Cheap to clone (a shared handle); the stream is destroyed
/// (after its work finishes) when the last handle, and the last buffer that used it, is dropped.
///
/// ```
/// use ascend_cold::{Device, DeviceBuffer, Stream};
/// let device = Device::emulator()?;
/// let stream = Stream::new(&device)?;
/// let mut buf = DeviceBuffer::<f32>::zeroed(&device, 4)?;
/// stream.upload(buf.view_mut(), vec![1.0f32, 2.0, 3.0, 4.0])?;   // the Vec moves into the stream
/// let back = stream.download(buf.view())?;                          // a future owning the result
/// assert_eq!(back.wait()?, [1.0, 2.0, 3.0, 4.0]);                  // synchronises, then hands it over
/// # Ok::<(), ascend_cold::Error>(())
/// ```
#[derive(Clone)]
pub struct Stream {
    pub(crate) inner: Arc<StreamInner>,
}

pub(crate) struct StreamInner {
    pub(crate) device: Device,
    generation: u64,
    raw: aclrtStream,
    owned: bool,
    /// Host data and handles queued work still uses; the lock also serialises calls on `raw`.
    pending: Mutex<Vec<Box<dyn Any + Send>>>,
    /// Checks of device status words, run after the next successful synchronisation (ops' sticky errors).
    checks: Mutex<Vec<AfterSyncCheck>>,
    /// Device scratch memory the ops reuse on this stream (in-order use makes reuse safe); dropped after
    /// the stream's final synchronisation.
    pub(crate) scratch: Mutex<OpsScratch>,
    /// Kernel modules this stream has launched from, each once: kept loaded until the stream is
    /// dropped (after its final synchronisation), so a queued launch never outlives its binary and a
    /// launch in steady state allocates nothing.
    pub(crate) modules: Mutex<Vec<Arc<crate::module::ModuleInner>>>,
}

// SAFETY: `raw` is an opaque runtime handle, only passed to AscendCL while `pending` is locked, and the
// runtime lets a stream be used from any thread bound to its device (which `Device::enter` ensures).
unsafe impl Send for StreamInner {}
// SAFETY: as above: shared access never touches `raw` outside the lock.
unsafe impl Sync for StreamInner {}

/// A check of device results that runs after a successful synchronisation.
pub(crate) type AfterSyncCheck = Box<dyn FnOnce() -> Result<()> + Send>;

/// Host data an async upload may read after the call returns: owned, with a heap address that does not
/// change when the owner moves. Sealed: implemented for `Vec<T>`, `Box<[T]>`, `Arc<[T]>`, `Arc<Vec<T>>`
/// and `&'static [T]`.
pub trait HostSource<T>: sealed::Sealed<T> + Send + 'static {}

mod sealed {
    use std::sync::Arc;
    pub trait Sealed<T> {
        fn host_slice(&self) -> &[T];
    }
    impl<T> Sealed<T> for Vec<T> {
        fn host_slice(&self) -> &[T] {
            self
        }
    }
    impl<T> Sealed<T> for Box<[T]> {
        fn host_slice(&self) -> &[T] {
            self
        }
    }
    impl<T> Sealed<T> for Arc<[T]> {
        fn host_slice(&self) -> &[T] {
            self
        }
    }
    impl<T> Sealed<T> for Arc<Vec<T>> {
        fn host_slice(&self) -> &[T] {
            self
        }
    }
    impl<T> Sealed<T> for &'static [T] {
        fn host_slice(&self) -> &[T] {
            self
        }
    }
}

impl<T: DeviceRepr> HostSource<T> for Vec<T> {}
impl<T: DeviceRepr> HostSource<T> for Box<[T]> {}
impl<T: DeviceRepr> HostSource<T> for Arc<[T]> {}
impl<T: DeviceRepr> HostSource<T> for Arc<Vec<T>> {}
impl<T: DeviceRepr> HostSource<T> for &'static [T] {}

/// The result of [`Stream::download`]: host memory the device writes when the stream gets there.
/// [`HostFuture::wait`] synchronises the stream and hands the data over. Dropping it unread is fine: the
/// stream keeps the memory until its next synchronisation.
pub struct HostFuture<T> {
    slot: Arc<Mutex<Option<Vec<T>>>>,
    stream: Stream,
}

impl<T: DeviceRepr> HostFuture<T> {
    /// Synchronises the stream and returns the downloaded data.
    ///
    /// # Errors
    /// The stream's error (e.g. a kernel fault earlier on it); the data is then lost.
    pub fn wait(self) -> Result<Vec<T>> {
        self.stream.synchronize()?;
        let data = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        data.ok_or_else(|| Error::parameter("download", "a result not yet taken", "none"))
    }

    /// The destination alone, for a check that runs after the stream's next synchronisation (holding the
    /// stream itself there would keep it alive forever).
    pub(crate) fn into_slot(self) -> Arc<Mutex<Option<Vec<T>>>> {
        self.slot
    }
}

impl Stream {
    /// Creates a stream on `device`.
    ///
    /// # Errors
    /// An AscendCL error (e.g. out of stream resources), or [`Error::DeviceReset`]-free failures of
    /// binding the device.
    pub fn new(device: &Device) -> Result<Stream> {
        let ctx = device.enter(None, "stream")?;
        let raw = result::stream::create(ctx.fns)?;
        let generation = device.generation();
        drop(ctx);
        Ok(Stream {
            inner: Arc::new(StreamInner {
                device: device.clone(),
                generation,
                raw,
                owned: true,
                pending: Mutex::default(),
                checks: Mutex::default(),
                scratch: Mutex::default(),
                modules: Mutex::default(),
            }),
        })
    }

    /// Wraps a stream that someone else created (a host framework's `aclrtStream`). This crate queues
    /// work on it and synchronises it, and never destroys it.
    ///
    /// # Safety
    /// `raw` is a live stream (or null, the default stream) created through the same AscendCL as
    /// `device` (`libascendcl.so` for an NPU, the emulator for an emulated device) on `device`, and it
    /// stays live, not destroyed by its owner, until this `Stream`, its clones, and every buffer that
    /// was used on it have been dropped.
    pub unsafe fn from_raw(device: &Device, raw: aclrtStream) -> Stream {
        Stream {
            inner: Arc::new(StreamInner {
                device: device.clone(),
                generation: device.generation(),
                raw,
                owned: false,
                pending: Mutex::default(),
                checks: Mutex::default(),
                scratch: Mutex::default(),
                modules: Mutex::default(),
            }),
        }
    }

    /// The device the stream belongs to.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The raw handle, for interop (valid while this stream lives).
    pub fn as_raw(&self) -> aclrtStream {
        self.inner.raw
    }

    /// Waits until all work queued so far has run; releases the host data it kept alive.
    ///
    /// # Errors
    /// The stream's sticky error (a faulting kernel, with its message) as [`Error::Acl`];
    /// [`Error::DeviceReset`] if the device was reset.
    pub fn synchronize(&self) -> Result<()> {
        self.inner.synchronize()
    }

    /// Registers a check that runs after the next successful synchronisation; its error is that
    /// synchronisation's error (how a kernel's status word becomes a sticky error naming the row).
    pub(crate) fn check_after_sync(&self, check: AfterSyncCheck) {
        self.inner
            .checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(check);
    }

    /// Makes work queued on this stream after this call wait until `event`'s latest record completes.
    ///
    /// # Errors
    /// [`Error::BadParameter`] for an event of another device; AscendCL errors.
    pub fn wait_event(&self, event: &Event) -> Result<()> {
        self.device().expect_same(event.device(), "event")?;
        let keep = event.keep_alive();
        let raw_event = event.raw();
        self.inner.with("stream", |ctx, raw, pending| {
            // SAFETY: both handles are live on the entered device (generations checked by `with` and
            // `keep_alive`); the event stays alive in `pending` until the wait has run.
            unsafe { result::stream::wait_event(ctx.fns, raw, raw_event) }?;
            pending.push(keep);
            Ok(())
        })
    }

    /// Queues a copy of `src` into `dst`. `src` moves into the stream, which keeps it until its next
    /// synchronisation.
    ///
    /// # Errors
    /// [`Error::BadShape`] if the lengths differ; [`Error::BadParameter`] for memory of another device.
    pub fn upload<T: DeviceRepr, H: HostSource<T>>(
        &self,
        dst: DeviceViewMut<'_, T>,
        src: H,
    ) -> Result<()> {
        let host = src.host_slice();
        if host.len() != dst.len() {
            return Err(Error::shape(
                "upload source",
                format!("{} elements (the destination)", dst.len()),
                host.len(),
            ));
        }
        self.device()
            .expect_same(dst.device(), "upload destination")?;
        if host.is_empty() {
            return Ok(());
        }
        let (addr, bytes) = (host.as_ptr() as u64, std::mem::size_of_val(host));
        dst.record_use(self);
        let gen = dst.generation();
        self.inner.with("stream", |ctx, raw, pending| {
            check_generation(dst.device(), gen, "device buffer")?;
            // SAFETY: dst is live device memory of this device (generation checked) of `bytes` bytes;
            // the host range belongs to `src`, whose heap data does not move and is kept in `pending`
            // until the stream has passed this copy.
            unsafe {
                result::memory::memcpy_async(
                    ctx.fns,
                    dst.addr(),
                    addr,
                    bytes,
                    ascend_sys::ACL_MEMCPY_HOST_TO_DEVICE,
                    raw,
                )
            }?;
            pending.push(Box::new(src));
            Ok(())
        })
    }

    /// Queues a copy of `src` into new host memory, returned as a [`HostFuture`].
    ///
    /// # Errors
    /// [`Error::BadParameter`] for memory of another device; AscendCL errors.
    pub fn download<T: DeviceRepr>(&self, src: DeviceView<'_, T>) -> Result<HostFuture<T>> {
        self.device().expect_same(src.device(), "download source")?;
        let mut data: Vec<T> = bytemuck::zeroed_vec(src.len());
        let (addr, bytes) = (
            data.as_mut_ptr() as u64,
            std::mem::size_of_val(data.as_slice()),
        );
        let slot = Arc::new(Mutex::new(Some(data)));
        let future = HostFuture {
            slot: Arc::clone(&slot),
            stream: self.clone(),
        };
        if bytes == 0 {
            return Ok(future);
        }
        src.record_use(self);
        let gen = src.generation();
        self.inner.with("stream", |ctx, raw, pending| {
            check_generation(src.device(), gen, "device buffer")?;
            // SAFETY: src is live device memory of this device; the host range is the heap buffer of
            // the Vec in `slot`, which nobody touches before `wait` synchronises, and which `pending`
            // keeps alive until the stream has passed this copy.
            unsafe {
                result::memory::memcpy_async(
                    ctx.fns,
                    addr,
                    src.addr(),
                    bytes,
                    ascend_sys::ACL_MEMCPY_DEVICE_TO_HOST,
                    raw,
                )
            }?;
            pending.push(Box::new(slot));
            Ok(())
        })?;
        Ok(future)
    }

    /// Queues a device-to-device copy of `src` into `dst` (same device, same length).
    ///
    /// # Errors
    /// [`Error::BadShape`] if the lengths differ; [`Error::BadParameter`] for memory of another device.
    pub fn copy<T: DeviceRepr>(
        &self,
        dst: DeviceViewMut<'_, T>,
        src: DeviceView<'_, T>,
    ) -> Result<()> {
        if dst.len() != src.len() {
            return Err(Error::shape(
                "copy source",
                format!("{} elements (the destination)", dst.len()),
                src.len(),
            ));
        }
        self.device()
            .expect_same(dst.device(), "copy destination")?;
        self.device().expect_same(src.device(), "copy source")?;
        if src.is_empty() {
            return Ok(());
        }
        dst.record_use(self);
        src.record_use(self);
        let (dg, sg) = (dst.generation(), src.generation());
        self.inner.with("stream", |ctx, raw, _| {
            check_generation(dst.device(), dg, "device buffer")?;
            check_generation(src.device(), sg, "device buffer")?;
            // SAFETY: both ranges are live device memory of this device, `bytes` long.
            unsafe {
                result::memory::memcpy_async(
                    ctx.fns,
                    dst.addr(),
                    src.addr(),
                    std::mem::size_of::<T>() * src.len(),
                    ascend_sys::ACL_MEMCPY_DEVICE_TO_DEVICE,
                    raw,
                )
            }
        })
    }
}

pub(crate) fn check_generation(
    device: &Device,
    generation: Option<u64>,
    what: &'static str,
) -> Result<()> {
    match generation {
        Some(g) if !device.is_current(g) => Err(Error::DeviceReset {
            what,
            device: device.to_string(),
        }),
        _ => Ok(()),
    }
}

impl StreamInner {
    /// Runs `f` with the device entered and the stream locked; fails if the device was reset since the
    /// stream was made.
    pub(crate) fn with<R>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Ctx<'_>, aclrtStream, &mut Vec<Box<dyn Any + Send>>) -> Result<R>,
    ) -> Result<R> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let ctx = self.device.enter(Some(self.generation), what)?;
        f(&ctx, self.raw, &mut pending)
    }

    pub(crate) fn synchronize(&self) -> Result<()> {
        let released = self.with("stream", |ctx, raw, pending| {
            // SAFETY: the stream is live on the entered device.
            let r = unsafe { result::stream::synchronize(ctx.fns, raw) };
            // The stream has stopped (finished or failed): nothing queued touches `pending` any more.
            Ok((r, std::mem::take(pending)))
        })?;
        drop(released.1);
        let checks = std::mem::take(&mut *self.checks.lock().unwrap_or_else(|e| e.into_inner()));
        released.0?;
        // Every check runs (each consumes its readback); the first failure is reported.
        let mut first = Ok(());
        for check in checks {
            let r = check();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for StreamInner {
    fn drop(&mut self) {
        if !self.device.is_current(self.generation) {
            return; // the reset already released it
        }
        let r = self.with("stream", |ctx, raw, pending| {
            // SAFETY: the stream is live; after synchronising nothing is queued, and it is not used again.
            let sync = unsafe { result::stream::synchronize(ctx.fns, raw) };
            pending.clear();
            if self.owned {
                // SAFETY: as above.
                unsafe { result::stream::destroy(ctx.fns, raw) }?;
            }
            sync
        });
        if let Err(e) = r {
            record_drop_error(e);
        }
    }
}
