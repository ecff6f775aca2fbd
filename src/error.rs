//! The one error type of the crate: a variant per cause, each saying what was expected and what was
//! given. Every layer returns it; nothing below the CLI panics on bad input.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, by cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor or buffer had the wrong shape or length.
    #[error("bad shape for {what}: expected {expected}, got {given}")]
    BadShape {
        /// Which argument.
        what: String,
        /// What the call needed.
        expected: String,
        /// What it was given.
        given: String,
    },
    /// An adapter index outside `-inf..num_adapters` (negative means "no adapter").
    #[error(
        "bad adapter index {index} in row {row}: expected -1 (no adapter) or 0..{num_adapters}"
    )]
    BadIndex {
        /// The batch row that carried it.
        row: usize,
        /// The index given.
        index: i64,
        /// How many adapters there are.
        num_adapters: usize,
    },
    /// A scalar parameter outside its domain.
    #[error("bad parameter {name}: expected {expected}, got {given}")]
    BadParameter {
        /// The parameter's name.
        name: &'static str,
        /// Its valid domain.
        expected: String,
        /// What was given.
        given: String,
    },
    /// Rows whose inputs held NaN or infinity, so no token can be chosen for them.
    #[error("non-finite input in {what}, rows {rows:?}")]
    NonFinite {
        /// Which input.
        what: String,
        /// The offending rows.
        rows: Vec<usize>,
    },
    /// No usable AscendCL runtime (library, symbol or device).
    #[error("AscendCL runtime not available: {reason}\n  remedy: {remedy}")]
    RuntimeMissing {
        /// What failed, with what was tried.
        reason: String,
        /// How to fix it.
        remedy: String,
    },
    /// An AscendCL call returned an error code.
    #[error("{call} failed with AscendCL error {code} ({name}){}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Acl {
        /// The C function.
        call: &'static str,
        /// The raw `aclError`.
        code: i32,
        /// The code's name in the AscendCL headers, or "unknown".
        name: &'static str,
        /// `aclGetRecentErrMsg()` at the time of the failure.
        message: String,
    },
    /// A handle (buffer, stream, event, module) used after its device was reset: its resources are gone.
    #[error("{what} used after {device} was reset: create it again on the device")]
    DeviceReset {
        /// The kind of handle.
        what: &'static str,
        /// The device, e.g. `emu:0` or `npu:1`.
        device: String,
    },
    /// A kernel reported a fault through its status word (raised at the next synchronisation).
    #[error("kernel {kernel} reported a fault: {detail}")]
    KernelFault {
        /// The kernel entry point.
        kernel: String,
        /// What it reported.
        detail: String,
    },
    /// A model, adapter, tokenizer or data file that cannot be used.
    #[error("invalid file {}: {field}: {detail}", path.display())]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// The field or section at fault.
        field: String,
        /// What was expected and what was found.
        detail: String,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::BadShape`].
    pub fn shape(what: impl Into<String>, expected: impl ToString, given: impl ToString) -> Self {
        Error::BadShape {
            what: what.into(),
            expected: expected.to_string(),
            given: given.to_string(),
        }
    }

    /// Shorthand for [`Error::BadParameter`].
    pub fn parameter(name: &'static str, expected: impl ToString, given: impl ToString) -> Self {
        Error::BadParameter {
            name,
            expected: expected.to_string(),
            given: given.to_string(),
        }
    }
}
