"""The `soundlm eval` suite: codec quality, held-out LM loss, speaker information in the semantic
units, speaker-preserving continuation, sWUGGY-style lexical discrimination and ASR
intelligibility, each as one `EvalSection`.

Every evaluation returns an `EvalSection` (settings, summary, per-item rows, wall time);
`write_section` writes it as DIR/{name}.md and DIR/{name}.json, and `write_results` joins
several into DIR/results.md + DIR/results.json. All files are written atomically. The
loops over files/prompts keep per-item results in DIR/.state/{name}.json, so an
interrupted run with the same settings picks up where it stopped.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from soundlm.fileio import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    import torch

    from soundlm.codec.base import AcousticTokenizer
    from soundlm.pipeline import AudioLMPipeline, AudioLMSampling, StageModel
    from soundlm.semantic.tokenizer import SemanticTokenizer

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
STATE_DIR = ".state"


# ----------------------------------------------------------------------------- sections

@dataclass
class EvalSection:
    """One evaluation's outcome: what was run, the headline numbers and the per-item rows."""

    name: str
    title: str
    settings: dict
    summary: dict
    rows: list[dict]
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    def markdown(self, level: int = 2) -> str:
        head = "#" * level
        lines = [f"{head} {self.title}", ""]
        lines += [f"- {k}: `{_short(_fmt(v))}`" for k, v in sorted(self.settings.items())]
        lines += [f"- wall time: {self.wall_seconds:.1f} s", ""]
        lines += [_table([self.summary]), ""]
        lines += [f"> {n}" for n in self.notes] + ([""] if self.notes else [])
        if self.rows:
            lines += [_table(self.rows), ""]
        return "\n".join(lines)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def _short(text: str, limit: int = 160) -> str:
    # Long settings (a codec's full config) stay whole in the JSON; the table shows their start.
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _table(rows: Sequence[dict]) -> str:
    names = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(n)) for n in names) + " |" for r in rows]
    return "\n".join(lines)


def write_section(section: EvalSection, out_dir: str | Path) -> tuple[Path, Path]:
    """DIR/{name}.md and DIR/{name}.json, atomically; returns both paths."""
    out_dir = Path(out_dir)
    md, js = out_dir / f"{section.name}.md", out_dir / f"{section.name}.json"
    write_text_atomic(md, f"# soundlm eval: {section.name}\n\n" + section.markdown() + "\n")
    write_json_atomic(js, section.to_json())
    return md, js


def write_results(sections: Sequence[EvalSection], out_dir: str | Path, settings: dict | None = None) -> Path:
    """DIR/results.md + DIR/results.json with one section per evaluation; returns the markdown path."""
    out_dir = Path(out_dir)
    total = sum(s.wall_seconds for s in sections)
    head = ["# soundlm evaluation", ""] + [f"- {k}: `{_fmt(v)}`" for k, v in sorted((settings or {}).items())]
    head += [f"- total wall time: {total:.1f} s", ""]
    write_text_atomic(out_dir / "results.md", "\n".join(head) + "\n" + "\n".join(s.markdown() for s in sections))
    # JSON keys are written sorted; `order` keeps the order the sections ran (and read) in.
    write_json_atomic(out_dir / "results.json", {"settings": settings or {}, "wall_seconds": total,
                                                 "order": [s.name for s in sections],
                                                 "sections": {s.name: s.to_json() for s in sections}})
    return out_dir / "results.md"


class RowState:
    """Per-item results of an interrupted evaluation, kept in one JSON file (atomic rewrites).

    The file is reused only if it was written with identical settings; otherwise the
    evaluation starts afresh (its results would not be comparable).
    """

    def __init__(self, path: str | Path | None, settings: dict):
        self.path = Path(path) if path is not None else None
        self.settings = json.loads(json.dumps(settings, default=str))
        self.rows: dict[str, dict] = {}
        if self.path is not None and self.path.is_file():
            state = json.loads(self.path.read_text(encoding="utf-8"))
            if state.get("settings") == self.settings:
                self.rows = state.get("rows", {})

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def __getitem__(self, key: str) -> dict:
        return self.rows[key]

    def put(self, key: str, row: dict) -> None:
        self.rows[key] = row
        if self.path is not None:
            write_json_atomic(self.path, {"settings": self.settings, "rows": self.rows})


