"""Token sequences for each LM stage, and their inverses. Pure functions, no model state.

AudioLM (Borsos et al. 2022) flattening, all ids global (see `vocab.VocabLayout`):

    semantic stage: BOS s_0 ... s_{n-1} EOS
    coarse stage:   BOS s_0 ... s_{n-1} SEP c_{0,0} c_{0,1} .. c_{0,Qc-1} c_{1,0} ... EOS
    conditioned (MusicLM): BOS m_1 .. m_Q, then as above: Q condition ids (quantized MuLan
                    embedding, or Q NULLs for "no condition") right after BOS
                    (codebooks 0..Qc-1 interleaved per frame: frame-major order)
    fine stage:     per window of W frames (AudioLM: 3 s, non-overlapping):
                    BOS <coarse codebooks of the window, frame-major> SEP <fine codebooks, frame-major> EOS

MusicGen's delay pattern (Copet et al. 2023) is the faster option: all K codebooks are
predicted in one step per frame, codebook k shifted right by k frames, so level k of frame
t is predicted after levels < k of frame t are known. Holes are filled with a special pad.

`allowed_range(position, ...)` says which global ids are valid at an output position, for
constrained decoding (a coarse stage must emit level-q tokens at level-q positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from soundlm.vocab import VocabLayout

# What an `allowed` callable returns: a half-open global id range, a bool mask [V] or
# [B, V] (True = allowed), or None (anything goes).
Allowed = tuple[int, int] | torch.Tensor | None
AllowedFn = Callable[[int], Allowed]


# ---- frame-major flattening ------------------------------------------------------------
def flatten_frames(codes: torch.Tensor, layout: VocabLayout, first_level: int = 0) -> torch.Tensor:
    """Codes [B, K, T] of levels first_level.. -> global ids [B, T*K], frame-major."""
    _check_codes(codes)
    ids = layout.acoustic_to_global(codes, first_level)  # [B, K, T]
    return ids.transpose(1, 2).reshape(codes.shape[0], -1)  # [B, T*K]


def unflatten_frames(tokens: torch.Tensor, layout: VocabLayout, num_levels: int,
                     first_level: int = 0) -> torch.Tensor:
    """Inverse of `flatten_frames`: global ids [B, T*K] -> codes [B, K, T]."""
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [B, N], got shape {tuple(tokens.shape)}")
    if num_levels <= 0 or tokens.shape[1] % num_levels:
        raise ValueError(f"{tokens.shape[1]} tokens do not split into whole frames of {num_levels} codebooks; "
                         "crop the sequence to a multiple of the number of codebooks")
    ids = tokens.view(tokens.shape[0], -1, num_levels).transpose(1, 2)  # [B, K, T]
    return layout.global_to_acoustic(ids, first_level)


# ---- AudioLM stages --------------------------------------------------------------------
@dataclass
class StageSequence:
    """One stage's training/prompt sequence.

    tokens: [B, L] global ids. prefix_len: tokens before the first generated one
    (BOS + condition + SEP); a trainer may mask the loss on them.
    """

    tokens: torch.Tensor
    prefix_len: int


def condition_part(condition: torch.Tensor | None, layout: VocabLayout, batch: int) -> torch.Tensor:
    """The condition tokens after BOS as global ids [B, Q]; [B, 0] for an unconditioned sequence.

    condition: ids [B, Q] (or [1, Q], repeated over the batch) in [0, C], C being NULL.
    """
    if condition is None:
        return torch.zeros(batch, 0, dtype=torch.long)
    if condition.dim() != 2 or condition.shape[0] not in (1, batch):
        raise ValueError(f"condition ids must be [B, Q] or [1, Q] for a batch of {batch}, got shape "
                         f"{tuple(condition.shape)}")
    return layout.condition_to_global(condition).expand(batch, -1)


def null_condition(num_tokens: int, layout: VocabLayout, batch: int = 1,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Condition ids [B, Q] that all say "no condition" (id C, NULL): the unconditional prompt."""
    return torch.full((batch, num_tokens), layout.condition_size, dtype=torch.long, device=device)


