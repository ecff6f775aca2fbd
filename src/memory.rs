//! Device memory: [`DeviceBuffer<T>`] (owned), [`DeviceView`] / [`DeviceViewMut`] (borrowed ranges, also
//! over foreign memory), and [`DeviceRepr`], the element types that may live there.
//!
//! # When memory is freed
//! `aclrtFree` frees at once and does not wait for queued work (AscendCL docs), so the order is ours to
//! keep. A buffer remembers every stream that has queued work on it (async copies, kernel launches);
//! dropping it synchronises those streams (only those, not the whole device), then frees the memory,
//! exactly once. Synchronous copies wait for the same streams first, so they see the results of earlier
//! async work. A failure of such a stream (a kernel fault) is reported once by each buffer that used
//! it, at its first synchronous read or drop after the fault, since each buffer's contents are suspect;
//! [`Stream::synchronize`] reports it every time. After a [`Device::reset`] the reset has already released the memory, and drop frees
//! nothing. Drop never panics: errors go to [`crate::runtime::take_drop_errors`].
//!
//! Zero-length buffers allocate nothing (`aclrtMalloc` rejects size 0), and copies of nothing make no
//! call.

use crate::device::Device;
use crate::runtime::{record_drop_error, result};
use crate::stream::{Stream, StreamInner};
use crate::{Error, Result};
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

/// Element types that may live in device memory and be handed to kernels.
///
/// # Safety
/// Implementors are plain data: every bit pattern is a valid value, there is no padding, and the
/// size and alignment match the kernels' C type (`float`, `half`, `bfloat16_t`, `int32_t`, `int64_t`,
/// `uint32_t`, `uint8_t`), because the device writes them with no knowledge of Rust.
pub unsafe trait DeviceRepr: bytemuck::Pod + Send + Sync + 'static {
    /// The type's name in error messages and kernel names (`f32`, `f16`, `bf16`, ...).
    const NAME: &'static str;
}