def _state_path(out_dir: str | Path | None, name: str) -> Path | None:
    return None if out_dir is None else Path(out_dir) / STATE_DIR / f"{name}.json"


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- data

@dataclass
class Utterance:
    """One audio file of the evaluation data (manifest row or loose file)."""

    id: str
    path: Path
    speaker: str | None = None
    transcript: str | None = None
    language: str | None = None
    split: str | None = None
    duration: float | None = None


def load_utterances(data: str | Path, split: str | None = "heldout", max_files: int | None = None) -> list[Utterance]:
    """Utterances of a manifest (file or corpus folder) of one split, or the audio files of a folder.

    A folder without manifest.jsonl is read as loose audio files (no split, speaker or text).
    split=None keeps every row. Order: manifest order (sorted names for loose files).
    """
    from soundlm.data import MANIFEST_NAME, audio_path, read_manifest

    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: no such manifest or folder; pass a corpus written by `soundlm data` "
                                "or a folder of audio files")
    if data.is_dir() and not (data / MANIFEST_NAME).is_file():
        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise ValueError(f"{data}: no manifest.jsonl and no audio files ({', '.join(AUDIO_EXTENSIONS)})")
        utts = [Utterance(id=str(p.relative_to(data)), path=p) for p in files]
    else:
        rows = read_manifest(data)
        if split is not None:
            rows = [r for r in rows if r.get("split", "train") == split]
            if not rows:
                raise ValueError(f"{data}: no rows with split {split!r}; build the corpus with held-out voices "
                                 "(`soundlm data speech --heldout-voices N`) or pass --split train")
        utts = [Utterance(id=r["id"], path=audio_path(data, r), speaker=r.get("speaker"),
                          transcript=r.get("transcript"), language=r.get("language"), split=r.get("split"),
                          duration=r.get("duration")) for r in rows]
    return utts[:max_files] if max_files is not None else utts


# ----------------------------------------------------------------------------- 1. codec

def eval_codec(codec: AcousticTokenizer, data: str | Path, split: str | None = "heldout",
               max_files: int | None = None, num_codebooks: Sequence[int] | None = None,
               max_seconds: float | None = None, include_stoi: bool = True, include_pesq: bool = True,
               out_dir: str | Path | None = None, progress: bool = True) -> EvalSection:
    """Signal metrics (mel, multi-resolution STFT, SI-SDR, STOI, PESQ-wb) at each bitrate, mean over files.

    num_codebooks None: powers of two up to the codec's total, plus the total.
    """
    from soundlm.eval.codec_metrics import default_codebook_counts, evaluate_codec

    start = time.perf_counter()
    utts = load_utterances(data, split, max_files)
    counts = list(num_codebooks) if num_codebooks else default_codebook_counts(codec.total_codebooks)
    rows = evaluate_codec(codec, [u.path for u in utts], counts, include_stoi=include_stoi,
                          include_pesq=include_pesq, max_seconds=max_seconds,
                          state_path=_state_path(out_dir, "codec"), progress=progress)
    best = rows[-1]
    settings = {"codec": codec.describe(), "data": str(data), "split": split, "num_files": len(utts),
                "num_codebooks": counts, "max_seconds": max_seconds}
    summary = {"bitrate_kbps": best.bitrate_kbps, "num_codebooks": best.num_codebooks,
               "mel_distance": best.mel_distance, "si_sdr": best.si_sdr, "stoi": best.stoi, "pesq": best.pesq}
    return EvalSection(name="codec", title="Codec reconstruction quality", settings=settings, summary=summary,
                       rows=[asdict(r) for r in rows], wall_seconds=time.perf_counter() - start,
                       notes=["Rows: mean over files at each number of codebooks; the summary is the highest "
                              "bitrate. Lower is better for the distances, higher for SI-SDR (dB), STOI, PESQ."])


