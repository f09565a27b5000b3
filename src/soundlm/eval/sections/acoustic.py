"""`soundlm eval acoustic`: AudioLM's acoustic-generation test, intelligibility from ground-truth semantic ids.

Each held-out utterance's real semantic ids go through the coarse and fine stages (no
acoustic prompt, so the stages choose the voice) and the codec; a recogniser transcribes
the result. Beside it, the same recogniser on the original recording and on the codec's
own resynthesis (its codes decoded) bound what the acoustic stages can reach: AudioLM
(sec. 5.2) reports the acoustic stages' WER against the codec's.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from soundlm.eval.report import EvalSection, RowState, seed_everything, state_path

if TYPE_CHECKING:
    from soundlm.pipeline import AudioLMPipeline, AudioLMSampling

# The targets: what the codec may cost over the recording, and the stages over the codec.
TARGET_RESYNTHESIS_RATIO = 1.2
TARGET_ACOUSTIC_RATIO = 1.5


def eval_acoustic(pipe: AudioLMPipeline, data: str | Path, split: str = "heldout", max_files: int | None = 20,
                  sampling: AudioLMSampling | None = None, seed: int = 0, out_dir: str | Path | None = None,
                  save_audio: bool = True, progress: bool = True, recognizer: str = "whisper",
                  max_hmm_per_frame: int = 10_000) -> EvalSection:
    """WER/CER of audio generated from ground-truth semantic ids, of the codec resynthesis and of the original.

    Utterance i is generated with seed `seed + i`. With `out_dir` and `save_audio`, the
    resynthesis and the generated audio go to OUT/acoustic_audio/{index:04d}_{kind}.wav.
    """
    import torch
    from tqdm import tqdm

    from soundlm.audio import load_audio
    from soundlm.audio import save_audio as write_wav
    from soundlm.eval.asr import word_error_rate
    from soundlm.eval.sections.asr import corpus_recognizer, english_utterances, error_summary, ratio

    start = time.perf_counter()
    seed_everything(seed)
    utts, english = english_utterances(data, split, max_files)
    asr = corpus_recognizer(recognizer, english, split, seed, max_hmm_per_frame)
    sr = pipe.sample_rate
    settings = {"data": str(data), "split": split, "num_files": len(utts), "seed": seed, **asr.describe(),
                "num_codebooks": pipe.num_codebooks, "coarse_codebooks": pipe.num_coarse,
                "sampling": asdict(sampling) if sampling is not None else "default"}
    state = RowState(state_path(out_dir, "acoustic"), settings)
    audio_dir = Path(out_dir) / "acoustic_audio" if out_dir is not None and save_audio else None
    rows = []
    for i, u in enumerate(tqdm(utts, desc="acoustic", unit="file", disable=not progress)):
        if u.id not in state:
            audio = load_audio(u.path, sample_rate=sr)  # [C, S]
            semantic, codes = pipe.tokenize_prompt(audio, sr, source=u.path)  # [1, T_s], [1, K, T_a]
            gen = torch.Generator(device=pipe.device).manual_seed(seed + i)
            generated = pipe.acoustic_codes(semantic, codes[:, :, :0], codes.shape[2], sampling, gen)  # [1, K, T_a]
            with torch.inference_mode():
                resynth = pipe.codec.decode(codes).float()[0].cpu().numpy()  # [C, S]
                acoustic = pipe.codec.decode(generated).float()[0].cpu().numpy()  # [C, S]
            if audio_dir is not None:
                write_wav(audio_dir / f"{i:04d}_resynthesized.wav", resynth, sr)
                write_wav(audio_dir / f"{i:04d}_acoustic.wav", acoustic, sr)
            state.put(u.id, {"id": u.id, "speaker": u.speaker, "reference": u.transcript,
                             "original": asr.transcribe(audio, sr), "resynthesized": asr.transcribe(resynth, sr),
                             "acoustic": asr.transcribe(acoustic, sr)})
        rows.append(state[u.id])
    refs = [r["reference"] for r in rows]
    scores = {kind: word_error_rate(refs, [r[kind] for r in rows]) for kind in ("original", "resynthesized", "acoustic")}
    summary = {k: v for kind, res in scores.items() for k, v in error_summary(kind, res).items()}
    resynth_ratio = ratio(scores["resynthesized"].wer, scores["original"].wer)
    acoustic_ratio = ratio(scores["acoustic"].wer, scores["resynthesized"].wer)
    summary |= {"wer_ratio_resynthesized_to_original": resynth_ratio,
                "wer_ratio_acoustic_to_resynthesized": acoustic_ratio,
                "meets_resynthesis_target": None if resynth_ratio is None else resynth_ratio <= TARGET_RESYNTHESIS_RATIO,
                "meets_acoustic_target": None if acoustic_ratio is None else acoustic_ratio <= TARGET_ACOUSTIC_RATIO,
                "num_files": len(rows), "num_reference_words": scores["original"].num_reference_words}
    return EvalSection(
        name="acoustic", title=f"Acoustic generation from ground-truth semantic ids: {recognizer} WER",
        settings=settings, summary=summary, rows=rows, wall_seconds=time.perf_counter() - start,
        notes=["'acoustic': the utterance's own semantic ids through the coarse and fine stages (no acoustic prompt) "
               "and the codec; 'resynthesized': the utterance's codec codes decoded; 'original': the recording. "
               f"Targets: resynthesized <= {TARGET_RESYNTHESIS_RATIO}x original, acoustic <= "
               f"{TARGET_ACOUSTIC_RATIO}x resynthesized (a ratio is empty when its denominator WER is 0).",
               "Texts are normalised with Whisper's English normaliser before scoring."])
