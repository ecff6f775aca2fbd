//! The ops on host arrays: `bgmv_shrink`, `bgmv_expand` (with vLLM's slice form) and `cold_score`.
//!
//! Contract: arguments are checked here and by `ascend_cold::ops` before anything runs; then, with
//! the GIL released, the arrays are copied to the device, the op runs on a stream of its own (so
//! threads calling at once never share the stream's scratch), and the outputs are copied back. Output
//! arrays are written in place, and only where the op writes (rows with index -1 keep their values).
//! Weights are `[num_loras, out, in]` as vLLM stacks them, or `[num_loras, 1, out, in]`.

use crate::arrays::{dtype_error, float_of, read, shape_of, write, Float};
use crate::{devices, to_py};
use ascend_cold::contracts::{ColdParams, ColdShape, ExpandShape, ShrinkShape};
use ascend_cold::ops::{self, AdapterIndices, ColdOutputs, LogitFloat, LoraFloat};
use ascend_cold::{DeviceBuffer, Error, Result, Stream};
use bytemuck::Pod;
use half::{bf16, f16};
use numpy::{Element, PyArray1, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// Registers the ops in the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(bgmv_shrink, m)?)?;
    m.add_function(wrap_pyfunction!(bgmv_expand, m)?)?;
    m.add_function(wrap_pyfunction!(cold_score, m)?)?;
    Ok(())
}

type Arr<'py> = Bound<'py, PyUntypedArray>;

/// `cold_score`'s result: the tokens, and the score rows when asked.
type Picks<'py> = (Bound<'py, PyArray1<i64>>, Option<Bound<'py, PyAny>>);

/// The contiguous elements of a checked borrow, as the op's element type (`u16` bits as `bf16`).
fn elems<N: Element + Pod, T: Pod>(
    s: std::result::Result<&[N], numpy::AsSliceError>,
) -> PyResult<&[T]> {
    let s = s.map_err(|e| to_py(Error::parameter("array", "C-contiguous", e)))?;
    Ok(bytemuck::cast_slice(s))
}

fn elems_mut<N: Element + Pod, T: Pod>(
    s: std::result::Result<&mut [N], numpy::AsSliceError>,
) -> PyResult<&mut [T]> {
    let s = s.map_err(|e| to_py(Error::parameter("array", "C-contiguous", e)))?;
    Ok(bytemuck::cast_slice_mut(s))
}

/// `[num_loras, out, in]` of stacked weights, also from vLLM's `[num_loras, 1, out, in]`, with `in`
/// checked when known.
fn stacked(arr: &Arr<'_>, what: &str, inner: Option<usize>) -> PyResult<[usize; 3]> {
    match arr.shape().len() {
        4 => shape_of(arr, &[None, Some(1), None, inner], what).map(|s| [s[0], s[2], s[3]]),
        _ => shape_of(arr, &[None, None, inner], what).map(|s| [s[0], s[1], s[2]]),
    }
}

