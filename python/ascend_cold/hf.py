"""CoLD inside Hugging Face generation: `cold_generate` decodes a PEFT model with contrastive LoRA
decoding, one batched forward per step.

Contract: each prompt of `input_ids` (left-padded, with `attention_mask` marking the padding) becomes
two rows of one batch, the expert (`adapter_name`) and the amateur (PEFT's "__base__", the bare
model), through PEFT's mixed-adapter forward (`adapter_names=`); the KV cache is carried between steps
and `ascend_cold.cold_score` picks each next token from the two rows' last logits. A row stops at its
first EOS token (which is kept) and is padded after it; decoding ends when every row has stopped or
after `max_new_tokens`. Returns int64 `[batch, steps run]` on the input's device. alpha=1, beta=0 is
greedy decoding of the expert.
"""

import inspect

import torch

from . import cold_score


def _eos_ids(model, eos_token_id):
    ids = eos_token_id if eos_token_id is not None else model.config.eos_token_id
    if ids is None:
        return []
    return [ids] if isinstance(ids, int) else list(ids)


@torch.no_grad()
def cold_generate(model, input_ids, adapter_name, alpha=0.1, beta=0.5, max_new_tokens=32,
                  attention_mask=None, eos_token_id=None, *, device="auto"):
    """The new tokens of each prompt under CoLD, `[batch, new]`, padded after a row's EOS with the
    model's pad token (else its first EOS id). `device` is where `cold_score` runs."""
    if adapter_name not in getattr(model, "peft_config", {}):
        raise ValueError(f"adapter_name: expected one of the model's PEFT adapters, got {adapter_name!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: expected at least 1, got {max_new_tokens}")
    batch = input_ids.shape[0]
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    eos = _eos_ids(model, eos_token_id)
    pad = model.config.pad_token_id
    pad = pad if pad is not None else (eos[0] if eos else 0)
    names = [adapter_name] * batch + ["__base__"] * batch
    feed = torch.cat([input_ids, input_ids])
    mask = torch.cat([attention_mask, attention_mask]).to(input_ids.device)
    # Left padding: positions count real tokens only, as they would in an unpadded prompt.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # transformers 5 renamed past_key_values to cache (the old name warns, then goes away).
    forward = inspect.signature(model.get_base_model().forward).parameters
    cache_arg = "cache" if "cache" in forward else "past_key_values"
    past = None
    done = torch.zeros(batch, dtype=torch.bool)
    out = []
    for _ in range(max_new_tokens):
        step = model(input_ids=feed, attention_mask=mask, position_ids=positions,
                     use_cache=True, adapter_names=names, **{cache_arg: past})
        past = step[cache_arg] if cache_arg in step else step.past_key_values
        logits = step.logits[:, -1, :].float().cpu()
        tokens = cold_score(logits[:batch].contiguous(), logits[batch:].contiguous(), alpha, beta,
                            device=device)
        if (tokens < 0).any():
            rows = (tokens < 0).nonzero().flatten().tolist()
            raise RuntimeError(f"non-finite logits in rows {rows}: no token can be chosen")
        tokens = torch.where(done, torch.full_like(tokens, pad), tokens)
        out.append(tokens)
        done |= torch.isin(tokens, torch.tensor(eos, dtype=tokens.dtype))
        if done.all():
            break
        feed = torch.cat([tokens, tokens])[:, None].to(input_ids.device)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
    return torch.stack(out, dim=1).to(input_ids.device)