# ----------------------------------------------------------------------------- 2. LM loss

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

    from soundlm.devices import default_device
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


# ----------------------------------------------------------------------------- 3. continuation

@dataclass
class ContinuationRow:
    id: str
    speaker: str
    predicted_acoustic_prompt: str
    predicted_semantic_prompt: str
    similarity_acoustic_prompt: float  # cosine, prompt vs continuation
    similarity_semantic_prompt: float
    # References: the utterance's real next seconds, as recorded and through the codec
    # (None when the utterance ends too soon after the prompt).
    predicted_ground_truth: str | None = None
    predicted_codec_resynthesis: str | None = None


def plan_speaker_test(utts: Sequence[Utterance], prompt_seconds: float, num_prompts: int,
                      enrol_fraction: float = 0.5, seed: int = 0) -> tuple[dict[str, list[Utterance]], list[Utterance]]:
    """Split each voice's utterances into enrolment and prompt utterances (never both).

    Per speaker, utterances are shuffled with `seed`; the first `enrol_fraction` (at least
    one, leaving at least one) enrol the voice. Prompts come from the rest, long enough for
    `prompt_seconds`, taken round-robin over speakers up to `num_prompts`.
    """
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in utts:
        if u.speaker is None:
            raise ValueError(f"utterance {u.id!r} has no speaker; the continuation test needs a manifest "
                             "with a speaker per row")
        by_speaker[u.speaker].append(u)
    rng = random.Random(seed)
    enrol, prompts_by = {}, {}
    for spk in sorted(by_speaker):
        items = sorted(by_speaker[spk], key=lambda u: u.id)
        rng.shuffle(items)
        if len(items) < 2:
            continue  # one utterance cannot both enrol the voice and prompt
        n_enrol = min(len(items) - 1, max(1, int(round(len(items) * enrol_fraction))))
        enrol[spk] = items[:n_enrol]
        prompts_by[spk] = [u for u in items[n_enrol:] if u.duration is None or u.duration >= prompt_seconds]
    if len(enrol) < 2:
        raise ValueError(f"the speaker test needs at least 2 voices with 2+ utterances each, got {len(enrol)}; "
                         "use a corpus with more held-out voices (`soundlm data speech --heldout-voices 2`) "
                         "or --split train")
    prompts, i = [], 0
    queues = [list(prompts_by[s]) for s in sorted(prompts_by)]
    while len(prompts) < num_prompts and any(queues):
        q = queues[i % len(queues)]
        if q:
            prompts.append(q.pop(0))
        i += 1
    if not prompts:
        raise ValueError(f"no held-out utterance is at least --prompt-seconds {prompt_seconds} long beyond the "
                         "enrolment ones; lower --prompt-seconds or use longer recordings")
    return enrol, prompts


