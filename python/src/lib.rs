//! `ascend_cold._native`: the Rust half of the Python package `ascend_cold` (python/ascend_cold/ is the
//! other half, which turns torch tensors and bfloat16 arrays into what this module takes).
//!
//! Contract: every function checks its arguments and reports bad ones as `ValueError` carrying the
//! crate's message, and runtime failures as `RuntimeError` (file errors as `OSError`); nothing
//! panics across the boundary; the GIL is released while kernels and the decoder run.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod arrays;
mod decoder;
mod devices;
mod ops;

use ascend_cold::Error;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// The crate's error as the Python exception a caller can act on: what the caller passed is a
/// `ValueError`, what the machine did is a `RuntimeError`.
pub(crate) fn to_py(e: Error) -> PyErr {
    match e {
        Error::BadShape { .. }
        | Error::BadIndex { .. }
        | Error::BadParameter { .. }
        | Error::NonFinite { .. }
        | Error::InvalidFile { .. } => PyValueError::new_err(e.to_string()),
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    ops::register(m)?;
    decoder::register(m)?;
    m.add_function(wrap_pyfunction!(devices::describe_device, m)?)?;
    Ok(())
}
