"""The MusicLM and MusicRL steps of `soundlm recipe musiclm-tiny` (issue 17's measurements in one command).

`soundlm.recipe.run_recipe` runs these where a recipe is `conditioned`:

    mulan          train a MuLan on the corpus's train split (or take `--mulan DIR`), keep the first
                   `condition_levels` levels of its condition quantizer (or, `condition_from` "text",
                   make the condition ids the caption's tokens) -> WORK/mulan
    (tokenize      with WORK/mulan: each clip's condition ids; the semantic and coarse stages train conditioned)
    (package       the AudioLM bundle plus mulan/: a music bundle `soundlm music` loads)
    instrument     the instrument classifier the evaluation (and no reward) listens with
    prefer         `soundlm train prefer --self`: samples of the packaged model on training captions, ranked by
                   the reward of `prefer_reward`'s parts, DPO on the semantic stage -> WORK/prefer/model
    eval base      `soundlm eval music` of the packaged model on held-out captions -> WORK/eval/base
    eval tuned     the tuned model against the base on the same captions and seeds -> WORK/eval/tuned:
                   win rates on the metrics the reward did not use
    speed          8 s at batch 4 (one caption, 4 samples) from the packaged model, timed

Every step resumes: the trainers from their checkpoints, the evaluations from their row state.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from soundlm.fileio import read_json

if TYPE_CHECKING:
    from soundlm.eval.report import EvalSection
    from soundlm.recipe import RecipeConfig
    from soundlm.train.mulan import MuLanTrainConfig
    from soundlm.train.prefer import PreferTrainConfig

# What the issue's speed target asks: 8 s of music at batch 4 faster than real time on 2 cores.
SPEED_SECONDS, SPEED_BATCH = 8.0, 4
SPEED_CAPTION = "a calm piano piece in C major"
# The parts a `--self` reward can have (`train.prefer.build_reward`), as `eval music` names its win metrics.
REWARD_PARTS = ("mulan", "key", "tempo", "instrument")


def check_musiclm_settings(cfg: RecipeConfig) -> None:
    """Refuse a conditioned recipe's settings that would fail hours in."""
    from soundlm.eval.sections.music import unseen_metrics
    from soundlm.music.mulan import CONDITION_SOURCES

    if cfg.corpus != "music":
        raise ValueError(f"a conditioned (MusicLM) recipe trains on the music corpus, got corpus {cfg.corpus!r}")
    if cfg.condition_levels < 1:
        raise ValueError(f"--condition-levels must be >= 1, got {cfg.condition_levels}")
    if cfg.prefer_stage not in ("semantic", "coarse"):
        raise ValueError(f"--prefer-stage must be semantic or coarse, got {cfg.prefer_stage!r}")
    if cfg.condition_from not in CONDITION_SOURCES:
        raise ValueError(f"--condition-from must be {' or '.join(CONDITION_SOURCES)}, got {cfg.condition_from!r}")
    unknown = [p for p in cfg.prefer_reward if p not in REWARD_PARTS]
    if unknown or not cfg.prefer_reward:
        raise ValueError(f"the preference reward's parts must be some of {', '.join(REWARD_PARTS)}, got "
                         f"{list(cfg.prefer_reward)}")
    if not unseen_metrics(cfg.prefer_reward):
        raise ValueError(f"the preference reward uses every metric ({', '.join(cfg.prefer_reward)}), so no win rate "
                         "would be judged by a metric it did not see; leave one out")
    if cfg.mulan_from is not None:
        from soundlm.music.mulan import load_mulan

        mulan = load_mulan(cfg.mulan_from)  # a folder that is not a MuLan fails now, not an hour in
        if cfg.condition_levels > mulan.num_condition_tokens:
            raise ValueError(f"{cfg.mulan_from}: its condition quantizer has {mulan.num_condition_tokens} levels, "
                             f"fewer than --condition-levels {cfg.condition_levels}; pass at most that many")


