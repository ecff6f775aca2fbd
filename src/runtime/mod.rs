//! The runtime layer: one driver table of AscendCL entry points, two providers, one checked layer.
//!
//! - [`ascend_sys::AclFunctions`] is the only way this crate reaches AscendCL. A `Driver` owns one
//!   filled table: from `libascendcl.so` (`acl.rs`, the NPU) or from the emulator ([`emu`]), which
//!   implements the same C functions over host memory.
//! - `result.rs` wraps each C call once, in cudarc's `result` style: every call returns
//!   [`crate::Result`], a failure carrying the code's header name and `aclGetRecentErrMsg()`.
//! - Nothing above this module knows which provider it has: the safe layer (`Device`, `Stream`,
//!   `DeviceBuffer`, `Event`, `Module`) holds a `&'static Driver` and calls `result`.
//!
//! Contract: this layer validates nothing the C API does not validate. Pointers, handles, sizes and the
//! calling thread's current device are the caller's (the safe layer's) responsibility; the emulator
//! additionally checks what a board would only corrupt, and reports it with the board's error codes.
//! `aclInit` runs once per process and provider when its driver is first built; [`finalize`] calls
//! `aclFinalize` once.

mod acl;
pub mod codes;
pub mod emu;
pub(crate) mod result;

pub use codes::error_name;

use ascend_sys::AclFunctions;
use once_cell::sync::OnceCell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which implementation of AscendCL a device runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// `libascendcl.so` and a real NPU.
    Npu,
    /// The emulator over host memory.
    Emulator,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Npu => "npu",
            Provider::Emulator => "emu",
        })
    }
}

/// One filled driver table and where it came from. Lives for the whole process.
pub(crate) struct Driver {
    pub(crate) fns: AclFunctions,
    pub(crate) provider: Provider,
    /// Where the table came from (a library path, or "built-in emulator").
    pub(crate) origin: String,
    /// The kernels this runtime can run.
    pub(crate) kernels: KernelSource,
    finalized: AtomicBool,
}

impl Driver {
    fn new(
        fns: AclFunctions,
        provider: Provider,
        origin: String,
        kernels: KernelSource,
    ) -> crate::Result<Self> {
        result::init(&fns)?;
        Ok(Driver {
            fns,
            provider,
            origin,
            kernels,
            finalized: AtomicBool::new(false),
        })
    }

    /// The table, unless [`finalize`] ran.
    pub(crate) fn fns(&self) -> crate::Result<&AclFunctions> {
        if self.finalized.load(Ordering::Acquire) {
            Err(crate::Error::RuntimeMissing {
                reason: format!("AscendCL ({}) was finalized", self.origin),
                remedy: "finalize only at the end of the process".into(),
            })
        } else {
            Ok(&self.fns)
        }
    }
}

static EMULATOR: OnceCell<Driver> = OnceCell::new();
static LIBASCENDCL: OnceCell<Driver> = OnceCell::new();

/// The emulator's driver (initialised on first use).
pub(crate) fn emulator() -> crate::Result<&'static Driver> {
    EMULATOR.get_or_try_init(|| {
        emu::config()?;
        Driver::new(
            emu::TABLE,
            Provider::Emulator,
            "built-in emulator".into(),
            KernelSource::Emulator,
        )
    })
}

/// The `libascendcl.so` driver (loaded and initialised on first success; a failure is retried on the
/// next call, so installing the toolkit does not need a restart of a long-lived process).
pub(crate) fn libascendcl() -> crate::Result<&'static Driver> {
    LIBASCENDCL.get_or_try_init(|| {
        let loaded = acl::load()?;
        Driver::new(loaded.fns, Provider::Npu, loaded.origin, loaded.kernels)
    })
}

/// Calls `aclFinalize` for every provider this process initialised, once. Every later device call
/// returns [`crate::Error::RuntimeMissing`]. Call it at the very end of the process, if at all: AscendCL
/// releases everything at process exit anyway.
///
/// # Errors
/// The first `aclFinalize` failure.
pub fn finalize() -> crate::Result<()> {
    let mut first = Ok(());
    for driver in [EMULATOR.get(), LIBASCENDCL.get()].into_iter().flatten() {
        if !driver.finalized.swap(true, Ordering::AcqRel) {
            if let Err(e) = result::finalize(&driver.fns) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
    }
    first
}

/// Errors that `Drop` implementations met (they never panic): the most recent 32, oldest first.
/// Taking them clears the record.
pub fn take_drop_errors() -> Vec<crate::Error> {
    std::mem::take(&mut *DROP_ERRORS.lock().unwrap_or_else(|e| e.into_inner()))
}

static DROP_ERRORS: std::sync::Mutex<Vec<crate::Error>> = std::sync::Mutex::new(Vec::new());

/// Records an error met in `Drop`.
pub(crate) fn record_drop_error(error: crate::Error) {
    let mut errors = DROP_ERRORS.lock().unwrap_or_else(|e| e.into_inner());
    if errors.len() == 32 {
        errors.remove(0);
    }
    errors.push(error);
}

/// Why a build has no device binary.
pub(crate) const NO_DEVICE_BINARY: &str = "this build carries no device kernel binary: CANN \
    (ASCEND_HOME_PATH and bisheng) was not present when it was built, or ASCEND_COLD_EMU_ONLY was set";

/// Which kernels a device runs ([`Device::kernel_source`](crate::Device::kernel_source)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelSource {
    /// The device binary build.rs compiled and linked for the 910B vector cores (dav-c220-vec) with the
    /// CANN toolkit, on an NPU.
    DeviceBinary,
    /// The host-compiled kernels, run by the in-process emulator.
    Emulator,
    /// The host-compiled kernels, run by `standin-acl` behind the `libascendcl.so` provider (CI's
    /// NPU path; not a board).
    StandIn,
    /// No kernels this runtime can run; the reason.
    Missing(&'static str),
}
