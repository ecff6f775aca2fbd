//! The table of AscendCL entry points used by this project.
//!
//! Every signature here must equal the generated declaration in [`crate::bindings`]; the
//! `signature_check` constants below make a drift a compile error (an `extern` item coerced to a
//! function pointer in a `const` that is never used needs no symbol at link time).

use crate::bindings::*;
use std::os::raw::{c_char, c_void};

/// A symbol that the loaded library does not export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSymbol {
    /// The C name of the missing function.
    pub name: &'static str,
    /// The loader's own message.
    pub reason: String,
}

macro_rules! acl_functions {
    ($( $name:ident : fn( $($param:ident : $arg:ty),* ) -> $ret:ty ; )*) => {
        /// One function pointer per AscendCL entry point this project calls, named as in C.
        ///
        /// Filled by a provider: [`AclFunctions::load`] for `libascendcl.so`, or an emulator.
        #[allow(non_snake_case, missing_docs)]
        #[derive(Clone, Copy)]
        pub struct AclFunctions {
            $( pub $name: unsafe extern "C" fn($($arg),*) -> $ret, )*
        }

        impl AclFunctions {
            /// The C names of every entry in the table, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Resolves every entry from an opened library.
            ///
            /// # Errors
            /// The first symbol the library does not export.
            ///
            /// # Safety
            /// `lib` must be an AscendCL runtime whose exported functions have the signatures of
            /// the headers these bindings were generated from.
            pub unsafe fn load(lib: &libloading::Library) -> Result<Self, MissingSymbol> {
                Ok(Self {
                    $( $name: {
                        let symbol = concat!(stringify!($name), "\0");
                        // SAFETY: the caller guarantees the library's function has this signature.
                        let f: libloading::Symbol<unsafe extern "C" fn($($arg),*) -> $ret> =
                            unsafe { lib.get(symbol.as_bytes()) }.map_err(|e| MissingSymbol {
                                name: stringify!($name),
                                reason: e.to_string(),
                            })?;
                        *f
                    }, )*
                })
            }
        }

        /// Calls `$callback!` with the whole table, one `name: fn(param: Type, ...) -> Ret;` per
        /// entry, so that a provider can be generated from the one list (a stand-in library that
        /// exports every entry under its C name, for example) instead of repeating it. The types are
        /// spelled as in [`crate::bindings`] and resolve where the callback expands: bring
        /// `ascend_sys::*` and `std::os::raw::{c_char, c_void}` into scope there.
        ///
        /// ```
        /// macro_rules! count {
        ///     ($($name:ident : fn($($p:ident : $t:ty),*) -> $r:ty;)*) => { [$(stringify!($name)),*].len() };
        /// }
        /// assert_eq!(ascend_sys::with_acl_functions!(count), ascend_sys::AclFunctions::NAMES.len());
        /// ```
        #[macro_export]
        macro_rules! with_acl_functions {
            ($callback:ident) => {
                $callback! { $( $name: fn($($param: $arg),*) -> $ret; )* }
            };
        }

        #[allow(non_upper_case_globals, dead_code)]
        mod signature_check {
            use super::*;
            $( pub const $name: unsafe extern "C" fn($($arg),*) -> $ret = crate::bindings::$name; )*
        }
    };
}

