#!/usr/bin/env python3
"""Greedy decode steps/s of Hugging Face transformers on SmolLM2-135M-Instruct (the same Q4_1 GGUF
the Rust bench uses), for comparison with `cargo bench --bench decode` (see docs/DECODING.md).

Not part of CI. Needs:  pip install torch transformers gguf
Run:     python3 scripts/bench-hf-decode.py --gguf "$(scripts/fetch-smollm2)" --threads 2
         (scripts/bench-decode runs it next to the Rust bench and prints one table.)

What it measures, matching benches/decode.rs: per batch size (1 and 8), each row gets its own
64-token prompt (token i of row b = 100 + (31 i + 7 b) mod 1000), a prefill (untimed), then greedy
steps with use_cache (one token per row per step, argmax of the last logits, fed back), 32 steps
per prefill so the KV cache holds 64..96 positions when timed. The batch sizes take turns for
several rounds; the reported ms/step is the median over rounds. transformers dequantises the GGUF
to --dtype (float32 by default). Output lines start with `hf-bench:`.
"""

import argparse
import inspect
import os
import sys
import time


def prompt_ids(batch, length):
    return [[100 + (31 * i + 7 * b) % 1000 for i in range(length)] for b in range(batch)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf", required=True, help="path of SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--refill", type=int, default=32, help="steps between prefills")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=4, help="timed steps per turn")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = p.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    directory, name = os.path.split(os.path.abspath(args.gguf))
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=dtype)
    model.eval()
    load_s = time.perf_counter() - t0
    print(
        f"hf-bench: setup torch={torch.__version__} transformers={transformers.__version__} "
        f"dtype={args.dtype} threads={torch.get_num_threads()} load_s={load_s:.1f}",
        flush=True,
    )

    class Runner:
        def __init__(self, batch):
            self.batch = batch
            self.ids = torch.tensor(prompt_ids(batch, args.prompt_len), dtype=torch.long)
            self.since = None
            self.past = None
            self.feed = None

        def prefill(self):
            out = model(input_ids=self.ids, use_cache=True, logits_to_keep=1)
            self.past = cache_of(out)
            self.feed = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
            self.since = 0

        def run(self, steps):
            timed = 0.0
            for _ in range(steps):
                if self.since is None or self.since >= args.refill:
                    self.prefill()
                t = time.perf_counter()
                out = model(input_ids=self.feed, use_cache=True, **{cache_kw: self.past})
                self.past = cache_of(out)
                self.feed = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
                timed += time.perf_counter() - t
                self.since += 1
                # The cache must grow by one position per step (else we would time uncached steps).
                assert self.past.get_seq_length() == args.prompt_len + self.since, "cache not used"
            return timed

    # transformers 5 renamed the cache argument and output field `past_key_values` -> `cache`.
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def cache_of(out):
        c = getattr(out, "cache", None)
        return c if c is not None else out.past_key_values

    runners = [Runner(int(b)) for b in args.batches.split(",")]
    per_round = [[] for _ in runners]
    with torch.inference_mode():
        for r in runners:
            r.run(1)  # warm
        for rnd in range(args.rounds):
            for j in range(len(runners)):
                i = (j + rnd) % len(runners)
                per_round[i].append(runners[i].run(args.steps) / args.steps)
    for r, times in zip(runners, per_round):
        times = sorted(times)
        n = len(times)
        med = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
        print(
            f"hf-bench: step greedy-base/{r.batch} ms_per_step={med * 1e3:.2f} "
            f"steps_per_s={1 / med:.2f} tokens_per_s={r.batch / med:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
