//! One checked wrapper per AscendCL call (cudarc's `result` layer): each returns [`crate::Result`], a
//! failure carrying the code's header name and `aclGetRecentErrMsg()` read on the same thread right after
//! the call.
//!
//! The wrappers validate nothing: pointers and handles must be valid for the C call, and device-bound
//! calls need the calling thread's current device set (`device::set`). Those taking raw pointers are
//! `unsafe` with the C contract as their safety requirement.

use crate::{Error, Result};
use ascend_sys::{aclError, AclFunctions};

/// Turns a status code into a `Result`.
pub(crate) fn check(fns: &AclFunctions, call: &'static str, code: aclError) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: aclGetRecentErrMsg takes no arguments; it returns null or a NUL-terminated string that
    // stays valid until the next AscendCL call on this thread, and is copied out at once.
    let message = unsafe {
        let p = (fns.aclGetRecentErrMsg)();
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p)
                .to_string_lossy()
                .trim()
                .to_string()
        }
    };
    Err(Error::Acl {
        call,
        code,
        name: super::error_name(code),
        message,
    })
}

/// `aclInit(NULL)`; an earlier initialisation by someone else in the process (a host framework) is fine.
pub(crate) fn init(fns: &AclFunctions) -> Result<()> {
    // SAFETY: a null config path is documented as "no configuration".
    let code = unsafe { (fns.aclInit)(std::ptr::null()) };
    if code == super::codes::ACL_ERROR_REPEAT_INITIALIZE {
        return Ok(());
    }
    check(fns, "aclInit", code)
}

/// `aclFinalize()`.
pub(crate) fn finalize(fns: &AclFunctions) -> Result<()> {
    // SAFETY: no arguments.
    check(fns, "aclFinalize", unsafe { (fns.aclFinalize)() })
}

pub(crate) mod device {
    use super::*;

    /// `aclrtSetDevice`: binds the calling thread; adds one to the device's reference count.
    pub(crate) fn set(fns: &AclFunctions, id: i32) -> Result<()> {
        // SAFETY: plain integer argument.
        check(fns, "aclrtSetDevice", unsafe { (fns.aclrtSetDevice)(id) })
    }

    /// `aclrtResetDevice`: subtracts one from the reference count; at zero the device's resources go.
    pub(crate) fn reset(fns: &AclFunctions, id: i32) -> Result<()> {
        // SAFETY: plain integer argument.
        check(fns, "aclrtResetDevice", unsafe {
            (fns.aclrtResetDevice)(id)
        })
    }

    /// `aclrtGetDeviceCount`.
    pub(crate) fn count(fns: &AclFunctions) -> Result<u32> {
        let mut n = 0u32;
        // SAFETY: `n` is a valid out-pointer.
        check(fns, "aclrtGetDeviceCount", unsafe {
            (fns.aclrtGetDeviceCount)(&mut n)
        })?;
        Ok(n)
    }

    /// `aclrtSynchronizeDevice` (the current device).
    pub(crate) fn synchronize(fns: &AclFunctions) -> Result<()> {
        // SAFETY: no arguments.
        check(fns, "aclrtSynchronizeDevice", unsafe {
            (fns.aclrtSynchronizeDevice)()
        })
    }

    /// `aclrtGetDeviceInfo`.
    pub(crate) fn info(fns: &AclFunctions, id: u32, attr: ascend_sys::aclrtDevAttr) -> Result<i64> {
        let mut v = 0i64;
        // SAFETY: `v` is a valid out-pointer.
        check(fns, "aclrtGetDeviceInfo", unsafe {
            (fns.aclrtGetDeviceInfo)(id, attr, &mut v)
        })?;
        Ok(v)
    }

    /// `aclGetDeviceCapability`.
    pub(crate) fn capability(
        fns: &AclFunctions,
        id: u32,
        info: ascend_sys::aclDeviceInfo,
    ) -> Result<i64> {
        let mut v = 0i64;
        // SAFETY: `v` is a valid out-pointer.
        check(fns, "aclGetDeviceCapability", unsafe {
            (fns.aclGetDeviceCapability)(id, info, &mut v)
        })?;
        Ok(v)
    }

