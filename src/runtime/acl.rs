//! The `libascendcl.so` provider: the driver table from [`ascend_sys::AclLibrary`], the crate's one
//! loader (its search order: `ASCEND_ACL_LIB`, `$ASCEND_HOME_PATH/lib64`, `$ASCEND_TOOLKIT_HOME/lib64`,
//! the default CANN install, then the system loader), and which kernels that runtime can run: the
//! device binary, or for `standin-acl` (recognised by `ascend_sys::STANDIN_MARKER`, accepted only when
//! named by `ASCEND_ACL_LIB`) the emulator's host-compiled kernels. Everything else (load options,
//! launch form, contracts) is the board's code path.

use super::KernelSource;
use crate::{Error, Result};
use ascend_sys::{AclFunctions, AclLibrary, STANDIN_MARKER};

/// What the provider needs from the opened library.
pub(super) struct Loaded {
    pub(super) fns: AclFunctions,
    pub(super) origin: String,
    pub(super) kernels: KernelSource,
}

/// Opens the library for the rest of the process (the table's pointers point into it).
pub(super) fn load() -> Result<Loaded> {
    let library = AclLibrary::open().map_err(|e| Error::RuntimeMissing {
        reason: e.to_string(),
        remedy:
            "install the CANN toolkit and source its set_env.sh (sets ASCEND_HOME_PATH), point \
                 ASCEND_ACL_LIB at a libascendcl.so, or use the emulator (--device emu)"
                .into(),
    })?;
    // AclLibrary accepts the stand-in only when it was named explicitly (ASCEND_ACL_LIB).
    let standin = library.has_symbol(STANDIN_MARKER);
    let library: &'static AclLibrary = Box::leak(Box::new(library));
    let kernels = if standin {
        KernelSource::StandIn
    } else if crate::kernels::NPU_BINARY.is_some() {
        KernelSource::DeviceBinary
    } else {
        KernelSource::Missing(super::NO_DEVICE_BINARY)
    };
    Ok(Loaded {
        fns: *library.functions(),
        origin: library.path().display().to_string(),
        kernels,
    })
}