def eval_continuation(pipe: AudioLMPipeline, data: str | Path, split: str = "heldout", prompt_seconds: float = 3.0,
                      seconds: float = 3.0, num_prompts: int = 20, enrol_fraction: float = 0.5,
                      sampling: AudioLMSampling | None = None, seed: int = 0, out_dir: str | Path | None = None,
                      save_audio: bool = True, progress: bool = True) -> EvalSection:
    """AudioLM's speaker test (sec. 5.3): does a continuation keep the prompt's voice?

    Voices of `split` are enrolled with resemblyzer embeddings of some of their utterances;
    prompts of `prompt_seconds` are cut from other utterances of those voices and continued
    by `seconds` with the full pipeline. Only the continuation (prompt excluded) is
    classified by nearest enrolled voice. The contrast gives the coarse and fine stages the
    prompt's semantic ids only (`acoustic_prompt=False`). Chance is 1 / number of voices.

    Two references bound what the LMs can reach: the utterance's real audio after the
    prompt (the classifier's own accuracy) and that audio resynthesized by the codec (the
    most a continuation decoded by this codec can keep of the voice).
    """
    from tqdm import tqdm

    from soundlm.audio import load_audio
    from soundlm.audio import save_audio as write_audio
    from soundlm.eval.codec_metrics import resynthesize
    from soundlm.eval.speaker import (MIN_SECONDS, classify_speaker, cosine_similarity, enrol_speakers,
                                      load_voice_encoder, speaker_embedding)

    if seconds < MIN_SECONDS or prompt_seconds < MIN_SECONDS:
        raise ValueError(f"--seconds and --prompt-seconds must be at least {MIN_SECONDS} s for a speaker "
                         f"embedding, got {seconds} and {prompt_seconds}")
    start = time.perf_counter()
    _seed_everything(seed)
    utts = load_utterances(data, split)
    enrol_utts, prompts = plan_speaker_test(utts, prompt_seconds, num_prompts, enrol_fraction, seed)
    encoder = load_voice_encoder(str(pipe.device) if pipe.device.type == "cuda" else "cpu")
    sr = pipe.sample_rate
    embeddings = {spk: [speaker_embedding(load_audio(u.path, sample_rate=sr), sr, encoder) for u in us]
                  for spk, us in tqdm(enrol_utts.items(), desc="enrol voices", unit="voice", disable=not progress)}
    enrolment = enrol_speakers(embeddings)
    settings = {"data": str(data), "split": split, "prompt_seconds": prompt_seconds, "seconds": seconds,
                "num_prompts": len(prompts), "enrol_fraction": enrol_fraction, "seed": seed,
                "voices": enrolment.speakers, "sampling": asdict(sampling) if sampling is not None else "default",
                "references": "ground truth and codec resynthesis"}
    state = RowState(_state_path(out_dir, "continuation"), settings)
    audio_dir = Path(out_dir) / "continuation_audio" if out_dir is not None and save_audio else None
    rows = []
    for i, u in enumerate(tqdm(prompts, desc="continuation", unit="prompt", disable=not progress)):
        if u.id in state:
            rows.append(ContinuationRow(**state[u.id]))
            continue
        audio = load_audio(u.path, sample_rate=sr)  # [1, S]
        n = int(round(prompt_seconds * sr))
        if audio.shape[1] < n:
            raise ValueError(f"{u.path}: {audio.shape[1] / sr:.2f} s, shorter than --prompt-seconds {prompt_seconds} "
                             "(its manifest duration is wrong); fix the manifest or lower --prompt-seconds")
        prompt = audio[:, :n]
        prompt_emb = speaker_embedding(prompt, sr, encoder)
        result = {}
        for label, acoustic in (("acoustic", True), ("semantic", False)):
            cont = pipe.continue_audio(prompt, seconds, prompt_sample_rate=sr, sampling=sampling, seed=seed + i,
                                       include_prompt=False, acoustic_prompt=acoustic)[0]  # [C, S]
            emb = speaker_embedding(cont, sr, encoder)
            result[label] = (classify_speaker(enrolment, emb).speaker, cosine_similarity(prompt_emb, emb))
            if audio_dir is not None:
                write_audio(audio_dir / f"{i:04d}_{label}_prompt.wav", cont, sr)
        truth = audio[:, n: n + int(round(seconds * sr))]
        truth_label = resynth_label = None
        if truth.shape[1] >= MIN_SECONDS * sr:
            truth_label = classify_speaker(enrolment, speaker_embedding(truth, sr, encoder)).speaker
            resynth = resynthesize(pipe.codec, truth)
            resynth_label = classify_speaker(enrolment, speaker_embedding(resynth, sr, encoder)).speaker
        row = ContinuationRow(id=u.id, speaker=str(u.speaker), predicted_acoustic_prompt=result["acoustic"][0],
                              predicted_semantic_prompt=result["semantic"][0],
                              similarity_acoustic_prompt=result["acoustic"][1],
                              similarity_semantic_prompt=result["semantic"][1],
                              predicted_ground_truth=truth_label, predicted_codec_resynthesis=resynth_label)
        state.put(u.id, asdict(row))
        rows.append(row)
    summary = {
        "accuracy_acoustic_prompt": float(np.mean([r.predicted_acoustic_prompt == r.speaker for r in rows])),
        "accuracy_semantic_prompt_only": float(np.mean([r.predicted_semantic_prompt == r.speaker for r in rows])),
        "chance": 1.0 / len(enrolment.speakers),
        "similarity_acoustic_prompt": float(np.mean([r.similarity_acoustic_prompt for r in rows])),
        "similarity_semantic_prompt_only": float(np.mean([r.similarity_semantic_prompt for r in rows])),
        "num_prompts": len(rows), "num_voices": len(enrolment.speakers),
    }
    with_truth = [r for r in rows if r.predicted_ground_truth is not None]
    if with_truth:
        summary["accuracy_ground_truth"] = float(np.mean([r.predicted_ground_truth == r.speaker
                                                          for r in with_truth]))
        summary["accuracy_codec_resynthesis"] = float(np.mean([r.predicted_codec_resynthesis == r.speaker
                                                               for r in with_truth]))
        summary["num_references"] = len(with_truth)
    return EvalSection(name="continuation", title="Speaker preservation in continuations", settings=settings,
                       summary=summary, rows=[asdict(r) for r in rows], wall_seconds=time.perf_counter() - start,
                       notes=["Accuracy: the continuation (prompt excluded) classified by nearest enrolled voice "
                              "(resemblyzer cosine). 'semantic prompt only': the coarse/fine stages saw the "
                              "prompt's semantic ids but not its codec codes (AudioLM sec. 5.3 contrast).",
                              "References: the utterance's real audio after the prompt ('ground truth') and its "
                              "codec resynthesis bound what a continuation can reach with this classifier and "
                              "codec."])