    /// `aclrtGetSocName` (null means failure).
    pub(crate) fn soc_name(fns: &AclFunctions) -> Result<String> {
        // SAFETY: no arguments; the result is null or a NUL-terminated string owned by the runtime.
        let p = unsafe { (fns.aclrtGetSocName)() };
        if p.is_null() {
            return check(
                fns,
                "aclrtGetSocName",
                super::super::codes::ACL_ERROR_FAILURE,
            )
            .map(|_| String::new());
        }
        // SAFETY: non-null, NUL-terminated, copied out at once.
        Ok(unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned())
    }
}

pub(crate) mod stream {
    use super::*;
    use ascend_sys::{aclrtEvent, aclrtStream};

    /// `aclrtCreateStream` on the current device.
    pub(crate) fn create(fns: &AclFunctions) -> Result<aclrtStream> {
        let mut s: aclrtStream = std::ptr::null_mut();
        // SAFETY: `s` is a valid out-pointer.
        check(fns, "aclrtCreateStream", unsafe {
            (fns.aclrtCreateStream)(&mut s)
        })?;
        Ok(s)
    }

    /// `aclrtDestroyStream`.
    ///
    /// # Safety
    /// `s` is a live stream not used again.
    pub(crate) unsafe fn destroy(fns: &AclFunctions, s: aclrtStream) -> Result<()> {
        // SAFETY: the caller's contract.
        check(fns, "aclrtDestroyStream", unsafe {
            (fns.aclrtDestroyStream)(s)
        })
    }

    /// `aclrtSynchronizeStream`.
    ///
    /// # Safety
    /// `s` is a live stream.
    pub(crate) unsafe fn synchronize(fns: &AclFunctions, s: aclrtStream) -> Result<()> {
        // SAFETY: the caller's contract.
        check(fns, "aclrtSynchronizeStream", unsafe {
            (fns.aclrtSynchronizeStream)(s)
        })
    }

    /// `aclrtStreamWaitEvent`.
    ///
    /// # Safety
    /// `s` and `e` are live and on the current device.
    pub(crate) unsafe fn wait_event(
        fns: &AclFunctions,
        s: aclrtStream,
        e: aclrtEvent,
    ) -> Result<()> {
        // SAFETY: the caller's contract.
        check(fns, "aclrtStreamWaitEvent", unsafe {
            (fns.aclrtStreamWaitEvent)(s, e)
        })
    }
}

pub(crate) mod event {
    use super::*;
    use ascend_sys::{aclrtEvent, aclrtStream};

    /// `aclrtCreateEvent` on the current device.
    pub(crate) fn create(fns: &AclFunctions) -> Result<aclrtEvent> {
        let mut e: aclrtEvent = std::ptr::null_mut();
        // SAFETY: `e` is a valid out-pointer.
        check(fns, "aclrtCreateEvent", unsafe {
            (fns.aclrtCreateEvent)(&mut e)
        })?;
        Ok(e)
    }

    /// `aclrtDestroyEvent`.
    ///
    /// # Safety
    /// `e` is a live event not used again.
    pub(crate) unsafe fn destroy(fns: &AclFunctions, e: aclrtEvent) -> Result<()> {
        // SAFETY: the caller's contract.
        check(fns, "aclrtDestroyEvent", unsafe {
            (fns.aclrtDestroyEvent)(e)
        })
    }

    /// `aclrtRecordEvent`.
    ///
    /// # Safety
    /// `e` and `s` are live and on the current device.
    pub(crate) unsafe fn record(fns: &AclFunctions, e: aclrtEvent, s: aclrtStream) -> Result<()> {
        // SAFETY: the caller's contract.
        check(fns, "aclrtRecordEvent", unsafe {
            (fns.aclrtRecordEvent)(e, s)
        })
    }

