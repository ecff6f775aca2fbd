"""ascend_cold.Model against `ascend-cold decode --json` on the committed fixtures (same tokens, text
and finish for the same requests, run as one batch on both sides), and against the fixtures' own
transformers references."""

import json
import subprocess

import pytest

import ascend_cold as ac
from conftest import FIXTURES

FIXTURE_ADAPTERS = {"tiny-gqa-tied": ["a-qv", "b-all"], "tiny-mha-untied": ["c-mlp", "d-attn-rslora"]}


def adapters_of(fixture):
    return [(n, str(FIXTURES / fixture / "adapters" / n)) for n in FIXTURE_ADAPTERS[fixture]]


def cli_decode(cli, fixture, requests, *extra):
    """One `decode --json --requests` run: a dict per request line, in the file's order (the CLI writes
    each as it finishes, with its "index")."""
    lines = "\n".join(json.dumps(r) for r in requests)
    args = [str(cli), "decode", "--model", str(FIXTURES / fixture / "model"), "--device", "emu",
            "--json", "--requests", "/dev/stdin", *extra]
    for name, path in adapters_of(fixture):
        args += ["--adapter", f"{name}={path}"]
    out = subprocess.run(args, input=lines, capture_output=True, text=True, check=True).stdout
    return sorted((json.loads(line) for line in out.splitlines() if line.strip()),
                  key=lambda o: o["index"])


@pytest.mark.parametrize("fixture", sorted(FIXTURE_ADAPTERS))
@pytest.mark.parametrize("strategy", ["greedy", "cold"])
def test_same_tokens_as_the_cli(cli, fixture, strategy):
    ref = json.loads((FIXTURES / fixture / "reference.json").read_text())
    first, second = FIXTURE_ADAPTERS[fixture]
    prompts = [ref["prompt"], ref["prompt_ids"][:5], "the cat"]
    model = ac.Model(str(FIXTURES / fixture / "model"), adapters_of(fixture), device="emu")
    assert model.adapters == [first, second]
    for adapter in ([None, first, second] if strategy == "greedy" else [first, second]):
        kwargs = dict(adapter=adapter, strategy=strategy, alpha=0.2, beta=0.7, max_new_tokens=12)
        got = model.generate(prompts, **kwargs)
        requests = [{("prompt" if isinstance(p, str) else "prompt_ids"): p, "strategy": strategy,
                     "alpha": 0.2, "beta": 0.7, "max_new_tokens": 12,
                     **({"adapter": adapter} if adapter else {})} for p in prompts]
        want = cli_decode(cli, fixture, requests)
        for g, w in zip(got, want, strict=True):
            assert (g["tokens"], g["text"], g["finish"], g["prompt_tokens"]) == \
                (w["tokens"], w["text"], w["finish"], w["prompt_tokens"])


@pytest.mark.parametrize("fixture", sorted(FIXTURE_ADAPTERS))
def test_greedy_matches_the_transformers_reference(fixture):
    ref = json.loads((FIXTURES / fixture / "reference.json").read_text())
    model = ac.Model(str(FIXTURES / fixture / "model"), adapters_of(fixture), device="emu",
                     weights="f32", lora_dtype="bf16")
    for case in ref["cases"]:
        want = (case["greedy_new_tokens"] if case["adapter"] is None
                else case["lora_bf16_emulated"]["greedy_new_tokens"])
        [out] = model.generate([ref["prompt_ids"]], adapter=case["adapter"], ignore_eos=True,
                               max_new_tokens=ref["n_greedy"])
        assert out["tokens"] == want, case["adapter"]


def test_decoder_refuses_bad_requests():
    fixture = "tiny-gqa-tied"
    model = ac.Model(str(FIXTURES / fixture / "model"), adapters_of(fixture), device="emu")
    with pytest.raises(ValueError, match="adapter"):
        model.generate(["hi"], adapter="nope")
    with pytest.raises(ValueError, match="adapter"):
        model.generate(["hi"], strategy="cold")  # CoLD needs an expert adapter
    with pytest.raises(ValueError, match="greedy or cold"):
        model.generate(["hi"], strategy="beam")
    with pytest.raises(ValueError, match="prompt token"):
        model.generate([[0, 100_000]])
    with pytest.raises(ValueError, match="chat"):
        model.generate(["hi"], chat=True)
    with pytest.raises(ValueError, match="lora_dtype"):
        ac.Model(str(FIXTURES / fixture / "model"), lora_dtype="f64")
    with pytest.raises((OSError, ValueError)):
        ac.Model(str(FIXTURES / "no-such-model"))
    assert model.generate(["the cat", [0, 5]], max_new_tokens=3)[1]["finish"] in ("length", "eos")
    # Asking for no tokens gets none (not an error), as the CLI and the Rust API do.
    empty = model.generate(["hi"], max_new_tokens=0)[0]
    assert empty["tokens"] == [] and empty["finish"] == "length"
    assert model.encode("the cat")[0] == 0  # the tokenizer's bos, as the fixture README says
