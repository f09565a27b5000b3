"""A job's outputs on disk: wav files, a waveform + spectrogram PNG each, speaker similarity to the prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from soundlm.serve.schema import JobResult, ResultFile, SampleResult


def audio_result(folder: Path, waves: list[np.ndarray], sample_rate: int, title: str, settings: dict,
                 prompt_samples: int = 0, reference: np.ndarray | None = None, similarity: bool = True,
                 device: str = "cpu", text: str | None = None, names: list[str] | None = None,
                 captions: list[str] | None = None) -> JobResult:
    """Write `waves` ([C, S] each) as sample_XXX.wav + .png (`names`: other file stems) into `folder`, describe them.

    captions: the caption each wave was made from (music), shown in its plot and kept in its SampleResult.
    prompt_samples: how much of each wave is the prompt (its boundary is drawn, and only the
    rest is compared with `reference`, the prompt at `sample_rate`, for speaker similarity).
    """
    from soundlm.audio import save_audio
    from soundlm.eval.speaker import similarities_to_reference
    from soundlm.plot import Clip, plot_clips

    if reference is None:
        scores, note = [None] * len(waves), "no prompt voice to compare with"
    elif not similarity:
        scores, note = [None] * len(waves), "turned off on this server (--no-speaker-similarity)"
    else:
        scores, note = similarities_to_reference(reference, [w[:, prompt_samples:] for w in waves], sample_rate,
                                                 device=device)
    boundary = prompt_samples / sample_rate if prompt_samples else None
    samples, files = [], []
    names = names or [f"sample_{i:03d}" for i in range(len(waves))]
    captions = captions or [None] * len(waves)
    for i, (wave, score, name, caption) in enumerate(zip(waves, scores, names, captions)):
        audio, image = f"{name}.wav", f"{name}.png"
        save_audio(folder / audio, wave, sample_rate)
        seconds = wave.shape[-1] / sample_rate
        sim = f", speaker similarity {score:.2f}" if score is not None else ""
        said = f" ({caption[:60]})" if caption else ""
        plot_clips([Clip(wave, f"{title} {i + 1}{said}: {seconds:.2f} s{sim}", boundary_seconds=boundary)],
                   sample_rate, folder / image)
        samples.append(SampleResult(audio=audio, image=image, seconds=round(seconds, 4), caption=caption,
                                    speaker_similarity=None if score is None else round(score, 4)))
        files += [ResultFile(name=audio, kind="audio", label=f"{title} {i + 1} (wav)"),
                  ResultFile(name=image, kind="image", label=f"{title} {i + 1} (waveform + spectrogram)")]
    return JobResult(samples=samples, files=files, settings=settings, speaker_similarity_note=note, text=text)
