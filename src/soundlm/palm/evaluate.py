"""`soundlm eval palm`: every AudioPaLM task of a trained model on one split of a token store.

Scores (held-out voices by default; translation targets may be read by any speaker):

    ASR        WER / CER of the transcript, per language.
    AST        BLEU of the translation, next to the copy baseline (the source-language
               transcript offered as the translation: what BLEU gives for no translation).
    ASR+AST    the multi-step task: WER of its first step, BLEU of its second.
    TTS        intelligibility: the model's own ASR task applied to the semantic ids its
               TTS task generated, scored as WER against the input text. There is no audio
               on this path (semantic ids in, text out), so it measures whether the speech
               tokens say the right words, not how they would sound.
    S2ST       ASR-BLEU the same way (the model's ASR on the generated target-language
               semantic ids), beside the ASR-BLEU of the real target recording's ids (the
               ceiling this ASR allows).
    heard      with an AudioLM bundle (`audiolm=`): the TTS output and the S2ST output into
               English are rendered to audio (coarse/fine stages and codec, no voice prompt)
               and transcribed by Whisper tiny.en (`soundlm.eval.asr`): TTS intelligibility
               as Whisper WER/CER against the input text, S2ST as Whisper ASR-BLEU. This
               hears the audio, where the rows above only read the semantic ids.
    voice      with an AudioLM bundle (`audiolm=`): the S2ST output is rendered with the
               source recording as the acoustic prompt (AudioPaLM's voice transfer), and
               Resemblyzer similarity to the source speaker is compared with the other
               speakers'. Without a bundle it is reported as not run, with the reason.

Each answer is appended to `OUT/hypotheses.jsonl` as it is produced, so a stopped run
resumes where it stopped; `OUT/report.json` and `OUT/report.md` are written atomically.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from soundlm.fileio import write_json_atomic, write_text_atomic
from soundlm.palm.metrics import bleu, cer, wer
from soundlm.palm.tasks import TaskExample

HYPOTHESES = "hypotheses.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
EVAL_TASKS = ("asr", "ast", "asr_ast", "tts", "s2st")
_NEEDS = {"asr": ("asr",), "ast": ("ast",), "asr_ast": ("asr_ast",), "tts": ("tts", "asr"), "s2st": ("s2st", "asr")}


@dataclass
class PalmEvalConfig:
    model: str  # palm run folder or model folder
    store: str  # token store with the evaluation split
    out: str  # report folder
    manifest: str | None = None  # corpus manifest: fills missing store columns, locates audio for voice transfer
    split: str = "heldout"
    languages: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None  # default: every evaluable task the model was trained on
    max_examples: int | None = 50  # per task (None: all)
    max_text_tokens: int = 96
    max_semantic_tokens: int = 500
    audiolm: str | None = None  # AudioLM bundle for the voice-transfer audio
    voice_examples: int = 10
    recognizer: str | None = "whisper"  # hears the rendered TTS / S2ST audio (with `audiolm`); None: skip
    device: str | None = None
    seed: int = 0
    progress: bool = True


@dataclass
class PalmEvalResult:
    report: dict
    json_path: Path
    md_path: Path


def _select(examples: list[TaskExample], task: str, limit: int | None) -> list[TaskExample]:
    chosen = [ex for ex in examples if ex.task == task]
    return chosen if limit is None else chosen[:limit]


def _pair(ex: TaskExample) -> str:
    return f"{ex.source_language}->{ex.target_language}"


class _Hypotheses:
    """Append-only answer cache keyed by task and example id (what makes the job resumable)."""

    def __init__(self, path: Path, model_id: str):
        self.path = path
        self.done: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: redo that example
                if row.get("model") == model_id:
                    self.done[row["key"]] = row

    def get_or_run(self, key: str, fn: Callable[[], dict], model_id: str) -> dict:
        if key not in self.done:
            row = {"key": key, "model": model_id, **fn()}
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.done[key] = row
        return self.done[key]


def evaluate_palm(cfg: PalmEvalConfig) -> PalmEvalResult:
    """Run every task on the split, score it, and write report.json / report.md into `cfg.out`."""
    import torch
    from tqdm.auto import tqdm

    from soundlm.devices import default_device
    from soundlm.palm.data import build_task_examples, parse_tasks
    from soundlm.palm.infer import run_task, transcribe
    from soundlm.palm.model import load_palm, resolve_model_folder

    if cfg.max_examples is not None and cfg.max_examples <= 0:
        raise ValueError(f"max_examples must be > 0 (or None for all), got {cfg.max_examples}")
    folder = resolve_model_folder(cfg.model)
    palm = load_palm(folder, device=default_device(cfg.device))
    trained = list(palm.meta.get("tasks") or EVAL_TASKS)
    if cfg.tasks is None:
        tasks = [t for t in EVAL_TASKS if all(n in trained for n in _NEEDS[t])]
    else:
        tasks = parse_tasks(cfg.tasks)
        bad = [t for t in tasks if t not in EVAL_TASKS]
        if bad:
            raise ValueError(f"cannot evaluate tasks {bad}; choose from {list(EVAL_TASKS)}")
    if not tasks:
        raise ValueError(f"{folder}: the model was trained on {trained}; evaluation needs at least one of "
                         f"{list(EVAL_TASKS)} (TTS and S2ST also need asr, which scores their output)")
    task_set = build_task_examples(cfg.store, tasks, split=cfg.split, languages=cfg.languages,
                                   manifest=cfg.manifest, partners_any_split=True)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model_id = f"{folder.resolve()}:{(folder / 'model.safetensors').stat().st_mtime_ns}"
    cache = _Hypotheses(out / HYPOTHESES, model_id)
    text_kw = {"max_new_tokens": cfg.max_text_tokens, "seed": cfg.seed}
    sem_kw = {"max_new_tokens": cfg.max_semantic_tokens, "seed": cfg.seed}
    untrained = [t for t in tasks if not all(n in trained for n in _NEEDS[t])]

    def asr_of(semantic: np.ndarray | list, language: str | None) -> str:
        if len(semantic) == 0:
            return ""
        return transcribe(palm, np.asarray(semantic, dtype=np.int64), language, **text_kw)

    def answer(ex: TaskExample) -> dict:
        t0 = time.perf_counter()
        if ex.task == "asr":
            row = {"ref": ex.target_text, "hyp": run_task(palm, ex, **text_kw).text or ""}
        elif ex.task == "ast":
            row = {"ref": ex.target_text, "hyp": run_task(palm, ex, **text_kw).text or "", "source": ex.source_text}
        elif ex.task == "asr_ast":
            res = run_task(palm, ex, **text_kw)
            steps = res.steps or [""]
            row = {"ref": ex.target_text, "hyp": steps[-1], "ref_transcript": ex.intermediate_text,
                   "hyp_transcript": steps[0] if len(steps) > 1 else ""}
        elif ex.task == "tts":
            sem = run_task(palm, ex, **sem_kw).semantic
            row = {"ref": ex.source_text, "hyp": asr_of(sem, ex.source_language), "frames": len(sem),
                   "ref_frames": len(ex.target_semantic), "semantic": sem.tolist()}
        else:  # s2st
            sem = run_task(palm, ex, **sem_kw).semantic
            row = {"ref": ex.target_text, "hyp": asr_of(sem, ex.target_language), "frames": len(sem),
                   "ref_frames": len(ex.target_semantic), "semantic": sem.tolist(),
                   "hyp_real_target": asr_of(ex.target_semantic, ex.target_language),
                   "source_path": ex.source_path, "source_speaker": ex.source_speaker}
        return {**row, "task": ex.task, "id": ex.id, "source_language": ex.source_language,
                "target_language": ex.target_language, "seconds": time.perf_counter() - t0}

    torch.manual_seed(cfg.seed)
    rows: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    for task in tasks:
        chosen = _select(task_set.examples, task, cfg.max_examples)
        rows[task] = []
        for ex in tqdm(chosen, desc=f"eval {task}", disable=not cfg.progress, dynamic_ncols=True):
            rows[task].append(cache.get_or_run(f"{task}:{ex.id}", lambda ex=ex: answer(ex), model_id))
        seconds[task] = sum(r["seconds"] for r in rows[task])

    report: dict[str, Any] = {
        "model": str(folder), "store": str(cfg.store), "split": cfg.split, "init": palm.meta.get("init"),
        "from_scratch": palm.meta.get("from_scratch"), "trained_tasks": trained,
        "untrained_tasks_evaluated": untrained, "max_examples_per_task": cfg.max_examples,
        "decoding": "greedy", "results": {}, "seconds": seconds,
    }
    for task, task_rows in rows.items():
        if task_rows:
            report["results"][task] = _score(task, task_rows)
    report["results"]["heard"] = _heard(cfg, rows, cache, model_id)
    report["results"]["voice_transfer"] = _voice_transfer(cfg, rows.get("s2st", []), out)
    report["samples"] = {task: [{k: r.get(k) for k in ("id", "ref", "hyp", "hyp_transcript") if r.get(k) is not None}
                                for r in task_rows[:3]] for task, task_rows in rows.items()}
    json_path, md_path = out / REPORT_JSON, out / REPORT_MD
    write_json_atomic(json_path, report)
    write_text_atomic(md_path, render_markdown(report))
    return PalmEvalResult(report=report, json_path=json_path, md_path=md_path)


def _groups(rows: list[dict], key: Callable[[dict], str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return {"all": rows, **dict(sorted(out.items()))} if len(out) > 1 else dict(out)


def _score(task: str, rows: list[dict]) -> dict[str, dict]:
    """Metrics of one task, per language (pair) and over all."""
    scores: dict[str, dict] = {}
    if task in ("asr", "tts"):
        for name, group in _groups(rows, lambda r: r["source_language"]).items():
            refs, hyps = [r["ref"] for r in group], [r["hyp"] for r in group]
            s = {"n": len(group), "wer": wer(refs, hyps), "cer": cer(refs, hyps)}
            if task == "tts":
                s["empty_outputs"] = sum(1 for r in group if r["frames"] == 0)
                s["frames_ratio"] = float(np.mean([r["frames"] / max(1, r["ref_frames"]) for r in group]))
            scores[name] = s
    else:
        for name, group in _groups(rows, lambda r: f"{r['source_language']}->{r['target_language']}").items():
            refs, hyps = [r["ref"] for r in group], [r["hyp"] for r in group]
            s = {"n": len(group), "bleu": bleu(refs, hyps)}
            if task == "ast":
                s["copy_bleu"] = bleu(refs, [r["source"] for r in group])
            if task == "asr_ast":
                s["transcript_wer"] = wer([r["ref_transcript"] for r in group],
                                                [r["hyp_transcript"] for r in group])
            if task == "s2st":
                s["asr_bleu_real_target"] = bleu(refs, [r["hyp_real_target"] for r in group])
                s["frames_ratio"] = float(np.mean([r["frames"] / max(1, r["ref_frames"]) for r in group]))
            scores[name] = s
    return scores


def _heard(cfg: PalmEvalConfig, rows: dict[str, list[dict]], cache: _Hypotheses | None = None,
           model_id: str = "") -> dict:
    """Whisper on the rendered English TTS and S2ST outputs: WER/CER and ASR-BLEU, or why it was not run.

    Each output's semantic ids go through the AudioLM bundle's coarse and fine stages
    without a voice prompt (seed `cfg.seed`); transcripts are cached in `cache` like the answers.
    """
    # The language of the speech: the input text's for TTS, the translation's for S2ST.
    spoken = {"tts": "source_language", "s2st": "target_language"}
    english = {task: [r for r in rows.get(task, []) if r["frames"] > 0 and r[lang] == "en"]
               for task, lang in spoken.items()}
    if not any(english.values()):
        return {"status": "not run", "reason": "no TTS or S2ST output in English with frames (Whisper tiny.en "
                "hears English only)"}
    if cfg.recognizer is None:
        return {"status": "not run", "reason": "no recogniser asked for (recognizer=None)"}
    if cfg.audiolm is None:
        return {"status": "not run", "reason": "no AudioLM acoustic bundle given (--audiolm BUNDLE): the semantic "
                "ids cannot be rendered to audio for the recogniser to hear"}
    from soundlm.eval.asr import load_recognizer
    from soundlm.palm.infer import semantic_to_audio
    from soundlm.pipeline import AudioLMPipeline

    asr = load_recognizer(cfg.recognizer)
    pipe = AudioLMPipeline.from_bundle(cfg.audiolm, device=cfg.device)

    def hear(r: dict) -> dict:
        wav, sr = semantic_to_audio(np.asarray(r["semantic"]), pipe, voice_prompt=None, seed=cfg.seed)
        return {"heard": asr.transcribe(wav, sr)}

    out: dict[str, Any] = {"status": "run", "recognizer": cfg.recognizer}
    for task, task_rows in english.items():
        heard = []
        for r in task_rows:
            key = f"heard:{cfg.recognizer}:{cfg.audiolm}:{r['task']}:{r['id']}"
            row = cache.get_or_run(key, lambda r=r: hear(r), model_id) if cache is not None else hear(r)
            heard.append(row["heard"])
        if not task_rows:
            continue
        refs = [r["ref"] for r in task_rows]
        if task == "tts":
            from soundlm.eval.asr import word_error_rate

            res = word_error_rate(refs, heard)
            out["tts"] = {"n": len(refs), "wer": res.wer, "cer": res.cer}
        else:
            out["s2st"] = {"n": len(refs), "asr_bleu": bleu(refs, heard)}
        out.setdefault("samples", {})[task] = [{"ref": ref, "heard": h} for ref, h in list(zip(refs, heard))[:3]]
    return out


def _audio_root(cfg: PalmEvalConfig) -> Path | None:
    if cfg.manifest is not None:
        return Path(cfg.manifest).parent
    from soundlm.store import TokenStore

    source = TokenStore(cfg.store).manifest.source
    if source:
        p = Path(source)
        return p.parent if p.suffix == ".jsonl" else p
    return None


def _voice_transfer(cfg: PalmEvalConfig, s2st_rows: list[dict], out: Path) -> dict:
    """Speaker similarity of S2ST audio rendered in the source voice, or why it was not run."""
    if not s2st_rows:
        return {"status": "not run", "reason": "no S2ST outputs (the model was not trained on s2st, or none selected)"}
    if cfg.audiolm is None:
        return {"status": "not run", "reason": "no AudioLM acoustic bundle given (--audiolm BUNDLE): the S2ST "
                "semantic ids cannot be rendered to audio, so there is no voice to compare"}
    root = _audio_root(cfg)
    if root is None:
        return {"status": "not run", "reason": "the source audio cannot be located: pass --manifest"}
    from soundlm.audio import load_audio, save_audio
    from soundlm.data import read_manifest
    from soundlm.eval.speaker import MIN_SECONDS, load_voice_encoder, speaker_embedding
    from soundlm.palm.infer import semantic_to_audio
    from soundlm.pipeline import AudioLMPipeline

    encoder = load_voice_encoder()
    # Enrol every speaker of the corpus on up to 3 recordings (not the one used as the prompt).
    manifest = Path(cfg.manifest) if cfg.manifest else root / "manifest.jsonl"
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for row in read_manifest(manifest):
        by_speaker[row["speaker"]].append(row["path"])
    prompts = {r["source_path"] for r in s2st_rows}
    centroids: dict[str, np.ndarray] = {}
    for spk, paths in sorted(by_speaker.items()):
        embs = [speaker_embedding(load_audio(root / p, sample_rate=16_000, mono=True), 16_000, encoder)
                for p in [p for p in paths if p not in prompts][:3]]
        if embs:
            c = np.mean(embs, axis=0)
            centroids[spk] = c / max(float(np.linalg.norm(c)), 1e-12)
    audio_dir = out / "s2st_audio"
    audio_dir.mkdir(exist_ok=True)
    pipe = AudioLMPipeline.from_bundle(cfg.audiolm, device=cfg.device)  # once, not per output

    def score(wav: np.ndarray, sr: int, src: str) -> tuple[float, float, bool]:
        """(similarity to the source speaker, mean similarity to the others, source is the closest)."""
        emb = speaker_embedding(wav, sr, encoder)
        sims = {spk: float(c @ emb) for spk, c in centroids.items()}
        others = [v for k, v in sims.items() if k != src]
        return sims[src], float(np.mean(others)) if others else float("nan"), all(sims[src] > v for v in others)

    # Three rows per output: the voice-transfer render (source recording as acoustic prompt);
    # the same semantic ids rendered with no prompt (the stages pick a voice themselves: the
    # control that shows what the prompt adds); the source recording itself (the ceiling the
    # speaker encoder allows for this speaker, as it is enrolled on other recordings).
    scores: dict[str, list[tuple[float, float, bool]]] = {"prompted": [], "unprompted": [], "source": []}
    too_short = 0
    usable = [r for r in s2st_rows if r["frames"] > 0 and r.get("source_speaker") in centroids][: cfg.voice_examples]
    for r in usable:
        src, stem = r["source_speaker"], r["id"].replace(":", "_")
        wav, sr = semantic_to_audio(np.asarray(r["semantic"]), pipe, voice_prompt=root / r["source_path"],
                                    seed=cfg.seed)
        plain, _ = semantic_to_audio(np.asarray(r["semantic"]), pipe, voice_prompt=None, seed=cfg.seed)
        save_audio(audio_dir / f"{stem}.wav", wav, sr)
        save_audio(audio_dir / f"{stem}.unprompted.wav", plain, sr)
        if min(wav.shape[-1], plain.shape[-1]) < MIN_SECONDS * sr:
            too_short += 1  # Resemblyzer refuses clips this short
            continue
        scores["prompted"].append(score(wav, sr, src))
        scores["unprompted"].append(score(plain, sr, src))
        scores["source"].append(score(load_audio(root / r["source_path"], sample_rate=16_000, mono=True), 16_000, src))
    if not scores["prompted"]:
        return {"status": "not run", "reason": f"no S2ST output had frames, an enrolled source speaker and at least "
                f"{MIN_SECONDS} s of audio ({too_short} too short)"}

    def summary(rows: list[tuple[float, float, bool]]) -> dict:
        return {"similarity_to_source": float(np.mean([s for s, _, _ in rows])),
                "similarity_to_others": float(np.nanmean([o for _, o, _ in rows])),
                "closest_to_source_rate": float(np.mean([c for _, _, c in rows]))}

    return {"status": "run", "n": len(scores["prompted"]), "too_short": too_short, **summary(scores["prompted"]),
            "unprompted": summary(scores["unprompted"]), "source_recording": summary(scores["source"]),
            "audio": str(audio_dir)}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_markdown(report: dict) -> str:
    """A human-readable table of `report` (the dict written to report.json)."""
    res = report["results"]
    n = report["max_examples_per_task"]
    limit = "every example of the split" if n is None else f"at most {n} examples per task"
    lines = [f"# soundlm eval palm: {report['model']}", "",
             f"split `{report['split']}`, init `{report['init']}` (from scratch: {report['from_scratch']}), "
             f"greedy decoding, {limit}.", "",
             "| task | subset | n | metric | value | reference |", "|---|---|---|---|---|---|"]
    for name, s in res.get("asr", {}).items():
        lines.append(f"| ASR | {name} | {s['n']} | WER | {_pct(s['wer'])} | CER {_pct(s['cer'])} |")
    for name, s in res.get("ast", {}).items():
        lines.append(f"| AST | {name} | {s['n']} | BLEU | {s['bleu']:.1f} | copy-source BLEU {s['copy_bleu']:.1f} |")
    for name, s in res.get("asr_ast", {}).items():
        lines.append(f"| ASR+AST (multi-step) | {name} | {s['n']} | BLEU | {s['bleu']:.1f} | "
                     f"step-1 WER {_pct(s['transcript_wer'])} |")
    for name, s in res.get("tts", {}).items():
        lines.append(f"| TTS (ASR-WER, own ASR) | {name} | {s['n']} | WER | {_pct(s['wer'])} | "
                     f"CER {_pct(s['cer'])}, length ratio {s['frames_ratio']:.2f}, empty {s['empty_outputs']} |")
    for name, s in res.get("s2st", {}).items():
        lines.append(f"| S2ST (ASR-BLEU, own ASR) | {name} | {s['n']} | BLEU | {s['bleu']:.1f} | "
                     f"real target through the same ASR {s['asr_bleu_real_target']:.1f} |")
    heard = res.get("heard", {})
    if heard.get("status") == "run":
        if "tts" in heard:
            t = heard["tts"]
            lines.append(f"| TTS (Whisper WER, rendered audio) | en | {t['n']} | WER | {_pct(t['wer'])} | "
                         f"CER {_pct(t['cer'])} |")
        if "s2st" in heard:
            t = heard["s2st"]
            lines.append(f"| S2ST (Whisper ASR-BLEU, rendered audio) | ->en | {t['n']} | BLEU | {t['asr_bleu']:.1f} "
                         "| |")
    else:
        lines.append(f"| Whisper on rendered audio | - | 0 | not run | - | {heard.get('reason', '')} |")
    vt = res.get("voice_transfer", {})
    if vt.get("status") == "run":
        lines.append(f"| voice transfer | S2ST | {vt['n']} | similarity to source | "
                     f"{vt['similarity_to_source']:.3f} | to other speakers {vt['similarity_to_others']:.3f}; "
                     f"closest to source {_pct(vt['closest_to_source_rate'])} |")
        for key, label in (("unprompted", "control: same ids, no voice prompt"),
                           ("source_recording", "ceiling: the source recording itself")):
            if key in vt:
                c = vt[key]
                lines.append(f"| voice transfer, {label} | S2ST | {vt['n']} | similarity to source | "
                             f"{c['similarity_to_source']:.3f} | to other speakers {c['similarity_to_others']:.3f}; "
                             f"closest to source {_pct(c['closest_to_source_rate'])} |")
    else:
        lines.append(f"| voice transfer | - | 0 | not run | - | {vt.get('reason', '')} |")
    lines += ["", "TTS and S2ST are scored on semantic ids: the model's own ASR task reads the semantic ids its "
              "TTS/S2ST task generated (no audio is rendered), so the numbers measure whether the speech tokens "
              "carry the right words.", ""]
    if report.get("untrained_tasks_evaluated"):
        lines += [f"Evaluated although not trained: {report['untrained_tasks_evaluated']}.", ""]
    lines.append("Seconds per task: " + ", ".join(f"{k} {v:.0f}" for k, v in report["seconds"].items()))
    return "\n".join(lines) + "\n"