def mulan_config(cfg: RecipeConfig, manifest: Path, out: Path, device: str | None) -> MuLanTrainConfig:
    """The recipe's `soundlm train mulan` settings (section 11's run: augmented captions, 4 x 64 condition codes)."""
    from soundlm.train.mulan import MuLanTrainConfig

    return MuLanTrainConfig(data=str(manifest.parent), out=str(out), steps=cfg.mulan_steps,
                            batch_size=cfg.mulan_batch_size, ckpt_every=100, seed=cfg.seed, device=device,
                            progress=False)


def prepare_mulan(cfg: RecipeConfig, manifest: Path, work: Path, device: str | None) -> Path:
    """WORK/mulan: the recipe's MuLan (trained in WORK/mulan-run, or `cfg.mulan_from`) with `condition_levels`
    levels, conditioning on captions' tokens where `condition_from` is "text"; the stages are conditioned on its
    ids and the bundle carries it."""
    from soundlm.music.mulan import load_mulan
    from soundlm.train.mulan import train_mulan

    target = work / "mulan"
    if (target / "config.json").is_file():
        return target
    source = cfg.mulan_from
    if source is None:
        source = train_mulan(mulan_config(cfg, manifest, work / "mulan-run", device))
    mulan = load_mulan(source).keep_condition_levels(cfg.condition_levels)
    if cfg.condition_from == "text":
        mulan.condition_on_text()
    return mulan.save_pretrained(target)


def prefer_config(cfg: RecipeConfig, model_dir: Path, manifest: Path, instrument: Path, mulan: Path, out: Path,
                  device: str | None) -> PreferTrainConfig:
    """The recipe's `soundlm train prefer --self` settings: the stage `cfg.prefer_stage` (semantic, or the delay1
    model's acoustic stage), the reward of `cfg.prefer_reward`'s parts, `prefer_captions` training captions."""
    from soundlm.train.prefer import PreferTrainConfig

    parts = set(cfg.prefer_reward)
    return PreferTrainConfig(base=str(model_dir), out=str(out), self_samples=cfg.prefer_samples,
                             captions=str(manifest.parent), max_captions=cfg.prefer_captions, stage=cfg.prefer_stage,
                             steps=cfg.prefer_steps, batch_size=cfg.prefer_batch_size, lr=cfg.prefer_lr,
                             key_weight=float("key" in parts), tempo_weight=float("tempo" in parts),
                             instrument_model=str(instrument) if "instrument" in parts else None,
                             mulan=str(mulan) if "mulan" in parts else None, seed=cfg.seed, device=device,
                             progress=False)


def evaluate_music(cfg: RecipeConfig, model_dir: Path, manifest: Path, instrument: Path, out: Path,
                   device: str | None, against: Path | None = None) -> EvalSection:
    """`soundlm eval music` of the bundle `model_dir` on `music_eval_captions` held-out captions, judged by its own
    MuLan and the recipe's instrument classifier; with `against`, the win rates of `model_dir` over it."""
    from soundlm.eval.report import write_section
    from soundlm.eval.sections.music import eval_music
    from soundlm.music.pipeline import MusicLMPipeline

    music = MusicLMPipeline.from_bundle(model_dir, device=device)
    other = None if against is None else MusicLMPipeline.from_bundle(against, device=device)
    section = eval_music(music, manifest.parent, "heldout", cfg.music_eval_captions, seconds=cfg.music_eval_seconds,
                         instrument_model=instrument, against=other, seed=cfg.seed, out_dir=out,
                         reward_saw=tuple(cfg.prefer_reward) if against is not None else (), progress=False)
    name = "music_base" if against is None else "music_tuned"
    title = ("MusicLM: text adherence, attribute accuracy, Frechet distance" if against is None else
             "MusicRL: the preference-tuned model against the base")
    section = replace(section, name=name, title=title)
    write_section(section, out)
    return section


@dataclass
class SpeedResult:
    seconds: float  # of music per sample
    batch: int  # samples generated together
    wall_seconds: float
    real_time_factor: float  # wall seconds per second of music: < 1 is faster than real time
    threads: int
    quantize: str


