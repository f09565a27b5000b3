"""`soundlm eval music`: does a MusicLM model make the music its captions ask for (issue 17's evaluation).

On captions of one split of a music corpus (default: held-out pieces and held-out instrument x
tonic pairs, the latter also reported alone as `_combination`), each caption generates one clip
(caption i with seed `seed + i`), and:

- text adherence: the judge MuLan's cosine of the clip's audio embedding with its caption,
  against (1) the same model with the NULL condition and the same seed (the unconditional model
  the conditioned stages also are: guidance has nothing to mix there) and (2) the clip against
  another caption of the split (a fixed derangement: shuffled captions);
- attribute accuracy: the analysers' key/mode, tempo (within 8%) and instrument (the classifier,
  `--instrument-model`) of the clip against what the caption's clip was rendered with; chance
  beside each: uniform over the corpus's values, and the same clips judged against shuffled requests;
- Frechet distance between the judge MuLan's audio embeddings of the generated clips and of the
  split's real clips, beside the real-vs-real floor (two random halves of the real clips);
- `against`: a second model on the same captions and seeds; per caption, which clip wins by each
  metric (MuLan cosine, key credit, tempo credit, instrument probability), ties half: MusicRL's
  "win rate by a metric the reward did not see".
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundlm.eval.report import EvalSection, RowState, seed_everything, state_path

if TYPE_CHECKING:
    from soundlm.data.music import MusicClip
    from soundlm.music.instrument import InstrumentClassifier
    from soundlm.music.pipeline import MusicLMPipeline
    from soundlm.music.rewards import MusicRequest, TextAudioEmbedder
    from soundlm.pipeline import AudioLMSampling

ATTRIBUTES = ("key", "tempo", "instrument")
SHUFFLES = 20  # derangements the shuffled-caption baselines average over
# Per-caption scores the win rate compares (higher is better); each is also a reward MusicRL can tune on.
WIN_METRICS = ("mulan", "key", "tempo", "instrument")


@dataclass
class ClipScores:
    """What the judges say about one generated clip against its request."""

    embedding: list[float]  # the judge MuLan's audio embedding [D]
    mulan: float  # cosine with the caption's text embedding
    tonic: int
    mode: str
    bpm: float
    instrument: str | None  # the classifier's label (None without one)
    instrument_prob: float | None  # its probability of the requested instrument


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation of range(n) with no fixed point (every caption paired with another's)."""
    if n < 2:
        raise ValueError(f"shuffled captions need >= 2 captions, got {n}; pass --captions 2 or more")
    rng = random.Random(seed)
    order = list(range(n))
    while any(i == j for i, j in enumerate(order)):
        rng.shuffle(order)
    return order


def attribute_hits(tonic: int, mode: str, bpm: float, instrument: str | None, request: MusicRequest,
                   tempo_tolerance: float) -> dict[str, bool | None]:
    """Whether an analysed clip has the request's key and mode, tempo (within the tolerance) and instrument."""
    from soundlm.music.analysis import tempo_matches

    return {"key": None if request.tonic is None else (tonic, mode) == (request.tonic, request.mode),
            "tempo": None if request.tempo_bpm is None else
            bool(bpm > 0 and tempo_matches(bpm, request.tempo_bpm, tempo_tolerance)),
            "instrument": None if request.instrument is None or instrument is None else
            instrument == request.instrument}


def uniform_chance(tempo_tolerance: float) -> dict[str, float]:
    """Chance of each attribute for a guess uniform over the corpus's values (24 keys, its tempi, instruments)."""
    from soundlm.data.music import INSTRUMENTS, TEMPI
    from soundlm.music.analysis import tempo_matches

    # A tempo guess hits every corpus tempo within the tolerance of the requested one.
    tempo = float(np.mean([sum(tempo_matches(g, t, tempo_tolerance) for g in TEMPI) / len(TEMPI) for t in TEMPI]))
    return {"key": 1 / 24, "tempo": tempo, "instrument": 1 / len(INSTRUMENTS)}


def win_rate(ours: list[float | None], theirs: list[float | None]) -> float | None:
    """Share of pairs where `ours` scores higher, ties counting half; pairs with a missing score are left out."""
    pairs = [(a, b) for a, b in zip(ours, theirs) if a is not None and b is not None]
    if not pairs:
        return None
    return float(np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs]))