    /// `aclrtSynchronizeEvent`.
    ///
    /// # Safety
    /// `e` is live.
    pub(crate) unsafe fn synchronize(fns: &AclFunctions, e: aclrtEvent) -> Result<()> {
        // SAFETY: the caller's contract.
        check(fns, "aclrtSynchronizeEvent", unsafe {
            (fns.aclrtSynchronizeEvent)(e)
        })
    }

    /// `aclrtEventElapsedTime` in milliseconds.
    ///
    /// # Safety
    /// Both events are live.
    pub(crate) unsafe fn elapsed_ms(
        fns: &AclFunctions,
        start: aclrtEvent,
        end: aclrtEvent,
    ) -> Result<f32> {
        let mut ms = 0f32;
        // SAFETY: the caller's contract; `ms` is a valid out-pointer.
        check(fns, "aclrtEventElapsedTime", unsafe {
            (fns.aclrtEventElapsedTime)(&mut ms, start, end)
        })?;
        Ok(ms)
    }
}

pub(crate) mod memory {
    use super::*;
    use ascend_sys::{aclrtMemcpyKind, aclrtStream};
    use std::os::raw::c_void;

    /// `aclrtMalloc` on the current device (`ACL_MEM_MALLOC_HUGE_FIRST`).
    pub(crate) fn malloc(fns: &AclFunctions, bytes: usize) -> Result<u64> {
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: `p` is a valid out-pointer.
        check(fns, "aclrtMalloc", unsafe {
            (fns.aclrtMalloc)(&mut p, bytes, ascend_sys::ACL_MEM_MALLOC_HUGE_FIRST)
        })?;
        Ok(p as u64)
    }

    /// `aclrtFree`.
    ///
    /// # Safety
    /// `p` came from `malloc`, is freed once, and no queued work still uses it.
    pub(crate) unsafe fn free(fns: &AclFunctions, p: u64) -> Result<()> {
        // SAFETY: the caller's contract.
        check(fns, "aclrtFree", unsafe {
            (fns.aclrtFree)(p as *mut c_void)
        })
    }

    /// `aclrtMemset` of `bytes` bytes.
    ///
    /// # Safety
    /// `[p, p + bytes)` is device memory of the current device.
    pub(crate) unsafe fn memset(fns: &AclFunctions, p: u64, bytes: usize, value: u8) -> Result<()> {
        // SAFETY: the caller's contract.
        check(fns, "aclrtMemset", unsafe {
            (fns.aclrtMemset)(p as *mut c_void, bytes, value.into(), bytes)
        })
    }

    /// `aclrtMemcpy` of `bytes` bytes.
    ///
    /// # Safety
    /// Both ranges are valid for `kind` (host memory readable/writable, device memory of the current
    /// device), and nothing else writes them meanwhile.
    pub(crate) unsafe fn memcpy(
        fns: &AclFunctions,
        dst: u64,
        src: u64,
        bytes: usize,
        kind: aclrtMemcpyKind,
    ) -> Result<()> {
        // SAFETY: the caller's contract.
        check(fns, "aclrtMemcpy", unsafe {
            (fns.aclrtMemcpy)(dst as *mut c_void, bytes, src as *const c_void, bytes, kind)
        })
    }

    /// `aclrtMemcpyAsync` of `bytes` bytes on `stream`.
    ///
    /// # Safety
    /// As [`memcpy`], for as long as the copy is queued; `stream` is live and on the current device.
    pub(crate) unsafe fn memcpy_async(
        fns: &AclFunctions,
        dst: u64,
        src: u64,
        bytes: usize,
        kind: aclrtMemcpyKind,
        stream: aclrtStream,
    ) -> Result<()> {
        // SAFETY: the caller's contract.
        check(fns, "aclrtMemcpyAsync", unsafe {
            (fns.aclrtMemcpyAsync)(
                dst as *mut c_void,
                bytes,
                src as *const c_void,
                bytes,
                kind,
                stream,
            )
        })
    }
}

pub(crate) mod module {
    use super::*;
    use ascend_sys::{aclrtBinHandle, aclrtFuncHandle, aclrtStream};
    use std::ffi::CString;