def semantic_sequence(semantic: torch.Tensor, layout: VocabLayout, eos: bool = True,
                      condition: torch.Tensor | None = None) -> StageSequence:
    """Semantic ids [B, T] (+ condition ids [B, Q]) -> BOS (m..) s... (EOS) as global ids [B, (Q)+T+1(+1)]."""
    if semantic.dim() != 2:
        raise ValueError(f"semantic ids must be [B, T], got shape {tuple(semantic.shape)}")
    b = semantic.shape[0]
    cond = condition_part(condition, layout, b).to(semantic.device)
    parts = [_fill(b, 1, layout.bos_id, semantic.device), cond, layout.semantic_to_global(semantic)]
    if eos:
        parts.append(_fill(b, 1, layout.eos_id, semantic.device))
    return StageSequence(torch.cat(parts, dim=1), prefix_len=1 + cond.shape[1])


def coarse_sequence(semantic: torch.Tensor, coarse: torch.Tensor, layout: VocabLayout,
                    eos: bool = True, condition: torch.Tensor | None = None) -> StageSequence:
    """Semantic [B, Ts] + coarse codes [B, Qc, T] (levels 0..Qc-1) (+ condition ids [B, Q])
    -> BOS (m..) sem SEP coarse (EOS)."""
    if semantic.dim() != 2 or semantic.shape[0] != coarse.shape[0]:
        raise ValueError(f"semantic must be [B, T] with the codes' batch size, got {tuple(semantic.shape)} "
                         f"and codes {tuple(coarse.shape)}")
    b, dev = semantic.shape[0], semantic.device
    cond = condition_part(condition, layout, b).to(dev)
    parts = [_fill(b, 1, layout.bos_id, dev), cond, layout.semantic_to_global(semantic),
             _fill(b, 1, layout.sep_id, dev), flatten_frames(coarse, layout, first_level=0)]
    if eos:
        parts.append(_fill(b, 1, layout.eos_id, dev))
    return StageSequence(torch.cat(parts, dim=1), prefix_len=semantic.shape[1] + 2 + cond.shape[1])


@dataclass
class CoarseParts:
    semantic: torch.Tensor  # [B, Ts] semantic ids
    coarse: torch.Tensor  # [B, Qc, T] codes


def split_coarse_sequence(tokens: torch.Tensor, layout: VocabLayout, num_coarse: int,
                          num_condition: int = 0) -> CoarseParts:
    """Inverse of `coarse_sequence` (with `num_condition` condition ids after BOS). A trailing EOS is
    dropped; so is an incomplete last frame."""
    sep = _find_single(tokens, layout.sep_id, "SEP")
    if int((tokens[:, 0] != layout.bos_id).sum()):
        raise ValueError("coarse sequence must start with BOS; pass the full sequence including the prompt")
    semantic = layout.global_to_semantic(tokens[:, 1 + num_condition:sep])
    body = tokens[:, sep + 1:]
    body = _strip_eos(body, layout)
    body = body[:, : body.shape[1] - body.shape[1] % num_coarse]
    return CoarseParts(semantic, unflatten_frames(body, layout, num_coarse, first_level=0))


def window_bounds(num_frames: int, window_frames: int) -> list[tuple[int, int]]:
    """Non-overlapping [start, end) frame windows covering num_frames (the last may be shorter)."""
    if window_frames <= 0:
        raise ValueError(f"window_frames must be > 0, got {window_frames}")
    return [(s, min(s + window_frames, num_frames)) for s in range(0, num_frames, window_frames)]