def time_generation(model_dir: Path, device: str | None) -> SpeedResult:
    """Wall time of `soundlm music`'s generation of SPEED_SECONDS at batch SPEED_BATCH (after a short warm-up)."""
    import torch

    from soundlm.lm.quantize import DEFAULT_QUANTIZE
    from soundlm.music.pipeline import MusicLMPipeline

    music = MusicLMPipeline.from_bundle(model_dir, device=device).quantize(DEFAULT_QUANTIZE)
    music.generate([SPEED_CAPTION], 0.5, num_samples=1)  # first-call costs (allocation, quantized kernels)
    start = time.perf_counter()
    music.generate([SPEED_CAPTION], SPEED_SECONDS, num_samples=SPEED_BATCH)
    wall = time.perf_counter() - start
    return SpeedResult(SPEED_SECONDS, SPEED_BATCH, round(wall, 2), round(wall / SPEED_SECONDS, 3),
                       torch.get_num_threads(), str(music.audiolm.quantized))


def speed_section(result: SpeedResult) -> EvalSection:
    from soundlm.eval.report import EvalSection

    return EvalSection(name="music_speed", title=f"Generation speed: {result.seconds:g} s at batch {result.batch}",
                       settings={"caption": SPEED_CAPTION, "threads": result.threads, "quantize": result.quantize},
                       summary=asdict(result), rows=[], wall_seconds=result.wall_seconds,
                       notes=["real_time_factor: wall seconds per second of music for the whole batch (issue 17's "
                              "target: below 1 on 2 cores)."])


def issue_targets(base: dict, tuned: dict, speed: dict) -> dict:
    """Issue 17's targets from the three sections' summaries: each number, its bar and whether it is met."""
    def ratio(acc: float | None, chance: float | None) -> float | None:
        return None if acc is None or not chance else round(acc / chance, 2)

    key, instrument = (ratio(base.get(f"{a}_acc"), base.get(f"{a}_chance")) for a in ("key", "instrument"))
    win = tuned.get("win_rate_unseen_min")
    rtf = speed.get("real_time_factor")
    return {"key_acc_over_chance": key, "key_target_met": key is not None and key >= 2,
            "instrument_acc_over_chance": instrument,
            "instrument_target_met": instrument is not None and instrument >= 2,
            "win_rate_unseen_min": win, "win_rate_target_met": win is not None and win >= 0.65,
            "real_time_factor": rtf, "speed_target_met": rtf is not None and rtf < 1}


def run_musiclm_evaluation(cfg: RecipeConfig, timer, work: Path, model_dir: Path, manifest: Path, mulan: Path,
                           device: str | None) -> None:
    """The instrument classifier, preference tuning, both evaluations and the speed test; writes
    WORK/eval/results.md and results.json (the sections and the issue's targets)."""
    from soundlm.eval.report import write_results
    from soundlm.fileio import write_json_atomic
    from soundlm.train.instrument import InstrumentTrainConfig, train_instrument
    from soundlm.train.prefer import train_prefer

    instrument = work / "instrument"
    timer.run("instrument classifier", lambda: train_instrument(InstrumentTrainConfig(
        data=str(manifest), out=str(instrument), steps=cfg.instrument_steps, seed=cfg.seed, device=device,
        progress=False)))
    prefer = work / "prefer"
    timer.run("prefer", lambda: train_prefer(prefer_config(cfg, model_dir, manifest, instrument, mulan, prefer,
                                                           device)))
    eval_dir = work / "eval"
    base = timer.run("eval base", lambda: evaluate_music(cfg, model_dir, manifest, instrument, eval_dir / "base",
                                                         device))
    tuned = timer.run("eval tuned", lambda: evaluate_music(cfg, prefer / "model", manifest, instrument,
                                                           eval_dir / "tuned", device, against=model_dir))
    speed_file = eval_dir / "speed.json"
    if not speed_file.is_file():  # a timing redone on resume would measure another machine state
        speed = timer.run("speed", lambda: time_generation(model_dir, device))
        write_json_atomic(speed_file, asdict(speed))
    speed = SpeedResult(**read_json(speed_file))
    sections = [base, tuned, speed_section(speed)]
    targets = issue_targets(base.summary, tuned.summary, asdict(speed))
    write_results(sections, eval_dir, {"model": str(model_dir), "tuned": str(prefer / "model"), "data": str(manifest),
                                       "issue_17_targets": targets})
    write_json_atomic(eval_dir / "targets.json", targets)
