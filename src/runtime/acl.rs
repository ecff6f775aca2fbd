//! The `libascendcl.so` provider: the driver table from [`ascend_sys::AclLibrary`], the crate's one
//! loader (its search order: `ASCEND_ACL_LIB`, `$ASCEND_HOME_PATH/lib64`, `$ASCEND_TOOLKIT_HOME/lib64`,
//! the default CANN install, then the system loader), and which kernel binary that runtime can run.

use crate::{Error, Result};
use ascend_sys::{AclFunctions, AclLibrary};

/// The symbol by which `standin-acl` (the emulator behind the C ABI of `acl.h`, for CI) says what it
/// is: it runs host-compiled kernels, so it is given the emulator's manifest instead of the device ELF.
/// Everything else (load options, launch form, contracts) is the board's code path.
pub(crate) const STANDIN_MARKER: &str = "ascend_cold_standin_version";

/// What the provider needs from the opened library.
pub(super) struct Loaded {
    pub(super) fns: AclFunctions,
    pub(super) origin: String,
    pub(super) kernels: KernelBinary,
}

/// The kernel binary a runtime loads, or why there is none.
#[derive(Clone, Copy)]
pub(crate) enum KernelBinary {
    /// Bytes for `aclrtBinaryLoadFromData`.
    Binary(&'static [u8]),
    /// This build has no binary the runtime can run.
    Missing(&'static str),
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
    let library: &'static AclLibrary = Box::leak(Box::new(library));
    let kernels = if library.has_symbol(STANDIN_MARKER) {
        KernelBinary::Binary(crate::kernels::EMU_BINARY)
    } else {
        match crate::kernels::NPU_BINARY {
            Some(bytes) => KernelBinary::Binary(bytes),
            None => KernelBinary::Missing(
                "this build carries no device kernel binary: CANN (ASCEND_HOME_PATH and bisheng) was \
                 not present when it was built, or ASCEND_COLD_EMU_ONLY was set",
            ),
        }
    };
    Ok(Loaded {
        fns: *library.functions(),
        origin: library.path().display().to_string(),
        kernels,
    })
}
