//! [`Module`] (a loaded kernel binary), [`Kernel`] (one entry point) and the launch API.
//!
//! # Load
//! [`Module::load`] loads the binary the device's runtime can run (the device ELF built by build.rs on
//! a board, the emulator's manifest on the emulator and on `standin-acl`) with the vector-core load
//! option, one code path for every provider (docs/BOARD.md).
//!
//! # Argument block
//! Every kernel parameter is an 8-byte GM address (docs/KERNELS.md, ABI), so the block is the
//! arguments' device addresses, little-endian, in declaration order, 8 × their count bytes. It is
//! passed in host memory through `aclrtLaunchKernelWithHostArgs`, the launch form whose block lives in
//! host memory (hicann/runtime docs/zh/api_ref/14_Kernel_loading_and_execution.md). Tiling structs
//! travel by address: uploaded to device memory (e.g. a `DeviceBuffer<u8>`). No compile flag that adds
//! hidden parameters is used.
//!
//! # Function handles
//! Each kernel's handle is looked up once per loaded module and cached: any number of launches leaves
//! the runtime's handle count unchanged, and the handles are released with the module.

use crate::device::Device;
use crate::memory::{DeviceBuffer, DeviceRepr, DeviceView, DeviceViewMut, Users};
use crate::runtime::{record_drop_error, result, KernelSource, NO_DEVICE_BINARY};
use crate::stream::{check_generation, Stream};
use crate::{Error, Result};
use ascend_sys::{aclrtBinHandle, aclrtFuncHandle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

fn missing(device: &Device, reason: &str) -> Error {
    Error::RuntimeMissing {
        reason: format!("{device}: {reason}"),
        remedy: "rebuild on a machine with the CANN toolkit (source its set_env.sh first; \
                 docs/BOARD.md), or use the emulator (--device emu)"
            .into(),
    }
}

/// A kernel binary loaded on one device.
///
/// ```
/// use ascend_cold::{Device, DeviceBuffer, Module, Stream};
/// let device = Device::emulator()?;
/// let stream = Stream::new(&device)?;
/// let add = Module::load(&device)?.kernel("emu_selftest_add_f32")?;
/// let x = DeviceBuffer::from_host(&device, &[1.0f32, 2.0, 3.0])?;
/// let y = DeviceBuffer::from_host(&device, &[10.0f32, 20.0, 30.0])?;
/// let mut z = DeviceBuffer::<f32>::zeroed(&device, 3)?;
/// let n = DeviceBuffer::from_host(&device, &[3i64])?;
/// // SAFETY: the kernel reads n[0] elements of x and y and writes as many of z; all hold 3.
/// unsafe { add.launch(&stream, 2, &[&x, &y, &z.view_mut(), &n]) }?;
/// assert_eq!(z.to_vec()?, [11.0, 22.0, 33.0]); // waits for the launch first
/// # Ok::<(), ascend_cold::Error>(())
/// ```
#[derive(Clone)]
pub struct Module {
    inner: Arc<ModuleInner>,
}

pub(crate) struct ModuleInner {
    device: Device,
    generation: u64,
    raw: aclrtBinHandle,
    /// Function handles looked up so far, by kernel name; also serialises calls on `raw`.
    functions: Mutex<HashMap<Arc<str>, aclrtFuncHandle>>,
}

// SAFETY: `raw` and the cached function handles are opaque runtime handles, used only under
// `functions`' lock or (launches) under a stream's lock, from threads bound to the device.
unsafe impl Send for ModuleInner {}
// SAFETY: as above.
unsafe impl Sync for ModuleInner {}

impl Module {
    /// Loads this crate's kernels for `device`: the device binary built by bisheng on an NPU, the
    /// emulator's manifest on an emulated device or on the stand-in runtime.
    ///
    /// # Errors
    /// [`Error::RuntimeMissing`] on an NPU when this build has no device binary (CANN was not present
    /// at build time); AscendCL errors.
    pub fn load(device: &Device) -> Result<Module> {
        match (device.kernel_source(), crate::kernels::NPU_BINARY) {
            (KernelSource::DeviceBinary, Some(bytes)) => Module::from_binary(device, bytes),
            (KernelSource::Emulator | KernelSource::StandIn, _) => {
                Module::from_binary(device, crate::kernels::EMU_BINARY)
            }
            (KernelSource::DeviceBinary, None) => Err(missing(device, NO_DEVICE_BINARY)),
            (KernelSource::Missing(reason), _) => Err(missing(device, reason)),
        }
    }

    /// Loads a binary of vector-core kernels from memory (`aclrtBinaryLoadFromData` with the load
    /// option `ACL_RT_BINARY_LOAD_OPT_MAGIC` = `ACL_RT_BINARY_MAGIC_ELF_VECTOR_CORE`).
    ///
    /// # Errors
    /// AscendCL's error for a malformed binary.
    pub fn from_binary(device: &Device, binary: &[u8]) -> Result<Module> {
        let ctx = device.enter(None, "module")?;
        let raw = result::module::load_vector_kernels(ctx.fns, binary)?;
        let generation = device.generation();
        drop(ctx);
        Ok(Module {
            inner: Arc::new(ModuleInner {
                device: device.clone(),
                generation,
                raw,
                functions: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The device the binary is loaded on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The entry point `name`. The runtime is asked once per module and name; later calls return the
    /// cached handle.
    ///
    /// # Errors
    /// AscendCL's error if the binary has no such kernel; [`Error::DeviceReset`].
    pub fn kernel(&self, name: &str) -> Result<Kernel> {
        let inner = &*self.inner;
        let ctx = inner.device.enter(Some(inner.generation), "module")?;
        let mut functions = inner.functions.lock().unwrap_or_else(|e| e.into_inner());
        let (name, raw) = match functions.get_key_value(name) {
            Some((name, &raw)) => (Arc::clone(name), raw),
            None => {
                // SAFETY: the binary is loaded (generation checked) on the entered device.
                let raw = unsafe { result::module::get_function(ctx.fns, inner.raw, name) }?;
                let name: Arc<str> = Arc::from(name);
                functions.insert(Arc::clone(&name), raw);
                (name, raw)
            }
        };
        Ok(Kernel {
            module: Arc::clone(&self.inner),
            raw,
            name,
        })
    }
}

impl Drop for ModuleInner {
    fn drop(&mut self) {
        if !self.device.is_current(self.generation) {
            return; // the reset already released it
        }
        let r = self
            .device
            .enter(Some(self.generation), "module")
            .and_then(|ctx| {
                // SAFETY: loaded in this generation; kernels and queued launches hold this inner alive, so
                // none remains; not used again.
                unsafe { result::module::unload(ctx.fns, self.raw) }
            });
        if let Err(e) = r {
            record_drop_error(e);
        }
    }
}

/// One kernel entry point of a [`Module`].
#[derive(Clone)]
pub struct Kernel {
    module: Arc<ModuleInner>,
    raw: aclrtFuncHandle,
    name: Arc<str>,
}

// SAFETY: `raw` is an immutable runtime handle; it is passed to AscendCL only under the launching
// stream's lock, from a thread bound to its device.
unsafe impl Send for Kernel {}
// SAFETY: as above.
unsafe impl Sync for Kernel {}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kernel({} on {})", self.name, self.module.device)
    }
}

/// Something whose device address can be a kernel argument: [`DeviceBuffer`], [`DeviceView`],
/// [`DeviceViewMut`]. Sealed.
pub trait KernelArg: sealed::Sealed {}

mod sealed {
    use super::*;

    /// What a launch needs to know about an argument.
    #[allow(private_interfaces)]
    pub struct ArgInfo<'a> {
        pub device: &'a Device,
        pub generation: Option<u64>,
        pub addr: u64,
        pub users: Option<&'a Users>,
    }

    pub trait Sealed {
        fn arg_info(&self) -> ArgInfo<'_>;
    }

    impl<T: DeviceRepr> Sealed for DeviceBuffer<T> {
        fn arg_info(&self) -> ArgInfo<'_> {
            self.view().arg_info_owned()
        }
    }
    impl<T: DeviceRepr> Sealed for DeviceView<'_, T> {
        fn arg_info(&self) -> ArgInfo<'_> {
            ArgInfo {
                device: self.device(),
                generation: self.generation(),
                addr: self.addr(),
                users: self.users(),
            }
        }
    }
    impl<T: DeviceRepr> Sealed for DeviceViewMut<'_, T> {
        fn arg_info(&self) -> ArgInfo<'_> {
            ArgInfo {
                device: self.device(),
                generation: self.generation(),
                addr: self.addr(),
                users: self.users(),
            }
        }
    }

    impl<'a, T: DeviceRepr> DeviceView<'a, T> {
        pub(super) fn arg_info_owned(self) -> ArgInfo<'a> {
            ArgInfo {
                device: self.device(),
                generation: self.generation(),
                addr: self.addr(),
                users: self.users(),
            }
        }
    }
}

