"""ascend_cold.hf.cold_generate on the committed transformers fixtures (HF model + PEFT adapters)
against a plain torch implementation of the CoLD rule with two forwards per step and no cache, against
`ascend-cold decode`, and, with alpha=1 and beta=0, against transformers' greedy generate.
Skipped, saying why, without torch, transformers and peft (python/requirements-torch.txt)."""

import json
import subprocess

import pytest

from conftest import FIXTURES

torch = pytest.importorskip("torch", reason="torch is not installed (python/requirements-torch.txt)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")
peft = pytest.importorskip("peft", reason="peft is not installed")

from ascend_cold.hf import cold_generate  # noqa: E402

CASES = [("tiny-gqa-tied", "b-all"), ("tiny-mha-untied", "d-attn-rslora")]
PROMPTS = [[0, 5, 9, 11, 40, 7], [0, 33], [0, 101, 17, 64]]
PAD = 2  # the fixtures' pad id


def load(fixture, adapter):
    base = transformers.AutoModelForCausalLM.from_pretrained(
        FIXTURES / fixture / "model", attn_implementation="eager")
    model = peft.PeftModel.from_pretrained(base, FIXTURES / fixture / "adapters" / adapter,
                                           adapter_name=adapter)
    return model.eval()


@torch.no_grad()
def two_forwards(model, prompt, alpha, beta, steps, eos):
    """The oracle: the CoLD rule (docs/SEMANTICS.md section 1) on an expert forward and an amateur
    forward (adapter disabled) of the whole sequence at every step."""
    seq = torch.tensor([prompt])
    new = []
    for _ in range(steps):
        e = model(input_ids=seq).logits[0, -1].double()
        with model.disable_adapter():
            a = model(input_ids=seq).logits[0, -1].double()
        keep = e >= e.max() + torch.log(torch.tensor(alpha, dtype=torch.float64))
        score = torch.where(keep, (1 + beta) * e - beta * a, torch.tensor(-torch.inf, dtype=e.dtype))
        token = int(score.argmax())
        new.append(token)
        if token in eos:
            break
        seq = torch.cat([seq, torch.tensor([[token]])], dim=1)
    return new


def left_pad(prompts):
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


@pytest.mark.parametrize("fixture,adapter", CASES)
def test_batch_of_one_and_padded_batch_of_three_match_two_forwards(fixture, adapter):
    model = load(fixture, adapter)
    want = [two_forwards(model, p, 0.1, 0.5, 10, eos=[]) for p in PROMPTS]
    got1 = cold_generate(model, torch.tensor([PROMPTS[0]]), adapter, max_new_tokens=10,
                         eos_token_id=[], device="emu")
    assert got1.tolist() == [want[0]]
    ids, mask = left_pad(PROMPTS)
    got3 = cold_generate(model, ids, adapter, max_new_tokens=10, attention_mask=mask,
                         eos_token_id=[], device="emu")
    assert got3.shape == (3, 10) and got3.dtype == torch.int64
    assert got3.tolist() == want


def test_rows_stop_at_eos_and_are_padded():
    fixture, adapter = CASES[0]
    model = load(fixture, adapter)
    free = [two_forwards(model, p, 0.1, 0.5, 8, eos=[]) for p in PROMPTS]
    eos = free[1][3]  # the second row's fourth token ends it; the other rows may stop too
    want = [two_forwards(model, p, 0.1, 0.5, 8, eos=[eos]) for p in PROMPTS]
    ids, mask = left_pad(PROMPTS)
    got = cold_generate(model, ids, adapter, max_new_tokens=8, attention_mask=mask,
                        eos_token_id=eos, device="emu")
    assert got.shape[1] == max(map(len, want))
    for row, w in zip(got.tolist(), want):
        assert row[:len(w)] == w and all(t == PAD for t in row[len(w):])


@pytest.mark.parametrize("fixture,adapter", CASES)
def test_greedy_is_alpha_1_beta_0(fixture, adapter):
    model = load(fixture, adapter)
    ids = torch.tensor([PROMPTS[0]])
    want = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                          do_sample=False, eos_token_id=None, pad_token_id=PAD)[:, ids.shape[1]:]
    got = cold_generate(model, ids, adapter, alpha=1.0, beta=0.0, max_new_tokens=8, eos_token_id=[],
                        device="emu")
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("fixture,adapter", CASES)
def test_same_tokens_as_the_cli(cli, fixture, adapter):
    model = load(fixture, adapter)
    got = cold_generate(model, torch.tensor([PROMPTS[0]]), adapter, alpha=0.1, beta=0.5,
                        max_new_tokens=10, eos_token_id=[], device="emu")
    out = subprocess.run(
        [str(cli), "decode", "--model", str(FIXTURES / fixture / "model"), "--adapter",
         f"{adapter}={FIXTURES / fixture / 'adapters' / adapter}", "--adapter-name", adapter,
         "--strategy", "cold", "--prompt-ids", ",".join(map(str, PROMPTS[0])), "--ignore-eos",
         "--max-new-tokens", "10", "--weights", "f32", "--device", "emu", "--json"],
        capture_output=True, text=True, check=True).stdout
    assert got.tolist() == [json.loads(out)["tokens"]]


def test_refuses_an_unknown_adapter():
    model = load(*CASES[0])
    with pytest.raises(ValueError, match="adapter_name"):
        cold_generate(model, torch.tensor([[0, 5]]), "nope", device="emu")
