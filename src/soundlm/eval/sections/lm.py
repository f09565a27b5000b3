"""`soundlm eval lm`: each stage's held-out loss on a token store, windowed as training crops."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundlm.eval.report import EvalSection

if TYPE_CHECKING:
    import torch

    from soundlm.pipeline import StageModel


@dataclass
class HeldoutRecords:
    """Token arrays of a store's records of one split."""

    ids: list[str]
    semantic: list[np.ndarray]  # [T_s] each
    acoustic: list[np.ndarray]  # [K, T_a] each
    manifest: dict


def load_split_tokens(store: str | Path, split: str = "heldout") -> HeldoutRecords:
    """Tokens of the store records whose `split` column equals `split`."""
    from soundlm.store import TokenStore

    ts = TokenStore(store)
    ids, sem, ac = [], [], []
    seen_splits = set()
    for r in ts.records(columns=["semantic", "acoustic", "split"]):
        seen_splits.add(r.split)
        if r.split == split:
            ids.append(r.id)
            sem.append(r.semantic.astype(np.int64))
            ac.append(r.acoustic.astype(np.int64))
    if not ids:
        raise ValueError(f"{store}: no record has split {split!r} (splits present: {sorted(map(str, seen_splits))}); "
                         "tokenize a corpus whose manifest marks held-out voices (`soundlm data speech "
                         "--heldout-voices N`), or pass --split train")
    return HeldoutRecords(ids=ids, semantic=sem, acoustic=ac, manifest=ts.manifest)


def tile_windows(record_id: str, semantic: np.ndarray, acoustic: np.ndarray, window_seconds: float,
                 semantic_rate: float, acoustic_rate: float, full_only: bool = False) -> list:
    """Consecutive, non-overlapping windows of `window_seconds` covering a record, as training crops them.

    Windows start on frames of the coarser stream (as `crop_window` does). A record shorter
    than one window is one window (training takes it whole) unless `full_only` (the delay
    pattern trains on full windows only); a tail shorter than a window is left out.
    """
    from soundlm.train.lm_data import Window, frame_index

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


def stage_heldout_loss(stage: StageModel, records: HeldoutRecords, batch_size: int = 8,
                       device: torch.device | str | None = None, progress: bool = True) -> StageLoss:
    """Nats per predicted token, exactly as training's held-out loss: summed cross-entropy over
    the stage's target tokens (semantic ids / coarse codes / fine codes, never the prefix)
    divided by their count, over every whole window of every record (see `tile_windows`)."""
    import torch
    from tqdm import tqdm

    from soundlm.train.lm_data import IGNORE_INDEX, collate
    from soundlm.train.lm_stage import delay_example, window_example

    name, meta, layout = stage.stage, stage.meta, stage.layout
    qc, k_model = int(meta["coarse_codebooks"]), int(meta["num_codebooks"])
    sem_rate, ac_rate = float(meta["semantic_rate"]), float(meta["acoustic_rate"])
    examples = []
    for rid, sem, ac in zip(records.ids, records.semantic, records.acoustic):
        _check_tokens(rid, name, sem, ac, layout.semantic_size if name != "fine" else None, k_model,
                      layout.codebook_size)
        ac = ac[:k_model] if name != "semantic" else np.zeros((0, 0), dtype=np.int64)
        for w in tile_windows(rid, sem, ac, stage.window_seconds, sem_rate, ac_rate, full_only=stage.delayed):
            if stage.delayed:
                examples.append(delay_example(w, name, qc, layout.codebook_size))
            elif (w.semantic.shape[0] if name == "semantic" else w.acoustic.shape[1]) >= 1:
                # A window with none of the stage's own tokens has nothing to predict.
                examples.append(window_example(w, name, layout, qc))
    if not examples:
        raise ValueError(f"no {name} window to score: the held-out records are shorter than the stage's "
                         f"{stage.window_seconds} s window (the delay pattern scores full windows only)")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
            if stage.delayed:
                logits = model(b["input_ids"].to(device), prefix=b["prefix"].to(device)).logits  # [B, K, S, card]
            else:
                logits = model(b["input_ids"].to(device)).logits  # [B, L, V]
            targets = b["targets"].to(device)
            total += float(torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                reduction="sum"))
            count += int((targets != IGNORE_INDEX).sum())
    loss = total / max(count, 1)
    return StageLoss(stage=name, pattern=str(meta.get("pattern", "flatten")), num_records=len(records.ids),
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


def eval_lm(stages: Sequence[StageModel], store: str | Path, split: str = "heldout", batch_size: int = 8,
            device: torch.device | str | None = None, progress: bool = True) -> EvalSection:
    """Per-stage held-out loss (nats/token) and bits per token on the store's `split` records."""
    start = time.perf_counter()
    records = load_split_tokens(store, split)
    rows = [asdict(stage_heldout_loss(s, records, batch_size, device, progress)) for s in stages]
    summary = {f"{r['stage']}_bits_per_token": r["bits_per_token"] for r in rows}
    settings = {"store": str(store), "split": split, "num_records": len(records.ids),
                "windows": {s.stage: s.window_seconds for s in stages}}
    return EvalSection(name="lm", title="Held-out LM loss per stage", settings=settings, summary=summary, rows=rows,
                       wall_seconds=time.perf_counter() - start,
                       notes=["loss_nats: mean cross-entropy per predicted token (the stage's targets only), "
                              "over consecutive training-length windows of each held-out record; "
                              "bits_per_token = loss_nats / ln 2."])