/// The one float type of an op's arrays (`names[i]` for `arrays[i]`), which must be in `allowed`.
fn common_float(
    arrays: &[&Arr<'_>],
    names: &[&str],
    dtype: Option<&str>,
    allowed: &[Float],
) -> PyResult<Float> {
    let mut first = None;
    for (arr, name) in arrays.iter().zip(names) {
        let f = float_of(arr, dtype, name)?;
        if !allowed.contains(&f) {
            let allowed: Vec<String> = allowed.iter().map(Float::to_string).collect();
            return Err(dtype_error(name, &allowed.join(" or "), &f.to_string()));
        }
        match first {
            Some(first) if first != f => {
                return Err(dtype_error(
                    name,
                    &format!("{first}, as {}", names[0]),
                    &f.to_string(),
                ))
            }
            _ => first = Some(f),
        }
    }
    Ok(first.unwrap_or(Float::F32))
}

const LORA: &[Float] = &[Float::F16, Float::Bf16];

/// `output_tensor[b] += scaling * lora_a_weights[idx[b]] @ inputs[b]` as vLLM's op, except that rows
/// with index -1 are left as they are and the output is overwritten, not added to (vLLM's semantics).
#[pyfunction]
#[pyo3(signature = (inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling = 1.0, *, device = "auto", dtype = None))]
#[allow(clippy::too_many_arguments)] // vLLM's signature, plus device and dtype
fn bgmv_shrink(
    py: Python<'_>,
    inputs: &Arr<'_>,
    lora_a_weights: &Arr<'_>,
    output_tensor: &Arr<'_>,
    lora_indices_tensor: &Arr<'_>,
    scaling: f32,
    device: &str,
    dtype: Option<&str>,
) -> PyResult<()> {
    let names = ["bgmv_shrink inputs", "bgmv_shrink lora_a_weights"];
    let f = common_float(&[inputs, lora_a_weights], &names, dtype, LORA)?;
    let x = shape_of(inputs, &[None, None], names[0])?;
    let [num_loras, rank, _] = stacked(lora_a_weights, names[1], Some(x[1]))?;
    shape_of(
        output_tensor,
        &[Some(x[0]), Some(rank)],
        "bgmv_shrink output_tensor",
    )?;
    let shape = ShrinkShape {
        batch: x[0],
        hidden_in: x[1],
        rank,
        num_loras,
    };
    let args = Shrink {
        inputs,
        weights: lora_a_weights,
        output: output_tensor,
        indices: lora_indices_tensor,
        shape,
        scaling,
        device,
    };
    match f {
        Float::F16 => args.run::<f16, f16>(py),
        Float::Bf16 => args.run::<u16, bf16>(py),
        Float::F32 => Err(dtype_error(names[0], "float16 or bfloat16", "float32")),
    }
}

struct Shrink<'a, 'py> {
    inputs: &'a Arr<'py>,
    weights: &'a Arr<'py>,
    output: &'a Arr<'py>,
    indices: &'a Arr<'py>,
    shape: ShrinkShape,
    scaling: f32,
    device: &'a str,
}

impl Shrink<'_, '_> {
    fn run<N: Element + Pod, T: LoraFloat + Pod>(&self, py: Python<'_>) -> PyResult<()> {
        let idx = read::<i64>(self.indices, "bgmv_shrink lora_indices_tensor")?;
        let x = read::<N>(self.inputs, "bgmv_shrink inputs")?;
        let w = read::<N>(self.weights, "bgmv_shrink lora_a_weights")?;
        let mut y = write::<f32>(self.output, "bgmv_shrink output_tensor")?;
        let (x, w, idx) = (
            elems::<N, T>(x.as_slice())?,
            elems::<N, T>(w.as_slice())?,
            elems::<i64, i64>(idx.as_slice())?,
        );
        let y = elems_mut::<f32, f32>(y.as_slice_mut())?;
        let (shape, scaling, device) = (self.shape, self.scaling, self.device);
        py.detach(|| {
            let (dev, _) = devices::open(device)?;
            let stream = Stream::new(&dev)?;
            let (xd, wd) = (
                DeviceBuffer::from_host(&dev, x)?,
                DeviceBuffer::from_host(&dev, w)?,
            );
            let mut yd = DeviceBuffer::from_host(&dev, y)?;
            let indices = AdapterIndices::Host(idx);
            ops::bgmv_shrink(
                &stream,
                ops::BgmvShrink {
                    x: xd.view(),
                    weights: wd.view(),
                    indices,
                    y: yd.view_mut(),
                    shape,
                    scale: scaling,
                },
                None,
            )?;
            stream.synchronize()?;
            yd.copy_to_host(y)
        })
        .map_err(to_py)
    }
}

/// `output_tensor[b, off:off + out] (+)= lora_b_weights[idx[b]] @ inputs[b]` for rows with index
/// >= 0; `slice_size`, when given, must equal the weights' `out` (vLLM's `bgmv_expand_slice`).
#[pyfunction]
#[pyo3(signature = (inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset = 0, slice_size = None, add_inputs = true, *, device = "auto", dtype = None))]
#[allow(clippy::too_many_arguments)] // vLLM's signature, plus device and dtype
fn bgmv_expand(
    py: Python<'_>,
    inputs: &Arr<'_>,
    lora_b_weights: &Arr<'_>,
    output_tensor: &Arr<'_>,
    lora_indices_tensor: &Arr<'_>,
    slice_offset: usize,
    slice_size: Option<usize>,
    add_inputs: bool,
    device: &str,
    dtype: Option<&str>,
) -> PyResult<()> {
    let names = ["bgmv_expand lora_b_weights", "bgmv_expand output_tensor"];
    let f = common_float(&[lora_b_weights, output_tensor], &names, dtype, LORA)?;
    let x = shape_of(inputs, &[None, None], "bgmv_expand inputs")?;
    let [num_loras, hidden_out, rank] = stacked(lora_b_weights, names[0], None)?;
    shape_of(inputs, &[Some(x[0]), Some(rank)], "bgmv_expand inputs")?;
    let y = shape_of(output_tensor, &[Some(x[0]), None], names[1])?;
    if let Some(size) = slice_size.filter(|s| *s != hidden_out) {
        let expected = format!("the out extent of lora_b_weights ({hidden_out})");
        return Err(to_py(Error::parameter("slice_size", expected, size)));
    }
    let shape = ExpandShape {
        batch: x[0],
        rank,
        hidden_out,
        hidden_full: y[1],
        slice_offset,
        num_loras,
    };
    let args = Expand {
        inputs,
        weights: lora_b_weights,
        output: output_tensor,
        indices: lora_indices_tensor,
        shape,
        add_inputs,
        device,
    };
    match f {
        Float::F16 => args.run::<f16, f16>(py),
        Float::Bf16 => args.run::<u16, bf16>(py),
        Float::F32 => Err(dtype_error(names[0], "float16 or bfloat16", "float32")),
    }
}

struct Expand<'a, 'py> {
    inputs: &'a Arr<'py>,
    weights: &'a Arr<'py>,
    output: &'a Arr<'py>,
    indices: &'a Arr<'py>,
    shape: ExpandShape,
    add_inputs: bool,
    device: &'a str,
}

impl Expand<'_, '_> {
    fn run<N: Element + Pod, T: LoraFloat + Pod>(&self, py: Python<'_>) -> PyResult<()> {
        let idx = read::<i64>(self.indices, "bgmv_expand lora_indices_tensor")?;
        let x = read::<f32>(self.inputs, "bgmv_expand inputs")?;
        let w = read::<N>(self.weights, "bgmv_expand lora_b_weights")?;
        let mut y = write::<N>(self.output, "bgmv_expand output_tensor")?;
        let (x, w, idx) = (
            elems::<f32, f32>(x.as_slice())?,
            elems::<N, T>(w.as_slice())?,
            elems::<i64, i64>(idx.as_slice())?,
        );
        let y = elems_mut::<N, T>(y.as_slice_mut())?;
        let (shape, add_inputs, device) = (self.shape, self.add_inputs, self.device);
        py.detach(|| {
            let (dev, _) = devices::open(device)?;
            let stream = Stream::new(&dev)?;
            let (xd, wd) = (
                DeviceBuffer::from_host(&dev, x)?,
                DeviceBuffer::from_host(&dev, w)?,
            );
            let mut yd = DeviceBuffer::from_host(&dev, y)?;
            let indices = AdapterIndices::Host(idx);
            ops::bgmv_expand(
                &stream,
                ops::BgmvExpand {
                    x: xd.view(),
                    weights: wd.view(),
                    indices,
                    y: yd.view_mut(),
                    shape,
                    add_inputs,
                },
                None,
            )?;
            stream.synchronize()?;
            yd.copy_to_host(y)
        })
        .map_err(to_py)
    }
}

/// CoLD's choice per row of `[rows, vocab]` logits: int64 tokens (-1 for a row holding a non-finite
/// logit, -2 for a row whose score overflows f32: `beta` too large for its logits) and, when `return_scores`, the f32 score rows (`-inf` where masked).
#[pyfunction]
#[pyo3(signature = (expert_logits, amateur_logits, alpha = 0.1, beta = 0.5, return_scores = false, *, device = "auto", dtype = None))]
#[allow(clippy::too_many_arguments)] // the op's parameters, plus device and dtype
fn cold_score<'py>(
    py: Python<'py>,
    expert_logits: &Arr<'py>,
    amateur_logits: &Arr<'py>,
    alpha: f32,
    beta: f32,
    return_scores: bool,
    device: &str,
    dtype: Option<&str>,
) -> PyResult<Picks<'py>> {
    let params = ColdParams::new(alpha, beta).map_err(to_py)?;
    let names = ["cold_score expert_logits", "cold_score amateur_logits"];
    let f = common_float(
        &[expert_logits, amateur_logits],
        &names,
        dtype,
        &[Float::F16, Float::Bf16, Float::F32],
    )?;
    let e = shape_of(expert_logits, &[None, None], names[0])?;
    shape_of(amateur_logits, &[Some(e[0]), Some(e[1])], names[1])?;
    let shape = ColdShape {
        rows: e[0],
        vocab: e[1],
    };
    let (tokens, scores) = match f {
        Float::F16 => cold_run::<f16, f16>(
            py,
            expert_logits,
            amateur_logits,
            shape,
            params,
            return_scores,
            device,
        ),
        Float::Bf16 => cold_run::<u16, bf16>(
            py,
            expert_logits,
            amateur_logits,
            shape,
            params,
            return_scores,
            device,
        ),
        Float::F32 => cold_run::<f32, f32>(
            py,
            expert_logits,
            amateur_logits,
            shape,
            params,
            return_scores,
            device,
        ),
    }?;
    let scores = match scores {
        Some(s) => Some(
            PyArray1::from_vec(py, s)
                .reshape([shape.rows, shape.vocab])?
                .into_any(),
        ),
        None => None,
    };
    Ok((PyArray1::from_vec(py, tokens), scores))
}

