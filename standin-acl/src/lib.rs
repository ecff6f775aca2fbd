//! A stand-in `libascendcl.so`: the `ascend-cold` AscendCL emulator behind the C ABI of `acl.h`.
//!
//! # What it is for
//! Running, on a machine with no NPU and no CANN toolkit, the code paths that are otherwise only
//! exercised against the real runtime: `ascend-cold`'s NPU provider opened through
//! [`ascend_sys::AclLibrary`] (point `ASCEND_ACL_LIB` at this file), and plain C host programs compiled
//! against the real AscendCL headers and linked with `-lascendcl`. `scripts/standin-acl` builds it and
//! prints its path.
//!
//! # Contract
//! - Every entry of [`ascend_sys::AclFunctions`] is exported under its C name with the signature of the
//!   header, and forwards to the emulator's implementation ([`ascend_cold::runtime::emu::table`]).
//!   Nothing else of AscendCL is exported: a program that needs more fails to link or to load, instead
//!   of running against a guess.
//! - The emulator implements the documented behaviour of each call, including its preconditions: a bad
//!   argument (a null or freed pointer, a host pointer where device memory is required, a handle of
//!   another device or one already destroyed, a copy larger than `destMax`, ...) is answered with the
//!   AscendCL error code the runtime returns, and `aclGetRecentErrMsg` on the same thread says what was
//!   wrong. It never crashes on such an argument: a fault inside the emulator itself is reported as
//!   `ACL_ERROR_RT_INTERNAL_ERROR`, never unwound into C. (Pointers the caller vouches for, such as the
//!   host side of a copy, are used as C would use them.)
//! - Kernels are the emulator's host-compiled ones: the binary given to `aclrtBinaryLoadFromData` is the
//!   emulator's kernel manifest, not a device ELF; the load options and both launch forms are those of
//!   a board. [`ascend_cold_standin_version`] marks the library so that `ascend-cold` can tell it from
//!   the real runtime and hand it the manifest.
//! - Emulated devices are configured as in the emulator (`ASCEND_COLD_EMU_DEVICES`, default 2;
//!   `ASCEND_COLD_EMU_PROFILE`), read once, at the first call.
//!
//! The library is linked with `-z nodelete` (see `build.rs`): once opened it stays loaded.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use ascend_sys::*;
use std::os::raw::{c_char, c_void};

/// Generates one exported C function per table entry, forwarding to the emulator's entry point.
macro_rules! export {
    ($( $name:ident : fn( $($param:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        $(
            #[doc = concat!(
                "`", stringify!($name), "` of AscendCL, implemented by the `ascend-cold` emulator.\n\n",
                "# Safety\n",
                "The C contract of `", stringify!($name), "` in `acl.h`: pointers the call reads or ",
                "writes on the caller's behalf (host buffers, out-parameters, strings) must be valid for ",
                "that use. Handles and device pointers are checked: a wrong one is answered with an ",
                "AscendCL error code and `aclGetRecentErrMsg`."
            )]
            #[no_mangle]
            #[allow(non_snake_case, clippy::too_many_arguments)]
            pub unsafe extern "C" fn $name($($param: $ty),*) -> $ret {
                // SAFETY: the emulator's entry has exactly this C signature (the same table entry
                // declares both), and the caller upholds the C contract that this function's own
                // contract forwards unchanged.
                unsafe { (ascend_cold::runtime::emu::table().$name)($($param),*) }
            }
        )*
    };
}

ascend_sys::with_acl_functions!(export);

/// Marks this library as the stand-in (version 1 of this contract): `ascend-cold` checks for this
/// symbol and, when present, loads the emulator's kernel manifest instead of a device binary.
#[no_mangle]
pub extern "C" fn ascend_cold_standin_version() -> u32 {
    1
}