# ----------------------------------------------------------------------------- 4. lexical

@dataclass
class SemanticScore:
    """Log-likelihood of an audio clip's semantic ids under the semantic LM."""

    total_logprob: float  # nats, summed over ids
    num_tokens: int

    @property
    def mean_logprob(self) -> float:
        return self.total_logprob / self.num_tokens


def semantic_logprob(pipe: AudioLMPipeline, audio: np.ndarray, sample_rate: int) -> SemanticScore:
    """Tokenize [S] or [C, S] audio with the bundle's semantic tokenizer and score the ids with the
    semantic LM: log p(s_1..s_T | BOS), the full-vocabulary softmax the model was trained with."""
    import torch

    from soundlm.audio import resample

    tok, stage = pipe.semantic_tokenizer, pipe.semantic
    audio = np.asarray(audio, dtype=np.float32)
    audio = audio[None] if audio.ndim == 1 else audio
    mono = resample(audio.mean(axis=0, keepdims=True), sample_rate, int(tok.sample_rate))  # [1, S]
    if mono.shape[1] < tok.min_samples:
        raise ValueError(f"clip of {mono.shape[1]} samples is shorter than the semantic tokenizer's minimum "
                         f"{tok.min_samples}; use longer audio")
    with torch.inference_mode():
        ids = tok.encode(torch.from_numpy(mono)[None].to(pipe.device)).long()  # [1, T]
        layout = stage.layout
        tokens = torch.cat([torch.full((1, 1), layout.bos_id, dtype=torch.long, device=ids.device),
                            layout.semantic_to_global(ids)], dim=1)  # [1, T+1]
        if tokens.shape[1] > stage.model.max_positions:
            raise ValueError(f"{ids.shape[1]} semantic ids exceed the semantic LM's {stage.model.max_positions} "
                             "positions; score shorter clips")
        logits = stage.model(tokens.to(pipe.device)).logits.float()  # [1, T+1, V]
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, tokens[:, 1:, None])  # [1, T, 1]
    return SemanticScore(total_logprob=float(logp.sum()), num_tokens=int(ids.shape[1]))


