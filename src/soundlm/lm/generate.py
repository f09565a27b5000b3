"""Autoregressive decoding with the preallocated KV cache.

`generate` continues token sequences of a `TokenLM` (semantic, coarse and fine stages):
prefill the prompt once, then one cached step per new token, with optional constrained
decoding (`allowed_fn(position)` gives the valid global ids at each output position) and
EOS stopping. When a sequence outgrows the model's context (`max_positions`), decoding
slides: the cache is reset and the last `window_keep` tokens are prefilled again.
Prompts of different lengths share a batch left-padded (`left_pad`, `left_pad_prompts`), and
rows that need fewer new tokens stop drawing early (`row_new_tokens` with `RowGenerators`):
so requests with different prompts and seeds share one batch and each row decodes as alone.

`generate_delayed` does the same for a `DelayLM`: one step per delayed column, all K
codebooks sampled at once, prompt codes and delay pads forced in place; past
`max_positions` it slides the same way (the conditioning prefix always stays).

Classifier-free guidance (`guidance` g with an unconditional prompt or prefix: the same
tokens with NULL condition ids): the conditional and unconditional rows run as one batch
of 2B rows through one KV cache, each step's logits are mixed as uncond + g * (cond - uncond)
(`guided_logits`) before sampling, and both halves append the sampled token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from soundlm.lm.cache import KVCache
from soundlm.lm.model import DelayLM, TokenLM
from soundlm.patterns import AllowedFn, delay_codes, delay_valid_mask, undelay_codes
from soundlm.sampler import Generator, RowGenerators, SamplingParams, sample_next_token


def left_pad_prompts(prompts: Sequence[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts [T_i] of different lengths -> (tokens [B, max T_i] right-aligned, left_pad [B] int64)."""
    if not prompts or any(p.dim() != 1 or p.shape[0] == 0 for p in prompts):
        raise ValueError("left_pad_prompts takes a non-empty list of non-empty 1-d prompts [T_i]")
    t0 = max(p.shape[0] for p in prompts)
    tokens = torch.full((len(prompts), t0), pad_id, dtype=torch.long, device=prompts[0].device)
    for i, p in enumerate(prompts):
        tokens[i, t0 - p.shape[0]:] = p
    pad = torch.tensor([t0 - p.shape[0] for p in prompts], dtype=torch.long, device=prompts[0].device)
    return tokens, pad