def mean_or_none(values: list) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def score_clip(audio: np.ndarray, sample_rate: int, request: MusicRequest, judge: TextAudioEmbedder,
               caption_embedding: np.ndarray, classifier: InstrumentClassifier | None) -> ClipScores:
    """Embed and analyse one clip ([C, S] or [S]) against its request."""
    from soundlm.eval.sections.music_continuation import analyse_clip
    from soundlm.music.rewards import embed_clip

    emb = embed_clip(judge, audio, sample_rate)  # [D]
    a = analyse_clip(audio, sample_rate)
    label = prob = None
    if classifier is not None:
        pred = classifier.predict(audio, sample_rate)
        label = pred.label
        prob = None if request.instrument is None else float(pred.probs.get(request.instrument, 0.0))
    return ClipScores(embedding=[float(x) for x in emb], mulan=float(emb @ caption_embedding), tonic=a.tonic,
                      mode=a.mode, bpm=a.bpm, instrument=label, instrument_prob=prob)


def win_scores(s: ClipScores, request: MusicRequest) -> dict[str, float | None]:
    """The per-caption scores `WIN_METRICS` compares: MuLan cosine and the rewards' key/tempo credit."""
    from soundlm.music.rewards import key_credit, tempo_credit

    return {"mulan": s.mulan,
            "key": None if request.tonic is None else key_credit(request.tonic, request.mode, s.tonic, s.mode),
            "tempo": None if request.tempo_bpm is None or s.bpm <= 0 else tempo_credit(s.bpm, request.tempo_bpm),
            "instrument": s.instrument_prob}


def pick_captions(clips: list[MusicClip], num: int, seed: int) -> list[MusicClip]:
    """Up to `num` clips in a seeded order that alternates held-out pieces and held-out combinations."""
    rng = random.Random(seed)
    groups: dict[str, list[MusicClip]] = {}
    for c in sorted(clips, key=lambda c: c.item.id):
        groups.setdefault(str(c.music.heldout), []).append(c)
    for g in groups.values():
        rng.shuffle(g)
    ranked = [(rank, name, c) for name, g in sorted(groups.items()) for rank, c in enumerate(g)]
    return [c for _, _, c in sorted(ranked, key=lambda t: t[:2])][:num]


def summarise_music(rows: list[dict], real: np.ndarray, tempo_tolerance: float, seed: int,
                    against: bool, reward_saw: tuple[str, ...] = ()) -> dict:
    """The headline numbers of the rows `eval_music` makes (see the module doc), all captions and combinations."""
    from soundlm.music.mulan import frechet_distance
    from soundlm.music.rewards import MusicRequest

    summary: dict = {"captions": len(rows)}
    # Many derangements: one pairing of N captions leaves the shuffled baselines a sampling noise of ~1/sqrt(N).
    orders = [derangement(len(rows), seed + k) for k in range(SHUFFLES)]
    for subset, chosen in (("", rows), ("_combination", [r for r in rows if r["heldout"] == "combination"])):
        summary[f"captions{subset}"] = len(chosen)
        if not chosen:
            continue
        summary[f"mulan_cos{subset}"] = mean_or_none([r["generated"]["mulan"] for r in chosen])
        summary[f"mulan_cos_null{subset}"] = mean_or_none([r["null"]["mulan"] for r in chosen])
        for name in ATTRIBUTES:
            summary[f"{name}_acc{subset}"] = mean_or_none([r["hits"][name] for r in chosen])
    pairs = [(i, j) for order in orders for i, j in enumerate(order)]
    summary["mulan_cos_shuffled"] = mean_or_none([rows[i]["shuffled_cos"][j] for i, j in pairs])
    shuffled = [attribute_hits(**{k: rows[i]["generated"][k] for k in ("tonic", "mode", "bpm", "instrument")},
                               request=MusicRequest.from_json(rows[j]["request"]), tempo_tolerance=tempo_tolerance)
                for i, j in pairs]
    for name, chance in uniform_chance(tempo_tolerance).items():
        summary[f"{name}_chance"] = chance
        summary[f"{name}_chance_shuffled"] = mean_or_none([h[name] for h in shuffled])
    generated = np.array([r["generated"]["embedding"] for r in rows])  # [N, D]
    if len(generated) >= 2 and len(real) >= 4:
        halves = np.random.default_rng(seed).permutation(len(real))
        summary["frechet_generated_vs_real"] = frechet_distance(generated, real)
        summary["frechet_real_halves"] = frechet_distance(real[halves[::2]], real[halves[1::2]])
        summary["frechet_null_vs_real"] = frechet_distance(np.array([r["null"]["embedding"] for r in rows]), real)
    if against:
        for name in WIN_METRICS:
            ours, theirs = [r["wins"]["ours"][name] for r in rows], [r["wins"]["theirs"][name] for r in rows]
            # The mean scores are the rewards before (against) and after (this model) preference tuning.
            summary[f"score_{name}"], summary[f"score_{name}_against"] = mean_or_none(ours), mean_or_none(theirs)
            summary[f"win_rate_{name}"] = win_rate(ours, theirs)
        unseen = unseen_metrics(reward_saw)
        summary["unseen_metrics"] = ",".join(unseen)
        # MusicRL's target is a metric the reward did not see; the worst of them, so no metric is picked after the fact.
        rates = [summary[f"win_rate_{m}"] for m in unseen if summary[f"win_rate_{m}"] is not None]
        summary["win_rate_unseen_min"] = min(rates) if rates else None
    return summary


