"""`soundlm recipe NAME`: corpus -> tokenizers -> AudioLM stages -> packaged, evaluated model."""

from pathlib import Path

import typer

from soundlm.cli.errors import reported

RECIPE_FEATURES = ("phonetic", "mfcc", "chroma", "cqt")


def recipe(
    name: str = typer.Argument("speech-tiny", help="Recipe name: speech-tiny, music-tiny (AudioLM's piano "
                                                   "continuation on `soundlm data music`'s corpus) or musiclm-tiny "
                                                   "(MusicLM + MusicRL on it, evaluated by `soundlm eval music`)."),
    work: Path | None = typer.Option(None, help="Working folder (corpus, runs, store); resumable. Default: "
                                                "work/NAME."),
    out: Path | None = typer.Option(None, help="Where the packaged model goes. Default: src/soundlm/assets/speech-tiny "
                                               "for speech-tiny (the shipped model), models/NAME for the others."),
    prompt: Path | None = typer.Option(None, help="Where the 3 s demo prompt goes (default: beside --out)."),
    results_md: Path | None = typer.Option(None, "--results-md", help="Also copy the eval table here."),
    hours: float | None = typer.Option(None, help="Override the corpus size (requested hours of text; espeak-ng "
                                                  "speaks about 1.45x longer than estimated)."),
    voices: int | None = typer.Option(None, help="Override the number of training voices (held-out voices stay "
                                                 "the same whatever this is)."),
    inventory: str | None = typer.Option(None, "--inventory",
                                         help="How speakers are made: classic (speech-tiny's 120 espeak-ng/flite "
                                              "voices) or wide (420 distinct voices, 12 held-out ones of kinds "
                                              "absent from training; docs/RESULTS.md section 7)."),
    acoustic_pattern: str | None = typer.Option(None, "--acoustic-pattern",
                                                help="flatten (AudioLM: one position per code), delay (MusicGen's "
                                                     "delay pattern in the coarse and fine stages: one position per "
                                                     "frame) or delay1 (one delay stage over all codebooks, no fine "
                                                     "stage)."),
    codec_steps: int | None = typer.Option(None, help="Override the codec's training steps."),
    lm_steps: int | None = typer.Option(None, help="Override every LM stage's training steps."),
    corpus: Path | None = typer.Option(None, "--corpus", help="Use this corpus folder (from `soundlm data speech` "
                                                              "or `soundlm data music`) instead of building one."),
    codec: Path | None = typer.Option(None, "--codec", help="Reuse this trained codec folder (e.g. a shipped "
                                                            "model's codec/) instead of training one."),
    mulan: Path | None = typer.Option(None, "--mulan", help="musiclm-tiny: reuse this trained MuLan folder "
                                                            "(`soundlm train mulan`) instead of training one."),
    condition_levels: int | None = typer.Option(None, "--condition-levels",
                                                help="musiclm-tiny: RVQ levels of the MuLan condition ids the stages "
                                                     "read (default 1: docs/RESULTS.md section 11)."),
    condition_from: str | None = typer.Option(None, "--condition-from",
                                              help="musiclm-tiny: what the stages' condition ids are: audio "
                                                   "(MusicLM: quantized MuLan audio embeddings at training, text "
                                                   "embeddings at inference) or text (the caption's own tokens at "
                                                   "both; docs/RESULTS.md section 16)."),
    prefer_stage: str | None = typer.Option(None, "--prefer-stage",
                                            help="musiclm-tiny: the stage MusicRL's DPO tunes: semantic (default) or "
                                                 "coarse (the acoustic stage, which decides the timbre)."),
    semantic_features: str | None = typer.Option(None, "--semantic-features",
                                                 help="phonetic (speech-tiny's: CTC encoder + k-means), mfcc, "
                                                      "chroma (music-tiny's) or cqt."),
    device: str | None = typer.Option(None, help="cpu, cuda, ... (default: cuda when available)."),
) -> None:
    """Train and package a complete model; rerun the same command to resume after an interruption."""
    from dataclasses import replace

    from soundlm.recipe import ACOUSTIC_PATTERNS, INVENTORIES, recipe_config, run_recipe, with_wide_inventory

    cfg = recipe_config(name)
    work = Path("work") / name if work is None else work
    if out is None:
        out = Path("src/soundlm/assets/speech-tiny") if name == "speech-tiny" else Path("models") / name
    if hours is not None and not 0 < hours < float("inf"):
        raise ValueError(f"--hours must be positive and finite, got {hours}")
    if voices is not None and voices < 1:
        raise ValueError(f"--voices must be at least 1, got {voices}")
    if inventory is not None and inventory not in INVENTORIES:
        raise ValueError(f"--inventory must be {' or '.join(INVENTORIES)}, got {inventory!r}")
    if acoustic_pattern is not None and acoustic_pattern not in ACOUSTIC_PATTERNS:
        raise ValueError(f"--acoustic-pattern must be one of {', '.join(ACOUSTIC_PATTERNS)}, got {acoustic_pattern!r}")
    if inventory == "wide" and cfg.inventory != "wide":
        cfg = with_wide_inventory(cfg, voices)
    elif inventory is not None:
        cfg = replace(cfg, inventory=inventory)
    cfg = replace(cfg, hours=cfg.hours if hours is None else hours, voices=cfg.voices if voices is None else voices)
    if acoustic_pattern is not None:
        cfg = replace(cfg, acoustic_pattern=acoustic_pattern)
    if codec_steps is not None:
        cfg = replace(cfg, codec_steps=codec_steps)
    if codec is not None:
        cfg = replace(cfg, codec_from=str(codec))
    if corpus is not None:
        cfg = replace(cfg, corpus_from=str(corpus))
    musiclm_only = {"--mulan": mulan, "--condition-levels": condition_levels, "--condition-from": condition_from,
                    "--prefer-stage": prefer_stage}
    given = [k for k, v in musiclm_only.items() if v is not None]
    if given and not cfg.conditioned:
        raise ValueError(f"{', '.join(given)}: settings of a conditioned recipe (musiclm-tiny), not of {name}")
    if mulan is not None:
        cfg = replace(cfg, mulan_from=str(mulan))
    if condition_levels is not None:
        cfg = replace(cfg, condition_levels=condition_levels)
    if condition_from is not None:
        cfg = replace(cfg, condition_from=condition_from)
    if prefer_stage is not None:
        cfg = replace(cfg, prefer_stage=prefer_stage)
    if semantic_features is not None:
        if semantic_features not in RECIPE_FEATURES:
            raise ValueError(f"--semantic-features must be {', '.join(RECIPE_FEATURES[:-1])} or "
                             f"{RECIPE_FEATURES[-1]}, got {semantic_features!r}")
        cfg = replace(cfg, semantic_features=semantic_features)
    if lm_steps is not None:
        cfg = replace(cfg, semantic_lm=replace(cfg.semantic_lm, steps=lm_steps),
                      coarse_lm=replace(cfg.coarse_lm, steps=lm_steps), fine_lm=replace(cfg.fine_lm, steps=lm_steps))
    # A failed run has always exited 1, a bad option 2 (the error handler's default).
    with reported(exit_code=1):
        result = run_recipe(cfg, work, out, prompt_path=prompt, device=device, results_md=results_md)
    typer.echo(f"model: {result.model_dir} ({result.size_megabytes:.1f} MiB)")
    for step, seconds in result.wall_seconds.items():
        typer.echo(f"  {step:<20} {seconds:8.1f} s")
