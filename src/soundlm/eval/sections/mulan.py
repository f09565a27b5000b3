"""`soundlm eval mulan`: how well a MuLan ties held-out clips to their captions.

On one split of a corpus from `soundlm data music` (default: held-out pieces and held-out
instrument x tonic pairs):
- retrieval: recall@1/5/10 text->audio and audio->text over the split's (clip, caption) pairs,
  chance k/N beside. Several clips can share attributes (and so near-identical captions), which
  bounds recall@1 below 1 even for a perfect model;
- mean cosine of matched pairs against the same captions shuffled among the clips;
- attribute probes: for each clip, captions in one fixed wording that differ in one attribute
  (key, instrument, tempo, loudness), the others set to the clip's own; the probe is right when
  the true value scores highest. Chance is 1 / number of values. Key and instrument are also
  reported on the "combination" clips (an instrument x tonic pair no training clip has).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch

from soundlm.eval.report import EvalSection

RECALL_KS = (1, 5, 10)
# One wording per probe (from `data.music._TEMPLATES`), so only the probed attribute changes.
_PROBES = {"key": "{inst} music in {key}",
           "instrument": "{inst} music in {key}",
           "tempo": "{inst}, {key}, {meter}, {bpm} bpm",
           "loudness": "{loud} {inst} piece in {key}"}


def recall_at_k(sim: np.ndarray, k: int) -> float:
    """Share of rows of `sim` [N, N] (query x candidate, truth on the diagonal) whose truth is in the top k."""
    truth = np.diag(sim)[:, None]
    rank = (sim > truth).sum(axis=1)  # candidates strictly better than the truth
    return float((rank < k).mean())


def _probe_texts(attribute: str, m) -> tuple[list[str], int]:
    """The probe's captions for clip attributes `m` and the index of the true one."""
    from soundlm.data.music import DYNAMICS, INSTRUMENTS, TEMPI, key_name

    base = {"inst": m.instrument, "key": m.key, "meter": m.meter or "free meter", "bpm": m.tempo_bpm,
            "loud": m.loudness}
    if attribute == "key":
        values = [key_name(pc, mode) for mode in ("major", "minor") for pc in range(12)]
        field, truth = "key", m.key
    elif attribute == "instrument":
        values, field, truth = list(INSTRUMENTS), "inst", m.instrument
    elif attribute == "tempo":
        values, field, truth = list(TEMPI), "bpm", m.tempo_bpm
    else:
        values, field, truth = list(DYNAMICS), "loud", m.loudness
    return [_PROBES[attribute].format(**{**base, field: v}) for v in values], values.index(truth)


def audio_embeddings(mulan, clips, progress: bool, desc: str) -> np.ndarray:
    """Whole-clip audio embeddings [N, D] (each clip the mean over its windows)."""
    from tqdm import tqdm

    from soundlm.audio import load_audio

    out = []
    with torch.inference_mode():
        for c in tqdm(clips, desc=desc, unit="clip", disable=not progress):
            x = load_audio(c.item.path, sample_rate=mulan.sample_rate, mono=True)  # [1, S]
            out.append(mulan.embed_audio(torch.from_numpy(x).float()).float().cpu())
    return torch.cat(out).numpy()


