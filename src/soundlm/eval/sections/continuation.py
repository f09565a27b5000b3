"""`soundlm eval continuation`: AudioLM's speaker test, does a continuation keep the prompt's voice."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundlm.eval.report import EvalSection, RowState, seed_everything, state_path

if TYPE_CHECKING:
    from soundlm.data import CorpusItem
    from soundlm.pipeline import AudioLMPipeline, AudioLMSampling


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
    # What the recogniser heard in each continuation (and in the real next seconds).
    heard_acoustic_prompt: str | None = None
    heard_semantic_prompt: str | None = None
    heard_ground_truth: str | None = None
    ground_truth_seconds: float | None = None  # the real next seconds can be shorter than a continuation


def plan_speaker_test(utts: Sequence[CorpusItem], prompt_seconds: float, num_prompts: int, enrol_fraction: float = 0.5,
                      seed: int = 0) -> tuple[dict[str, list[CorpusItem]], list[CorpusItem]]:
    """Split each voice's utterances into enrolment and prompt utterances (never both).

    Per speaker, utterances are shuffled with `seed`; the first `enrol_fraction` (at least
    one, leaving at least one) enrol the voice. Prompts come from the rest, long enough for
    `prompt_seconds`, taken round-robin over speakers up to `num_prompts`.
    """
    by_speaker: dict[str, list[CorpusItem]] = defaultdict(list)
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


def continuations(pipe: AudioLMPipeline, prompt: np.ndarray, seconds: float, seed: int,
                  sampling: AudioLMSampling | None = None, audio_dir: Path | None = None,
                  index: int = 0) -> dict[str, np.ndarray]:
    """`prompt`'s continuation [C, S] (prompt excluded, `seconds` long) with the acoustic prompt ("acoustic")
    and with its semantic ids only ("semantic", AudioLM's contrast).

    prompt: [C, S] at the pipeline's rate. With `audio_dir`, each continuation is also written to
    audio_dir/{index:04d}_{label}_prompt.wav.
    """
    from soundlm.audio import save_audio

    sr = pipe.sample_rate
    out = {}
    for label, acoustic in (("acoustic", True), ("semantic", False)):
        out[label] = pipe.continue_audio(prompt, seconds, prompt_sample_rate=sr, sampling=sampling, seed=seed,
                                         include_prompt=False, acoustic_prompt=acoustic)[0]  # [C, S]
        if audio_dir is not None:
            save_audio(audio_dir / f"{index:04d}_{label}_prompt.wav", out[label], sr)
    return out


def continuation_embeddings(pipe: AudioLMPipeline, prompt: np.ndarray, seconds: float, seed: int, encoder,
                            sampling: AudioLMSampling | None = None, audio_dir: Path | None = None,
                            index: int = 0) -> dict[str, np.ndarray]:
    """Speaker embeddings of the two `continuations` of `prompt`, by label."""
    from soundlm.eval.speaker import speaker_embedding

    return {label: speaker_embedding(cont, pipe.sample_rate, encoder)
            for label, cont in continuations(pipe, prompt, seconds, seed, sampling, audio_dir, index).items()}


def eval_continuation(pipe: AudioLMPipeline, data: str | Path, split: str = "heldout", prompt_seconds: float = 3.0,
                      seconds: float = 3.0, num_prompts: int = 20, enrol_fraction: float = 0.5,
                      sampling: AudioLMSampling | None = None, seed: int = 0, out_dir: str | Path | None = None,
                      save_audio: bool = True, progress: bool = True, recognizer: str | None = "whisper"
                      ) -> EvalSection:
    """AudioLM's speaker test (sec. 5.3): does a continuation keep the prompt's voice?

    Voices of `split` are enrolled with resemblyzer embeddings of some of their utterances;
    prompts of `prompt_seconds` are cut from other utterances of those voices and continued
    by `seconds` with the full pipeline. Only the continuation (prompt excluded) is
    classified by nearest enrolled voice. The contrast gives the coarse and fine stages the
    prompt's semantic ids only (`acoustic_prompt=False`). Chance is 1 / number of voices.

    Two references bound what the LMs can reach: the utterance's real audio after the
    prompt (the classifier's own accuracy) and that audio resynthesized by the codec (the
    most a continuation decoded by this codec can keep of the voice).

    Does it speak words? `recognizer` ("whisper", "pocketsphinx"; None to skip) transcribes
    each continuation and the real next seconds; the summary gives the share of heard words
    that are dictionary words, the bigram repetition rate and words per second
    (`soundlm.eval.words`).
    """
    from tqdm import tqdm

    from soundlm.audio import load_audio
    from soundlm.data import open_corpus
    from soundlm.eval.codec_metrics import resynthesize
    from soundlm.eval.speaker import (MIN_SECONDS, classify_speaker, cosine_similarity, enrol_speakers,
                                      load_voice_encoder, speaker_embedding)

    if seconds < MIN_SECONDS or prompt_seconds < MIN_SECONDS:
        raise ValueError(f"--seconds and --prompt-seconds must be at least {MIN_SECONDS} s for a speaker "
                         f"embedding, got {seconds} and {prompt_seconds}")
    start = time.perf_counter()
    seed_everything(seed)
    utts = open_corpus(data, split=split)
    enrol_utts, prompts = plan_speaker_test(utts, prompt_seconds, num_prompts, enrol_fraction, seed)
    asr = None
    if recognizer is not None:
        from soundlm.eval.sections.asr import corpus_recognizer

        asr = corpus_recognizer(recognizer, [u for u in open_corpus(data) if u.transcript], split, seed)
    encoder = load_voice_encoder(str(pipe.device) if pipe.device.type == "cuda" else "cpu")
    sr = pipe.sample_rate
    embeddings = {spk: [speaker_embedding(load_audio(u.path, sample_rate=sr), sr, encoder) for u in us]
                  for spk, us in tqdm(enrol_utts.items(), desc="enrol voices", unit="voice", disable=not progress)}
    enrolment = enrol_speakers(embeddings)
    settings = {"data": str(data), "split": split, "prompt_seconds": prompt_seconds, "seconds": seconds,
                "num_prompts": len(prompts), "enrol_fraction": enrol_fraction, "seed": seed,
                "voices": enrolment.speakers, "sampling": asdict(sampling) if sampling is not None else "default",
                "references": "ground truth and codec resynthesis", "recognizer": recognizer}
    state = RowState(state_path(out_dir, "continuation"), settings)
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
        conts = continuations(pipe, prompt, seconds, seed + i, sampling, audio_dir, i)
        result = {}
        for label, cont in conts.items():
            emb = speaker_embedding(cont, sr, encoder)
            result[label] = (classify_speaker(enrolment, emb).speaker, cosine_similarity(prompt_emb, emb))
        truth = audio[:, n: n + int(round(seconds * sr))]
        truth_label = resynth_label = None
        heard = {label: asr.transcribe(cont, sr) for label, cont in conts.items()} if asr is not None else {}
        if asr is not None and truth.shape[1] >= MIN_SECONDS * sr:
            heard["truth"] = asr.transcribe(truth, sr)
        if truth.shape[1] >= MIN_SECONDS * sr:
            truth_label = classify_speaker(enrolment, speaker_embedding(truth, sr, encoder)).speaker
            resynth = resynthesize(pipe.codec, truth)
            resynth_label = classify_speaker(enrolment, speaker_embedding(resynth, sr, encoder)).speaker
        row = ContinuationRow(id=u.id, speaker=str(u.speaker), predicted_acoustic_prompt=result["acoustic"][0],
                              predicted_semantic_prompt=result["semantic"][0],
                              similarity_acoustic_prompt=result["acoustic"][1],
                              similarity_semantic_prompt=result["semantic"][1],
                              predicted_ground_truth=truth_label, predicted_codec_resynthesis=resynth_label,
                              heard_acoustic_prompt=heard.get("acoustic"), heard_semantic_prompt=heard.get("semantic"),
                              heard_ground_truth=heard.get("truth"),
                              ground_truth_seconds=truth.shape[1] / sr if truth_label is not None else None)
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
    if asr is not None:
        summary |= heard_summary(rows, seconds)
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
                              "codec.",
                              "Words heard (settings.recognizer): share of the transcript's words that are in the "
                              "CMU dictionary, share of its word bigrams that repeat an earlier one, words per "
                              "second; 'ground_truth' is the same for the utterance's real next seconds."])


def heard_summary(rows: Sequence[ContinuationRow], seconds: float) -> dict[str, float | None]:
    """Dictionary-word fraction, repetition rate and words per second of each kind of clip, pooled over prompts."""
    from soundlm.eval.words import heard_words, pool

    summary: dict[str, float | None] = {}
    for kind, attr in (("acoustic_prompt", "heard_acoustic_prompt"), ("semantic_prompt_only", "heard_semantic_prompt"),
                       ("ground_truth", "heard_ground_truth")):
        clips = [heard_words(getattr(r, attr), r.ground_truth_seconds if kind == "ground_truth" else seconds)
                 for r in rows if getattr(r, attr) is not None
                 and (kind != "ground_truth" or r.ground_truth_seconds is not None)]
        if clips:
            summary |= {f"{k}_{kind}": v for k, v in pool(clips).items()}
    return summary