def lexical_word_list(data: str | Path | None, split: str = "train") -> tuple[list[str], str]:
    """Words for the lexical pairs and where they came from.

    With a corpus (manifest with transcripts), its `split` words: the vocabulary the LM was
    trained on. Without one, or if it has no transcripts, the built-in common English words.
    """
    from soundlm.eval.lexical import COMMON_WORDS, corpus_words

    if data is not None:
        utts = load_utterances(data, split)
        words = corpus_words(u.transcript for u in utts if u.transcript)
        if words:
            return words, f"{data} ({split} transcripts, {len(words)} words of 4+ letters)"
    return list(COMMON_WORDS), "built-in common English words"


def eval_lexical(pipe: AudioLMPipeline, num_pairs: int = 50, voice: str = "en-us", seed: int = 0,
                 work_dir: str | Path | None = None, progress: bool = True, data: str | Path | None = None,
                 words_split: str = "train") -> EvalSection:
    """sWUGGY-style lexical discrimination with the semantic LM.

    Word / non-word pairs are spoken by an espeak-ng voice; each clip is scored by the
    semantic LM's total log-probability of its semantic ids (AudioLM and ZeroSpeech 2021
    score sWUGGY with the summed log-probability). A pair is right when the word scores
    higher (ties half). Accuracy with the per-token mean is reported alongside.

    `voice` may list several voices, comma-separated ("en-us,en-us+f2"): every pair is then
    spoken by each, the summary is the mean over voices with the lowest and highest, and
    each row names its voice. The voice moves accuracy by several points on its own, so
    compare models over several.

    The words are those of `data`'s `words_split` transcripts when a corpus is given (an
    LM trained on a closed vocabulary cannot know other words), else common English words.
    """
    import tempfile

    from soundlm.eval.lexical import lexical_accuracy, make_lexical_pairs, synthesize_pairs

    if num_pairs < 1:
        raise ValueError(f"--num-pairs must be >= 1, got {num_pairs}")
    voices = [v.strip() for v in voice.split(",") if v.strip()]
    if not voices or len(set(voices)) != len(voices):
        raise ValueError(f"--voice must name one or more distinct espeak-ng voices, comma-separated, got {voice!r}")
    start = time.perf_counter()
    _seed_everything(seed)
    words, words_source = lexical_word_list(data, words_split)
    pairs = make_lexical_pairs(words, seed=seed)[:num_pairs]
    sr = int(pipe.semantic_tokenizer.sample_rate)
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="soundlm-lexical-")
        work_dir = tmp.name
    rows: list[dict] = []
    per_voice: list[tuple[float, float]] = []  # (accuracy, accuracy_mean_logprob) per voice
    try:
        for v in voices:
            voiced = synthesize_pairs(pairs, Path(work_dir) / "lexical_audio" / v.replace("/", "_"), voice=v,
                                      sample_rate=sr, progress=progress)
            scores: list[SemanticScore] = []

            def score_fn(audio: np.ndarray, rate: int) -> float:
                s = semantic_logprob(pipe, audio, rate)
                scores.append(s)
                return s.total_logprob

            result = lexical_accuracy(score_fn, voiced, sample_rate=sr, progress=progress)
            # lexical_accuracy scores word then non-word for each pair, in order.
            word_s, non_s = scores[0::2], scores[1::2]
            mean_correct = [1.0 if w.mean_logprob > n.mean_logprob else 0.5 if w.mean_logprob == n.mean_logprob
                            else 0.0 for w, n in zip(word_s, non_s)]
            per_voice.append((result.accuracy, float(np.mean(mean_correct))))
            rows += [{**({"voice": v} if len(voices) > 1 else {}), "word": p.word, "nonword": p.nonword,
                      "word_logprob": w.total_logprob, "nonword_logprob": n.total_logprob,
                      "word_tokens": w.num_tokens, "nonword_tokens": n.num_tokens, "correct": c}
                     for p, w, n, c in zip(voiced, word_s, non_s, result.correct)]
    finally:
        if tmp is not None:
            tmp.cleanup()
    accuracies = [a for a, _ in per_voice]
    summary = {"accuracy": float(np.mean(accuracies)),
               "accuracy_mean_logprob": float(np.mean([m for _, m in per_voice])), "chance": 0.5,
               "num_pairs": result.num_pairs}
    if len(voices) > 1:
        summary.update(accuracy_min=min(accuracies), accuracy_max=max(accuracies), num_voices=len(voices))
    settings = {"num_pairs": len(pairs), "voice": ",".join(voices), "seed": seed, "sample_rate": sr,
                "score": "total log-prob", "words": words_source}
    notes = ["accuracy: the word's total semantic log-probability beats the non-word's (ties count half); "
             "accuracy_mean_logprob: the same with the per-token mean."]
    if len(voices) > 1:
        by_voice = ", ".join(f"{v} {a:.4f}" for v, a in zip(voices, accuracies))
        notes.append("With several voices: accuracy is the mean over voices; accuracy_min / accuracy_max the "
                     f"lowest and highest single voice. Per voice: {by_voice}.")
    return EvalSection(name="lexical", title="Lexical discrimination (sWUGGY-style)", settings=settings,
                       summary=summary, rows=rows, wall_seconds=time.perf_counter() - start, notes=notes)