def unseen_metrics(reward_saw: tuple[str, ...] | list[str]) -> list[str]:
    """The win-rate metrics a preference-tuning reward made of `reward_saw` (names of `WIN_METRICS`) did not see."""
    unknown = [m for m in reward_saw if m not in WIN_METRICS]
    if unknown:
        raise ValueError(f"--reward-saw names {', '.join(unknown)}; the metrics are {', '.join(WIN_METRICS)}")
    return [m for m in WIN_METRICS if m not in reward_saw]


def eval_music(music: MusicLMPipeline, data: str | Path, split: str = "heldout", num_captions: int = 16,
               guidance: float | None = None, seconds: float = 4.0, judge: TextAudioEmbedder | None = None,
               instrument_model: str | Path | None = None, against: MusicLMPipeline | None = None,
               sampling: AudioLMSampling | None = None, seed: int = 0, out_dir: str | Path | None = None,
               settings_extra: dict | None = None, tempo_tolerance: float = 0.08,
               reward_saw: tuple[str, ...] = (), progress: bool = True) -> EvalSection:
    """Text adherence, attribute accuracy and Frechet distance of `music` on `num_captions` captions of
    `split` of `data` (see the module doc). judge: the MuLan that scores (default: the model's own).
    reward_saw: the `WIN_METRICS` the tuning reward of `music` (against `against`) used; the others are unseen."""
    from dataclasses import replace

    from tqdm import tqdm

    from soundlm.data.music import read_music_corpus
    from soundlm.eval.sections.mulan import audio_embeddings
    from soundlm.music.pipeline import DEFAULT_GUIDANCE
    from soundlm.music.rewards import request_from_attributes
    from soundlm.pipeline import AudioLMSampling, BatchRequest

    if seconds <= 0:
        raise ValueError(f"--seconds must be positive, got {seconds}")
    unseen_metrics(reward_saw)  # unknown names fail before any generation
    start = time.perf_counter()
    seed_everything(seed)
    guidance = DEFAULT_GUIDANCE if guidance is None else guidance
    judge = judge or music.mulan
    classifier = None
    if instrument_model is not None:
        from soundlm.music.instrument import load_instrument_classifier

        classifier = load_instrument_classifier(instrument_model)
    clips = read_music_corpus(data, split=split)
    chosen = pick_captions(clips, num_captions, seed)
    if len(chosen) < 2:
        raise ValueError(f"{data}: {len(chosen)} clip(s) in split {split!r}; the evaluation needs >= 2 captions")
    captions = [c.caption for c in chosen]
    import torch

    with torch.inference_mode():
        text = judge.embed_text(captions).float().cpu().numpy()  # [N, D]
    sampling = replace(sampling or AudioLMSampling(), guidance=guidance)
    settings = {"data": str(data), "split": split, "captions": len(chosen), "guidance": guidance, "seconds": seconds,
                "seed": seed, "tempo_tolerance": tempo_tolerance, "sampling": asdict(sampling),
                "instrument_model": None if instrument_model is None else str(instrument_model),
                "compared": against is not None, "reward_saw": list(reward_saw), **(settings_extra or {})}
    state = RowState(state_path(out_dir, "music"), settings)
    sr = music.sample_rate
    rows = []
    for i, clip in enumerate(tqdm(chosen, desc="eval music", unit="caption", disable=not progress)):
        if clip.item.id in state:
            rows.append(state[clip.item.id])
            continue
        request = request_from_attributes(clip.music, clip.caption)
        # Same seed for the caption, the NULL condition and the other model: only the conditioning differs.
        audio = music.generate([clip.caption], seconds, guidance=guidance, sampling=sampling, seed=seed + i)[0][0]
        null = music.audiolm.generate_batch([BatchRequest(seconds=seconds, seed=seed + i)], sampling)[0][0]
        ours = score_clip(audio, sr, request, judge, text[i], classifier)
        row = {"id": clip.item.id, "caption": clip.caption, "heldout": clip.music.heldout,
               "request": request.to_json(), "generated": asdict(ours),
               "null": asdict(score_clip(null, sr, request, judge, text[i], classifier)),
               "shuffled_cos": [float(np.asarray(ours.embedding) @ t) for t in text],
               "hits": attribute_hits(ours.tonic, ours.mode, ours.bpm, ours.instrument, request, tempo_tolerance)}
        if against is not None:
            other = against.generate([clip.caption], seconds, guidance=guidance, sampling=sampling, seed=seed + i)
            theirs = score_clip(other[0][0], against.sample_rate, request, judge, text[i], classifier)
            row["against"] = asdict(theirs)
            row["wins"] = {"ours": win_scores(ours, request), "theirs": win_scores(theirs, request)}
        state.put(clip.item.id, row)
        rows.append(row)
    real = audio_embeddings(judge, clips, progress, "real clips")  # [M, D]
    summary = summarise_music(rows, real, tempo_tolerance, seed, against is not None, tuple(reward_saw))
    table = [{"id": r["id"], "heldout": r["heldout"], "caption": r["caption"],
              "cos": round(r["generated"]["mulan"], 4), "cos_null": round(r["null"]["mulan"], 4),
              **{f"{k}_ok": v for k, v in r["hits"].items()},
              "key_est": f"{r['generated']['tonic']} {r['generated']['mode']}",
              "bpm_est": round(r["generated"]["bpm"], 1), "instrument_est": r["generated"]["instrument"]}
             for r in rows]
    notes = ["mulan_cos: the judge MuLan's cosine of each generated clip's audio embedding with its caption; "
             "_null: the same model and seed with the NULL condition (the unconditional model; guidance is then "
             f"a no-op); _shuffled: each clip against another caption of the split (mean over {SHUFFLES} fixed "
             "derangements).",
             f"<attr>_acc: the analysers' key+mode, tempo (within {tempo_tolerance:.0%}) and instrument (the "
             "classifier, when given) of each clip against the attributes its caption's clip was rendered with; "
             "<attr>_chance: a uniform guess over the corpus's values; _chance_shuffled: the same clips judged "
             f"against another caption's request ({SHUFFLES} derangements).",
             "frechet_*: Frechet distance in the judge MuLan's audio-embedding space (`MuLan.embed_audio`, the "
             "L2-normalised audio tower output, each clip the mean over its windows) between the generated clips "
             f"(null: NULL condition) and all {len(real)} real clips of the split; frechet_real_halves: between two "
             "random halves of those real clips, the floor sample size sets.",
             "_combination: captions of an (instrument, tonic) pair no training clip has.",
             *(["win_rate_<metric>: share of captions where this model's clip scores higher than --against's "
                "(same caption, same seed; ties half); score_<metric> / _against: each model's mean score. "
                "mulan = cosine with the caption, key / tempo = the rewards' credit, instrument = the classifier's "
                "probability of the requested instrument. unseen_metrics: those "
                "the tuning reward did not use (--reward-saw); win_rate_unseen_min: the lowest of their win rates."]
               if against is not None else [])]
    return EvalSection(name="music", title="Music: text adherence, attribute accuracy, Frechet distance",
                       settings=settings, summary=summary, rows=table, wall_seconds=time.perf_counter() - start,
                       notes=notes)

