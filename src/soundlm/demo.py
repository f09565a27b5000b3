"""The quick-start demo: the shipped model continues the bundled prompt of a held-out voice.

`run_demo` loads the default model (`soundlm.pretrained`), continues the 3 s prompt
`num_samples` times, and writes into its output folder:

- `prompt.wav`: the prompt as the model heard it (at the codec's rate, cut to whole codec frames);
- `continuation_XXX.wav`: prompt + `seconds` of continuation, as `soundlm continue` writes them;
- `continuations.png`: waveform and log-mel spectrogram of the prompt and each continuation,
  the prompt boundary marked;
- `report.json` / `report.md`: model, prompt, settings, per-sample durations, speaker
  similarity of each continuation to the prompt (Resemblyzer d-vectors, when installed) and
  wall times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from soundlm.fileio import read_json, write_json_atomic, write_text_atomic
from soundlm.lm.quantize import DEFAULT_QUANTIZE

PLOT_NAME = "continuations.png"


@dataclass
class DemoSample:
    file: str
    seconds: float  # the whole file: prompt + continuation
    continuation_seconds: float
    speaker_similarity: float | None  # cosine of d-vectors, prompt vs the continuation part


@dataclass
class DemoReport:
    model: str
    model_parameters: dict[str, int]  # stage -> parameter count
    prompt: str
    prompt_seconds: float
    sample_rate: int
    settings: dict
    samples: list[DemoSample]
    speaker_similarity_note: str | None  # why similarities are missing, when they are
    wall_seconds: dict[str, float]
    files: list[str]
    model_card: dict = field(default_factory=dict)  # the model folder's recipe.json / eval.json, when present


def run_demo(out: str | Path, model: str | Path | None = None, prompt: str | Path | None = None,
             num_samples: int = 3, seconds: float = 4.0, seed: int = 0, device: str | None = None,
             progress: bool = True, log: Callable[[str], None] = print,
             quantize: str = DEFAULT_QUANTIZE) -> DemoReport:
    """Run the demo into `out` (see the module doc); returns the report also written as report.json/.md.

    `model` defaults to the shipped model and `prompt` to the bundled prompt; `log` receives
    one line per step. `quantize`: the stage LMs' weights (see `AudioLMPipeline.quantize`).
    """
    from soundlm.audio import load_audio, save_audio
    from soundlm.eval.speaker import similarities_to_reference
    from soundlm.plot import Clip, plot_clips
    from soundlm.pretrained import (MISSING_FIX, check_model_folder, default_model_dir, default_prompt_path,
                                    load_pipeline)

    if num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {num_samples}")
    if not seconds > 0:
        raise ValueError(f"--seconds must be positive, got {seconds}")
    if model is None:
        folder = check_model_folder(default_model_dir(), what="soundlm's default model", fix=MISSING_FIX)
    else:
        folder = check_model_folder(model)
    prompt_path = Path(prompt) if prompt is not None else default_prompt_path()
    if not prompt_path.is_file():
        fix = "pass --prompt FILE" if prompt is not None else f"{MISSING_FIX}, or pass --prompt FILE"
        raise FileNotFoundError(f"prompt {prompt_path} does not exist; {fix}")
    load_audio(prompt_path)  # a broken prompt fails here, before the model loads
    out = Path(out)
    times: dict[str, float] = {}
    started = time.perf_counter()

    log(f"[1/5] loading the model from {folder}")
    t0 = time.perf_counter()
    pipe = load_pipeline(folder, device=device).quantize(quantize)
    sr = pipe.sample_rate
    times["load model"] = time.perf_counter() - t0

    log(f"[2/5] continuing {prompt_path.name} by {seconds:g} s, {num_samples} sample(s), seed {seed} "
        f"on {pipe.device}")
    t0 = time.perf_counter()
    waves = pipe.continue_audio(prompt_path, seconds, num_samples=num_samples, seed=seed, progress=progress)
    times["generate"] = time.perf_counter() - t0

    log(f"[3/5] writing audio to {out}/")
    t0 = time.perf_counter()
    # The pipeline cuts the prompt to whole codec frames; the prompt part of every output is that long.
    hop = sr / pipe.codec.frame_rate
    prompt_audio = load_audio(prompt_path, sample_rate=sr)  # [1, S]
    prompt_samples = int(round(int(prompt_audio.shape[-1] // hop) * hop))
    prompt_audio = prompt_audio[:, :prompt_samples]
    prompt_seconds = prompt_samples / sr
    save_audio(out / "prompt.wav", prompt_audio, sr)
    files = ["prompt.wav"]
    for i, wave in enumerate(waves):
        files.append(f"continuation_{i:03d}.wav")
        save_audio(out / files[-1], wave, sr)
    times["write audio"] = time.perf_counter() - t0

    log("[4/5] speaker similarity of each continuation to the prompt (Resemblyzer)")
    t0 = time.perf_counter()
    similarities, note = similarities_to_reference(prompt_audio, [w[:, prompt_samples:] for w in waves], sr,
                                               device=pipe.device.type)
    if note:
        log(f"      skipped: {note}")
    times["speaker similarity"] = time.perf_counter() - t0

    log(f"[5/5] plotting {PLOT_NAME}")
    t0 = time.perf_counter()
    clips = [Clip(prompt_audio, f"prompt: {prompt_path.name} ({prompt_seconds:.2f} s, a voice unseen in training)")]
    for i, (wave, sim) in enumerate(zip(waves, similarities)):
        sim_text = f", speaker similarity {sim:.2f}" if sim is not None else ""
        clips.append(Clip(wave, f"continuation {i}: {prompt_seconds:.2f} s prompt + {seconds:g} s generated"
                                f"{sim_text}", boundary_seconds=prompt_seconds))
    plot_clips(clips, sr, out / PLOT_NAME,
               suptitle=f"soundlm demo: {folder.name} continues a {prompt_seconds:.1f} s prompt (seed {seed})")
    files.append(PLOT_NAME)
    times["plot"] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - started

    samples = [DemoSample(file=f"continuation_{i:03d}.wav", seconds=w.shape[-1] / sr,
                          continuation_seconds=(w.shape[-1] - prompt_samples) / sr, speaker_similarity=sim)
               for i, (w, sim) in enumerate(zip(waves, similarities))]
    report = DemoReport(
        model=str(folder),
        model_parameters={p.name: sum(x.numel() for x in p.model.parameters())
                          for p in pipe.stages},
        prompt=str(prompt_path), prompt_seconds=prompt_seconds, sample_rate=sr,
        settings={"num_samples": num_samples, "seconds": seconds, "seed": seed, "device": str(pipe.device),
                  "sampling": "AudioLM defaults: temperature 0.6 / 0.8 / 0.6, top-p 0.95",
                  "quantize": pipe.quantized},
        samples=samples, speaker_similarity_note=note,
        wall_seconds={k: round(v, 2) for k, v in times.items()},
        files=files + ["report.json", "report.md"],
        model_card={name: read_json(folder / f"{name}.json") for name in ("recipe", "eval")
                    if (folder / f"{name}.json").is_file()},
    )
    write_json_atomic(out / "report.json", asdict(report))
    write_text_atomic(out / "report.md", render_markdown(report))
    return report


def render_markdown(r: DemoReport) -> str:
    params = ", ".join(f"{stage} {n / 1e6:.2f} M" for stage, n in r.model_parameters.items())
    lines = [
        "# soundlm demo: AudioLM continuation", "",
        f"- model: `{r.model}` ({params} parameters; its EVAL.md and recipe.json say how it was trained "
        "and how it scores)",
        f"- prompt: `{r.prompt}` ({r.prompt_seconds:.2f} s at {r.sample_rate} Hz)",
        f"- settings: {r.settings['num_samples']} sample(s) of {r.settings['seconds']:g} s, seed {r.settings['seed']}, "
        f"{r.settings['device']}, LM weights {r.settings.get('quantize', 'none')}; {r.settings['sampling']}",
        f"- figure: `{PLOT_NAME}` (waveform and log-mel spectrogram; dashed line = end of the prompt)", "",
        "| file | seconds | generated seconds | speaker similarity to the prompt |", "|---|---|---|---|",
    ]
    for s in r.samples:
        sim = f"{s.speaker_similarity:.3f}" if s.speaker_similarity is not None else "n/a"
        lines.append(f"| {s.file} | {s.seconds:.2f} | {s.continuation_seconds:.2f} | {sim} |")
    if r.speaker_similarity_note:
        lines += ["", f"Speaker similarity not computed: {r.speaker_similarity_note}"]
    else:
        lines += ["", "Speaker similarity is the cosine of Resemblyzer d-vectors of the prompt and of the "
                      "generated part alone (higher = closer voices; 1 = the same embedding)."]
    lines += ["", "| step | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in r.wall_seconds.items()]
    return "\n".join(lines) + "\n"
