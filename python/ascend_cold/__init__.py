"""ascend_cold: the BGMV and CoLD kernels on numpy arrays and torch tensors, and the Rust decoder.

Contract: the ops take vLLM's arguments, write `output_tensor` in place and return nothing
(`cold_score` returns the tokens, and the score rows when asked). They accept numpy arrays, CPU torch
tensors (used through shared memory, never copied on the host) and anything `numpy.asarray` takes
for read-only inputs. bfloat16 comes as `ml_dtypes.bfloat16` arrays, torch bf16 tensors, or uint16
bit patterns with `dtype="bf16"`. Bad arguments raise ValueError, runtime failures RuntimeError.
This module only adapts containers; the checks and the work are in the Rust extension (`_native`).
See docs/PYTHON.md.
"""

import sys

import numpy as np

from . import _native
from ._native import Model, describe_device

__all__ = [
    "Model",
    "bgmv_expand",
    "bgmv_expand_slice",
    "bgmv_shrink",
    "cold_score",
    "describe_device",
]


def _torch():
    # Never import torch ourselves: a caller who passes a tensor has already imported it.
    return sys.modules.get("torch")


def _host(x, name, writable=False):
    """(numpy view of x, is bf16 bits, came from torch). Shares x's memory whenever x is an array or a
    CPU tensor, so outputs are written in place."""
    if isinstance(x, np.ndarray):
        if x.dtype.name == "bfloat16":
            return x.view(np.uint16), True, False
        return x, False, False
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor):
        if x.device.type != "cpu":
            raise ValueError(
                f"{name} is on {x.device}: the ops take CPU tensors (on an NPU, see docs/PYTHON.md)"
            )
        x = x.detach()
        if x.dtype == torch.bfloat16:
            return x.view(torch.int16).numpy().view(np.uint16), True, True
        return x.numpy(), False, True
    if writable:
        raise ValueError(f"{name} must be a numpy array or a torch tensor (it is written in place)")
    arr = np.asarray(x)
    return (arr.view(np.uint16), True, False) if arr.dtype.name == "bfloat16" else (arr, False, False)


def _hosts(named, dtype, writable=()):
    arrays, bf16, torch_in = [], False, False
    for name, x in named:
        arr, is_bf16, from_torch = _host(x, name, name in writable)
        arrays.append(arr)
        bf16 |= is_bf16
        torch_in |= from_torch
    return arrays, (dtype or ("bf16" if bf16 else None)), torch_in


def bgmv_shrink(inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling=1.0, *,
                device="auto", dtype=None):
    """output_tensor[b] = scaling * lora_a_weights[idx[b]] @ inputs[b] for rows with idx[b] >= 0.

    inputs [B, H] and lora_a_weights [L, R, H] (or [L, 1, R, H]) in f16 or bf16; output_tensor [B, R]
    float32, rows with idx -1 left as they are; lora_indices_tensor int64 [B]."""
    (x, w, y, idx), dtype, _ = _hosts(
        [("inputs", inputs), ("lora_a_weights", lora_a_weights), ("output_tensor", output_tensor),
         ("lora_indices_tensor", lora_indices_tensor)], dtype, writable=("output_tensor",))
    _native.bgmv_shrink(x, w, y, idx, scaling, device=device, dtype=dtype)


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs=True, *,
                device="auto", dtype=None):
    """output_tensor[b, :out] (+)= lora_b_weights[idx[b]] @ inputs[b] for rows with idx[b] >= 0.

    inputs [B, R] float32; lora_b_weights [L, out, R] (or [L, 1, out, R]) and output_tensor
    [B, >= out] in f16 or bf16; other rows and columns left as they are."""
    bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor, 0, None,
                      add_inputs, device=device, dtype=dtype)


def bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset,
                      slice_size, add_inputs=True, *, device="auto", dtype=None):
    """bgmv_expand into columns slice_offset .. slice_offset + slice_size of output_tensor
    (slice_size must equal the weights' out extent, as in vLLM)."""
    (x, w, y, idx), dtype, _ = _hosts(
        [("inputs", inputs), ("lora_b_weights", lora_b_weights), ("output_tensor", output_tensor),
         ("lora_indices_tensor", lora_indices_tensor)], dtype, writable=("output_tensor",))
    _native.bgmv_expand(x, w, y, idx, slice_offset, slice_size, add_inputs, device=device,
                        dtype=dtype)


def cold_score(expert_logits, amateur_logits, alpha=0.1, beta=0.5, return_scores=False, *,
               device="auto", dtype=None):
    """CoLD's next token per row of [N, V] logits (f16, bf16 or f32): int64 [N], -1 for a row with a
    non-finite logit. With return_scores, also the float32 score rows [N, V] (-inf where masked).
    torch tensors in, torch tensors out."""
    (e, a), dtype, torch_in = _hosts(
        [("expert_logits", expert_logits), ("amateur_logits", amateur_logits)], dtype)
    tokens, scores = _native.cold_score(e, a, alpha, beta, return_scores, device=device,
                                        dtype=dtype)
    if torch_in:
        torch = _torch()
        tokens = torch.from_numpy(tokens)
        scores = None if scores is None else torch.from_numpy(scores)
    return (tokens, scores) if return_scores else tokens