def guided_logits(logits: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: logits [2B, ...] (conditional rows, then their unconditional twins)
    -> uncond + guidance * (cond - uncond), [B, ...]."""
    cond, uncond = logits.chunk(2, dim=0)
    return uncond + guidance * (cond - uncond)


def _check_guidance(guidance: float, uncond: torch.Tensor | None, like: torch.Tensor, what: str) -> bool:
    """Whether guidance applies (an unconditional twin given and guidance != 1); checks the twin's shape."""
    if uncond is None or guidance == 1.0:
        return False
    if uncond.shape != like.shape or uncond.dtype != like.dtype:
        raise ValueError(f"{what} must match the conditional one ({tuple(like.shape)} {like.dtype}), got "
                         f"{tuple(uncond.shape)} {uncond.dtype}; replace the condition ids by NULL, keep the rest")
    return True


def generate(model: TokenLM, prompt: torch.Tensor, max_new_tokens: int,
             sampling: SamplingParams = SamplingParams(), allowed_fn: AllowedFn | None = None,
             generator: Generator = None, cache: KVCache | None = None,
             eos_id: int | None = None, pad_id: int = 0, window_keep: int | None = None,
             progress: bool = False, left_pad: torch.Tensor | None = None,
             row_new_tokens: torch.Tensor | None = None, guidance: float = 1.0,
             uncond_prompt: torch.Tensor | None = None) -> torch.Tensor:
    """Continue prompt [B, T0] (int64 global ids) by up to max_new_tokens; returns [B, T0+new].

    allowed_fn(position) -> (lo, hi) | bool mask [V] or [B, V] | None, where position is
    the index of the token being generated in the returned sequence. A (lo, hi) range is
    also the only part of the output head the step computes.
    eos_id: stop when every row has emitted it; rows that finished earlier get pad_id.
    cache: reuse an allocated cache across calls (reset here); one is made if it does not fit.
    window_keep: tokens kept as context when the sequence slides (default max_positions // 2).
    left_pad: int64 [B], leading pad tokens of each prompt row (prompts of different lengths
    right-aligned, e.g. by `left_pad_prompts`): they are never attended to and each row's
    positions start at its first real token, so a row decodes as it would alone. Positions
    given to allowed_fn count in the padded sequence (every row's new tokens share them).
    row_new_tokens: int64 [B], the new tokens each row needs (at most max_new_tokens). With a
    `RowGenerators` generator a row past its count draws nothing more, so its random stream is
    where it would be had it run alone; its later tokens are filler for the caller to drop.
    guidance, uncond_prompt [B, T0]: classifier-free guidance with the unconditional twin of
    each prompt row (its condition ids NULL; same length, same left_pad). Both run as one batch
    of 2B rows; g = 1 or no twin decodes the prompt alone, exactly as without them.
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
    guided = _check_guidance(guidance, uncond_prompt, prompt, "uncond_prompt")
    if left_pad is not None:
        left_pad = torch.as_tensor(left_pad, dtype=torch.long, device=prompt.device)
        if left_pad.shape != (b,) or int(left_pad.min()) < 0 or int(left_pad.max()) >= t0:
            raise ValueError(f"left_pad must be [B] = [{b}] counts in [0, {t0 - 1}] (every prompt keeps at least "
                             f"one real token), got {left_pad.tolist()}")
        if guided:
            left_pad = left_pad.repeat(2)  # the unconditional twins are padded as their rows
    live_rows = None
    if row_new_tokens is not None:
        row_new_tokens = torch.as_tensor(row_new_tokens, dtype=torch.long, device=prompt.device)
        if (row_new_tokens.shape != (b,) or int(row_new_tokens.min()) < 0
                or int(row_new_tokens.max()) > max_new_tokens):
            raise ValueError(f"row_new_tokens must be [B] = [{b}] counts in [0, {max_new_tokens}], got "
                             f"{row_new_tokens.tolist()}")
        if isinstance(generator, RowGenerators):
            live_rows = row_new_tokens
    total = t0 + max_new_tokens
    max_len = model.max_positions
    keep = window_keep if window_keep is not None else max_len // 2
    if not 0 < keep < max_len:
        raise ValueError(f"window_keep must be in [1, {max_len - 1}], got {keep}")
    # Guided: rows b.. are the unconditional twins of rows ..b, fed the same new tokens.
    out = torch.full((2 * b if guided else b, total), pad_id, dtype=torch.long, device=prompt.device)
    out[:b, :t0] = prompt
    if guided:
        out[b:, :t0] = uncond_prompt
    if max_new_tokens == 0:
        return out[:b]

    fast = model.fast_decoding
    cache_len = min(max_len, total)
    if fast:
        dtype, device = model.backbone.norm.weight.dtype, prompt.device
        if cache is None or not cache.fits(out.shape[0], cache_len, dtype, device):
            cache = model.new_cache(out.shape[0], cache_len)

    def head_rows(pos: int) -> tuple[tuple[int, int] | None, object]:
        # A plain id range is applied by computing only those logits (rows); anything else goes to the sampler.
        allowed = allowed_fn(pos) if allowed_fn is not None else None
        return (allowed, None) if fast and isinstance(allowed, tuple) else (None, allowed)

    def mixed(logits: torch.Tensor) -> torch.Tensor:
        return guided_logits(logits, guidance) if guided else logits

    def prefill(begin: int, end: int, rows: tuple[int, int] | None) -> torch.Tensor:
        # Context out[:, begin:end] from an empty cache (prompt, or the kept window after a slide).
        pad = None if left_pad is None else (left_pad - begin).clamp(min=0)
        if fast:
            cache.reset(pad)
            return mixed(model.step(out[:, begin:end], cache, 0, rows))
        return mixed(model.last_logits(out[:, begin:end], pad))

    was_training = model.training
    model.eval()
    begin = max(0, t0 - keep) if t0 > max_len else 0  # absolute index of context position 0
    rows, allowed = head_rows(t0)
    logits = prefill(begin, t0, rows)  # [B, V] or [B, hi-lo]
    finished = torch.zeros(b, dtype=torch.bool, device=prompt.device)
    end = total
    for pos in tqdm(range(t0, total), desc="generate", disable=not progress, leave=False):
        gen = generator if live_rows is None else generator.only(live_rows > pos - t0)
        nxt = sample_next_token(logits, sampling.temperature, sampling.top_k, sampling.top_p, gen, allowed)
        if rows is not None:
            nxt += rows[0]
        if eos_id is not None:
            nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
            finished |= nxt == eos_id
        out[:, pos] = torch.cat([nxt, nxt]) if guided else nxt
        if pos + 1 == total or (eos_id is not None and bool(finished.all())):
            end = pos + 1
            break
        rows, allowed = head_rows(pos + 1)
        filled = pos + 1 - begin  # context positions including the new token
        if filled > max_len:
            begin = pos + 1 - keep
            logits = prefill(begin, pos + 1, rows)
        elif fast:
            logits = mixed(model.step(out[:, pos:pos + 1], cache, filled - 1, rows))
        else:
            pad = None if left_pad is None else (left_pad - begin).clamp(min=0)
            logits = mixed(model.last_logits(out[:, begin:pos + 1], pad))
    model.train(was_training)
    return out[:b, :end]


def generate_delayed(model: DelayLM, prompt: torch.Tensor, num_new_frames: int,
                     sampling: SamplingParams = SamplingParams(), generator: Generator = None,
                     prefix: torch.Tensor | None = None, cache: KVCache | None = None,
                     progress: bool = False, window_keep: int | None = None, guidance: float = 1.0,
                     uncond_prefix: torch.Tensor | None = None,
                     pick: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Continue codes prompt [B, K, T0] (T0 may be 0) by num_new_frames; returns codes [B, K, T0+new].

    prefix: conditioning ids [B, P] for a DelayLM built with prefix_vocab_size > 0.
    window_keep: delayed columns kept as context when prefix + columns outgrow max_positions
    (default half the columns that fit beside the prefix); the prefix is always kept, and the
    window is prefilled again from position 0, as `generate` slides.
    guidance, uncond_prefix [B, P]: classifier-free guidance with the unconditional twin of the
    prefix (condition ids NULL): 2B rows in each forward, as in `generate`.
    pick(s, logits [B, K, card], free [K] bool): the codes [B, K] of delayed column s in place of
    sampling (token mode entropy-codes them, `soundlm.compress.tokens`); only its free cells
    (neither delay pads nor prompt codes) are used.
    """
    cfg = model.config
    if prompt.dim() != 3 or prompt.shape[1] != cfg.num_codebooks:
        raise ValueError(f"prompt must be [B, {cfg.num_codebooks}, T0] codes, got shape {tuple(prompt.shape)}")
    if prompt.numel() and (int(prompt.min()) < 0 or int(prompt.max()) >= cfg.codebook_size):
        raise ValueError(f"prompt codes must lie in [0, {cfg.codebook_size})")
    if num_new_frames <= 0:
        raise ValueError(f"num_new_frames must be > 0, got {num_new_frames}")
    b, k, t0 = prompt.shape
    if prefix is None and uncond_prefix is not None:
        raise ValueError("uncond_prefix is the unconditional twin of a prefix; pass the prefix too")
    guided = prefix is not None and _check_guidance(guidance, uncond_prefix, prefix, "uncond_prefix")
    frames = t0 + num_new_frames
    steps = frames + k - 1  # delayed columns
    p = 0 if prefix is None else prefix.shape[1]
    room = model.max_positions - p  # input columns that fit beside the prefix
    if room < 2:
        raise ValueError(f"a {p}-token prefix leaves {room} of max_positions {model.max_positions} for codes; "
                         "shorten the prefix")
    keep = window_keep if window_keep is not None else room // 2
    if not 0 < keep < room:
        raise ValueError(f"window_keep must be in [1, {room - 1}], got {keep}")
    dev = prompt.device
    full = torch.zeros(b, k, frames, dtype=torch.long, device=dev)
    full[:, :, :t0] = prompt
    # Input column j is the delayed column j-1 (column 0: the start column of pads); target is a view.
    seq = torch.full((b, k, steps + 1), cfg.pad_id, dtype=torch.long, device=dev)  # [B, K, S+1]
    seq[:, :, 1:] = delay_codes(full, cfg.pad_id)
    target = seq[:, :, 1:]  # [B, K, S]
    # A delayed cell is forced when it is a pad (outside the frames) or comes from the prompt.
    is_prompt = (torch.arange(frames, device=dev) < t0).long().expand(1, k, frames)  # [1, K, T]
    known = ~delay_valid_mask(k, frames, dev) | delay_codes(is_prompt, 0)[0].bool()  # [K, S]
    first = t0  # columns 0..t0-1 are fully known (prompt frames and leading pads)
    cache_len = p + min(room, steps)
    rows = 2 * b if guided else b
    if cache is None or not cache.fits(rows, cache_len, model.embeddings[0].weight.dtype, dev):
        cache = model.new_cache(rows, cache_len)
    both_prefixes = torch.cat([prefix, uncond_prefix]) if guided else prefix

    def forward(columns: torch.Tensor, start: int, with_prefix: torch.Tensor | None) -> torch.Tensor:
        # Guided: the twins see the same code columns after their own prefix; logits mixed to [B, K, card].
        if not guided:
            return model.step(columns, cache, start, with_prefix)
        return guided_logits(model.step(torch.cat([columns, columns]), cache, start, with_prefix), guidance)

    def prefill(begin: int, end: int) -> torch.Tensor:
        # Prefix + input columns begin..end-1 from an empty cache.
        cache.reset()
        return forward(seq[:, :, begin:end], 0, both_prefixes)

    was_training = model.training
    model.eval()
    begin = 0 if first + 1 <= room else first + 1 - keep  # first input column in the cache
    logits = prefill(begin, first + 1)  # [B, K, card]
    for s in tqdm(range(first, steps), desc="generate", disable=not progress, leave=False):
        if pick is not None:
            drawn = pick(s, logits, ~known[:, s])  # [B, K]
        else:
            flat = logits.reshape(b * k, -1)  # [B*K, card]
            drawn = sample_next_token(flat, sampling.temperature, sampling.top_k, sampling.top_p, generator)
            drawn = drawn.view(b, k)
        target[:, :, s] = torch.where(known[:, s], target[:, :, s], drawn)
        nxt = s + 1  # the input column that predicts delayed column s+1
        if nxt < steps:
            if nxt + 1 - begin > room:
                begin = nxt + 1 - keep
                logits = prefill(begin, nxt + 1)
            else:
                logits = forward(seq[:, :, nxt:nxt + 1], p + nxt - begin, None)
    model.train(was_training)
    return undelay_codes(target)