impl<T: DeviceRepr> KernelArg for DeviceBuffer<T> {}
impl<T: DeviceRepr> KernelArg for DeviceView<'_, T> {}
impl<T: DeviceRepr> KernelArg for DeviceViewMut<'_, T> {}

impl Kernel {
    /// The entry point's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues the kernel on `stream` over `blocks` blocks, with the arguments' device addresses packed
    /// in order. Each argument's memory is kept allocated until the stream has passed the launch.
    ///
    /// # Safety
    /// The kernel's contract, which this crate cannot check: the arguments match its parameters in
    /// number, order, element type and length, so that every access it makes falls inside them; memory
    /// it writes is not read or written by other queued work without ordering (events); and it
    /// terminates. (On the emulator a violated bound is caught and reported; on a board it is not.)
    ///
    /// # Errors
    /// [`Error::BadParameter`] for `blocks == 0` or an argument, stream and kernel not on one device;
    /// [`Error::DeviceReset`]; AscendCL's error for a rejected launch (e.g. a wrong argument-block size).
    /// A fault while the kernel runs is reported by the next synchronisation.
    pub unsafe fn launch(
        &self,
        stream: &Stream,
        blocks: u32,
        args: &[&dyn KernelArg],
    ) -> Result<()> {
        if blocks == 0 {
            return Err(Error::parameter("blocks", "at least 1", 0));
        }
        if args.len() > MAX_KERNEL_ARGS {
            return Err(Error::parameter(
                "kernel arguments",
                format!("at most {MAX_KERNEL_ARGS}"),
                args.len(),
            ));
        }
        let device = &self.module.device;
        device.expect_same(stream.device(), "launch stream")?;
        // The block on the stack: a launch in steady state allocates nothing.
        let mut packed = [0u8; 8 * MAX_KERNEL_ARGS];
        for (slot, arg) in packed.chunks_exact_mut(8).zip(args) {
            let info = arg.arg_info();
            device.expect_same(info.device, "kernel argument")?;
            slot.copy_from_slice(&info.addr.to_le_bytes());
        }
        for arg in args {
            if let Some(users) = arg.arg_info().users {
                let mut list = users.lock().unwrap_or_else(|e| e.into_inner());
                if !list.iter().any(|s| Arc::ptr_eq(s, &stream.inner)) {
                    list.push(Arc::clone(&stream.inner));
                }
            }
        }
        {
            let mut modules = stream
                .inner
                .modules
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !modules.iter().any(|m| Arc::ptr_eq(m, &self.module)) {
                modules.push(Arc::clone(&self.module));
            }
        }
        stream.inner.with("stream", |ctx, raw, _| {
            check_generation(device, Some(self.module.generation), "module")?;
            for arg in args {
                let info = arg.arg_info();
                check_generation(info.device, info.generation, "device buffer")?;
            }
            // SAFETY: kernel and stream are live on the entered device (generations checked); the
            // argument memory stays allocated until the stream passes the launch (buffers synchronise
            // their streams before freeing), and the module until the stream is dropped; the kernel's
            // own contract is the caller's.
            unsafe {
                result::module::launch(
                    ctx.fns,
                    self.raw,
                    blocks,
                    &mut packed[..8 * args.len()],
                    raw,
                )
            }
        })
    }
}

/// The most parameters a kernel launch packs (the kernels here take at most 8).
pub const MAX_KERNEL_ARGS: usize = 16;
