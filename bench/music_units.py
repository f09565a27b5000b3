"""Which frame features make good semantic units for music: k-means units from mfcc, mel,
chroma and cqt features, measured on a music corpus (`soundlm data music`).

For each feature type, k-means (the semantic tokenizer `soundlm train semantic` fits:
raw features, k-means++ then Lloyd) is fitted on frames of the TRAINING clips; the
held-out clips are then tokenized and measured:

- probes: a standardised logistic regression on each clip's unit histogram, trained on the
  training clips, predicts the held-out clips' tonic (12), key (24), mode (2), instrument (8)
  and tempo (6 rendered tempi). The same probe on the clip's mean and std of the continuous
  features is the reference (what quantising keeps). Chance: the held-out majority label.
- NMI: normalised mutual information between each frame's unit and its clip's tonic /
  instrument (how much a single unit says, without a classifier).
- sequence statistics of the held-out units: usage perplexity (exp entropy of unit
  frequencies), bigram perplexity (add-0.1 bigram model fitted on the training units:
  how predictable the next unit is, what the semantic stage has to learn), mean run length.

    PYTHONPATH=src:. OMP_NUM_THREADS=1 python -m bench.music_units --data DIR [--clusters 100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from soundlm.audio import load_audio
from soundlm.data.music import read_music_corpus
from soundlm.eval.units import unit_histograms
from soundlm.semantic.features import build_features
from soundlm.semantic.kmeans import assign, fit_kmeans

RESULTS = Path(__file__).resolve().parent / "results" / "music_units.json"
FEATURES = ("mfcc", "mel", "chroma", "cqt")
ATTRIBUTES = ("tonic", "key", "mode", "instrument", "tempo_bpm")


def probe(x_train: np.ndarray, y_train: list, x_test: np.ndarray, y_test: list) -> float:
    """Held-out accuracy of a standardised logistic regression fitted on the training rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    clf.fit(x_train, np.asarray(y_train))
    return float((clf.predict(x_test) == np.asarray(y_test)).mean())


def majority(y_test: list) -> float:
    _, counts = np.unique(np.asarray(y_test), return_counts=True)
    return float(counts.max() / counts.sum())


def usage_perplexity(ids: np.ndarray, vocab: int) -> float:
    p = np.bincount(ids, minlength=vocab) / ids.size
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def bigram_perplexity(train: list[np.ndarray], test: list[np.ndarray], vocab: int, alpha: float = 0.1) -> float:
    """Perplexity of `test` under an add-`alpha` bigram model of `train` (each sequence on its own)."""
    counts = np.full((vocab, vocab), alpha)
    for seq in train:
        np.add.at(counts, (seq[:-1], seq[1:]), 1)
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))
    nll = np.concatenate([-logp[seq[:-1], seq[1:]] for seq in test])
    return float(np.exp(nll.mean()))


def mean_run_length(seqs: list[np.ndarray]) -> float:
    runs = sum(1 + int((seq[1:] != seq[:-1]).sum()) for seq in seqs)
    return sum(seq.size for seq in seqs) / runs


def label(clip, attribute: str):
    return clip.music.key if attribute == "key" else getattr(clip.music, attribute)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="corpus from `soundlm data music`")
    ap.add_argument("--clusters", type=int, default=100, help="k-means units (the music-tiny recipe's vocabulary)")
    ap.add_argument("--features", default=",".join(FEATURES))
    ap.add_argument("--max-frames", type=int, default=100_000, help="training frames sampled for k-means")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    from sklearn.metrics import normalized_mutual_info_score
    from tqdm import tqdm

    torch.manual_seed(args.seed)
    clips = {split: read_music_corpus(args.data, split=split) for split in ("train", "heldout")}
    audio = {split: [load_audio(c.item.path, sample_rate=16_000, mono=True) for c in tqdm(cs, desc=f"load {split}")]
             for split, cs in clips.items()}
    labels = {split: {a: [label(c, a) for c in cs] for a in ATTRIBUTES} for split, cs in clips.items()}
    print(f"{len(clips['train'])} training / {len(clips['heldout'])} held-out clips of {args.data}, "
          f"k = {args.clusters}\n")
    results: dict = {"data": str(args.data), "clusters": args.clusters, "max_frames": args.max_frames,
                     "seed": args.seed, "train_clips": len(clips["train"]), "heldout_clips": len(clips["heldout"]),
                     "chance": {a: majority(labels["heldout"][a]) for a in ATTRIBUTES}, "features": {}}
    for kind in args.features.split(","):
        start = time.perf_counter()
        fx = build_features(kind, device="cpu")
        feats = {}
        with torch.inference_mode():
            for split in clips:
                feats[split] = [fx(torch.from_numpy(a)[None])[0] for a in tqdm(audio[split], desc=f"{kind} {split}")]
        train_frames = torch.cat(feats["train"])  # [N, D]
        g = torch.Generator().manual_seed(args.seed)
        pick = torch.randperm(train_frames.shape[0], generator=g)[: args.max_frames]
        km = fit_kmeans(train_frames[pick], args.clusters, seed=args.seed, device="cpu")
        ids = {split: [assign(f, km.centroids).ids.numpy() for f in fs] for split, fs in feats.items()}
        hist = {split: unit_histograms(ids[split], args.clusters) for split in ids}
        pooled = {split: np.stack([np.concatenate([f.mean(0).numpy(), f.std(0).numpy()]) for f in fs])
                  for split, fs in feats.items()}
        test_ids = np.concatenate(ids["heldout"])
        row = {"dim": fx.dim, "seconds": round(time.perf_counter() - start, 1),
               "probe_units": {a: probe(hist["train"], labels["train"][a], hist["heldout"], labels["heldout"][a])
                               for a in ATTRIBUTES},
               "probe_features": {a: probe(pooled["train"], labels["train"][a], pooled["heldout"],
                                           labels["heldout"][a]) for a in ATTRIBUTES},
               "nmi": {a: float(normalized_mutual_info_score(
                   np.concatenate([[y] * s.size for y, s in zip(labels["heldout"][a], ids["heldout"])]), test_ids))
                   for a in ("tonic", "instrument")},
               "usage_perplexity": usage_perplexity(test_ids, args.clusters),
               "bigram_perplexity": bigram_perplexity(ids["train"], ids["heldout"], args.clusters),
               "mean_run_frames": mean_run_length(ids["heldout"]),
               "units_used": int(np.unique(test_ids).size)}
        results["features"][kind] = row
        print(f"{kind}: {json.dumps(row)}", flush=True)

    chance = results["chance"]
    print("\n| features | dim | tonic | key | mode | instrument | tempo | NMI tonic | NMI instr. | usage ppl "
          "| bigram ppl | run (frames) |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kind, r in results["features"].items():
        p, f = r["probe_units"], r["probe_features"]
        cells = " | ".join(f"{p[a]:.2f} ({f[a]:.2f})" for a in ATTRIBUTES)
        print(f"| {kind} | {r['dim']} | {cells} | {r['nmi']['tonic']:.3f} | {r['nmi']['instrument']:.3f} | "
              f"{r['usage_perplexity']:.1f} | {r['bigram_perplexity']:.1f} | {r['mean_run_frames']:.2f} |")
    print("| chance (majority) | | " + " | ".join(f"{chance[a]:.2f}" for a in ATTRIBUTES) + " | | | | | |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