macro_rules! device_repr {
    ($($t:ty => $n:literal),*) => {$(
        // SAFETY: a primitive numeric type (or half's `repr(transparent)` u16 wrappers): plain data,
        // every bit pattern valid, no padding.
        unsafe impl DeviceRepr for $t { const NAME: &'static str = $n; }
    )*};
}
device_repr!(f32 => "f32", half::f16 => "f16", half::bf16 => "bf16", i32 => "i32", i64 => "i64", u32 => "u32", u8 => "u8");

/// Streams with queued work on a buffer.
pub(crate) type Users = Mutex<Vec<Arc<StreamInner>>>;

/// Records that `stream` has queued work on the memory that `users` guards.
fn add_user(users: Option<&Users>, stream: &Stream) {
    if let Some(users) = users {
        let mut list = users.lock().unwrap_or_else(|e| e.into_inner());
        if !list.iter().any(|s| Arc::ptr_eq(s, &stream.inner)) {
            list.push(Arc::clone(&stream.inner));
        }
    }
}

/// Waits for every stream with queued work on the memory, and forgets them.
fn settle(users: Option<&Users>) -> Result<()> {
    let Some(users) = users else { return Ok(()) };
    let snapshot: Vec<_> = users.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut first = Ok(());
    for stream in &snapshot {
        if let Err(e) = stream.synchronize() {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    // Synchronised streams have stopped, successfully or not: their error is reported once, here.
    users
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|s| !snapshot.iter().any(|t| Arc::ptr_eq(s, t)));
    first
}

/// An owned allocation of `len` elements of `T` on one device.
///
/// ```
/// use ascend_cold::{Device, DeviceBuffer};
/// let device = Device::emulator()?;
/// let mut buf = DeviceBuffer::from_host(&device, &[1i32, 2, 3, 4])?;
/// buf.slice_mut(1..3)?.copy_from_host(&[20, 30])?;
/// assert_eq!(buf.to_vec()?, [1, 20, 30, 4]);
/// assert!(buf.slice(2..9).is_err()); // ranges are checked
/// # Ok::<(), ascend_cold::Error>(())
/// ```
pub struct DeviceBuffer<T: DeviceRepr> {
    device: Device,
    generation: u64,
    addr: u64,
    len: usize,
    users: Users,
    _elem: PhantomData<T>,
}

impl<T: DeviceRepr> DeviceBuffer<T> {
    /// Allocates `len` elements without initialising them (the emulator fills them with 0xFF bytes).
    fn alloc(device: &Device, len: usize) -> Result<Self> {
        let bytes = len.checked_mul(std::mem::size_of::<T>()).ok_or_else(|| {
            Error::parameter(
                "buffer length",
                format!(
                    "at most {} elements of {}",
                    usize::MAX / std::mem::size_of::<T>(),
                    T::NAME
                ),
                len,
            )
        })?;
        let ctx = device.enter(None, "device buffer")?;
        let addr = if bytes == 0 {
            0
        } else {
            result::memory::malloc(ctx.fns, bytes)?
        };
        let generation = device.generation();
        drop(ctx);
        Ok(DeviceBuffer {
            device: device.clone(),
            generation,
            addr,
            len,
            users: Mutex::default(),
            _elem: PhantomData,
        })
    }

    /// Allocates `len` zeroed elements.
    ///
    /// # Errors
    /// AscendCL's `ACL_ERROR_RT_MEMORY_ALLOCATION` when the device cannot hold it.
    pub fn zeroed(device: &Device, len: usize) -> Result<Self> {
        let buf = Self::alloc(device, len)?;
        if buf.addr != 0 {
            let ctx = device.enter(Some(buf.generation), "device buffer")?;
            // SAFETY: the whole fresh allocation, on the entered device.
            unsafe { result::memory::memset(ctx.fns, buf.addr, buf.bytes(), 0) }?;
        }
        Ok(buf)
    }

    /// Allocates and fills from host memory.
    ///
    /// # Errors
    /// As [`DeviceBuffer::zeroed`].
    pub fn from_host(device: &Device, data: &[T]) -> Result<Self> {
        let mut buf = Self::alloc(device, data.len())?;
        buf.view_mut().copy_from_host(data)?;
        Ok(buf)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device the memory is on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    /// The device address (0 for an empty buffer), for interop and kernel argument blocks.
    pub fn device_addr(&self) -> u64 {
        self.addr
    }

    /// The whole buffer as a view.
    pub fn view(&self) -> DeviceView<'_, T> {
        DeviceView {
            device: &self.device,
            generation: Some(self.generation),
            addr: self.addr,
            len: self.len,
            users: Some(&self.users),
            _elem: PhantomData,
        }
    }

    /// The whole buffer as a mutable view.
    pub fn view_mut(&mut self) -> DeviceViewMut<'_, T> {
        DeviceViewMut {
            device: &self.device,
            generation: Some(self.generation),
            addr: self.addr,
            len: self.len,
            users: Some(&self.users),
            _elem: PhantomData,
        }
    }

    /// Elements `range` as a view.
    ///
    /// # Errors
    /// [`Error::BadShape`] if the range does not lie within the buffer.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<DeviceView<'_, T>> {
        self.view().slice(range)
    }

    /// Elements `range` as a mutable view.
    ///
    /// # Errors
    /// [`Error::BadShape`] if the range does not lie within the buffer.
    pub fn slice_mut(&mut self, range: impl RangeBounds<usize>) -> Result<DeviceViewMut<'_, T>> {
        self.view_mut().into_slice(range)
    }

    /// Copies the buffer to host memory of the same length, after the work queued on it.
    ///
    /// # Errors
    /// [`Error::BadShape`] on a length mismatch; the error of a stream that worked on it.
    pub fn copy_to_host(&self, dst: &mut [T]) -> Result<()> {
        self.view().copy_to_host(dst)
    }

    /// Copies host memory of the same length into the buffer, after the work queued on it.
    ///
    /// # Errors
    /// As [`DeviceBuffer::copy_to_host`].
    pub fn copy_from_host(&mut self, src: &[T]) -> Result<()> {
        self.view_mut().copy_from_host(src)
    }

    /// The buffer's contents, after the work queued on it.
    ///
    /// # Errors
    /// As [`DeviceBuffer::copy_to_host`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.view().to_vec()
    }
}

impl<T: DeviceRepr> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        if self.addr == 0 || !self.device.is_current(self.generation) {
            return; // nothing allocated, or the reset released it
        }
        // Stream errors do not stop the free: a failed stream has stopped, so nothing still uses it.
        if let Err(e) = settle(Some(&self.users)) {
            record_drop_error(e);
        }
        let r = self
            .device
            .enter(Some(self.generation), "device buffer")
            .and_then(|ctx| {
                // SAFETY: allocated by `alloc` in this generation, freed only here, and every stream that
                // had work on it was synchronised above.
                unsafe { result::memory::free(ctx.fns, self.addr) }
            });
        if let Err(e) = r {
            record_drop_error(e);
        }
    }
}

impl<T: DeviceRepr> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBuffer<{}>[{}] on {} at {:#x}",
            T::NAME,
            self.len,
            self.device,
            self.addr
        )
    }
}

