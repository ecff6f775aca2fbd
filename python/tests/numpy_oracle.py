"""The test oracle: docs/SEMANTICS.md sections 1 and 2 in plain numpy, written from the text, not from
the Rust reference. Float64 accumulation; the callers' tolerances cover the kernels' f32 order."""

import numpy as np


def bgmv_shrink(x, a, y, idx, scale):
    out = y.astype(np.float64).copy()
    for b, i in enumerate(idx):
        if i >= 0:
            out[b] = scale * (a[i].astype(np.float64) @ x[b].astype(np.float64))
    return out


def bgmv_expand(x, bw, y, idx, offset, add):
    out = y.astype(np.float64).copy()
    width = bw.shape[1]
    for b, i in enumerate(idx):
        if i >= 0:
            delta = bw[i].astype(np.float64) @ x[b].astype(np.float64)
            out[b, offset:offset + width] = delta + (out[b, offset:offset + width] if add else 0.0)
    return out


def cold_score(e, a, alpha, beta):
    """(tokens, scores) per row; token -1 for a row holding NaN or infinity."""
    e = e.astype(np.float64)
    a = a.astype(np.float64)
    tokens = np.empty(e.shape[0], np.int64)
    scores = np.full(e.shape, -np.inf)
    for r in range(e.shape[0]):
        if not (np.isfinite(e[r]).all() and np.isfinite(a[r]).all()):
            tokens[r] = -1
            continue
        keep = e[r] >= e[r].max() + np.log(alpha)
        scores[r, keep] = (1 + beta) * e[r, keep] - beta * a[r, keep]
        tokens[r] = int(np.argmax(scores[r]))  # argmax takes the lowest index among equals
    return tokens, scores
