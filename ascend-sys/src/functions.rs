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
    ($( $name:ident : fn( $($arg:ty),* ) -> $ret:ty ; )*) => {
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

        #[allow(non_upper_case_globals, dead_code)]
        mod signature_check {
            use super::*;
            $( pub const $name: unsafe extern "C" fn($($arg),*) -> $ret = crate::bindings::$name; )*
        }
    };
}

// Signatures: `include/external/acl/acl_rt.h` and `acl_base_rt.h` in the hicann/runtime repository
// (the AscendCL runtime headers), equal to the generated declarations (checked by `signature_check`).
// Grouped by topic; the order is also the order of `NAMES`.
acl_functions! {
    // Process setup and diagnostics.
    aclInit: fn(*const c_char) -> aclError;
    aclFinalize: fn() -> aclError;
    aclGetRecentErrMsg: fn() -> *const c_char;
    // Devices.
    aclrtSetDevice: fn(i32) -> aclError;
    aclrtResetDevice: fn(i32) -> aclError;
    aclrtGetDeviceCount: fn(*mut u32) -> aclError;
    aclrtSynchronizeDevice: fn() -> aclError;
    aclrtGetDeviceInfo: fn(u32, aclrtDevAttr, *mut i64) -> aclError;
    aclGetDeviceCapability: fn(u32, aclDeviceInfo, *mut i64) -> aclError;
    aclrtGetSocName: fn() -> *const c_char;
    // Streams and events.
    aclrtCreateStream: fn(*mut aclrtStream) -> aclError;
    aclrtDestroyStream: fn(aclrtStream) -> aclError;
    aclrtSynchronizeStream: fn(aclrtStream) -> aclError;
    aclrtStreamWaitEvent: fn(aclrtStream, aclrtEvent) -> aclError;
    aclrtCreateEvent: fn(*mut aclrtEvent) -> aclError;
    aclrtDestroyEvent: fn(aclrtEvent) -> aclError;
    aclrtRecordEvent: fn(aclrtEvent, aclrtStream) -> aclError;
    aclrtSynchronizeEvent: fn(aclrtEvent) -> aclError;
    aclrtEventElapsedTime: fn(*mut f32, aclrtEvent, aclrtEvent) -> aclError;
    // Memory.
    aclrtMalloc: fn(*mut *mut c_void, usize, aclrtMemMallocPolicy) -> aclError;
    aclrtFree: fn(*mut c_void) -> aclError;
    aclrtMemset: fn(*mut c_void, usize, i32, usize) -> aclError;
    aclrtMemcpy: fn(*mut c_void, usize, *const c_void, usize, aclrtMemcpyKind) -> aclError;
    aclrtMemcpyAsync: fn(*mut c_void, usize, *const c_void, usize, aclrtMemcpyKind, aclrtStream) -> aclError;
    // Kernel binaries and launch.
    aclrtBinaryLoadFromData: fn(*const c_void, usize, *const aclrtBinaryLoadOptions, *mut aclrtBinHandle) -> aclError;
    aclrtBinaryUnLoad: fn(aclrtBinHandle) -> aclError;
    aclrtBinaryGetFunction: fn(aclrtBinHandle, *const c_char, *mut aclrtFuncHandle) -> aclError;
    aclrtLaunchKernel: fn(aclrtFuncHandle, u32, *const c_void, usize, aclrtStream) -> aclError;
}