fn resolve_range(range: impl RangeBounds<usize>, len: usize) -> Result<(usize, usize)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => Some(s),
        Bound::Excluded(&s) => s.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => Some(len),
    };
    match (start, end) {
        (Some(s), Some(e)) if s <= e && e <= len => Ok((s, e)),
        _ => Err(Error::shape(
            "device slice range",
            format!("a range within 0..{len}"),
            format!("{:?}..{:?}", range.start_bound(), range.end_bound()),
        )),
    }
}

/// A borrowed, read-only range of device memory: part of a [`DeviceBuffer`], or foreign memory
/// ([`DeviceView::from_raw`]).
pub struct DeviceView<'a, T> {
    device: &'a Device,
    generation: Option<u64>,
    addr: u64,
    len: usize,
    users: Option<&'a Users>,
    _elem: PhantomData<&'a [T]>,
}

impl<T> Clone for DeviceView<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for DeviceView<'_, T> {}

/// A borrowed, writable range of device memory: part of a [`DeviceBuffer`], or foreign memory
/// ([`DeviceViewMut::from_raw`]).
pub struct DeviceViewMut<'a, T> {
    device: &'a Device,
    generation: Option<u64>,
    addr: u64,
    len: usize,
    users: Option<&'a Users>,
    _elem: PhantomData<&'a mut [T]>,
}

macro_rules! view_common {
    ($v:ident) => {
        impl<'a, T: DeviceRepr> $v<'a, T> {
            /// Number of elements.
            pub fn len(&self) -> usize {
                self.len
            }

            /// Whether it holds no elements.
            pub fn is_empty(&self) -> bool {
                self.len == 0
            }

            /// The device the memory is on.
            pub fn device(&self) -> &'a Device {
                self.device
            }

            /// The device address of the first element.
            pub fn device_addr(&self) -> u64 {
                self.addr
            }

            pub(crate) fn addr(&self) -> u64 {
                self.addr
            }

            pub(crate) fn generation(&self) -> Option<u64> {
                self.generation
            }

            pub(crate) fn record_use(&self, stream: &Stream) {
                add_user(self.users, stream);
            }

            pub(crate) fn users(&self) -> Option<&'a Users> {
                self.users
            }

            fn bytes(&self) -> usize {
                self.len * std::mem::size_of::<T>()
            }

            /// Copies to host memory of the same length, after the work queued on the memory.
            ///
            /// # Errors
            /// [`Error::BadShape`] on a length mismatch; [`Error::DeviceReset`]; the error of a stream
            /// that worked on it.
            pub fn copy_to_host(&self, dst: &mut [T]) -> Result<()> {
                if dst.len() != self.len {
                    return Err(Error::shape(
                        "host destination",
                        format!("{} elements of {}", self.len, T::NAME),
                        dst.len(),
                    ));
                }
                if self.len == 0 {
                    return Ok(());
                }
                settle(self.users)?;
                let ctx = self.device.enter(self.generation, "device buffer")?;
                // SAFETY: the view is live device memory of the entered device (generation checked) of
                // `bytes()` bytes; `dst` is writable host memory of the same size.
                unsafe {
                    result::memory::memcpy(
                        ctx.fns,
                        dst.as_mut_ptr() as u64,
                        self.addr,
                        self.bytes(),
                        ascend_sys::ACL_MEMCPY_DEVICE_TO_HOST,
                    )
                }
            }

            /// The contents, after the work queued on the memory.
            ///
            /// # Errors
            /// As `copy_to_host`.
            pub fn to_vec(&self) -> Result<Vec<T>> {
                let mut v: Vec<T> = bytemuck::zeroed_vec(self.len);
                self.copy_to_host(&mut v)?;
                Ok(v)
            }
        }

        impl<T: DeviceRepr> std::fmt::Debug for $v<'_, T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    "{}<{}>[{}] on {} at {:#x}",
                    stringify!($v),
                    T::NAME,
                    self.len,
                    self.device,
                    self.addr
                )
            }
        }
    };
}
view_common!(DeviceView);
view_common!(DeviceViewMut);

impl<'a, T: DeviceRepr> DeviceView<'a, T> {
    /// A view over foreign device memory (a host framework's tensor). This crate reads it and passes
    /// its address to kernels; it never frees it.
    ///
    /// # Safety
    /// `[addr, addr + len * size_of::<T>())` is device memory on `device`, allocated through the same
    /// AscendCL as `device` (the emulator for an emulated device), holding valid `T`s, aligned for `T`,
    /// that stays allocated, and is not written by anyone else, for `'a` and until every stream this
    /// view is used on has passed that work (the caller synchronises: foreign memory is not tracked).
    pub unsafe fn from_raw(device: &'a Device, addr: u64, len: usize) -> Self {
        DeviceView {
            device,
            generation: None,
            addr,
            len,
            users: None,
            _elem: PhantomData,
        }
    }

