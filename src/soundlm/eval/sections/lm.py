"""`soundlm eval lm`: each stage's held-out loss on a token store, windowed as training crops."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundlm.devices import default_device
from soundlm.eval.report import EvalSection
from soundlm.store import load_store_tokens

if TYPE_CHECKING:
    import torch

    from soundlm.stages import Stage
    from soundlm.store import StoreTokens


def tile_windows(record_id: str, semantic: np.ndarray, acoustic: np.ndarray, window_seconds: float,
                 semantic_rate: float, acoustic_rate: float, full_only: bool = False) -> list:
    """Consecutive, non-overlapping windows of `window_seconds` covering a record, as training crops them.

    Windows start on frames of the coarser stream (as `crop_window` does). A record shorter
    than one window is one window (training takes it whole) unless `full_only` (the delay
    pattern trains on full windows only); a tail shorter than a window is left out.
    """
    from soundlm.stages import Window, frame_index

    has_acoustic = acoustic.size > 0
    duration = semantic.shape[0] / semantic_rate
    if has_acoustic:
        duration = min(duration, acoustic.shape[1] / acoustic_rate)
    grid = min(acoustic_rate, semantic_rate) if has_acoustic else semantic_rate
    n_sem, n_ac = int(round(window_seconds * semantic_rate)), int(round(window_seconds * acoustic_rate))
    n_full = int(math.floor(duration / window_seconds + 1e-6))
    if n_full == 0:
        return [] if full_only else [Window(record_id, 0.0, semantic[:n_sem], acoustic[:, :n_ac])]
    windows = []
    for i in range(n_full):
        start = int(math.floor(i * window_seconds * grid + 1e-6)) / grid
        s0, a0 = frame_index(start, semantic_rate), frame_index(start, acoustic_rate)
        windows.append(Window(record_id, start, semantic[s0: s0 + n_sem], acoustic[:, a0: a0 + n_ac]))
    return windows


@dataclass
class StageLoss:
    """Held-out loss of one stage: mean cross-entropy over the tokens the stage predicts."""

    stage: str
    pattern: str
    num_records: int
    num_windows: int
    num_tokens: int
    loss_nats: float
    bits_per_token: float
    perplexity: float


def stage_heldout_loss(stage: Stage, records: StoreTokens, batch_size: int = 8,
                       device: torch.device | str | None = None, progress: bool = True,
                       full_windows: bool = False) -> StageLoss:
    """Nats per predicted token, exactly as training's held-out loss: summed cross-entropy over
    the stage's target tokens (semantic ids / coarse codes / fine codes, never the prefix)
    divided by their count, over every whole window of every record (see `tile_windows`).

    A delay-pattern stage scores whole windows only; `full_windows` does the same for a flattened
    stage, so both patterns are scored on the same codes (records shorter than a window left out)."""
    import torch
    from tqdm import tqdm

    from soundlm.stages import IGNORE_INDEX, collate, token_loss_sum

    name, meta, layout = stage.name, stage.meta, stage.layout
    examples = []
    for r in records.records:
        _check_tokens(r.id, name, r.semantic, r.acoustic, layout.semantic_size if name != "fine" else None,
                      meta.num_codebooks, layout.codebook_size)
        ac = r.acoustic[:meta.num_codebooks] if name != "semantic" else np.zeros((0, 0), dtype=np.int64)
        for w in tile_windows(r.id, r.semantic, ac, stage.window_seconds, meta.semantic_rate, meta.acoustic_rate,
                              full_only=stage.delayed or full_windows):
            # A window with none of the stage's own tokens has nothing to predict.
            if stage.delayed or (w.semantic.shape[0] if name == "semantic" else w.acoustic.shape[1]) >= 1:
                # A conditioned stage is scored on its recording's condition ids (NULLs when the store has none).
                examples.append(stage.example(replace(w, condition=r.condition)))
    if not examples:
        raise ValueError(f"no {name} window to score: the held-out records are shorter than the stage's "
                         f"{stage.window_seconds} s window (the delay pattern scores full windows only)")
    device = default_device(device)
    model = stage.model.to(device).eval()
    # Delay examples cannot be padded (their prefix precedes the codes): batch equal shapes only.
    groups: dict[tuple, list] = defaultdict(list)
    for e in examples:
        key = (e.inputs.shape, None if e.prefix is None else e.prefix.shape) if stage.delayed else ()
        groups[key].append(e)
    batches = [g[i: i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]
    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in tqdm(batches, desc=f"lm eval {name}", unit="batch", disable=not progress):
            b = collate(batch, layout.pad_id)
            logits = stage.logits(b, device, model)  # [B, L, V] or [B, K, S, card]
            targets = b["targets"].to(device)
            total += float(token_loss_sum(logits, targets))
            count += int((targets != IGNORE_INDEX).sum())
    loss = total / max(count, 1)
    return StageLoss(stage=name, pattern=meta.pattern, num_records=len(records.records),
                     num_windows=len(examples), num_tokens=count, loss_nats=loss, bits_per_token=loss / math.log(2),
                     perplexity=math.exp(min(loss, 700.0)))


def _check_tokens(rid: str, stage: str, sem: np.ndarray, ac: np.ndarray, semantic_size: int | None,
                  num_codebooks: int, codebook_size: int) -> None:
    if semantic_size is not None and sem.size and int(sem.max()) >= semantic_size:
        raise ValueError(f"record {rid!r}: semantic id {int(sem.max())} >= the {stage} LM's {semantic_size} ids; "
                         "the store was tokenized with another semantic tokenizer than the model's")
    if stage != "semantic":
        if ac.shape[0] < num_codebooks:
            raise ValueError(f"record {rid!r} has {ac.shape[0]} codebooks, the {stage} LM models {num_codebooks}; "
                             "tokenize the store with the model's codec setting")
        if ac.size and int(ac.max()) >= codebook_size:
            raise ValueError(f"record {rid!r}: code {int(ac.max())} >= codebook size {codebook_size}; "
                             "the store was tokenized with another codec than the model's")


def acoustic_bits_per_code(rows: Sequence[dict]) -> float | None:
    """Bits per acoustic code over all codebooks the acoustic stages predict (coarse and fine together).

    Every acoustic stage's target is one codec code per (frame, codebook) whatever its pattern (the
    delay pattern's padding is never a target), so this is comparable between flattened and
    delay-pattern bundles, and between ways of splitting the codebooks into stages."""
    acoustic = [r for r in rows if r["stage"] != "semantic"]
    codes = sum(r["num_tokens"] for r in acoustic)
    if not codes:
        return None
    return sum(r["loss_nats"] * r["num_tokens"] for r in acoustic) / codes / math.log(2)


def eval_lm(stages: Sequence[Stage], store: str | Path, split: str = "heldout", batch_size: int = 8,
            device: torch.device | str | None = None, progress: bool = True,
            full_windows: bool = False) -> EvalSection:
    """Per-stage held-out loss (nats/token) and bits per token on the store's `split` records, and bits
    per acoustic code over the acoustic stages. `full_windows`: score whole windows only in every stage
    (see `stage_heldout_loss`): use it on both bundles to compare a flattened one with a delay-pattern one."""
    start = time.perf_counter()
    records = load_store_tokens(store, split=split)
    rows = [asdict(stage_heldout_loss(s, records, batch_size, device, progress, full_windows)) for s in stages]
    summary = {f"{r['stage']}_bits_per_token": r["bits_per_token"] for r in rows}
    per_code = acoustic_bits_per_code(rows)
    if per_code is not None:
        summary["acoustic_bits_per_code"] = per_code
    from soundlm.lm.quantize import quantized_mode

    settings = {"store": str(store), "split": split, "num_records": len(records.records),
                "windows": {s.name: s.window_seconds for s in stages},
                "patterns": {s.name: s.meta.pattern for s in stages}, "full_windows": full_windows,
                "quantize": quantized_mode(stages[0].model) if stages else "none"}
    return EvalSection(name="lm", title="Held-out LM loss per stage", settings=settings, summary=summary, rows=rows,
                       wall_seconds=time.perf_counter() - start,
                       notes=["loss_nats: mean cross-entropy per predicted token (the stage's targets only), "
                              "over consecutive training-length windows of each held-out record; "
                              "bits_per_token = loss_nats / ln 2.",
                              "acoustic_bits_per_code: the coarse and fine stages' bits per token weighted by their "
                              "codes: one codec code per frame and codebook in either pattern. Delay-pattern stages "
                              "score whole windows only; compare with a flattened bundle under --full-windows."])
