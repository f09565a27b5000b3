"""`soundlm eval voice`: how close a model's continuations come to one target voice (fine-tuning's test).

For each prompt (the first `prompt_seconds` of a file of the voice) the model continues
`seconds`; the continuation alone (prompt excluded) is embedded with resemblyzer and compared
(cosine) to the voice's enrolment embedding: the mean embedding of the voice's reference
files (`reference`), or of the voice's other files in `data` (leave-one-out). Two conditions,
as in `eval continuation`: with the prompt's codec codes (acoustic prompt) and with its
semantic ids only, where the coarse and fine stages choose the voice themselves, so the
second shows what the model has learned of the voice rather than what it copies from the
prompt. The utterance's real continuation bounds what a continuation can reach.

Run it with the base model and with the fine-tuned one, same data and seed: the difference is
what fine-tuning moved toward the voice.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundlm.eval.report import EvalSection, RowState, seed_everything, state_path

if TYPE_CHECKING:
    from soundlm.pipeline import AudioLMPipeline, AudioLMSampling


@dataclass
class VoiceRow:
    id: str
    similarity_acoustic_prompt: float  # continuation vs the voice's enrolment embedding
    similarity_semantic_prompt: float
    similarity_ground_truth: float | None  # the utterance's real next seconds vs the enrolment


def eval_voice(pipe: AudioLMPipeline, data: str | Path, reference: str | Path | None = None,
               prompt_seconds: float = 3.0, seconds: float = 3.0, num_prompts: int = 10,
               sampling: AudioLMSampling | None = None, seed: int = 0, out_dir: str | Path | None = None,
               save_audio: bool = True, progress: bool = True) -> EvalSection:
    """Speaker similarity of continuations of `data`'s files to the voice (see the module doc)."""
    from tqdm import tqdm

    from soundlm.audio import info as audio_info
    from soundlm.audio import load_audio
    from soundlm.data import open_corpus
    from soundlm.eval.sections.continuation import continuation_embeddings
    from soundlm.eval.speaker import MIN_SECONDS, cosine_similarity, load_voice_encoder, speaker_embedding

    if seconds < MIN_SECONDS or prompt_seconds < MIN_SECONDS:
        raise ValueError(f"--seconds and --prompt-seconds must be at least {MIN_SECONDS} s for a speaker "
                         f"embedding, got {seconds} and {prompt_seconds}")
    start = time.perf_counter()
    seed_everything(seed)
    sr = pipe.sample_rate
    items = open_corpus(data)

    def seconds_of(u) -> float:  # loose files carry no duration: read it from the header
        if u.duration is not None:
            return u.duration
        return audio_info(u.path).duration

    prompts = [u for u in items if seconds_of(u) >= prompt_seconds + MIN_SECONDS][:num_prompts]
    if not prompts:
        raise ValueError(f"{data}: no file is at least {prompt_seconds + MIN_SECONDS} s long (a prompt plus a "
                         "reference continuation); lower --prompt-seconds or use longer recordings")
    encoder = load_voice_encoder(str(pipe.device) if pipe.device.type == "cuda" else "cpu")
    embed = {}  # file id -> embedding of the whole file, for the enrolment
    enrol_items = open_corpus(reference) if reference is not None else items
    for u in tqdm(enrol_items, desc="enrol voice", unit="file", disable=not progress):
        embed[u.id] = speaker_embedding(load_audio(u.path, sample_rate=sr), sr, encoder)
    if reference is None and len(embed) < 2:
        raise ValueError(f"{data}: one file cannot both prompt and enrol the voice; add files or pass --reference")

    def enrolment(exclude: str) -> np.ndarray:
        # Leave the prompt's own file out: the voice is defined by its other recordings.
        rows = [e for k, e in embed.items() if reference is not None or k != exclude]
        mean = np.mean(rows, axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    settings = {"data": str(data), "reference": str(reference) if reference is not None else "leave-one-out",
                "prompt_seconds": prompt_seconds, "seconds": seconds, "num_prompts": len(prompts), "seed": seed,
                "sampling": asdict(sampling) if sampling is not None else "default"}
    state = RowState(state_path(out_dir, "voice"), settings)
    audio_dir = Path(out_dir) / "voice_audio" if out_dir is not None and save_audio else None
    rows = []
    for i, u in enumerate(tqdm(prompts, desc="voice", unit="prompt", disable=not progress)):
        if u.id in state:
            rows.append(VoiceRow(**state[u.id]))
            continue
        audio = load_audio(u.path, sample_rate=sr)  # [1, S]
        n = int(round(prompt_seconds * sr))
        target = enrolment(u.id)
        sims = {label: cosine_similarity(emb, target) for label, emb in continuation_embeddings(
            pipe, audio[:, :n], seconds, seed + i, encoder, sampling, audio_dir, i).items()}
        truth = audio[:, n: n + int(round(seconds * sr))]
        truth_sim = (cosine_similarity(speaker_embedding(truth, sr, encoder), target)
                     if truth.shape[1] >= MIN_SECONDS * sr else None)
        row = VoiceRow(id=u.id, similarity_acoustic_prompt=sims["acoustic"], similarity_semantic_prompt=sims["semantic"],
                       similarity_ground_truth=truth_sim)
        state.put(u.id, asdict(row))
        rows.append(row)
    truths = [r.similarity_ground_truth for r in rows if r.similarity_ground_truth is not None]
    summary = {"similarity_acoustic_prompt": float(np.mean([r.similarity_acoustic_prompt for r in rows])),
               "similarity_semantic_prompt_only": float(np.mean([r.similarity_semantic_prompt for r in rows])),
               "similarity_ground_truth": float(np.mean(truths)) if truths else None,
               "num_prompts": len(rows), "enrolment_files": len(embed)}
    return EvalSection(name="voice", title="Continuations: similarity to the target voice", settings=settings,
                       summary=summary, rows=[asdict(r) for r in rows], wall_seconds=time.perf_counter() - start,
                       notes=["Cosine similarity (resemblyzer) of each continuation (prompt excluded) to the mean "
                              "embedding of the voice's other recordings. 'semantic prompt only': the coarse and fine "
                              "stages saw the prompt's semantic ids, not its codec codes, so the voice is the model's "
                              "own choice. 'ground truth': the utterance's real next seconds."])
