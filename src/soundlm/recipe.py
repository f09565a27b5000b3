"""Recipes: one command from nothing to a packaged, evaluated AudioLM model.

`speech_tiny()` is the recipe behind the model that ships with soundlm: a synthetic
multi-speaker English corpus (espeak-ng/flite voices; held-out voices disjoint from the
training ones; only the training voices reach the codec, the k-means and the LMs), semantic
tokens from k-means over our phonetic encoder (a small CTC recogniser trained on the
corpus's transcripts; MFCC units carry the voice), our codec (the `fast` iSTFT preset),
three AudioLM stages, an fp16 bundle and the evaluation report. Every step resumes, so a
killed recipe picks up where it stopped and a finished one returns at once. `--inventory wide`
trains on the wide voice inventory (420 training voices, 12 held-out ones of kinds absent from
training) and `--acoustic-pattern delay` trains the coarse and fine stages with MusicGen's delay
pattern (one position per frame instead of one per code), `delay1` one delay stage over all the
codec's codebooks and no fine stage; both are settings of the work folder,
which refuses to resume under other ones.

`music_tiny()` is AudioLM's piano-continuation setting on the music corpus (`soundlm data
music`: music21 scores rendered by fluidsynth): the codec trained on music, semantic units
from k-means over chroma features (they carry the key; MFCC units carry the instrument:
docs/RESULTS.md section 12), the same three unconditioned stages, an instrument classifier,
and `soundlm eval continuation --music` (key, tempo and instrument kept) as its evaluation.

`musiclm_tiny()` is MusicLM and MusicRL on the same corpus (`soundlm.recipe_musiclm`): a MuLan, the stages
conditioned on its condition ids, a music bundle with the MuLan inside, preference tuning and `soundlm eval
music` of the base and the tuned model: every number issue 17 asks for from one command.

Larger budgets (a GPU) go through the same code: raise the step counts and sizes with the
options of `soundlm recipe`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from soundlm.fileio import read_json, write_json_atomic

if TYPE_CHECKING:
    from soundlm.train.codec import CodecTrainConfig
    from soundlm.train.lm import LMTrainConfig
    from soundlm.train.phonetic import PhoneticTrainConfig


@dataclass
class LMStageSettings:
    steps: int
    batch_size: int
    window_seconds: float
    lr: float = 1e-3
    warmup: int = 50
    preset: str | None = None  # model size; None takes the recipe's lm_preset


@dataclass
class RecipeConfig:
    name: str
    # corpus: "speech" (`soundlm data speech`) or "music" (`soundlm data music`)
    corpus: str = "speech"
    corpus_from: str | None = None  # an existing corpus folder (or manifest) to use instead of building one
    music_clips: int = 400
    hours: float = 3.0
    voices: int = 120
    heldout_voices: int = 4
    sentences_per_utterance: int = 3
    # how speakers are made (`soundlm data speech --inventory`): "classic", or "wide" (`with_wide_inventory`)
    inventory: str = "classic"
    # semantic tokenizer: "phonetic" trains the CTC encoder first; "mfcc", "chroma"... cluster those features
    semantic_features: str = "phonetic"
    phonetic_steps: int = 2000
    clusters: int = 100
    # codec
    codec_preset: str = "fast"
    codec_steps: int = 20000
    codec_batch_size: int = 8
    codec_segment_seconds: float = 0.64
    codec_lr: float = 5e-4
    codec_from: str | None = None  # a trained codec folder to reuse instead of training one
    # language models
    lm_preset: str = "mini"
    coarse_codebooks: int = 3
    # the acoustic stages' codebook interleaving (`soundlm train lm --pattern`): "flatten" (AudioLM: one position
    # per code), "delay" (MusicGen's delay pattern: one position per frame in both the coarse and fine stages) or
    # "delay1" (one delay-pattern acoustic stage over all the codec's codebooks, no fine stage)
    acoustic_pattern: str = "flatten"
    semantic_lm: LMStageSettings = field(default_factory=lambda: LMStageSettings(1500, 8, 4.5))
    coarse_lm: LMStageSettings = field(default_factory=lambda: LMStageSettings(2000, 8, 2.0))
    fine_lm: LMStageSettings = field(default_factory=lambda: LMStageSettings(1000, 8, 1.0, preset="micro"))
    # evaluation (music: an instrument classifier trained on the corpus judges the continuations)
    instrument_steps: int = 600
    continuation_seconds: float = 4.0
    eval_files: int = 20
    asr_files: int = 4
    eval_skip: tuple[str, ...] = ()
    eval_prompts: int = 20
    eval_pairs: int = 50
    prompt_seconds: float = 3.0
    # MusicLM (musiclm-tiny): the semantic and coarse stages conditioned on MuLan condition ids (`soundlm tokenize
    # --mulan`), the bundle carrying the MuLan, then MusicRL (`soundlm train prefer --self`) and `soundlm eval music`
    conditioned: bool = False
    mulan_from: str | None = None  # a trained MuLan folder to reuse instead of training one
    mulan_steps: int = 1000
    mulan_batch_size: int = 32
    # RVQ levels of the condition ids the stages read: held-out audio and caption agree on level 1 for 37% of clips
    # and almost never on all 4 (docs/RESULTS.md section 11)
    condition_levels: int = 1
    # "audio": the stages read MuLan's quantized audio embedding at training and its quantized text embedding at
    # inference (MusicLM); "text": the caption's own tokens at both (`MuLan.condition_on_text`)
    condition_from: str = "audio"
    prefer_captions: int = 48  # training captions sampled for the preference pairs
    prefer_samples: int = 4  # samples per caption; the best and the worst by reward make a pair
    prefer_steps: int = 150
    # the stage DPO tunes: "semantic" (the notes: key, tempo) or "coarse" (a delay1 model's one acoustic stage: timbre)
    prefer_stage: str = "semantic"
    prefer_batch_size: int = 8
    prefer_lr: float = 1e-4
    # the reward's parts (`eval music`'s win metrics); the win rate that counts is on the others
    prefer_reward: tuple[str, ...] = ("mulan", "key", "tempo")
    music_eval_captions: int = 40  # held-out captions of `soundlm eval music`
    music_eval_seconds: float = 4.0
    seed: int = 0


# The wide inventory's size in docs/RESULTS.md section 7: >= 400 training voices a speaker encoder tells apart,
# and held-out voices of kinds no training voice has (festival, vibrato, reserved espeak-ng variants).
WIDE_VOICES, WIDE_HELDOUT_VOICES = 420, 12


def with_wide_inventory(cfg: RecipeConfig, voices: int | None = None) -> RecipeConfig:
    """`cfg` on the wide voice inventory: 420 training voices (or `voices`) and 12 held-out ones."""
    return replace(cfg, inventory="wide", voices=WIDE_VOICES if voices is None else voices,
                   heldout_voices=WIDE_HELDOUT_VOICES)


def speech_tiny() -> RecipeConfig:
    """The shipped default: trains on a 2-core CPU in about 2 h (phonetic encoder 15 min, codec 36-50 min,
    LMs 55 min, evaluation 7 min)."""
    return RecipeConfig(name="speech-tiny")


def music_tiny() -> RecipeConfig:
    """AudioLM's piano continuation on the 400-clip music corpus, sized for about 2.2 h on a 2-core CPU.

    Measured in a 20-step smoke run (docs/RESULTS.md section 12): chroma k-means 0.5 min, tokenize 2.7,
    instrument classifier 2, evaluation 5. Taken from speech-tiny, whose sizes and steps these are:
    codec 36-50 min, LMs 55. Rendering the corpus took 20 min (section 10); `--corpus` skips it."""
    return RecipeConfig(name="music-tiny", corpus="music", semantic_features="chroma", clusters=100)


def musiclm_tiny() -> RecipeConfig:
    """MusicLM and MusicRL on the 400-clip music corpus: music-tiny's tokenizers, a MuLan (section 11's run), the
    semantic and coarse stages conditioned on its level-1 ids, one delay-pattern acoustic stage (one step per frame
    for all 8 codebooks, no fine stage), then preference tuning and `soundlm eval music` of base and tuned.
    The step counts are sized for about 2.5 h on a 2-core CPU (docs/RESULTS.md section 12)."""
    return replace(music_tiny(), name="musiclm-tiny", conditioned=True, acoustic_pattern="delay1", codec_steps=12000,
                   semantic_lm=LMStageSettings(1200, 8, 4.5), coarse_lm=LMStageSettings(1500, 8, 4.0))


RECIPES: dict[str, Callable[[], RecipeConfig]] = {"speech-tiny": speech_tiny, "music-tiny": music_tiny,
                                                  "musiclm-tiny": musiclm_tiny}


def recipe_config(name: str) -> RecipeConfig:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]()


@dataclass
class RecipeResult:
    model_dir: Path
    work_dir: Path
    wall_seconds: dict[str, float]
    size_megabytes: float  # MiB (2**20 bytes), as recipe.json's size_megabytes
    eval_summary: dict


class _StepTimer:
    """Wall time per step, kept in WORK/timings.json so a resumed recipe still reports them."""

    def __init__(self, path: Path):
        self.path = path
        self.times: dict[str, float] = read_json(path) if path.exists() else {}

    def run(self, name: str, fn: Callable[[], object]) -> object:
        print(f"== recipe step: {name}", flush=True)
        start = time.perf_counter()
        out = fn()
        # A step that found its work done adds ~0 s: the first full run's time is what counts.
        self.times[name] = round(self.times.get(name, 0.0) + time.perf_counter() - start, 1)
        write_json_atomic(self.path, self.times)
        return out


CORPORA = ("speech", "music")
INVENTORIES = ("classic", "wide")  # soundlm.data.speech.INVENTORIES, without importing the data layer here
ACOUSTIC_PATTERNS = ("flatten", "delay", "delay1")
# Settings added with music-tiny, at the values every recipe before it ran with.
_ADDED_WITH_MUSIC = {"corpus": "speech", "corpus_from": None, "music_clips": 400, "instrument_steps": 600,
                     "continuation_seconds": 4.0}
# Settings added with the wide voice inventory and the delay-pattern acoustic stages (issue 20, section 4).
_ADDED_WITH_WIDE = {"inventory": "classic", "acoustic_pattern": "flatten"}
# Settings added with musiclm-tiny, at the values every unconditioned recipe before it ran with.
_ADDED_WITH_MUSICLM = {k: v for k, v in asdict(RecipeConfig(name="")).items() if k in (
    "conditioned", "mulan_from", "mulan_steps", "mulan_batch_size", "condition_levels", "condition_from",
    "prefer_captions", "prefer_samples", "prefer_steps", "prefer_stage", "prefer_batch_size", "prefer_lr", "prefer_reward", "music_eval_captions",
    "music_eval_seconds")}
_ADDED_WITH_MUSICLM = json.loads(json.dumps(_ADDED_WITH_MUSICLM))  # tuples as lists, as recipe.json reads back


def upgrade_settings(settings: dict) -> dict:
    """A WORK/recipe.json written before music-tiny, the wide inventory or musiclm-tiny: fills in the settings
    added with them, at the values every run before them had, so a run started then still resumes."""
    return {**_ADDED_WITH_MUSIC, **_ADDED_WITH_WIDE, **_ADDED_WITH_MUSICLM, **settings}


def settings_changes(before: dict, now: dict) -> list[str]:
    """The settings that differ between a work folder's recipe.json and this run, as `name: old -> new`."""
    names = sorted(set(before) | set(now))
    return [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in names if before.get(k) != now.get(k)]