// Signatures and parameter names: `include/external/acl/acl_rt.h` and `acl_base_rt.h` in the
// hicann/runtime repository (the AscendCL runtime headers), equal to the generated declarations
// (checked by `signature_check`). The table holds what this crate calls and what a plain AscendCL host
// program needs for device, memory, stream and event work (so that a stand-in runtime generated from
// it, `standin-acl/`, can run such a program). Grouped by topic; the order is also the order of `NAMES`.
acl_functions! {
    // Process setup and diagnostics.
    aclInit: fn(configPath: *const c_char) -> aclError;
    aclFinalize: fn() -> aclError;
    aclGetRecentErrMsg: fn() -> *const c_char;
    // Devices.
    aclrtSetDevice: fn(deviceId: i32) -> aclError;
    aclrtGetDevice: fn(deviceId: *mut i32) -> aclError;
    aclrtResetDevice: fn(deviceId: i32) -> aclError;
    aclrtResetDeviceForce: fn(deviceId: i32) -> aclError;
    aclrtGetDeviceCount: fn(count: *mut u32) -> aclError;
    aclrtSynchronizeDevice: fn() -> aclError;
    aclrtGetDeviceInfo: fn(deviceId: u32, attr: aclrtDevAttr, value: *mut i64) -> aclError;
    aclGetDeviceCapability: fn(deviceId: u32, deviceInfo: aclDeviceInfo, value: *mut i64) -> aclError;
    aclrtGetSocName: fn() -> *const c_char;
    // Streams and events.
    aclrtCreateStream: fn(stream: *mut aclrtStream) -> aclError;
    aclrtDestroyStream: fn(stream: aclrtStream) -> aclError;
    aclrtDestroyStreamForce: fn(stream: aclrtStream) -> aclError;
    aclrtSynchronizeStream: fn(stream: aclrtStream) -> aclError;
    aclrtSynchronizeStreamWithTimeout: fn(stream: aclrtStream, timeout: i32) -> aclError;
    aclrtStreamQuery: fn(stream: aclrtStream, status: *mut aclrtStreamStatus) -> aclError;
    aclrtStreamWaitEvent: fn(stream: aclrtStream, event: aclrtEvent) -> aclError;
    aclrtCreateEvent: fn(event: *mut aclrtEvent) -> aclError;
    aclrtDestroyEvent: fn(event: aclrtEvent) -> aclError;
    aclrtRecordEvent: fn(event: aclrtEvent, stream: aclrtStream) -> aclError;
    aclrtQueryEventStatus: fn(event: aclrtEvent, status: *mut aclrtEventRecordedStatus) -> aclError;
    aclrtSynchronizeEvent: fn(event: aclrtEvent) -> aclError;
    aclrtEventElapsedTime: fn(ms: *mut f32, startEvent: aclrtEvent, endEvent: aclrtEvent) -> aclError;
    // Memory.
    aclrtMalloc: fn(devPtr: *mut *mut c_void, size: usize, policy: aclrtMemMallocPolicy) -> aclError;
    aclrtFree: fn(devPtr: *mut c_void) -> aclError;
    aclrtMallocHost: fn(hostPtr: *mut *mut c_void, size: usize) -> aclError;
    aclrtFreeHost: fn(hostPtr: *mut c_void) -> aclError;
    aclrtMemset: fn(devPtr: *mut c_void, maxCount: usize, value: i32, count: usize) -> aclError;
    aclrtMemcpy: fn(dst: *mut c_void, destMax: usize, src: *const c_void, count: usize, kind: aclrtMemcpyKind) -> aclError;
    aclrtMemcpyAsync: fn(dst: *mut c_void, destMax: usize, src: *const c_void, count: usize, kind: aclrtMemcpyKind, stream: aclrtStream) -> aclError;
    // Kernel binaries and launch (docs/zh/api_ref/14_Kernel_loading_and_execution.md in hicann/runtime:
    // aclrtLaunchKernel takes its argument block in device memory, aclrtLaunchKernelWithHostArgs in
    // host memory).
    aclrtBinaryLoadFromData: fn(data: *const c_void, length: usize, options: *const aclrtBinaryLoadOptions, binHandle: *mut aclrtBinHandle) -> aclError;
    aclrtBinaryUnLoad: fn(binHandle: aclrtBinHandle) -> aclError;
    aclrtBinaryGetFunction: fn(binHandle: aclrtBinHandle, kernelName: *const c_char, funcHandle: *mut aclrtFuncHandle) -> aclError;
    aclrtLaunchKernel: fn(funcHandle: aclrtFuncHandle, numBlocks: u32, argsData: *const c_void, argsSize: usize, stream: aclrtStream) -> aclError;
    aclrtLaunchKernelWithHostArgs: fn(funcHandle: aclrtFuncHandle, numBlocks: u32, stream: aclrtStream, cfg: *mut aclrtLaunchKernelCfg, hostArgs: *mut c_void, argsSize: usize, placeHolderArray: *mut aclrtPlaceHolderInfo, placeHolderNum: usize) -> aclError;
}
