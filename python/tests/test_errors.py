"""Bad arguments raise ValueError with the crate's messages; a missing runtime raises RuntimeError;
nothing is written when a call is refused."""

import numpy as np
import pytest

import ascend_cold as ac

DEVICE = "emu"


def shrink_args(batch=2, hidden=8, rank=4, loras=2):
    x = np.ones((batch, hidden), np.float16)
    a = np.ones((loras, rank, hidden), np.float16)
    return x, a, np.zeros((batch, rank), np.float32), np.zeros(batch, np.int64)


@pytest.mark.parametrize("case,message", [
    (lambda x, a, y, i: (x.astype(np.float32), a, y, i), "float16 or bfloat16"),
    (lambda x, a, y, i: (x, a.astype(np.float32), y, i), "float16 or bfloat16"),
    (lambda x, a, y, i: (x, a, y.astype(np.float16), i), "float32"),
    (lambda x, a, y, i: (x, a, y, i.astype(np.int32)), "int64"),
    (lambda x, a, y, i: (x.view(np.uint16), a.view(np.uint16), y, i), "bfloat16 bits"),
    (lambda x, a, y, i: (x[:, :4], a, y, i), "bgmv_shrink lora_a_weights"),
    (lambda x, a, y, i: (x, a, y[:1], i), "bgmv_shrink output_tensor"),
    (lambda x, a, y, i: (x, a, y, i[:1]), "indices"),
    (lambda x, a, y, i: (x[None], a, y, i), "bgmv_shrink inputs"),
    (lambda x, a, y, i: (x, a, y, i + 2), "bad adapter index 2"),
    (lambda x, a, y, i: (np.ones((8, 2), np.float16).T, a, y, i), "C-contiguous"),
    (lambda x, a, y, i: (x, a, np.zeros((4, 2), np.float32).T, i), "C-contiguous"),
])
def test_shrink_refuses(case, message):
    args = case(*shrink_args())
    before = args[2].copy()
    with pytest.raises(ValueError, match=message):
        ac.bgmv_shrink(*args, device=DEVICE)
    np.testing.assert_array_equal(args[2], before)


def test_read_only_output_and_bad_scale():
    x, a, y, i = shrink_args()
    y.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        ac.bgmv_shrink(x, a, y, i, device=DEVICE)
    with pytest.raises(ValueError, match="scale"):
        ac.bgmv_shrink(*shrink_args(), float("nan"), device=DEVICE)
    with pytest.raises(ValueError, match="output_tensor must be a numpy array"):
        ac.bgmv_shrink(x, a, [[0.0] * 4] * 2, i, device=DEVICE)


def test_expand_refuses():
    x = np.ones((2, 4), np.float32)
    bw = np.ones((1, 8, 4), np.float16)
    y = np.zeros((2, 8), np.float16)
    idx = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="slice_offset"):
        ac.bgmv_expand_slice(x, bw, y, idx, 1, 8, device=DEVICE)
    with pytest.raises(ValueError, match="slice_size"):
        ac.bgmv_expand_slice(x, bw, y, idx, 0, 4, device=DEVICE)
    with pytest.raises(ValueError, match="bgmv_expand output_tensor"):
        ac.bgmv_expand(x, bw, y.astype(np.float32), idx, device=DEVICE)
    with pytest.raises(ValueError, match="bgmv_expand inputs"):
        ac.bgmv_expand(x.astype(np.float16), bw, y, idx, device=DEVICE)
    with pytest.raises(ValueError, match="bgmv_expand inputs"):
        ac.bgmv_expand(np.ones((2, 3), np.float32), bw, y, idx, device=DEVICE)
    with pytest.raises(ValueError, match="lora_b_weights"):
        ac.bgmv_expand(x, np.ones((1, 2, 8, 4), np.float16), y, idx, device=DEVICE)


def test_cold_score_refuses():
    e = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match="alpha"):
        ac.cold_score(e, e, alpha=0.0, device=DEVICE)
    with pytest.raises(ValueError, match="beta"):
        ac.cold_score(e, e, beta=-1.0, device=DEVICE)
    with pytest.raises(ValueError, match="amateur_logits"):
        ac.cold_score(e, e[:, :4], device=DEVICE)
    with pytest.raises(ValueError, match="float32, as"):
        ac.cold_score(e, e.astype(np.float16), device=DEVICE)
    with pytest.raises(ValueError, match="float64"):
        ac.cold_score(e.astype(np.float64), e.astype(np.float64), device=DEVICE)
    with pytest.raises(ValueError, match="vocab"):
        ac.cold_score(np.zeros((2, 0), np.float32), np.zeros((2, 0), np.float32), device=DEVICE)
    with pytest.raises(ValueError, match="dtype"):
        ac.cold_score(e, e, dtype="f64", device=DEVICE)
    with pytest.raises(ValueError, match="from dtype="):
        ac.cold_score(e, e, dtype="bf16", device=DEVICE)


def test_devices():
    e = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match="auto, emu, emu:N, npu or npu:N"):
        ac.cold_score(e, e, device="gpu")
    with pytest.raises(ValueError, match="device id"):
        ac.cold_score(e, e, device="emu:99")
    assert "emu:1" in ac.describe_device("emu:1")


def test_npu_without_runtime_is_a_runtime_error(monkeypatch):
    if "emu" not in ac.describe_device("auto"):
        pytest.skip("an NPU answers here")
    e = np.zeros((1, 3), np.float32)
    with pytest.raises(RuntimeError, match="AscendCL runtime not available"):
        ac.cold_score(e, e, device="npu:0")


def test_tensor_on_another_device():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    e = torch.zeros(1, 3, device="meta")
    with pytest.raises(ValueError, match="on meta"):
        ac.cold_score(e, e, device=DEVICE)