# ----------------------------------------------------------------------------- semantic units

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
    from soundlm.eval.units import speaker_id_accuracy, unit_histograms
    from soundlm.semantic.kmeans import assign

    start = time.perf_counter()
    utts = [u for u in load_utterances(data, split, max_files) if u.speaker is not None]
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


# ----------------------------------------------------------------------------- 5. ASR

def eval_asr(codec: AcousticTokenizer, data: str | Path, split: str = "heldout", max_files: int | None = None,
             num_codebooks: int | None = None, seed: int = 0, out_dir: str | Path | None = None,
             progress: bool = True, max_hmm_per_frame: int = 10_000) -> EvalSection:
    """Pocketsphinx WER of the original audio and of its codec resynthesis.

    The decoder's language model is a trigram LM of the transcripts of the other splits
    (never the evaluated utterances' own), over the closed vocabulary of every transcript
    word; without other splits, a word loop over that vocabulary. This is what makes
    pocketsphinx usable on synthetic speech. English rows only. max_hmm_per_frame bounds
    the search: with the word loop, noise-like resyntheses took minutes per clip.
    """
    from tqdm import tqdm

    from soundlm.audio import load_audio
    from soundlm.eval.asr import PocketsphinxASR, word_error_rate
    from soundlm.eval.codec_metrics import resynthesize

    start = time.perf_counter()
    _seed_everything(seed)
    every = load_utterances(data, split=None)
    if any(u.transcript is None for u in every):
        raise ValueError(f"{data}: ASR evaluation needs a manifest with transcripts; pass a corpus manifest")
    english = [u for u in every if (u.language or "en").lower().startswith("en")]
    utts = [u for u in english if split is None or (u.split or "train") == split][:max_files]
    if not utts:
        raise ValueError(f"{data}: no English rows with split {split!r}; pocketsphinx only recognises English")
    others = [u.transcript for u in english if split is not None and (u.split or "train") != split]
    if others:
        asr = PocketsphinxASR(sentences=others, extra_words=[u.transcript for u in english], seed=seed,
                              max_hmm_per_frame=max_hmm_per_frame)
    else:
        asr = PocketsphinxASR(vocabulary=[u.transcript for u in english], seed=seed,
                              max_hmm_per_frame=max_hmm_per_frame)
    k = num_codebooks or codec.num_codebooks
    if not 1 <= k <= codec.total_codebooks:
        raise ValueError(f"--num-codebooks must be in 1..{codec.total_codebooks}, got {k}")
    settings = {"codec": codec.describe(), "data": str(data), "split": split, "num_files": len(utts),
                "num_codebooks": k, "vocabulary_size": len(asr.vocabulary or []), "language_model": asr.search,
                "seed": seed,
                "max_hmm_per_frame": max_hmm_per_frame}
    state = RowState(_state_path(out_dir, "asr"), settings)
    original = codec.num_codebooks
    rows = []
    try:
        codec.set_num_codebooks(k)
        bitrate = codec.bitrate / 1000.0
        for u in tqdm(utts, desc="asr", unit="file", disable=not progress):
            if u.id not in state:
                audio = load_audio(u.path, sample_rate=codec.sample_rate, mono=codec.channels == 1)  # [C, S]
                resynth = resynthesize(codec, audio)  # [C, S]
                state.put(u.id, {"id": u.id, "reference": u.transcript,
                                 "original": asr.transcribe(audio, codec.sample_rate),
                                 "resynthesized": asr.transcribe(resynth, codec.sample_rate)})
            rows.append(state[u.id])
    finally:
        codec.set_num_codebooks(original)
    refs = [r["reference"] for r in rows]
    wer_orig = word_error_rate(refs, [r["original"] for r in rows])
    wer_codec = word_error_rate(refs, [r["resynthesized"] for r in rows])
    summary = {"wer_original": wer_orig.wer, "wer_resynthesized": wer_codec.wer, "num_files": len(rows),
               "num_reference_words": wer_orig.num_reference_words, "num_codebooks": k, "bitrate_kbps": bitrate}
    return EvalSection(name="asr", title="Intelligibility: pocketsphinx WER", settings=settings, summary=summary,
                       rows=rows, wall_seconds=time.perf_counter() - start,
                       notes=["Closed-vocabulary pocketsphinx (all corpus transcript words) with a trigram LM of the "
                              "other splits' transcripts (settings.language_model). The gap between "
                              "wer_resynthesized and wer_original is what the codec costs in intelligibility."])