def fine_sequence(coarse: torch.Tensor, fine: torch.Tensor | None, layout: VocabLayout,
                  eos: bool = True) -> StageSequence:
    """One fine window: coarse [B, Qc, W] + fine [B, Qf, W] (levels Qc..) -> BOS coarse SEP fine (EOS).

    fine=None builds the generation prompt (BOS coarse SEP).
    """
    b, qc, dev = coarse.shape[0], coarse.shape[1], coarse.device
    parts = [_fill(b, 1, layout.bos_id, dev), flatten_frames(coarse, layout, 0), _fill(b, 1, layout.sep_id, dev)]
    prefix_len = 2 + coarse.shape[1] * coarse.shape[2]
    if fine is not None:
        if fine.shape[0] != b or fine.shape[2] != coarse.shape[2]:
            raise ValueError(f"fine codes {tuple(fine.shape)} must match coarse codes {tuple(coarse.shape)} "
                             "in batch size and frames")
        parts.append(flatten_frames(fine, layout, first_level=qc))
        if eos:
            parts.append(_fill(b, 1, layout.eos_id, dev))
    return StageSequence(torch.cat(parts, dim=1), prefix_len=prefix_len)


def fine_windows(codes: torch.Tensor, layout: VocabLayout, num_coarse: int,
                 window_frames: int) -> list[StageSequence]:
    """All codes [B, K, T] -> one fine-stage sequence per window (see `window_bounds`)."""
    _check_codes(codes)
    if not 0 < num_coarse < codes.shape[1]:
        raise ValueError(f"num_coarse must be in [1, {codes.shape[1] - 1}] for {codes.shape[1]} codebooks, "
                         f"got {num_coarse}")
    return [fine_sequence(codes[:, :num_coarse, s:e], codes[:, num_coarse:, s:e], layout)
            for s, e in window_bounds(codes.shape[2], window_frames)]


def split_fine_sequence(tokens: torch.Tensor, layout: VocabLayout, num_coarse: int,
                        num_fine: int) -> torch.Tensor:
    """One fine window's tokens -> all codes [B, Qc+Qf, W] (coarse from the prompt, fine generated)."""
    sep = _find_single(tokens, layout.sep_id, "SEP")
    coarse = unflatten_frames(tokens[:, 1:sep], layout, num_coarse, 0)
    body = _strip_eos(tokens[:, sep + 1:], layout)
    fine = unflatten_frames(body, layout, num_fine, first_level=num_coarse)
    if fine.shape[2] != coarse.shape[2]:
        raise ValueError(f"fine window has {fine.shape[2]} frames but its coarse prompt has {coarse.shape[2]}; "
                         "generate exactly num_fine * frames tokens per window")
    return torch.cat([coarse, fine], dim=1)


def fine_windows_to_codes(windows: list[torch.Tensor], layout: VocabLayout, num_coarse: int,
                          num_fine: int) -> torch.Tensor:
    """Inverse of `fine_windows`: window token tensors -> codes [B, Qc+Qf, T]."""
    if not windows:
        raise ValueError("no fine windows given")
    return torch.cat([split_fine_sequence(w, layout, num_coarse, num_fine) for w in windows], dim=2)


# ---- constrained decoding --------------------------------------------------------------
def allowed_range(position: int, layout: VocabLayout, start: int, num_levels: int,
                  first_level: int = 0) -> tuple[int, int]:
    """Valid global id range at absolute `position` of a frame-major acoustic segment.

    The segment begins at `start` with level `first_level`; position p carries level
    first_level + (p - start) % num_levels.
    """
    if position < start:
        raise ValueError(f"position {position} lies before the acoustic segment that starts at {start}")
    return layout.range_of(f"acoustic:{first_level + (position - start) % num_levels}")


def acoustic_allowed_fn(layout: VocabLayout, start: int, num_levels: int, first_level: int = 0) -> AllowedFn:
    """`allowed_range` bound to one segment: the callable `generate` takes."""
    return partial(allowed_range, layout=layout, start=start, num_levels=num_levels, first_level=first_level)


