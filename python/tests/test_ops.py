"""The ops against the numpy oracle (numpy_oracle.py) on random shapes, dtypes, -1 rows and tails,
in every container the package accepts: numpy arrays, uint16 bfloat16 bits with dtype="bf16",
ml_dtypes.bfloat16 arrays and CPU torch tensors (those two when installed)."""

import threading
import time

import numpy as np
import pytest

import ascend_cold as ac
import numpy_oracle as oracle

DEVICE = "emu"
EPS = {"f16": 2.0**-10, "bf16": 2.0**-7}


def bf16_bits(f32):
    """bfloat16 bit patterns of f32 values already on the bf16 grid (see grid())."""
    return (np.ascontiguousarray(f32, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def from_bits(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def grid(rng, shape, dtype, scale=1.0):
    """Random values exactly representable in `dtype`, as f32, and the array the op takes."""
    v = (rng.standard_normal(shape) * scale).astype(np.float32)
    if dtype == "f16":
        h = v.astype(np.float16)
        return h.astype(np.float32), h
    if dtype == "bf16":
        bits = bf16_bits(v) 
        return from_bits(bits), bits
    return v, v


def indices(rng, batch, num_loras):
    idx = rng.integers(-1, num_loras, batch).astype(np.int64)
    idx[0] = -1  # always a row without adapter
    return idx


SHAPES = [(1, 8, 1, 1), (3, 17, 4, 2), (7, 64, 16, 3), (5, 131, 8, 4)]  # batch, hidden, rank, loras


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("batch,hidden,rank,loras", SHAPES)
def test_shrink_matches_oracle(dtype, batch, hidden, rank, loras):
    rng = np.random.default_rng(batch * 1000 + hidden)
    x, xa = grid(rng, (batch, hidden), dtype)
    a, aa = grid(rng, (loras, rank, hidden), dtype, 0.3)
    idx = indices(rng, batch, loras)
    y = rng.standard_normal((batch, rank)).astype(np.float32)
    want = oracle.bgmv_shrink(x, a, y, idx, 0.5)
    ac.bgmv_shrink(xa, aa, y, idx, 0.5, device=DEVICE, dtype="bf16" if dtype == "bf16" else None)
    bound = 1e-5 * (0.5 * np.abs(a).sum(-1).max() * np.abs(x).max() + 1)
    np.testing.assert_allclose(y, want, rtol=0, atol=bound)


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("add", [True, False])
@pytest.mark.parametrize("batch,hidden,rank,loras", SHAPES)
def test_expand_slice_matches_oracle(dtype, add, batch, hidden, rank, loras):
    rng = np.random.default_rng(batch * 77 + hidden + add)
    offset = hidden // 3
    full = hidden + offset + 5  # columns on both sides of the slice
    x = rng.standard_normal((batch, rank)).astype(np.float32)
    bw, bwa = grid(rng, (loras, hidden, rank), dtype, 0.3)
    y, ya = grid(rng, (batch, full), dtype)
    idx = indices(rng, batch, loras)
    want = oracle.bgmv_expand(x, bw, y, idx, offset, add)
    ac.bgmv_expand_slice(x, bwa, ya, idx, offset, hidden, add, device=DEVICE,
                         dtype="bf16" if dtype == "bf16" else None)
    got = from_bits(ya) if dtype == "bf16" else ya.astype(np.float32)
    bound = EPS[dtype] * np.abs(want) + 1e-5 * (np.abs(bw).sum(-1).max() * np.abs(x).max() + 1)
    assert (np.abs(got - want) <= bound).all()
    untouched = idx < 0
    np.testing.assert_array_equal(got[untouched], y[untouched])


def test_expand_writes_leading_columns_like_vllm():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    bw = rng.standard_normal((1, 6, 4)).astype(np.float16)
    y = np.zeros((2, 10), np.float16)
    ac.bgmv_expand(x, bw[:, None], y, np.array([0, 0]), device=DEVICE)  # [L, 1, out, R] as vLLM
    want = oracle.bgmv_expand(x, bw.astype(np.float32), np.zeros((2, 10)), [0, 0], 0, True)
    np.testing.assert_allclose(y.astype(np.float32), want, rtol=2e-3, atol=1e-3)
    assert not y[:, 6:].any()


@pytest.mark.parametrize("dtype", ["f16", "bf16", "f32"])
@pytest.mark.parametrize("rows,vocab", [(1, 1), (3, 5), (4, 1000), (2, 50_003)])
@pytest.mark.parametrize("alpha,beta", [(0.1, 0.5), (1.0, 0.0), (0.5, 2.0)])
def test_cold_score_matches_oracle(dtype, rows, vocab, alpha, beta):
    rng = np.random.default_rng(rows * vocab)
    e, ea = grid(rng, (rows, vocab), dtype, 3.0)
    a, aa = grid(rng, (rows, vocab), dtype, 3.0)
    want_tokens, want_scores = oracle.cold_score(e, a, alpha, beta)
    tokens, scores = ac.cold_score(ea, aa, alpha, beta, return_scores=True, device=DEVICE,
                                   dtype="bf16" if dtype == "bf16" else None)
    assert tokens.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(tokens, want_tokens)
    np.testing.assert_array_equal(np.isinf(scores), np.isinf(want_scores))
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(ac.cold_score(ea, aa, alpha, beta, device=DEVICE,
                                                dtype="bf16" if dtype == "bf16" else None), tokens)


def test_cold_score_ties_and_non_finite_rows():
    e = np.array([[1.0, 3.0, 3.0, 0.0], [0.0, np.nan, 1.0, 2.0], [np.inf, 0.0, 0.0, 0.0]], np.float32)
    a = np.zeros_like(e)
    np.testing.assert_array_equal(ac.cold_score(e, a, device=DEVICE), [1, -1, -1])


def test_greedy_is_the_alpha_1_beta_0_case():
    rng = np.random.default_rng(9)
    e = rng.standard_normal((6, 333)).astype(np.float32)
    a = rng.standard_normal((6, 333)).astype(np.float32)
    np.testing.assert_array_equal(ac.cold_score(e, a, 1.0, 0.0, device=DEVICE), e.argmax(-1))


def test_ml_dtypes_bfloat16_arrays():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes is not installed")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 24)).astype(ml_dtypes.bfloat16)
    a = rng.standard_normal((2, 4, 24)).astype(ml_dtypes.bfloat16)
    idx = np.array([1, -1, 0])
    y = np.zeros((3, 4), np.float32)
    ac.bgmv_shrink(x, a, y, idx, device=DEVICE)
    np.testing.assert_allclose(y, oracle.bgmv_shrink(x.astype(np.float32), a.astype(np.float32),
                                                     np.zeros((3, 4)), idx, 1.0), atol=1e-4)
    out = np.zeros((3, 24), ml_dtypes.bfloat16)
    ac.bgmv_expand(y, a.transpose(0, 2, 1).copy(), out, idx, add_inputs=False, device=DEVICE)
    assert out[0].astype(np.float32).any() and not out[1].astype(np.float32).any()
    e = rng.standard_normal((2, 40)).astype(ml_dtypes.bfloat16)
    want, _ = oracle.cold_score(e.astype(np.float32), e.astype(np.float32) * 0, 0.1, 0.5)
    np.testing.assert_array_equal(ac.cold_score(e, e * 0, device=DEVICE), want)


def test_torch_cpu_tensors_in_place():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    g = torch.Generator().manual_seed(0)
    for dt in (torch.float16, torch.bfloat16):
        x = torch.randn(4, 32, generator=g).to(dt)
        a = torch.randn(3, 8, 32, generator=g).to(dt)
        idx = torch.tensor([2, -1, 0, 1])
        y = torch.zeros(4, 8)
        ac.bgmv_shrink(x, a, y, idx, 0.25, device=DEVICE)
        want = oracle.bgmv_shrink(x.float().numpy(), a.float().numpy(), np.zeros((4, 8)),
                                  idx.numpy(), 0.25)
        np.testing.assert_allclose(y.numpy(), want, atol=1e-4)
        out = torch.ones(4, 40, dtype=dt)
        ac.bgmv_expand_slice(y, a.transpose(1, 2).contiguous(), out, idx, 4, 32, device=DEVICE)
        assert (out[1] == 1).all() and (out[:, :4] == 1).all() and (out[0, 4:] != 1).any()
    e = torch.randn(3, 77, generator=g)
    tokens, scores = ac.cold_score(e, e.flip(-1), return_scores=True, device=DEVICE)
    assert isinstance(tokens, torch.Tensor) and tokens.dtype == torch.int64 and scores.shape == (3, 77)
    want, _ = oracle.cold_score(e.numpy(), e.flip(-1).numpy(), 0.1, 0.5)
    np.testing.assert_array_equal(tokens.numpy(), want)


def test_gil_is_released_while_the_kernel_runs():
    rng = np.random.default_rng(1)
    e = rng.standard_normal((64, 50_000)).astype(np.float32)
    ticks = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.01)
        start = time.perf_counter()
        before = ticks[0]
        ac.cold_score(e, e, return_scores=True, device=DEVICE)
        during = ticks[0] - before
        took = time.perf_counter() - start
    finally:
        stop.set()
        t.join()
    # With the GIL held for the whole call the spinner would advance only at the call's edges.
    assert during > 1000, f"{during} ticks in {took:.3f} s"


def test_threads_share_the_device():
    rng = np.random.default_rng(2)
    e = rng.standard_normal((8, 4096)).astype(np.float32)
    a = rng.standard_normal((8, 4096)).astype(np.float32)
    want, _ = oracle.cold_score(e, a, 0.1, 0.5)
    results = [None] * 6

    def run(i):
        results[i] = ac.cold_score(e, a, device=DEVICE)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, want)
