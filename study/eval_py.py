#!/usr/bin/env python3
"""Quick Python evaluation on a gsm-mini split: greedy base vs greedy adapter (and optionally
CoLD), one problem at a time with a KV cache. A sanity check of the adapter and a reference
for the Rust `eval` command, not the study's final numbers.

Generation is PyTorch's; grading is not: the replies are written as `ascend-cold eval` records
(docs/EVAL.md) and graded by `ascend-cold eval --regrade`, which prints the table. There is one
answer parser, the CLI's (build it first: cargo build --release --bin ascend-cold).

CoLD follows docs/design section 2 exactly, on raw logits:
    keep(i)  = e[i] >= max(e) + ln(alpha)
    score(i) = (1 + beta) * e[i] - beta * a[i] if keep(i) else -inf ; next = argmax (lowest index on ties)
with e = expert (base + adapter) logits and a = amateur (base, adapter disabled) logits.

Example:
    python3 study/eval_py.py --adapter study/adapters/smoke --split dev --n 20 --modes base,adapter
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

LABELS = {"base": "greedy (base)", "adapter": "greedy (adapter)"}


def label(mode, alpha, beta):
    """The decoding's name as `ascend-cold eval` writes it (CoLD: Rust's shortest float text)."""
    return LABELS.get(mode) or f"CoLD a={alpha:g} b={beta:g}"


def record(row, config, text, tokens, max_new):
    """One eval record, ungraded (`--regrade` fills in the grades)."""
    return {"id": row["id"], "config": config, "answer": row["answer"], "correct_strict": False,
            "correct_flexible": False, "tokens": tokens,
            "finish": "length" if tokens >= max_new else "eos", "latency_s": 0.0, "text": text}


def grade(cli, data, n, out, modes, alpha, beta):
    """Grades the records in `out` with `ascend-cold eval --regrade` and prints its table."""
    cmd = [cli, "eval", "--task", data, "--limit", str(n), "--out", out, "--regrade",
           "--modes", ",".join(modes), "--alpha", f"{alpha:g}", "--beta", f"{beta:g}"]
    subprocess.run(cmd, check=True)


def cold_pick(e, a, alpha, beta):
    import torch
    keep = e >= e.max() + math.log(alpha)
    score = torch.where(keep, (1 + beta) * e - beta * a, torch.full_like(e, -math.inf))
    return int(torch.argmax(score))  # torch.argmax returns the first maximal index


def generate(pm, tok, prompt, mode, max_new, alpha=0.1, beta=0.5):
    """mode: 'base' (adapter disabled), 'adapter' (greedy expert) or 'cold'."""
    import torch
    ids = tok(common.prompt_text(tok, prompt), add_special_tokens=False, return_tensors="pt")["input_ids"]
    eos = tok.convert_tokens_to_ids(common.end_of_turn(tok))
    out = []
    with torch.no_grad():
        if mode == "base":
            with pm.disable_adapter():
                out = _loop(pm, ids, eos, max_new, lambda e, a: int(torch.argmax(e)), need_amateur=False)
        elif mode == "adapter":
            out = _loop(pm, ids, eos, max_new, lambda e, a: int(torch.argmax(e)), need_amateur=False)
        else:
            out = _loop(pm, ids, eos, max_new, lambda e, a: cold_pick(e, a, alpha, beta), need_amateur=True)
    return tok.decode(out, skip_special_tokens=True), len(out)


def generate_batched(pm, tok, prompts, mode, max_new, batch_size):
    """Greedy decoding of several prompts at once (left padding), for 'base' or 'adapter'.
    Same tokens as one-at-a-time greedy up to float rounding of padded batches."""
    import contextlib
    import torch
    eos = tok.convert_tokens_to_ids(common.end_of_turn(tok))
    tok.padding_side = "left"
    out = []
    for s in range(0, len(prompts), batch_size):
        texts = [common.prompt_text(tok, p) for p in prompts[s:s + batch_size]]
        enc = tok(texts, add_special_tokens=False, return_tensors="pt", padding=True)
        ctx = pm.disable_adapter() if mode == "base" else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            g = pm.generate(**enc, max_new_tokens=max_new, do_sample=False, eos_token_id=eos,
                            pad_token_id=eos)
        for row in g[:, enc["input_ids"].shape[1]:].tolist():
            n = row.index(eos) if eos in row else len(row)
            out.append((tok.decode(row[:n], skip_special_tokens=True), n))
    return out


def _loop(pm, ids, eos, max_new, pick, need_amateur):
    e_past = a_past = None
    cur = ids
    out = []
    for _ in range(max_new):
        r = pm(input_ids=cur, past_key_values=e_past, use_cache=True)
        e_past, e = r.past_key_values, r.logits[0, -1].float()
        a = None
        if need_amateur:
            with pm.disable_adapter():
                ra = pm(input_ids=cur, past_key_values=a_past, use_cache=True)
            a_past, a = ra.past_key_values, ra.logits[0, -1].float()
        t = pick(e, a)
        if t == eos:
            break
        out.append(t)
        import torch
        cur = torch.tensor([[t]])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", required=True, help="folder with adapter_config.json + adapter_model.safetensors")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--data", default=None, help="JSONL file (default study/data/<split>.jsonl)")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--modes", default="base,adapter", help="comma list of base, adapter, cold")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=20, help="prompts per batch for greedy modes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gguf-dir", default=None)
    ap.add_argument("--out", default=None, help="write the eval records here (default: a temporary file)")
    ap.add_argument("--cli", default="target/release/ascend-cold", help="the ascend-cold binary that grades")
    ap.add_argument("--show", type=int, default=2, help="print the first K generations per mode")
    args = ap.parse_args()

    import torch
    from peft import PeftModel

    common.set_threads(args.threads)
    model, tok = common.load_base(args.gguf_dir)
    pm = PeftModel.from_pretrained(model, args.adapter)
    pm = pm.float()  # adapters may be stored in f16; compute in f32 like the base
    pm.eval()

    data = args.data or os.path.join(HERE, "data", f"{args.split}.jsonl")
    rows = common.load_jsonl(data, args.n)
    modes = args.modes.split(",")
    records = []
    for m in modes:
        t0 = time.time()
        if m in ("base", "adapter"):
            gens = generate_batched(pm, tok, [r["prompt"] for r in rows], m, args.max_new, args.batch_size)
        else:
            gens = [generate(pm, tok, r["prompt"], m, args.max_new, args.alpha, args.beta) for r in rows]
        for k, r in enumerate(rows):
            text, n = gens[k]
            records.append(record(r, label(m, args.alpha, args.beta), text, n, args.max_new))
            if k < args.show:
                print(f"--- {m} {r['id']} (answer {r['answer']}):\n{text}\n")
        el = time.time() - t0
        ntok = sum(n for _, n in gens)
        print(f"[{m}] {len(rows)} problems, mean tokens {ntok / len(rows):.1f}  {el:.0f}s "
              f"({ntok / max(el, 1e-9):.1f} tok/s)", flush=True)
    out = args.out or os.path.join(tempfile.mkdtemp(prefix="eval_py-"), "records.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    print(f"\nsummary ({args.split}, n={len(rows)}; graded by {args.cli} eval --regrade, records in {out})")
    grade(args.cli, data, len(rows), out, modes, args.alpha, args.beta)


if __name__ == "__main__":
    main()
