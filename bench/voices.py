"""Voice spread of the speech corpus inventories: how many voices a speaker encoder tells apart.

For each inventory (`classic`: the recipe's 120 training + 4 held-out English voices;
`wide`: `soundlm data speech --inventory wide`, by default 420 + 12), every voice reads
`--utterances` random sentences of its own (two sentences joined, about 3 s). Resemblyzer
embeds each clip; a voice's centroid is the mean of its embeddings. Reported per inventory:
- the nearest-other-voice centroid cosine of every voice (distribution; per voice in the JSON);
- distinct voices: voices kept after dropping any whose centroid cosine to an earlier kept
  voice is >= `--threshold` (training voices first, so a held-out voice that duplicates a
  training voice is the one dropped and is listed);
- utterance -> voice identification accuracy: centroids from the first half of each voice's
  clips, every clip of the second half classified among all voices of the inventory;
- same-voice cosine: a test clip against its own voice's centroid (what "the same voice" scores).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/voices.py --utterances 4   # ~15-20 min on 2 cores
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/tokenize.py would shadow the stdlib `tokenize`: put this folder last on sys.path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from common import machine_info, print_table, write_results  # noqa: E402

from soundlm.audio import load_audio  # noqa: E402
from soundlm.data.jobs import run_parallel  # noqa: E402
from soundlm.data.speech import (SpeechTask, Speaker, espeak_variants, festival_voices, flite_voices,  # noqa: E402
                                 make_speakers, mbrola_voices, render_utterance)
from soundlm.data.text import random_sentence  # noqa: E402
from soundlm.data.voices import distinct_espeak_variants, make_wide_speakers  # noqa: E402
from soundlm.eval.speaker import (distinct_voices, enrol_speakers, load_voice_encoder, speaker_embedding,  # noqa: E402
                                  speaker_id_accuracy, voice_spread)

SAMPLE_RATE = 16_000


def inventory_speakers(name: str, voices: int, heldout: int, seed: int) -> list[Speaker]:
    variants, flite, mbrola = espeak_variants(), flite_voices(), mbrola_voices()
    if name == "classic":
        return make_speakers(seed, ["en"], voices, heldout, variants, flite, mbrola)
    return make_wide_speakers(seed, ["en"], voices, heldout, distinct_espeak_variants(variants), flite,
                              festival_voices(), mbrola)


def render_samples(speakers: list[Speaker], utterances: int, folder: Path, seed: int,
                   workers: int) -> dict[str, list[Path]]:
    """`utterances` clips per speaker, each two random sentences of its own."""
    tasks, paths = [], {}
    for spk in speakers:
        rng = random.Random(f"bench-voices-{seed}-{spk.id}")
        paths[spk.id] = []
        for k in range(utterances):
            text = " ".join(random_sentence(rng).text["en"] for _ in range(2))
            path = folder / spk.id / f"{k}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            tasks.append(SpeechTask(str(path), text, spk, SAMPLE_RATE))
            paths[spk.id].append(path)
    run_parallel(render_utterance, tasks, workers, desc="render")
    return paths


def measure(name: str, speakers: list[Speaker], embeddings: dict[str, list[np.ndarray]], threshold: float) -> dict:
    # Training voices first: of two duplicates, the later (held-out) voice is dropped.
    order = [s.id for s in speakers if s.split == "train"] + [s.id for s in speakers if s.split == "heldout"]
    split = {s.id: s.split for s in speakers}
    full = enrol_speakers({spk: embeddings[spk] for spk in order})
    spread = voice_spread(full)
    distinct = distinct_voices(full, threshold)
    half = {spk: embeddings[spk][: max(1, len(embeddings[spk]) // 2)] for spk in order}
    tests = [(spk, e) for spk in order for e in embeddings[spk][len(half[spk]):]]
    enrol = enrol_speakers(half)
    ident = speaker_id_accuracy(enrol, tests)
    held_tests = [(t, p) for t, p in zip(tests, ident.predictions) if split[t[0]] == "heldout"]
    same = [float(enrol.centroids[enrol.speakers.index(spk)] @ e) for spk, e in tests]
    # Every held-out voice's nearest training voice: a cosine >= threshold is a duplicate.
    train_idx = [i for i, spk in enumerate(full.speakers) if split[spk] == "train"]
    heldout_nearest = []
    for i, spk in enumerate(full.speakers):
        if split[spk] == "heldout":
            sims = full.centroids[train_idx] @ full.centroids[i]
            j = int(np.argmax(sims))
            heldout_nearest.append({"voice": spk, "nearest_train": full.speakers[train_idx[j]],
                                    "cosine": round(float(sims[j]), 4), "duplicate": bool(sims[j] >= threshold)})
    nn = spread.nearest_cosine
    by_id = {s.id: s for s in speakers}

    def kind(spk: str) -> str:
        s = by_id[spk]
        return s.engine + ("+transform" if s.transform is not None else "")

    return {
        "inventory": name, "voices": len(order), "train_voices": sum(split[s] == "train" for s in order),
        "heldout_voices": sum(split[s] == "heldout" for s in order),
        "distinct_voices": len(distinct.kept),
        "distinct_train_voices": sum(split[s] == "train" for s in distinct.kept),
        "distinct_voices_at_0.90": len(distinct_voices(full, 0.90).kept),
        "nn_cos_min": float(nn.min()), "nn_cos_p10": float(np.quantile(nn, 0.1)),
        "nn_cos_median": float(np.median(nn)), "nn_cos_p90": float(np.quantile(nn, 0.9)), "nn_cos_max": float(nn.max()),
        "same_voice_cos_median": float(np.median(same)), "same_voice_cos_p10": float(np.quantile(same, 0.1)),
        "id_accuracy": ident.accuracy, "id_utterances": ident.num_utterances,
        "heldout_id_accuracy": (sum(p.speaker == t[0] for t, p in held_tests) / len(held_tests)) if held_tests else None,
        "heldout_nearest_train": heldout_nearest,
        "dropped": [{"voice": v, "duplicate_of": d, "cosine": round(c, 4)} for v, d, c in distinct.dropped],
        # Per voice: [id, kind, split, nearest other voice, cosine]; compact so the JSON stays small.
        "per_voice": [[spk, kind(spk), split[spk], near, round(float(c), 4)]
                      for spk, near, c in zip(spread.speakers, spread.nearest, nn)],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inventories", default="classic,wide")
    p.add_argument("--classic-voices", type=int, default=120)
    p.add_argument("--classic-heldout", type=int, default=4)
    p.add_argument("--wide-voices", type=int, default=420)
    p.add_argument("--wide-heldout", type=int, default=12)
    p.add_argument("--utterances", type=int, default=4, help="Clips per voice (half enrol, half test).")
    p.add_argument("--threshold", type=float, default=0.95, help="Centroid cosine at or above which two voices "
                                                                  "count as one.")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/voices.json).")
    args = p.parse_args()
    if args.utterances < 2:
        raise SystemExit("--utterances must be >= 2 (half enrol, half test)")
    encoder = load_voice_encoder("cpu")
    rows = []
    for name in [x.strip() for x in args.inventories.split(",") if x.strip()]:
        if name not in ("classic", "wide"):
            raise SystemExit(f"unknown inventory {name!r}; use classic and/or wide")
        voices, heldout = ((args.classic_voices, args.classic_heldout) if name == "classic"
                           else (args.wide_voices, args.wide_heldout))
        start = time.perf_counter()
        speakers = inventory_speakers(name, voices, heldout, args.seed)
        with tempfile.TemporaryDirectory(prefix=f"soundlm-voices-{name}-") as tmp:
            paths = render_samples(speakers, args.utterances, Path(tmp), args.seed, args.workers)
            embs = {spk: [speaker_embedding(load_audio(f, sample_rate=SAMPLE_RATE, mono=True), SAMPLE_RATE, encoder)
                          for f in files] for spk, files in paths.items()}
        row = measure(name, speakers, embs, args.threshold)
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
    print_table(rows, [("inventory", "inventory", "s"), ("train_voices", "train", "d"),
                       ("heldout_voices", "held-out", "d"), ("distinct_voices", "distinct", "d"),
                       ("distinct_train_voices", "distinct train", "d"), ("distinct_voices_at_0.90", "distinct@0.90", "d"),
                       ("nn_cos_p10", "nn cos p10", ".3f"),
                       ("nn_cos_median", "nn cos median", ".3f"), ("nn_cos_p90", "nn cos p90", ".3f"),
                       ("nn_cos_max", "nn cos max", ".3f"), ("same_voice_cos_median", "same-voice cos", ".3f"),
                       ("id_accuracy", "id acc", ".3f"), ("heldout_id_accuracy", "held-out id acc", ".3f")])
    for row in rows:
        dups = [h for h in row["heldout_nearest_train"] if h["duplicate"]]
        print(f"{row['inventory']}: {len(row['dropped'])} voices dropped as duplicates (cosine >= {args.threshold}); "
              f"held-out voices duplicating a training voice: {[d['voice'] for d in dups] or 'none'}")
    path = write_results("voices", {"machine": machine_info(1), "threshold": args.threshold,
                                    "utterances_per_voice": args.utterances, "seed": args.seed,
                                    "command": " ".join(sys.argv), "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