# ----------------------------------------------------------------------------- 6. all

@dataclass
class SuiteConfig:
    """Settings of `soundlm eval all`."""

    model: str
    data: str
    store: str
    out: str
    split: str = "heldout"
    max_files: int | None = 20
    # pocketsphinx needs 0.5-2 min per clip with the corpus grammar (longer on noisy audio).
    asr_max_files: int | None = 10
    prompt_seconds: float = 3.0
    seconds: float = 3.0
    num_prompts: int = 20
    num_pairs: int = 50
    voice: str = "en-us"
    seed: int = 0
    device: str | None = None
    skip: tuple[str, ...] = ()


SECTIONS = ("codec", "lm", "units", "continuation", "lexical", "asr")


def run_all(cfg: SuiteConfig, progress: bool = True) -> list[EvalSection]:
    """Every evaluation on one bundle; writes each section's files and DIR/results.{md,json}."""
    from soundlm.pipeline import AudioLMPipeline

    unknown = [s for s in cfg.skip if s not in SECTIONS]
    if unknown:
        raise ValueError(f"--skip takes {', '.join(SECTIONS)}, got {unknown}")
    pipe = AudioLMPipeline.from_bundle(cfg.model, device=cfg.device)
    out = Path(cfg.out)
    runs = {
        "codec": lambda: eval_codec(pipe.codec, cfg.data, cfg.split, cfg.max_files, out_dir=out, progress=progress),
        "lm": lambda: eval_lm([pipe.semantic, pipe.coarse, pipe.fine], cfg.store, cfg.split, device=pipe.device,
                              progress=progress),
        "units": lambda: eval_units(pipe.semantic_tokenizer, cfg.data, cfg.split, seed=cfg.seed, progress=progress),
        "continuation": lambda: eval_continuation(pipe, cfg.data, cfg.split, cfg.prompt_seconds, cfg.seconds,
                                                  cfg.num_prompts, seed=cfg.seed, out_dir=out, progress=progress),
        "lexical": lambda: eval_lexical(pipe, cfg.num_pairs, cfg.voice, cfg.seed, work_dir=out, progress=progress,
                                        data=cfg.data),
        "asr": lambda: eval_asr(pipe.codec, cfg.data, cfg.split, cfg.asr_max_files, num_codebooks=pipe.num_codebooks,
                                seed=cfg.seed, out_dir=out, progress=progress),
    }
    sections = []
    for name in SECTIONS:
        if name in cfg.skip:
            continue
        section = runs[name]()
        write_section(section, out)
        sections.append(section)
        write_results(sections, out, settings=asdict(cfg))  # partial results survive a later failure
    return sections