def eval_mulan(model: str | Path, data: str | Path, split: str = "heldout", max_files: int | None = None,
               batch_size: int = 16, seed: int = 0, device: str | None = None, progress: bool = True,
               reference_split: str | None = None) -> EvalSection:
    """Retrieval, matched-vs-shuffled cosine and attribute probes of the MuLan `model` on `split` of `data`.

    `reference_split`: also the Frechet distance between the audio embeddings of `split` and of that
    split, beside the distance between two random halves of the reference (the floor that sample
    size sets): what `soundlm eval music` compares generated clips against.
    """
    from soundlm.data.music import read_music_corpus
    from soundlm.devices import default_device
    from soundlm.music.mulan import load_mulan

    start = time.perf_counter()
    mulan = load_mulan(model, device=default_device(device))
    clips = read_music_corpus(data, split=split)[:max_files]
    if len(clips) < 2:
        raise ValueError(f"{data}: {len(clips)} clip(s) in split {split!r}; retrieval needs >= 2")
    a = audio_embeddings(mulan, clips, progress, "mulan audio")  # [N, D]
    with torch.inference_mode():
        t = torch.cat([mulan.embed_text([c.caption for c in clips[i: i + batch_size]]).cpu()
                       for i in range(0, len(clips), batch_size)]).numpy()  # [N, D]
        sim = a @ t.T  # [N clips, N captions]
        n = len(clips)
        order = list(range(n))
        # A derangement: every clip is paired with another clip's caption.
        rng = random.Random(seed)
        while any(i == j for i, j in enumerate(order)):
            rng.shuffle(order)
        summary: dict = {"clips": n, "embed_dim": mulan.embed_dim}
        for k in RECALL_KS:
            summary[f"t2a_recall@{k}"] = recall_at_k(sim.T, k)
            summary[f"a2t_recall@{k}"] = recall_at_k(sim, k)
            summary[f"chance@{k}"] = min(k, n) / n
        summary["cos_matched"] = float(np.diag(sim).mean())
        summary["cos_shuffled"] = float(sim[np.arange(n), order].mean())
        rows = [{"id": c.item.id, "heldout": c.music.heldout, "caption": c.caption,
                 "cos": round(float(sim[i, i]), 4), "t2a_rank": int((sim[:, i] > sim[i, i]).sum()) + 1}
                for i, c in enumerate(clips)]
        for attribute in _PROBES:
            hits = []
            for i, c in enumerate(clips):
                texts, truth = _probe_texts(attribute, c.music)
                scores = a[i] @ mulan.embed_text(texts).cpu().numpy().T  # [V]
                hits.append(int(scores.argmax()) == truth)
                rows[i][f"{attribute}_probe_ok"] = hits[-1]
            summary[f"{attribute}_probe"] = float(np.mean(hits))
            summary[f"{attribute}_probe_chance"] = 1 / len(texts)
        if mulan.config.quantizer_fitted:
            # MusicLM trains on the audio's condition ids and generates from the caption's: how often they agree.
            ids_a = mulan.condition_tokens(torch.from_numpy(a)).cpu().numpy()  # [N, Q]
            ids_t = mulan.condition_tokens(torch.from_numpy(t)).cpu().numpy()  # [N, Q]
            summary["cond_level1_agree"] = float((ids_a[:, 0] == ids_t[:, 0]).mean())
            summary["cond_level1_agree_shuffled"] = float((ids_a[:, 0] == ids_t[order, 0]).mean())
            summary["cond_all_levels_agree"] = float((ids_a == ids_t).all(axis=1).mean())
            summary["cond_level1_codes_used"] = len(set(ids_a[:, 0].tolist()))
    if reference_split is not None:
        from soundlm.music.mulan import frechet_distance

        ref = audio_embeddings(mulan, read_music_corpus(data, split=reference_split), progress, "reference")
        halves = np.random.default_rng(seed).permutation(len(ref))
        summary[f"frechet_vs_{reference_split}"] = frechet_distance(a, ref)
        summary[f"frechet_{reference_split}_halves"] = frechet_distance(ref[halves[::2]], ref[halves[1::2]])
    combination = [r for r in rows if r["heldout"] == "combination"]
    summary["clips_combination"] = len(combination)
    for attribute in ("key", "instrument"):
        summary[f"{attribute}_probe_combination"] = (
            float(np.mean([r[f"{attribute}_probe_ok"] for r in combination])) if combination else None)
    settings = {"model": str(model), "data": str(data), "split": split, "max_files": max_files, "seed": seed,
                "reference_split": reference_split, "probes": _PROBES}
    notes = ["recall@k: the true caption (clip) among the k best-scoring of the split's N; chance@k = k/N. "
             "Clips with the same attributes have near-identical captions, so recall@1 < 1 even when perfect.",
             "cos_matched / cos_shuffled: mean cosine of each clip with its caption / with another clip's caption.",
             "<attr>_probe: one wording with only <attr> varied over all its values (24 keys, 8 instruments, "
             "6 tempi, 3 loudness levels), others the clip's own; right when the true value scores highest.",
             "_combination: clips of an (instrument, tonic) pair that no training clip has.",
             "cond_*: condition ids (RVQ of the embedding) of each clip's audio against its caption's (shuffled: "
             "another clip's caption); level 1 alone and all levels.",
             "frechet_vs_<ref>: Frechet distance of the split's audio embeddings to the reference split's; "
             "frechet_<ref>_halves: between two random halves of the reference (the sample-size floor)."]
    return EvalSection(name="mulan", title="MuLan: retrieval and attribute probes", settings=settings,
                       summary=summary, rows=rows, wall_seconds=time.perf_counter() - start, notes=notes)
