//! numpy arrays as the typed, contiguous host slices the ops take.
//!
//! Contract: an array is accepted only C-contiguous, with the exact dtype and shape the op needs;
//! anything else is a `ValueError` naming the argument, what was expected and what was given (the
//! crate's `BadShape` / `BadParameter` messages). bfloat16 arrives as `uint16` bit patterns with
//! `dtype="bf16"` (the Python layer turns `ml_dtypes.bfloat16` arrays and torch bf16 tensors into
//! that), because numpy has no bfloat16 of its own.

use crate::to_py;
use ascend_cold::Error;
use numpy::{
    Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyReadwriteArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

/// The float element types of the ops (displayed as numpy names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Float {
    /// numpy `float16`.
    F16,
    /// `uint16` bit patterns read as bfloat16.
    Bf16,
    /// numpy `float32`.
    F32,
}

impl std::fmt::Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Float::F16 => "float16",
            Float::Bf16 => "bfloat16",
            Float::F32 => "float32",
        })
    }
}

/// The float type of `arr` (`what` names it in errors); `dtype` is the caller's `dtype=` argument,
/// which must agree with the array and is the only way to read `uint16` as bfloat16.
pub fn float_of(
    arr: &Bound<'_, PyUntypedArray>,
    dtype: Option<&str>,
    what: &str,
) -> PyResult<Float> {
    let descr = arr.dtype();
    let found = match (descr.kind(), descr.itemsize()) {
        (b'f', 2) => Some(Float::F16),
        (b'f', 4) => Some(Float::F32),
        (b'u', 2) => Some(Float::Bf16),
        _ => None,
    };
    let wanted = match dtype {
        None => None,
        Some("f16" | "float16") => Some(Float::F16),
        Some("bf16" | "bfloat16") => Some(Float::Bf16),
        Some("f32" | "float32") => Some(Float::F32),
        Some(other) => {
            return Err(to_py(Error::parameter(
                "dtype",
                "None, f16, bf16 or f32",
                other,
            )))
        }
    };
    let given = descr.to_string();
    match (found, wanted) {
        (Some(Float::Bf16), Some(Float::Bf16)) => Ok(Float::Bf16),
        (Some(Float::Bf16), None) => Err(dtype_error(
            what,
            "float16, float32, or uint16 bfloat16 bits with dtype=\"bf16\"",
            &given,
        )),
        (Some(f), None) => Ok(f),
        (Some(f), Some(w)) if f == w => Ok(f),
        (_, Some(w)) => Err(dtype_error(what, &format!("{w} (from dtype=)"), &given)),
        (None, None) => Err(dtype_error(what, "float16, float32 or bfloat16", &given)),
    }
}

/// A wrong element type, in the crate's words: "bad parameter dtype: expected <what> in <expected>, ...".
pub fn dtype_error(what: &str, expected: &str, given: &str) -> PyErr {
    to_py(Error::parameter(
        "dtype",
        format!("{what} in {expected}"),
        given,
    ))
}

/// `arr`'s shape, checked against `expected` (None = any extent); `what` names it in the error.
pub fn shape_of(
    arr: &Bound<'_, PyUntypedArray>,
    expected: &[Option<usize>],
    what: &str,
) -> PyResult<Vec<usize>> {
    let shape = arr.shape().to_vec();
    let fits = shape.len() == expected.len()
        && shape
            .iter()
            .zip(expected)
            .all(|(s, e)| e.is_none_or(|e| e == *s));
    if fits {
        return Ok(shape);
    }
    let show = |dims: Vec<String>| format!("[{}]", dims.join(", "));
    let want = show(
        expected
            .iter()
            .map(|e| e.map_or("*".into(), |d| d.to_string()))
            .collect(),
    );
    let got = show(shape.iter().map(usize::to_string).collect());
    Err(to_py(Error::shape(what, want, got)))
}

/// A read-only borrow of `arr` as `T` (its dtype was checked by [`float_of`] or is checked here).
pub fn read<'py, T: Element>(
    arr: &Bound<'py, PyUntypedArray>,
    what: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let typed = typed::<T>(arr, what)?;
    let ro = typed
        .try_readonly()
        .map_err(|e| to_py(Error::parameter("array", format!("{what} free to read"), e)))?;
    contiguous(arr, what)?;
    Ok(ro)
}

/// A writable borrow of `arr` as `T`: refused when it is read-only or overlaps another argument.
pub fn write<'py, T: Element>(
    arr: &Bound<'py, PyUntypedArray>,
    what: &str,
) -> PyResult<PyReadwriteArrayDyn<'py, T>> {
    let typed = typed::<T>(arr, what)?;
    let rw = typed.try_readwrite().map_err(|e| {
        to_py(Error::parameter(
            "array",
            format!("{what} writable and not shared with another argument"),
            e,
        ))
    })?;
    contiguous(arr, what)?;
    Ok(rw)
}

fn typed<'a, 'py, T: Element>(
    arr: &'a Bound<'py, PyUntypedArray>,
    what: &str,
) -> PyResult<&'a Bound<'py, PyArrayDyn<T>>> {
    arr.cast::<PyArrayDyn<T>>().map_err(|_| {
        let expected = numpy::dtype::<T>(arr.py()).to_string();
        dtype_error(what, &expected, &arr.dtype().to_string())
    })
}

fn contiguous(arr: &Bound<'_, PyUntypedArray>, what: &str) -> PyResult<()> {
    if arr.is_c_contiguous() {
        Ok(())
    } else {
        Err(to_py(Error::parameter(
            "array",
            format!("{what} C-contiguous (call numpy.ascontiguousarray or .contiguous() first)"),
            "a strided view",
        )))
    }
}