    /// Elements `range` of this view.
    ///
    /// # Errors
    /// [`Error::BadShape`] if the range does not lie within the view.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<DeviceView<'a, T>> {
        let (s, e) = resolve_range(range, self.len)?;
        Ok(DeviceView {
            addr: self.addr + (s * std::mem::size_of::<T>()) as u64,
            len: e - s,
            ..*self
        })
    }
}

impl<'a, T: DeviceRepr> DeviceViewMut<'a, T> {
    /// A writable view over foreign device memory. This crate writes it and passes its address to
    /// kernels; it never frees it.
    ///
    /// # Safety
    /// As [`DeviceView::from_raw`], and nobody else reads or writes the range for `'a` and until the
    /// work queued on it has passed.
    pub unsafe fn from_raw(device: &'a Device, addr: u64, len: usize) -> Self {
        DeviceViewMut {
            device,
            generation: None,
            addr,
            len,
            users: None,
            _elem: PhantomData,
        }
    }

    /// A read-only view of the same range.
    pub fn as_view(&self) -> DeviceView<'_, T> {
        DeviceView {
            device: self.device,
            generation: self.generation,
            addr: self.addr,
            len: self.len,
            users: self.users,
            _elem: PhantomData,
        }
    }

    /// A shorter-lived mutable view of the same range (to pass it on and keep using this one).
    pub fn reborrow(&mut self) -> DeviceViewMut<'_, T> {
        DeviceViewMut {
            device: self.device,
            generation: self.generation,
            addr: self.addr,
            len: self.len,
            users: self.users,
            _elem: PhantomData,
        }
    }

    /// Elements `range` of this view.
    ///
    /// # Errors
    /// [`Error::BadShape`] if the range does not lie within the view.
    pub fn into_slice(self, range: impl RangeBounds<usize>) -> Result<DeviceViewMut<'a, T>> {
        let (s, e) = resolve_range(range, self.len)?;
        Ok(DeviceViewMut {
            addr: self.addr + (s * std::mem::size_of::<T>()) as u64,
            len: e - s,
            ..self
        })
    }

    /// Copies host memory of the same length in, after the work queued on the memory.
    ///
    /// # Errors
    /// [`Error::BadShape`] on a length mismatch; [`Error::DeviceReset`]; a stream's error.
    pub fn copy_from_host(&mut self, src: &[T]) -> Result<()> {
        if src.len() != self.len {
            return Err(Error::shape(
                "host source",
                format!("{} elements of {}", self.len, T::NAME),
                src.len(),
            ));
        }
        if self.len == 0 {
            return Ok(());
        }
        settle(self.users)?;
        let ctx = self.device.enter(self.generation, "device buffer")?;
        // SAFETY: live device memory of the entered device (generation checked) of `bytes()` bytes;
        // `src` is readable host memory of the same size.
        unsafe {
            result::memory::memcpy(
                ctx.fns,
                self.addr,
                src.as_ptr() as u64,
                self.bytes(),
                ascend_sys::ACL_MEMCPY_HOST_TO_DEVICE,
            )
        }
    }

    /// Copies device memory of the same length and device in, after the work queued on both.
    ///
    /// # Errors
    /// [`Error::BadShape`] on a length mismatch; [`Error::BadParameter`] for memory of another device.
    pub fn copy_from(&mut self, src: DeviceView<'_, T>) -> Result<()> {
        if src.len() != self.len {
            return Err(Error::shape(
                "device source",
                format!("{} elements of {}", self.len, T::NAME),
                src.len(),
            ));
        }
        self.device.expect_same(src.device(), "device source")?;
        if self.len == 0 {
            return Ok(());
        }
        settle(self.users)?;
        settle(src.users)?;
        let ctx = self.device.enter(self.generation, "device buffer")?;
        crate::stream::check_generation(src.device(), src.generation(), "device buffer")?;
        // SAFETY: both ranges are live device memory of the entered device, `bytes()` long.
        unsafe {
            result::memory::memcpy(
                ctx.fns,
                self.addr,
                src.addr(),
                self.bytes(),
                ascend_sys::ACL_MEMCPY_DEVICE_TO_DEVICE,
            )
        }
    }
}