#[allow(clippy::too_many_arguments)] // as cold_score
fn cold_run<N: Element + Pod, T: LogitFloat + Pod>(
    py: Python<'_>,
    expert: &Arr<'_>,
    amateur: &Arr<'_>,
    shape: ColdShape,
    params: ColdParams,
    return_scores: bool,
    device: &str,
) -> PyResult<(Vec<i64>, Option<Vec<f32>>)> {
    let e = read::<N>(expert, "cold_score expert_logits")?;
    let a = read::<N>(amateur, "cold_score amateur_logits")?;
    let (e, a) = (elems::<N, T>(e.as_slice())?, elems::<N, T>(a.as_slice())?);
    py.detach(|| cold_on_device(e, a, shape, params, return_scores, device))
        .map_err(to_py)
}

fn cold_on_device<T: LogitFloat>(
    e: &[T],
    a: &[T],
    shape: ColdShape,
    params: ColdParams,
    return_scores: bool,
    device: &str,
) -> Result<(Vec<i64>, Option<Vec<f32>>)> {
    let (dev, _) = devices::open(device)?;
    let stream = Stream::new(&dev)?;
    let (ed, ad) = (
        DeviceBuffer::from_host(&dev, e)?,
        DeviceBuffer::from_host(&dev, a)?,
    );
    let mut tokens = DeviceBuffer::<i64>::zeroed(&dev, shape.rows)?;
    let mut best = DeviceBuffer::<f32>::zeroed(&dev, shape.rows)?;
    let mut scores = match return_scores {
        true => Some(DeviceBuffer::<f32>::zeroed(&dev, shape.rows * shape.vocab)?),
        false => None,
    };
    let out = ColdOutputs {
        tokens: tokens.view_mut(),
        best_scores: best.view_mut(),
        scores: scores.as_mut().map(|s| s.view_mut()),
    };
    ops::cold_score(&stream, ed.view(), ad.view(), shape, params, out, None)?;
    stream.synchronize()?;
    Ok((tokens.to_vec()?, scores.map(|s| s.to_vec()).transpose()?))
}
