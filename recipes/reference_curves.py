"""Reference training curves for `soundlm doctor`: the speech-tiny recipe's training stages, rerun.

    python recipes/reference_curves.py train --work work/ref   # the runs (hours on 2 cores; resumes)
    python recipes/reference_curves.py build --work work/ref   # -> src/soundlm/assets/reference_curves.json
                                                               #    and docs/reference_curves/*.png

`train` reruns the recipe's own settings (`soundlm.recipe.speech_tiny()`) on the recipe's own
corpus (`soundlm data speech --hours 3 --voices 120 --heldout-voices 4
--sentences-per-utterance 3`, seed 0) tokenized with the shipped model's tokenizers (the
recipe's LMs were trained on the tokens of that codec and semantic tokenizer):

- the three LM stages with the recipe's presets, windows, batch, lr and schedule
  (`--lm-stop-at` stops a stage early, its schedule still the recipe's: the curve is the
  start of the recipe's own run);
- the codec with the recipe's preset and optimiser settings for `--codec-steps` steps (its
  learning rate is constant, so they are the first steps of the recipe's 20,000);
- the phonetic encoder with the recipe's settings (`--phonetic-stop-at` as for the LMs).

`build` reads each run's metrics.jsonl and writes the curves with what they are (recipe,
preset, corpus, steps) into the package data that `soundlm doctor` compares runs against.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ASSET = Path(__file__).resolve().parents[1] / "src" / "soundlm" / "assets" / "reference_curves.json"
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "reference_curves"
SHIPPED = Path(__file__).resolve().parents[1] / "src" / "soundlm" / "assets" / "speech-tiny"


def train(work: Path, lm_stop_at: int | None, codec_steps: int, phonetic_stop_at: int | None,
          parts: list[str]) -> None:
    from soundlm.data.speech import make_speech_corpus
    from soundlm.recipe import speech_tiny
    from soundlm.tokenize import TokenizeConfig, tokenize_corpus
    from soundlm.train.codec import CodecTrainConfig, train_codec
    from soundlm.train.lm import LMTrainConfig, train_lm
    from soundlm.train.phonetic import PhoneticTrainConfig, train_phonetic

    cfg = speech_tiny()
    manifest = make_speech_corpus(work / "corpus", hours=cfg.hours, seed=cfg.seed, languages=["en"],
                                  voices=cfg.voices, heldout_voices=cfg.heldout_voices,
                                  sentences_per_utterance=cfg.sentences_per_utterance)
    store = work / "store"
    tokenize_corpus(TokenizeConfig(source=str(manifest.parent), out=str(store), semantic=str(SHIPPED / "semantic_tokenizer"),
                                   codec=str(SHIPPED / "codec"), workers=1))
    for stage, s in (("semantic", cfg.semantic_lm), ("fine", cfg.fine_lm), ("coarse", cfg.coarse_lm)):
        if f"lm-{stage}" in parts:
            # The recipe's call (recipe.run_recipe), with held-out evaluations every 50 steps instead of 100
            # (evaluation draws no random numbers and leaves the weights alone: the run is the same).
            train_lm(LMTrainConfig(store=str(store), out=str(work / f"lm-{stage}"), stage=stage,
                                   preset=s.preset or cfg.lm_preset, steps=s.steps, batch_size=s.batch_size, lr=s.lr,
                                   warmup=s.warmup, window_seconds=s.window_seconds,
                                   coarse_codebooks=cfg.coarse_codebooks, ckpt_every=100, eval_every=50,
                                   seed=cfg.seed, stop_at=lm_stop_at))
    if "codec" in parts:
        train_codec(CodecTrainConfig(data=str(manifest), out=str(work / "codec"), preset=cfg.codec_preset,
                                     steps=codec_steps, batch_size=cfg.codec_batch_size,
                                     segment_seconds=cfg.codec_segment_seconds, adversarial=False, lr=cfg.codec_lr,
                                     ckpt_every=200, eval_every=250, sample_every=codec_steps, seed=cfg.seed))
    if "phonetic" in parts:
        train_phonetic(PhoneticTrainConfig(data=str(manifest), out=str(work / "phonetic"), steps=cfg.phonetic_steps,
                                           seed=cfg.seed, stop_at=phonetic_stop_at))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="run (or resume) the reference runs")
    t.add_argument("--work", type=Path, default=Path("work/ref"))
    t.add_argument("--lm-stop-at", type=int, default=None, help="stop each LM stage at this step")
    t.add_argument("--codec-steps", type=int, default=4000)
    t.add_argument("--phonetic-stop-at", type=int, default=None)
    t.add_argument("--parts", default="lm-semantic,lm-fine,codec,phonetic,lm-coarse")
    b = sub.add_parser("build", help="write the reference curves asset and figures from the runs")
    b.add_argument("--work", type=Path, default=Path("work/ref"))
    b.add_argument("--asset", type=Path, default=ASSET)
    b.add_argument("--figures", type=Path, default=FIGURES)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.command == "train":
        train(args.work, args.lm_stop_at, args.codec_steps, args.phonetic_stop_at, args.parts.split(","))
    else:
        from soundlm.doctor.build import build_reference

        build_reference(args.work, args.asset, args.figures)


if __name__ == "__main__":
    main()
