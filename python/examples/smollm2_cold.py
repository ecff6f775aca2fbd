#!/usr/bin/env python3
"""CoLD with `ascend_cold.hf.cold_generate` on SmolLM2-135M-Instruct + the study's LoRA adapter.

Shows, on the first three prompts of study/data/test.jsonl (chat template), that
`cold_generate` (one batched forward per step: expert rows + "__base__" rows of a PEFT mixed-adapter
batch) gives the same tokens as `ascend-cold decode --strategy cold --weights f32 --device emu`, for a
left-padded batch of the three prompts and for each prompt alone, at alpha/beta 0.1/0.5 (the defaults)
and 0.01/0.5 (the study's selected setting, scripts/demo). Where tokens differ it prints the first
differing position, both tokens, and the CoLD score margin there (transformers' f32 logits, teacher
forced on the common prefix). Then it times cold_generate against a plain two-forward CoLD loop
(expert forward, then amateur forward under `disable_adapter()`, each with its own KV cache), both on
the batch of three, EOS ignored so both run exactly max_new_tokens steps, alternating, `--repeats`
times, and prints the median time per step and the ratio.

Run from the repository root, in the venv of scripts/test-python (torch, transformers, peft and this
package installed) plus `pip install gguf==0.19.0`, after `cargo build --release --bin ascend-cold`:

    python3 python/examples/smollm2_cold.py            # GGUF from scripts/fetch-smollm2
    python3 python/examples/smollm2_cold.py --gguf FILE --repeats 3 --lora-dtype bf16 --threads 1

On a shared machine use --threads 1: torch's intra-op threads spin against other processes, and with
2 threads on 2 busy cores one step took 10-20x longer than with 1 (and varied as much).

Model weights: the Q4_1 GGUF dequantised to f32 by transformers (as scripts/smollm2-reference.py
does) and by the CLI's --weights f32. The CLI's LoRA path runs in --lora-dtype (bf16 by default, f16
possible); PEFT's runs in f32.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import ascend_cold
from ascend_cold.hf import cold_generate

REPO = Path(__file__).resolve().parents[2]


def prompts(n):
    with open(REPO / "study" / "data" / "test.jsonl") as f:
        return [json.loads(line)["prompt"] for line, _ in zip(f, range(n))]


def left_pad(seqs, pad):
    width = max(map(len, seqs))
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    return ids, mask


def until_eos(row, eos):
    out = []
    for t in row:
        out.append(int(t))
        if t in eos:
            break
    return out


def cli_decode(cli, gguf, adapter, prompt, alpha, beta, max_new, lora_dtype):
    cmd = [str(cli), "decode", "--device", "emu", "--model", str(gguf), "--adapter", f"expert={adapter}",
           "--adapter-name", "expert", "--strategy", "cold", "--alpha", str(alpha), "--beta", str(beta),
           "--chat", "--max-new-tokens", str(max_new), "--json", "--weights", "f32", "--prompt", prompt]
    if lora_dtype:
        cmd[-2:-2] = ["--lora-dtype", lora_dtype]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[0])


def cold_rule(e, a, alpha, beta):
    """docs/SEMANTICS.md section 1 in f64: mask e < max(e) + ln(alpha), score (1+beta) e - beta a."""
    e, a = e.double(), a.double()
    keep = e >= e.max(-1, keepdim=True).values + torch.log(torch.tensor(alpha, dtype=torch.float64))
    return torch.where(keep, (1 + beta) * e - beta * a, torch.tensor(-torch.inf, dtype=torch.float64))


@torch.no_grad()
def margin_at(model, ids, hf_tok, cli_tok, alpha, beta):
    """CoLD scores at the step after `ids` (teacher forced), from transformers' f32 logits."""
    x = torch.tensor([ids])
    e = model(input_ids=x).logits[0, -1]
    with model.disable_adapter():
        a = model(input_ids=x).logits[0, -1]
    s = cold_rule(e, a, alpha, beta)
    top = torch.topk(s, 2)
    thr = float(e.double().max() + torch.log(torch.tensor(alpha, dtype=torch.float64)))
    return (f"HF scores: top1 {int(top.indices[0])} {float(top.values[0]):.5f}, top2 {int(top.indices[1])} "
            f"{float(top.values[1]):.5f} (margin {float(top.values[0] - top.values[1]):.5f}); "
            f"score[hf {hf_tok}]={float(s[hf_tok]):.5f} score[cli {cli_tok}]={float(s[cli_tok]):.5f}; "
            f"expert logit - mask threshold: hf tok {float(e[hf_tok]) - thr:+.5f}, "
            f"cli tok {float(e[cli_tok]) - thr:+.5f}")