    /// `aclrtBinaryLoadFromData` on the current device, as vector-core (AIV) kernels: the option
    /// `ACL_RT_BINARY_LOAD_OPT_MAGIC` = `ACL_RT_BINARY_MAGIC_ELF_VECTOR_CORE` (acl_rt.h). Without it a
    /// chip with separate cube and vector cores takes an ELF without kernel-type metadata for cube
    /// kernels (docs/BOARD.md).
    pub(crate) fn load_vector_kernels(fns: &AclFunctions, data: &[u8]) -> Result<aclrtBinHandle> {
        let mut option = ascend_sys::aclrtBinaryLoadOption {
            type_: ascend_sys::ACL_RT_BINARY_LOAD_OPT_MAGIC,
            value: ascend_sys::aclrtBinaryLoadOptionValue {
                magic: ascend_sys::ACL_RT_BINARY_MAGIC_ELF_VECTOR_CORE as u32,
            },
        };
        let options = ascend_sys::aclrtBinaryLoadOptions {
            options: &mut option,
            numOpt: 1,
        };
        let mut h: aclrtBinHandle = std::ptr::null_mut();
        // SAFETY: `data` is readable for its length; `options` points to one valid option, and both
        // outlive the call (the runtime reads them during it).
        check(fns, "aclrtBinaryLoadFromData", unsafe {
            (fns.aclrtBinaryLoadFromData)(data.as_ptr().cast(), data.len(), &options, &mut h)
        })?;
        Ok(h)
    }

    /// `aclrtBinaryUnLoad`.
    ///
    /// # Safety
    /// `h` is loaded, not used again, and no queued launch uses its functions.
    pub(crate) unsafe fn unload(fns: &AclFunctions, h: aclrtBinHandle) -> Result<()> {
        // SAFETY: the caller's contract.
        check(fns, "aclrtBinaryUnLoad", unsafe {
            (fns.aclrtBinaryUnLoad)(h)
        })
    }

    /// `aclrtBinaryGetFunction`.
    ///
    /// # Safety
    /// `h` is loaded.
    pub(crate) unsafe fn get_function(
        fns: &AclFunctions,
        h: aclrtBinHandle,
        name: &str,
    ) -> Result<aclrtFuncHandle> {
        let name = CString::new(name)
            .map_err(|_| Error::parameter("kernel name", "no NUL bytes", name))?;
        let mut f: aclrtFuncHandle = std::ptr::null_mut();
        // SAFETY: the caller's contract; `name` is NUL-terminated; `f` is a valid out-pointer.
        check(fns, "aclrtBinaryGetFunction", unsafe {
            (fns.aclrtBinaryGetFunction)(h, name.as_ptr(), &mut f)
        })?;
        Ok(f)
    }

    /// `aclrtLaunchKernelWithHostArgs` with a packed argument block in host memory, no launch
    /// configuration and no placeholders. (`aclrtLaunchKernel` would need the block in device memory of
    /// the launching device: hicann/runtime docs/zh/api_ref/14_Kernel_loading_and_execution.md.)
    ///
    /// # Safety
    /// `f` and `stream` are live on the current device, and the kernel's contract holds for `args`
    /// (every address valid for what the kernel does with it until the launch completes).
    pub(crate) unsafe fn launch(
        fns: &AclFunctions,
        f: aclrtFuncHandle,
        blocks: u32,
        args: &mut [u8],
        stream: aclrtStream,
    ) -> Result<()> {
        // SAFETY: the caller's contract; `args` is valid for its length during the call, and the
        // runtime takes its own copy of a host block for the launch (it sets isNoNeedH2DCopy = 0 for
        // this form, where aclrtLaunchKernel sets 1: hicann/runtime src/runtime/api/api_c_kernel.cc,
        // src/acl/aclrt_impl/kernel.cpp).
        check(fns, "aclrtLaunchKernelWithHostArgs", unsafe {
            (fns.aclrtLaunchKernelWithHostArgs)(
                f,
                blocks,
                stream,
                std::ptr::null_mut(),
                args.as_mut_ptr().cast(),
                args.len(),
                std::ptr::null_mut(),
                0,
            )
        })
    }
}
