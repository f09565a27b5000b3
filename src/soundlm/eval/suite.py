"""`soundlm eval all`: every evaluation section on one bundle, with the combined report.

The sections live in `soundlm.eval.sections` (codec, lm, units, continuation, lexical,
asr, acoustic), the report format and resume state in `soundlm.eval.report`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from soundlm.eval.report import EvalSection, write_results, write_section
from soundlm.eval.sections.acoustic import eval_acoustic
from soundlm.eval.sections.asr import eval_asr
from soundlm.eval.sections.codec import eval_codec
from soundlm.eval.sections.continuation import eval_continuation
from soundlm.eval.sections.lexical import eval_lexical
from soundlm.eval.sections.lm import eval_lm
from soundlm.eval.sections.units import eval_units


@dataclass
class SuiteConfig:
    """Settings of `soundlm eval all`."""

    model: str
    data: str
    store: str
    out: str
    split: str = "heldout"
    max_files: int | None = 20
    # Whisper tiny.en needs about a second per clip; pocketsphinx 0.5-2 min with the corpus grammar.
    asr_max_files: int | None = 20
    acoustic_max_files: int | None = 20
    recognizer: str = "whisper"
    prompt_seconds: float = 3.0
    seconds: float = 3.0
    num_prompts: int = 20
    num_pairs: int = 50
    voice: str = "en-us"
    seed: int = 0
    device: str | None = None
    skip: tuple[str, ...] = ()


SECTIONS = ("codec", "lm", "units", "continuation", "lexical", "asr", "acoustic")


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
        "lm": lambda: eval_lm(list(pipe.stages), cfg.store, cfg.split, device=pipe.device,
                              progress=progress),
        "units": lambda: eval_units(pipe.semantic_tokenizer, cfg.data, cfg.split, seed=cfg.seed, progress=progress),
        "continuation": lambda: eval_continuation(pipe, cfg.data, cfg.split, cfg.prompt_seconds, cfg.seconds,
                                                  cfg.num_prompts, seed=cfg.seed, out_dir=out, progress=progress,
                                                  recognizer=cfg.recognizer),
        "lexical": lambda: eval_lexical(pipe, cfg.num_pairs, cfg.voice, cfg.seed, work_dir=out, progress=progress,
                                        data=cfg.data),
        "asr": lambda: eval_asr(pipe.codec, cfg.data, cfg.split, cfg.asr_max_files, num_codebooks=pipe.num_codebooks,
                                seed=cfg.seed, out_dir=out, progress=progress, recognizer=cfg.recognizer),
        "acoustic": lambda: eval_acoustic(pipe, cfg.data, cfg.split, cfg.acoustic_max_files, seed=cfg.seed,
                                          out_dir=out, progress=progress, recognizer=cfg.recognizer),
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
