#!/usr/bin/env python3
"""Estimate the training cost per example independently of how busy the machine is.

Runs a few forward+backward steps of train_lora.py's loss (same LoRA setup) on ONE thread and
reports the process CPU time per example; on a shared machine wall time says little, CPU time
of a single thread says how much work there is. Expected wall time on 2 quiet cores is about
CPU time / 1.7 (two threads never scale perfectly on these small matmuls).

    OMP_WAIT_POLICY=PASSIVE python3 study/calibrate.py --steps 2 --batch-size 8
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
import train_lora  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--r", type=int, default=16)
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model

    common.set_threads(1)
    torch.manual_seed(0)
    model, tok = common.load_base()
    for p in model.parameters():
        p.requires_grad_(False)
    rows = common.load_jsonl(os.path.join(HERE, "data", "train.jsonl"), args.batch_size * (args.steps + 1))
    ex = train_lora.build_examples(tok, rows, 256)
    pm = get_peft_model(model, LoraConfig(r=args.r, lora_alpha=2 * args.r, target_modules=train_lora.TARGETS_ALL,
                                          task_type="CAUSAL_LM"))
    pm.train()
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    cpu, wall, n = 0.0, 0.0, 0
    for s in range(args.steps + 1):  # the first step warms up and is not counted
        b = list(range(s * args.batch_size, (s + 1) * args.batch_size))
        inp, lab, att = train_lora.collate(ex, b, tok.pad_token_id)
        c0, w0 = time.process_time(), time.time()
        loss = train_lora.completion_loss(pm, inp, lab, att)
        opt.zero_grad()
        loss.backward()
        opt.step()
        c1, w1 = time.process_time(), time.time()
        print(f"step {s}: cpu {c1 - c0:.1f}s wall {w1 - w0:.1f}s  tokens {int(att.sum())}", flush=True)
        if s > 0:
            cpu, wall, n = cpu + c1 - c0, wall + w1 - w0, n + len(b)
    print(f"CPU time per example: {cpu / n:.2f}s (1 thread); wall on this machine now: {wall / n:.2f}s")
    print(f"estimate on 2 quiet cores: {cpu / n / 1.7:.2f}s per example, "
          f"{cpu / n / 1.7 * 1000 / 60:.0f} min per 1000 examples")


if __name__ == "__main__":
    main()
