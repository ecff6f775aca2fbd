//! The `libascendcl.so` provider: the driver table resolved from the real AscendCL library.
//!
//! `load` is the single adaptation point to `ascend_sys::AclLibrary::open()` (being written alongside:
//! it searches `ASCEND_HOME_PATH`, `ASCEND_TOOLKIT_HOME`, the default toolkit install, then the loader
//! path, and reports every path it tried). Until it lands, this file does the same search itself.

use crate::{Error, Result};
use ascend_sys::AclFunctions;
use std::path::PathBuf;

const LIBRARY: &str = "libascendcl.so";
const REMEDY: &str = "install the CANN toolkit and source its set_env.sh (sets ASCEND_HOME_PATH), \
                      or use the emulator (Device::emulator(), --device emu)";

/// Candidate paths, most specific first.
fn candidates() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for var in ["ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"] {
        if let Some(root) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            paths.push(PathBuf::from(root).join("lib64").join(LIBRARY));
        }
    }
    paths.push(PathBuf::from("/usr/local/Ascend/ascend-toolkit/latest/lib64").join(LIBRARY));
    paths.push(PathBuf::from(LIBRARY)); // the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache)
    paths
}

/// Opens the library and resolves the table. The library stays loaded for the rest of the process (the
/// table's pointers point into it).
pub(super) fn load() -> Result<(AclFunctions, String)> {
    let mut tried = Vec::new();
    for path in candidates() {
        // SAFETY: loading libascendcl runs its initialisers, which have no preconditions on us.
        match unsafe { libloading::Library::new(&path) } {
            Ok(lib) => {
                let lib: &'static libloading::Library = Box::leak(Box::new(lib));
                // SAFETY: this is AscendCL's runtime library, whose exports have the header signatures
                // the bindings were generated from.
                let fns = unsafe { AclFunctions::load(lib) }.map_err(|m| Error::RuntimeMissing {
                    reason: format!("{} does not export {}: {}", path.display(), m.name, m.reason),
                    remedy: "use a CANN toolkit version that provides the entry points in ascend-sys".into(),
                })?;
                return Ok((fns, path.display().to_string()));
            }
            Err(e) => tried.push(format!("{}: {e}", path.display())),
        }
    }
    Err(Error::RuntimeMissing {
        reason: format!("{LIBRARY} not found; tried {}", tried.join("; ")),
        remedy: REMEDY.into(),
    })
}
