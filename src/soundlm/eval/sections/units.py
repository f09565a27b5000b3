"""`soundlm eval units`: how much of the voice the semantic units carry (speaker ID from unit histograms)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundlm.eval.report import EvalSection

if TYPE_CHECKING:
    from soundlm.semantic.base import SemanticTokenizer


def eval_units(tokenizer: SemanticTokenizer, data: str | Path, split: str = "heldout", max_files: int | None = None,
               folds: int = 5, seed: int = 0, progress: bool = True) -> EvalSection:
    """How much of the voice the semantic units carry: cross-validated speaker ID from unit histograms.

    The same classifier on each utterance's mean and standard deviation of the tokenizer's
    continuous features (before k-means) is the reference: what quantisation keeps of it.
    Unreadable files are skipped and counted; speakers left with one utterance are dropped;
    `folds` shrinks to the smallest speaker's utterance count.
    """
    import torch
    from tqdm import tqdm

    from soundlm.audio import AudioError, load_audio
    from soundlm.data import open_corpus
    from soundlm.eval.units import speaker_id_accuracy, unit_histograms
    from soundlm.semantic.kmeans import assign

    start = time.perf_counter()
    utts = [u for u in open_corpus(data, split=split)[:max_files] if u.speaker is not None]
    if not utts:
        raise ValueError(f"{data}: no utterances with a speaker in split {split!r}; speaker ID needs a manifest "
                         "with a speaker per row")
    if folds < 2:
        raise ValueError(f"--folds must be >= 2, got {folds}")
    ids, pooled, speakers, skipped = [], [], [], []
    device = tokenizer.centroids.device
    for u in tqdm(utts, desc="units", unit="file", disable=not progress):
        try:
            audio = load_audio(u.path, sample_rate=tokenizer.sample_rate, mono=True,
                               min_seconds=tokenizer.min_samples / tokenizer.sample_rate)  # [1, S]
        except AudioError as e:
            skipped.append({"id": u.id, "reason": str(e)})
            continue
        with torch.inference_mode():
            feats = tokenizer.features(torch.from_numpy(audio)[None].to(device))[0]  # [T, D]
            ids.append(assign(feats, tokenizer.centroids).ids.cpu().numpy())  # [T]
        f = feats.float().cpu().numpy()
        pooled.append(np.concatenate([f.mean(0), f.std(0)]))
        speakers.append(u.speaker)
    # A speaker with one utterance cannot be both trained on and tested; a small set gets fewer folds.
    counts = {s: speakers.count(s) for s in set(speakers)}
    keep = [i for i, s in enumerate(speakers) if counts[s] >= 2]
    dropped = sorted(s for s, c in counts.items() if c < 2)
    ids, pooled, speakers = [ids[i] for i in keep], [pooled[i] for i in keep], [speakers[i] for i in keep]
    if len(set(speakers)) < 2:
        raise ValueError(f"{data}: split {split!r} has fewer than 2 speakers with >= 2 readable utterances; "
                         "speaker ID needs more")
    folds = min(folds, min(counts[s] for s in speakers))
    units = speaker_id_accuracy(unit_histograms(ids, tokenizer.vocab_size), speakers, folds=folds, seed=seed)
    feats_id = speaker_id_accuracy(np.stack(pooled), speakers, folds=folds, seed=seed)
    used = np.unique(np.concatenate(ids)).size
    summary = {"accuracy_units": units.accuracy, "accuracy_features": feats_id.accuracy, "chance": units.chance,
               "num_speakers": units.num_speakers, "num_utterances": units.num_utterances,
               "units_used": int(used), "skipped": len(skipped), "speakers_dropped": len(dropped)}
    settings = {"tokenizer": tokenizer.describe(), "data": str(data), "split": split, "folds": folds, "seed": seed,
                "speakers_dropped": dropped,
                "classifier": "standardised logistic regression, stratified k-fold"}
    rows = [{"speaker": s, "utterances": speakers.count(s), "accuracy_units": a,
             "accuracy_features": feats_id.per_speaker[s]} for s, a in units.per_speaker.items()]
    return EvalSection(name="units", title="Semantic units: speaker information", settings=settings,
                       summary=summary, rows=rows + skipped, wall_seconds=time.perf_counter() - start,
                       notes=["accuracy_units: speaker identified from each utterance's unit histogram; "
                              "accuracy_features: from the mean and std of the continuous features the units "
                              "quantise. AudioLM wants semantic units near chance, leaving the voice to the "
                              "acoustic prompt."])
