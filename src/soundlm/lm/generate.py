"""Autoregressive decoding with the preallocated KV cache.

`generate` continues token sequences of a `TokenLM` (semantic, coarse and fine stages):
prefill the prompt once, then one cached step per new token, with optional constrained
decoding (`allowed_fn(position)` gives the valid global ids at each output position) and
EOS stopping. When a sequence outgrows the model's context (`max_positions`), decoding
slides: the cache is reset and the last `window_keep` tokens are prefilled again.

`generate_delayed` does the same for a `DelayLM`: one step per delayed column, all K
codebooks sampled at once, prompt codes and delay pads forced in place.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from soundlm.lm.cache import KVCache
from soundlm.lm.model import DelayLM, TokenLM
from soundlm.patterns import AllowedFn, delay_codes, delay_valid_mask, undelay_codes
from soundlm.sampler import SamplingParams, sample_next_token


def generate(model: TokenLM, prompt: torch.Tensor, max_new_tokens: int,
             sampling: SamplingParams = SamplingParams(), allowed_fn: AllowedFn | None = None,
             generator: torch.Generator | None = None, cache: KVCache | None = None,
             eos_id: int | None = None, pad_id: int = 0, window_keep: int | None = None,
             progress: bool = False) -> torch.Tensor:
    """Continue prompt [B, T0] (int64 global ids) by up to max_new_tokens; returns [B, T0+new].

    allowed_fn(position) -> (lo, hi) | bool mask [V] or [B, V] | None, where position is
    the index of the token being generated in the returned sequence.
    eos_id: stop when every row has emitted it; rows that finished earlier get pad_id.
    cache: reuse an allocated cache across calls (reset here); one is made if it does not fit.
    window_keep: tokens kept as context when the sequence slides (default max_positions // 2).
    """
    if prompt.dim() != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must be [B, T0] with T0 >= 1 (start with BOS), got shape {tuple(prompt.shape)}")
    if prompt.dtype != torch.long:
        raise ValueError(f"prompt must be int64 token ids, got {prompt.dtype}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if prompt.numel() and (int(prompt.min()) < 0 or int(prompt.max()) >= model.vocab_size):
        raise ValueError(f"prompt ids must lie in [0, {model.vocab_size}), got [{int(prompt.min())}, "
                         f"{int(prompt.max())}]; map stream ids through VocabLayout first")
    b, t0 = prompt.shape
    total = t0 + max_new_tokens
    max_len = model.max_positions
    keep = window_keep if window_keep is not None else max_len // 2
    if not 0 < keep < max_len:
        raise ValueError(f"window_keep must be in [1, {max_len - 1}], got {keep}")
    out = torch.full((b, total), pad_id, dtype=torch.long, device=prompt.device)
    out[:, :t0] = prompt
    if max_new_tokens == 0:
        return out

    fast = model.fast_decoding
    cache_len = min(max_len, total)
    if fast:
        dtype, device = model.backbone.norm.weight.dtype, prompt.device
        if cache is None or not cache.fits(b, cache_len, dtype, device):
            cache = model.new_cache(b, cache_len)
        cache.reset()

    def prefill(begin: int, end: int) -> torch.Tensor:
        # Context out[:, begin:end] from an empty cache (prompt, or the kept window after a slide).
        if fast:
            cache.reset()
            return model.step(out[:, begin:end], cache, 0)
        return model.last_logits(out[:, begin:end])

    was_training = model.training
    model.eval()
    begin = max(0, t0 - keep) if t0 > max_len else 0  # absolute index of context position 0
    logits = prefill(begin, t0)  # [B, V]
    finished = torch.zeros(b, dtype=torch.bool, device=prompt.device)
    end = total
    for pos in tqdm(range(t0, total), desc="generate", disable=not progress, leave=False):
        allowed = allowed_fn(pos) if allowed_fn is not None else None
        nxt = sample_next_token(logits, sampling.temperature, sampling.top_k, sampling.top_p, generator, allowed)
        if eos_id is not None:
            nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
            finished |= nxt == eos_id
        out[:, pos] = nxt
        if pos + 1 == total or (eos_id is not None and bool(finished.all())):
            end = pos + 1
            break
        filled = pos + 1 - begin  # context positions including the new token
        if filled > max_len:
            begin = pos + 1 - keep
            logits = prefill(begin, pos + 1)
        elif fast:
            logits = model.step(out[:, pos:pos + 1], cache, filled - 1)
        else:
            logits = model.last_logits(out[:, begin:pos + 1])
    model.train(was_training)
    return out[:, :end]


def generate_delayed(model: DelayLM, prompt: torch.Tensor, num_new_frames: int,
                     sampling: SamplingParams = SamplingParams(), generator: torch.Generator | None = None,
                     prefix: torch.Tensor | None = None, cache: KVCache | None = None,
                     progress: bool = False) -> torch.Tensor:
    """Continue codes prompt [B, K, T0] (T0 may be 0) by num_new_frames; returns codes [B, K, T0+new].

    prefix: conditioning ids [B, P] for a DelayLM built with prefix_vocab_size > 0.
    """
    cfg = model.config
    if prompt.dim() != 3 or prompt.shape[1] != cfg.num_codebooks:
        raise ValueError(f"prompt must be [B, {cfg.num_codebooks}, T0] codes, got shape {tuple(prompt.shape)}")
    if prompt.numel() and (int(prompt.min()) < 0 or int(prompt.max()) >= cfg.codebook_size):
        raise ValueError(f"prompt codes must lie in [0, {cfg.codebook_size})")
    if num_new_frames <= 0:
        raise ValueError(f"num_new_frames must be > 0, got {num_new_frames}")
    b, k, t0 = prompt.shape
    frames = t0 + num_new_frames
    steps = frames + k - 1  # delayed columns
    p = 0 if prefix is None else prefix.shape[1]
    if p + steps > model.max_positions:
        raise ValueError(f"{p} prefix + {steps} delayed steps exceed max_positions {model.max_positions}; "
                         "generate fewer frames per call (windowed delay decoding is not implemented)")
    dev = prompt.device
    full = torch.zeros(b, k, frames, dtype=torch.long, device=dev)
    full[:, :, :t0] = prompt
    target = delay_codes(full, cfg.pad_id)  # [B, K, S]
    # A delayed cell is forced when it is a pad (outside the frames) or comes from the prompt.
    is_prompt = (torch.arange(frames, device=dev) < t0).long().expand(1, k, frames)  # [1, K, T]
    known = ~delay_valid_mask(k, frames, dev) | delay_codes(is_prompt, 0)[0].bool()  # [K, S]
    first = t0  # columns 0..t0-1 are fully known (prompt frames and leading pads)
    if cache is None or not cache.fits(b, p + steps, model.embeddings[0].weight.dtype, dev):
        cache = model.new_cache(b, p + steps)
    cache.reset()
    was_training = model.training
    model.eval()
    start_col = torch.full((b, k, 1), cfg.pad_id, dtype=torch.long, device=dev)
    inputs = torch.cat([start_col, target[:, :, :first]], dim=2)  # [B, K, first+1]
    logits = model.step(inputs, cache, 0, prefix)  # [B, K, card]
    pos = p + inputs.shape[2]
    for s in tqdm(range(first, steps), desc="generate", disable=not progress, leave=False):
        flat = logits.reshape(b * k, -1)  # [B*K, card]
        drawn = sample_next_token(flat, sampling.temperature, sampling.top_k, sampling.top_p, generator)
        drawn = drawn.view(b, k)
        target[:, :, s] = torch.where(known[:, s], target[:, :, s], drawn)
        if s + 1 < steps:
            logits = model.step(target[:, :, s:s + 1], cache, pos)
            pos += 1
    model.train(was_training)
    return undelay_codes(target)