@torch.no_grad()
def two_forward_cold(model, ids, mask, alpha, beta, steps, cache_arg):
    """Plain CoLD: an expert forward and an amateur forward (adapter disabled) per step, each with its
    own KV cache, then the CoLD rule. No EOS stop (steps fixed)."""
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    pe = pa = None
    feed, out = ids, []
    for _ in range(steps):
        se = model(input_ids=feed, attention_mask=mask, position_ids=pos, use_cache=True, **{cache_arg: pe})
        with model.disable_adapter():
            sa = model(input_ids=feed, attention_mask=mask, position_ids=pos, use_cache=True,
                       **{cache_arg: pa})
        pe = se[cache_arg] if cache_arg in se else se.past_key_values
        pa = sa[cache_arg] if cache_arg in sa else sa.past_key_values
        tok = cold_rule(se.logits[:, -1].float(), sa.logits[:, -1].float(), alpha, beta).argmax(-1)
        out.append(tok)
        feed = tok[:, None]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        pos = pos[:, -1:] + 1
    return torch.stack(out, dim=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf (default: scripts/fetch-smollm2)")
    ap.add_argument("--adapter", type=Path, default=REPO / "study" / "adapters" / "gsm-mini-r16")
    ap.add_argument("--cli", type=Path, default=REPO / "target" / "release" / "ascend-cold")
    ap.add_argument("--settings", default="0.1,0.5 0.01,0.5", help="alpha,beta pairs")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lora-dtype", choices=["bf16", "f16"], help="the CLI's --lora-dtype (default: its own)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = args.gguf or Path(subprocess.run([str(REPO / "scripts" / "fetch-smollm2")], check=True,
                                            capture_output=True, text=True).stdout.split()[-1])
    texts = prompts(3)

    # Prompt ids: ascend_cold.Model.encode is the CLI's --chat encoding; check the HF template agrees.
    ours = ascend_cold.Model(str(gguf), device="emu", weights="bf16")
    ids = [ours.encode(t, chat=True) for t in texts]
    del ours
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    hf_ids = [tok(tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                          add_generation_prompt=True), add_special_tokens=False)["input_ids"]
              for t in texts]
    print(f"prompt ids: lengths {[len(i) for i in ids]}; ascend_cold.Model.encode(chat=True) == "
          f"HF apply_chat_template: {ids == hf_ids}")

    base = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                attn_implementation="eager")
    model = PeftModel.from_pretrained(base, str(args.adapter), adapter_name="expert").eval()
    eos = model.config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos[0]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; eos {eos}; "
          f"param dtypes {sorted({str(p.dtype) for p in model.parameters()})}")
    batch_ids, batch_mask = left_pad(ids, pad)

    settings = [tuple(float(v) for v in s.split(",")) for s in args.settings.split()]
    all_equal = True
    for alpha, beta in settings:
        print(f"\n== alpha {alpha}, beta {beta}, max_new_tokens {args.max_new_tokens}")
        got3 = cold_generate(model, batch_ids, "expert", alpha=alpha, beta=beta,
                             max_new_tokens=args.max_new_tokens, attention_mask=batch_mask, device="emu")
        for i, (text, p) in enumerate(zip(texts, ids)):
            cli = cli_decode(args.cli, gguf, args.adapter, text, alpha, beta, args.max_new_tokens,
                             args.lora_dtype)
            assert cli["prompt_tokens"] == len(p), (cli["prompt_tokens"], len(p))
            alone = until_eos(cold_generate(model, torch.tensor([p]), "expert", alpha=alpha, beta=beta,
                                            max_new_tokens=args.max_new_tokens, device="emu")[0].tolist(), eos)
            batched = until_eos(got3[i].tolist(), eos)
            want = cli["tokens"]
            for label, got in (("batch of 3", batched), ("alone", alone)):
                if got == want:
                    print(f"prompt {i} {label:10s}: EQUAL ({len(got)} tokens, CLI finish {cli['finish']})")
                    continue
                all_equal = False
                k = next((j for j, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
                if k < min(len(got), len(want)):
                    print(f"prompt {i} {label:10s}: DIFFER at new token {k}: cold_generate {got[k]} "
                          f"{tok.decode([got[k]])!r} vs CLI {want[k]} {tok.decode([want[k]])!r}")
                    print("    " + margin_at(model, p + got[:k], got[k], want[k], alpha, beta))
                else:
                    print(f"prompt {i} {label:10s}: DIFFER in length only: {len(got)} vs CLI {len(want)}")
            if i == 0 or batched != want:
                print(f"    CLI text: {cli['text'][:100]!r}")

    # Timing: batch of 3, EOS ignored, alternating, median of the repeats.
    alpha, beta = settings[-1]
    steps = args.max_new_tokens
    forward = inspect.signature(model.get_base_model().forward).parameters
    cache_arg = "cache" if "cache" in forward else "past_key_values"
    t_one, t_two = [], []
    for r in range(args.repeats):
        t = time.perf_counter()
        a = cold_generate(model, batch_ids, "expert", alpha=alpha, beta=beta, max_new_tokens=steps,
                          attention_mask=batch_mask, eos_token_id=[], device="emu")
        t_one.append((time.perf_counter() - t) / a.shape[1])
        t = time.perf_counter()
        b = two_forward_cold(model, batch_ids, batch_mask, alpha, beta, steps, cache_arg)
        t_two.append((time.perf_counter() - t) / b.shape[1])
        same = a.tolist() == b.tolist()
        all_equal &= same
        print(f"timing repeat {r}: cold_generate {t_one[-1] * 1e3:.1f} ms/step, two-forward "
              f"{t_two[-1] * 1e3:.1f} ms/step, same tokens: {same}")
    m1, m2 = statistics.median(t_one), statistics.median(t_two)
    print(f"\nbatch of 3, {steps} steps (prefill included), alpha {alpha} beta {beta}, median of {args.repeats}:")
    print(f"  cold_generate (1 forward of 6 rows/step)      {m1 * 1e3:8.1f} ms/step")
    print(f"  two-forward loop (2 forwards of 3 rows/step)  {m2 * 1e3:8.1f} ms/step")
    print(f"  ratio two-forward / cold_generate             {m2 / m1:8.2f}")
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