def semantic_allowed_mask(layout: VocabLayout, allow_eos: bool = True) -> torch.Tensor:
    """Bool mask [V]: semantic ids (and EOS) are valid, nothing else."""
    mask = torch.zeros(layout.vocab_size, dtype=torch.bool)
    lo, hi = layout.range_of("semantic")
    mask[lo:hi] = True
    if allow_eos:
        mask[layout.eos_id] = True
    return mask


# ---- MusicGen delay pattern ------------------------------------------------------------
def delay_codes(codes: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Codes [B, K, T] -> delayed [B, K, T+K-1]: out[:, k, t+k] = codes[:, k, t], holes = pad_id."""
    _check_codes(codes)
    b, k, t = codes.shape
    out = torch.full((b, k, t + k - 1), pad_id, dtype=codes.dtype, device=codes.device)
    for level in range(k):
        out[:, level, level:level + t] = codes[:, level]
    return out


def undelay_codes(delayed: torch.Tensor) -> torch.Tensor:
    """Inverse of `delay_codes`: delayed [B, K, S] -> codes [B, K, S-K+1]."""
    _check_codes(delayed)
    b, k, s = delayed.shape
    t = s - k + 1
    if t < 0:
        raise ValueError(f"a delayed sequence with {k} codebooks needs at least {k - 1} steps, got {s}")
    return torch.stack([delayed[:, level, level:level + t] for level in range(k)], dim=1)  # [B, K, T]


def delay_inputs(delayed: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Delayed targets [B, K, S] -> model inputs [B, K, S]: a start column of pad ids, then shifted right."""
    _check_codes(delayed)
    start = torch.full_like(delayed[:, :, :1], pad_id)
    return torch.cat([start, delayed[:, :, :-1]], dim=2)


def delay_valid_mask(num_codebooks: int, num_frames: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool [K, T+K-1]: True where the delayed sequence holds a real code, False at pads."""
    steps = torch.arange(num_frames + num_codebooks - 1, device=device)  # [S]
    levels = torch.arange(num_codebooks, device=device).view(-1, 1)  # [K, 1]
    return (steps >= levels) & (steps < levels + num_frames)  # [K, S]


# ---- helpers ---------------------------------------------------------------------------
def _fill(batch: int, length: int, value: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch, length), value, dtype=torch.long, device=device)


def _check_codes(codes: torch.Tensor) -> None:
    if codes.dim() != 3:
        raise ValueError(f"codes must be [B, K, T], got shape {tuple(codes.shape)}")


def _find_single(tokens: torch.Tensor, token_id: int, name: str) -> int:
    """Position of the one `token_id` in every row; rows must agree (equal-length batches)."""
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [B, L], got shape {tuple(tokens.shape)}")
    hits = (tokens == token_id)
    counts = hits.sum(dim=1)
    if int((counts != 1).sum()):
        raise ValueError(f"every sequence must contain exactly one {name} token, got counts {counts.tolist()}")
    pos = hits.float().argmax(dim=1)
    if int((pos != pos[0]).sum()):
        raise ValueError(f"{name} sits at different positions across the batch {pos.tolist()}; "
                         "split sequences of different prompt lengths into separate batches")
    return int(pos[0])


def _strip_eos(body: torch.Tensor, layout: VocabLayout) -> torch.Tensor:
    """Cut each row at its first EOS (rows must stop at the same place)."""
    is_eos = body == layout.eos_id
    if not bool(is_eos.any()):
        return body
    ends = torch.where(is_eos.any(dim=1), is_eos.float().argmax(dim=1), torch.full_like(is_eos[:, 0], body.shape[1],
                                                                                         dtype=torch.long))
    if int((ends != ends[0]).sum()):
        raise ValueError(f"sequences end (EOS) at different lengths {ends.tolist()}; decode them one by one")
    return body[:, : int(ends[0])]
