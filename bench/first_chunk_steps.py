"""Decoding steps before the first streamed audio chunk, per first-window setting: no timing.

Counts the sampled positions (one per step, all stages together) that `stream_continue`
takes before it yields its first chunk of generated audio, for the bundled 3 s prompt
continued by `--seconds` (as `bench/pipeline.py` times it), at each `--first-window`
(0: whole first windows, what streaming waited for before the first window existed).
Counts depend on the windows, rates and codebooks only, not on the weights or on the
machine, so this runs anywhere; wall time is `bench/pipeline.py`'s job.

    .venv/bin/python bench/first_chunk_steps.py --models shipped path/to/one-stage-bundle --first-window 0 0.5 0.4
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path

# bench/tokenize.py shadows the standard module of that name: keep bench/ last on the path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import torch  # noqa: E402

import common  # noqa: E402
from pipeline import build_pipeline, stage_names  # noqa: E402


def steps_before_first_chunk(pipe, prompt, seconds: float, sampling) -> int:
    """Sampled positions before `stream_continue`'s first chunk of generated audio."""
    # The module, not the function `soundlm.lm.generate` that the package exports under the same name.
    gen_module = importlib.import_module("soundlm.lm.generate")
    steps, sample = [], gen_module.sample_next_token
    gen_module.sample_next_token = lambda *a, **k: steps.append(1) or sample(*a, **k)
    try:
        chunks = pipe.stream_continue(prompt, seconds=seconds, prompt_sample_rate=16000, include_prompt=False,
                                      sampling=sampling)
        next(chunks)
        chunks.close()
    finally:
        gen_module.sample_next_token = sample
    return len(steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", "--model", nargs="+", default=["shipped"],
                    help="'shipped', LM size presets (random weights) and/or bundle folders of any kind.")
    ap.add_argument("--one-stage", action="store_true",
                    help="Size presets get one delay-pattern acoustic stage over every codebook and no fine stage.")
    ap.add_argument("--first-window", nargs="+", type=float, default=[0.0, 0.5],
                    help="Seconds of each stage's first window (0: whole windows).")
    ap.add_argument("--seconds", type=float, default=4.0, help="Seconds asked after the prompt.")
    ap.add_argument("--out", type=Path, default=_HERE / "results" / "first_chunk_steps.json")
    args = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    torch.set_num_threads(1)

    from soundlm.audio import load_audio
    from soundlm.pipeline import AudioLMSampling
    from soundlm.pretrained import default_prompt_path

    prompt = load_audio(default_prompt_path(), sample_rate=16000)[0]  # [S]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            pipe = build_pipeline(model, Path(tmp) / Path(model).name, args.one_stage)
            for first in args.first_window:
                sampling = AudioLMSampling(first_window=first or None)
                rows.append({"model": model, "stages": stage_names(pipe), "first_window": first,
                             "steps": steps_before_first_chunk(pipe, prompt, args.seconds, sampling)})
    print(f"\nDecoding steps before the first chunk: 3 s prompt + {args.seconds:g} s, stream_continue\n")
    common.print_table(rows, [("model", "model", "s"), ("stages", "stages", "s"),
                              ("first_window", "first window s", ".2f"), ("steps", "steps", "d")])
    path = common.write_results("first_chunk_steps", {"benchmark": "first_chunk_steps",
                                                      "settings": vars(args) | {"out": str(args.out)},
                                                      "rows": rows}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