LM_STAGES = ("semantic", "coarse", "fine")


def lm_stages(cfg: RecipeConfig) -> tuple[str, ...]:
    """The LM stages a recipe trains: all three, or no fine stage for the one-stage `delay1` pattern."""
    return LM_STAGES[:2] if cfg.acoustic_pattern == "delay1" else LM_STAGES


def phonetic_config(cfg: RecipeConfig, manifest: Path, out: Path) -> PhoneticTrainConfig:
    """The recipe's `soundlm train phonetic` settings."""
    from soundlm.train.phonetic import PhoneticTrainConfig

    return PhoneticTrainConfig(data=str(manifest), out=str(out), steps=cfg.phonetic_steps, seed=cfg.seed)


def codec_config(cfg: RecipeConfig, manifest: Path, out: Path, device: str | None) -> CodecTrainConfig:
    """The recipe's `soundlm train codec` settings (no adversary: mel + STFT losses only)."""
    from soundlm.train.codec import CodecTrainConfig

    return CodecTrainConfig(data=str(manifest), out=str(out), preset=cfg.codec_preset, steps=cfg.codec_steps,
                            batch_size=cfg.codec_batch_size, segment_seconds=cfg.codec_segment_seconds,
                            adversarial=False, lr=cfg.codec_lr, ckpt_every=200, eval_every=250,
                            sample_every=max(cfg.codec_steps // 2, 1), seed=cfg.seed, device=device)


def lm_config(cfg: RecipeConfig, stage: str, store: Path, out: Path,
              num_codebooks: int | None = None) -> LMTrainConfig:
    """The recipe's `soundlm train lm` settings for one stage; the acoustic stages take `cfg.acoustic_pattern`.

    num_codebooks: the store's codebook count, which the one-stage `delay1` coarse stage models in full.
    """
    from soundlm.train.lm import LMTrainConfig

    one_stage = cfg.acoustic_pattern == "delay1"
    if one_stage and stage == "fine":
        raise ValueError("the delay1 acoustic pattern has no fine stage")
    if one_stage and stage == "coarse" and num_codebooks is None:
        raise ValueError("the delay1 coarse stage models every codebook: pass the store's num_codebooks")
    qc = num_codebooks if one_stage and stage == "coarse" else cfg.coarse_codebooks
    s = {"semantic": cfg.semantic_lm, "coarse": cfg.coarse_lm, "fine": cfg.fine_lm}[stage]
    pattern = "flatten" if stage == "semantic" else "delay" if one_stage else cfg.acoustic_pattern
    return LMTrainConfig(store=str(store), out=str(out), stage=stage, preset=s.preset or cfg.lm_preset,
                         steps=s.steps, pattern=pattern,
                         batch_size=s.batch_size, lr=s.lr, warmup=s.warmup, window_seconds=s.window_seconds,
                         coarse_codebooks=qc, ckpt_every=100, eval_every=100, seed=cfg.seed)


def _corpus(cfg: RecipeConfig, out: Path) -> Path:
    """The recipe's corpus manifest: `cfg.corpus_from`'s, or a corpus built (or resumed) in `out`."""
    from soundlm.data import manifest_path

    if cfg.corpus_from is not None:
        return manifest_path(cfg.corpus_from)
    if cfg.corpus == "music":
        from soundlm.data.music import make_music_corpus

        return make_music_corpus(out, clips=cfg.music_clips, seed=cfg.seed)
    from soundlm.data.speech import make_speech_corpus

    return make_speech_corpus(out, hours=cfg.hours, seed=cfg.seed, languages=["en"], voices=cfg.voices,
                              heldout_voices=cfg.heldout_voices, sentences_per_utterance=cfg.sentences_per_utterance,
                              inventory=cfg.inventory)


def _check_corpus_inventory(cfg: RecipeConfig, corpus_json: Path) -> None:
    """Refuse a speech corpus (`--corpus`) made with another voice inventory than the recipe's `--inventory`:
    recipe.json would record voices the model never heard. corpus.json names the inventory unless classic."""
    if cfg.corpus != "speech" or not corpus_json.is_file():
        return
    made = read_json(corpus_json).get("inventory", "classic")
    if made != cfg.inventory:
        raise ValueError(f"{corpus_json}: the corpus was made with --inventory {made}, the recipe asks for "
                         f"{cfg.inventory}; pass --inventory {made} or build the corpus with --inventory "
                         f"{cfg.inventory}")


def _evaluate_music(cfg: RecipeConfig, model_dir: Path, manifest: Path, instrument: Path, eval_dir: Path,
                    device: str | None) -> None:
    """AudioLM's piano test on the held-out clips, written as the suite writes its results (results.md/.json)."""
    from soundlm.eval.report import write_results, write_section
    from soundlm.eval.sections.music_continuation import eval_music_continuation
    from soundlm.pretrained import load_pipeline

    pipe = load_pipeline(model_dir, device=device)
    section = eval_music_continuation(pipe, manifest, "heldout", cfg.prompt_seconds, cfg.continuation_seconds,
                                      cfg.eval_prompts, instrument, seed=cfg.seed, out_dir=eval_dir)
    write_section(section, eval_dir)
    write_results([section], eval_dir, {"model": str(model_dir), "data": str(manifest)})


def _write_prompt(manifest: Path, out: Path, seconds: float, sample_rate: int) -> dict:
    """Cut the packaged prompt: the first `seconds` of the first long enough held-out utterance."""
    from soundlm.audio import load_audio, save_audio
    from soundlm.data import audio_path, read_manifest

    rows = [r for r in read_manifest(manifest) if r.get("split") == "heldout" and r["duration"] >= seconds]
    if not rows:
        raise ValueError(f"{manifest}: no held-out utterance of at least {seconds} s for the demo prompt")
    row = rows[0]
    audio = load_audio(audio_path(manifest, row), sample_rate=sample_rate)[:, : int(seconds * sample_rate)]
    save_audio(out, audio, sample_rate)
    return {"id": row["id"], "speaker": row["speaker"], "transcript": row["transcript"], "seconds": seconds}


def _folder_megabytes(folder: Path) -> float:
    """Bytes of every file below `folder`, in MiB (2**20 bytes)."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def _command(cfg: RecipeConfig, work: Path, model_dir: Path) -> str:
    """The `soundlm recipe` command line that reproduces `cfg` (the options that differ from the recipe's own)."""
    base = RECIPES[cfg.name]()
    parts = [f"soundlm recipe {cfg.name} --work {work} --out {model_dir}"]
    if cfg.corpus_from is not None:
        parts.append(f"--corpus {cfg.corpus_from}")
    if cfg.hours != base.hours:
        parts.append(f"--hours {cfg.hours:g}")
    if cfg.inventory != base.inventory:
        parts.append(f"--inventory {cfg.inventory}")
    if cfg.voices != (WIDE_VOICES if cfg.inventory == "wide" else base.voices):
        parts.append(f"--voices {cfg.voices}")
    if cfg.codec_from is not None:
        parts.append(f"--codec {cfg.codec_from}")
    if cfg.mulan_from is not None:
        parts.append(f"--mulan {cfg.mulan_from}")
    if cfg.condition_levels != base.condition_levels:
        parts.append(f"--condition-levels {cfg.condition_levels}")
    if cfg.condition_from != base.condition_from:
        parts.append(f"--condition-from {cfg.condition_from}")
    if cfg.prefer_stage != base.prefer_stage:
        parts.append(f"--prefer-stage {cfg.prefer_stage}")
    if cfg.semantic_features != base.semantic_features:
        parts.append(f"--semantic-features {cfg.semantic_features}")
    if cfg.acoustic_pattern != base.acoustic_pattern:
        parts.append(f"--acoustic-pattern {cfg.acoustic_pattern}")
    if cfg.codec_steps != base.codec_steps:
        parts.append(f"--codec-steps {cfg.codec_steps}")
    steps = {cfg.semantic_lm.steps, cfg.coarse_lm.steps, cfg.fine_lm.steps}
    if len(steps) == 1 and (cfg.semantic_lm, cfg.coarse_lm, cfg.fine_lm) != (base.semantic_lm, base.coarse_lm,
                                                                             base.fine_lm):
        parts.append(f"--lm-steps {steps.pop()}")
    return " ".join(parts)


def run_recipe(cfg: RecipeConfig, work: str | Path, model_dir: str | Path, prompt_path: str | Path | None = None,
               device: str | None = None, results_md: str | Path | None = None) -> RecipeResult:
    """Run (or resume) every step of a recipe; package the model into `model_dir`."""
    from soundlm.codec import load_codec
    from soundlm.eval.suite import SuiteConfig, run_all
    from soundlm.pipeline import AudioLMPipeline
    from soundlm.pretrained import export_bundle_fp16
    from soundlm.store import StoreManifest
    from soundlm.tokenize import TokenizeConfig, tokenize_corpus
    from soundlm.train.codec import train_codec
    from soundlm.train.instrument import InstrumentTrainConfig, train_instrument
    from soundlm.train.lm import train_lm
    from soundlm.train.phonetic import train_phonetic
    from soundlm.train.semantic import SemanticTrainConfig, train_semantic

    if cfg.corpus not in CORPORA:
        raise ValueError(f"recipe corpus must be one of {', '.join(CORPORA)}, got {cfg.corpus!r}")
    if cfg.inventory not in INVENTORIES:
        raise ValueError(f"--inventory must be one of {', '.join(INVENTORIES)}, got {cfg.inventory!r}")
    if cfg.acoustic_pattern not in ACOUSTIC_PATTERNS:
        raise ValueError(f"--acoustic-pattern must be one of {', '.join(ACOUSTIC_PATTERNS)}, "
                         f"got {cfg.acoustic_pattern!r}")
    if cfg.codec_from is not None:
        load_codec(cfg.codec_from)  # fail now, not an hour in, on a folder that is not a codec
    if cfg.conditioned:
        from soundlm.recipe_musiclm import check_musiclm_settings

        check_musiclm_settings(cfg)
    if cfg.corpus_from is not None:
        from soundlm.data import manifest_path

        if not manifest_path(cfg.corpus_from).is_file():  # likewise for a folder that is not a corpus
            raise FileNotFoundError(f"{cfg.corpus_from}: no manifest.jsonl; pass a corpus folder written by "
                                    f"`soundlm data {cfg.corpus}`")
        _check_corpus_inventory(cfg, manifest_path(cfg.corpus_from).parent / "corpus.json")
    work, model_dir = Path(work), Path(model_dir)
    work.mkdir(parents=True, exist_ok=True)
    settings_path = work / "recipe.json"
    settings = json.loads(json.dumps(asdict(cfg)))  # tuples become lists, as they read back
    if settings_path.exists():
        changed = settings_changes(upgrade_settings(read_json(settings_path)["settings"]), settings)
        if changed:
            raise ValueError(f"{work} was started with other recipe settings ({settings_path}: "
                             f"{'; '.join(changed)}); rerun with the settings it was started with, "
                             "or use a new --work folder")
    write_json_atomic(settings_path, {"settings": settings})
    timer = _StepTimer(work / "timings.json")

    manifest = timer.run("corpus", lambda: _corpus(cfg, work / "corpus"))
    mulan = None
    if cfg.conditioned:
        from soundlm.recipe_musiclm import prepare_mulan

        mulan = timer.run("mulan", lambda: prepare_mulan(cfg, manifest, work, device))

    encoder = None
    if cfg.semantic_features == "phonetic":
        encoder = work / "phonetic" / "final"
        timer.run("phonetic encoder", lambda: encoder.is_dir() or train_phonetic(
            phonetic_config(cfg, manifest, work / "phonetic")))
    semantic_dir = work / "semantic"
    if not (semantic_dir / "config.json").exists():
        timer.run("semantic tokenizer", lambda: train_semantic(
            manifest, semantic_dir, SemanticTrainConfig(features=cfg.semantic_features, clusters=cfg.clusters,
                                                         model=None if encoder is None else str(encoder),
                                                         seed=cfg.seed), device=device))

    if cfg.codec_from is not None:
        codec_dir = Path(cfg.codec_from)
    else:
        codec_dir = work / "codec"
        timer.run("codec", lambda: train_codec(codec_config(cfg, manifest, codec_dir, device)))

    store = work / "store"
    timer.run("tokenize", lambda: tokenize_corpus(TokenizeConfig(
        source=str(manifest), out=str(store), semantic=str(semantic_dir), codec=str(codec_dir), device=device,
        mulan=None if mulan is None else str(mulan))))

    codebooks = int(StoreManifest.read(store).required("acoustic_num_codebooks", store))
    stages = lm_stages(cfg)
    for stage in stages:
        timer.run(f"lm {stage}", lambda stage=stage: train_lm(lm_config(cfg, stage, store, work / f"lm-{stage}",
                                                                        codebooks)))

    def package() -> None:
        bundle = work / "bundle"
        pipe = AudioLMPipeline.from_runs(work / "lm-semantic", work / "lm-coarse",
                                         work / "lm-fine" if "fine" in stages else None,
                                         semantic_tokenizer=semantic_dir, codec=codec_dir, device="cpu")
        if mulan is None:
            pipe.save_bundle(bundle)
        else:
            from soundlm.music.mulan import load_mulan
            from soundlm.music.pipeline import MusicLMPipeline

            MusicLMPipeline(pipe, load_mulan(mulan), where=work).save_bundle(bundle)
        export_bundle_fp16(bundle, model_dir)

    timer.run("package", package)
    codec = load_codec(str(codec_dir))
    prompt_info = _write_prompt(manifest, Path(prompt_path or model_dir.parent / "prompt.wav"),
                                cfg.prompt_seconds, codec.sample_rate)

    eval_dir = work / "eval"
    if mulan is not None:
        from soundlm.recipe_musiclm import run_musiclm_evaluation

        run_musiclm_evaluation(cfg, timer, work, model_dir, manifest, mulan, device)
    elif cfg.corpus == "music":
        instrument = work / "instrument"
        timer.run("instrument classifier", lambda: train_instrument(InstrumentTrainConfig(
            data=str(manifest), out=str(instrument), steps=cfg.instrument_steps, seed=cfg.seed, device=device,
            progress=False)))
        timer.run("evaluate", lambda: _evaluate_music(cfg, model_dir, manifest, instrument, eval_dir, device))
    else:
        timer.run("evaluate", lambda: run_all(SuiteConfig(
            model=str(model_dir), data=str(manifest), store=str(store), out=str(eval_dir),
            max_files=cfg.eval_files, asr_max_files=cfg.asr_files, prompt_seconds=cfg.prompt_seconds,
            num_prompts=cfg.eval_prompts, num_pairs=cfg.eval_pairs, skip=cfg.eval_skip, seed=cfg.seed,
            device=device)))
    results = read_json(eval_dir / "results.json")
    size = _folder_megabytes(model_dir)
    write_json_atomic(model_dir / "eval.json", results)
    write_json_atomic(model_dir / "recipe.json", {
        "recipe": cfg.name, "settings": settings, "wall_seconds": timer.times, "size_megabytes": round(size, 2),
        "prompt": prompt_info, "device": device or "auto",
        "command": _command(cfg, work, model_dir)})
    shutil.copyfile(eval_dir / "results.md", model_dir / "EVAL.md")
    if results_md is not None:
        shutil.copyfile(eval_dir / "results.md", results_md)
    return RecipeResult(model_dir=model_dir, work_dir=work, wall_seconds=timer.times, size_megabytes=size,
                        eval_summary={k: v.get("summary") for k, v in results.get("sections", {}).items()}
                        if isinstance(results.get("sections"), dict) else {})
