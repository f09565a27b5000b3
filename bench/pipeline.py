"""Real-time factor and time to first audio of the full AudioLM pipeline.

Three kinds of model:
- `shipped`: the model that ships with soundlm (`src/soundlm/assets/speech-tiny`), as the
  demo runs it;
- a size preset (`mini`, `small`, ...): the three stages built at that size with random
  weights (speed does not depend on training) over the shipped tokenizers (phonetic
  k-means + our 16 kHz codec, 8 x 1024 codes at 50 Hz, 3 coarse codebooks); with
  `--one-stage`, a semantic stage and one delay-pattern stage over all 8 codebooks;
- a bundle folder (`--model DIR`): any kind, three stages or one-stage (semantic + one
  delay-pattern stage over every codebook, no fine/); the "stages" column says which.

Each continues the bundled 3 s prompt by `--seconds` at each batch size and LM weight mode
(`--quantize`), and reports generated audio seconds per wall second over the whole batch
(> 1 = faster than real time; `rtf per stream` divides by the batch), the CPU seconds of
the process (steadier than wall time on a shared machine), and the time to the first
generated audio chunk of `stream_continue` (the prompt excluded), with each stage's first
window `--first-window` seconds long (default: the library's, `AudioLMSampling.first_window`). Rows of one run are
interleaved round by round so that load from other processes spreads over all of them.
Prints a table, writes JSON. It also runs against an older checkout of soundlm (put its
`src` first on PYTHONPATH) that has no `quantize` or streaming: `--quantize none` only, and
the first-chunk column stays empty.

    .venv/bin/python bench/pipeline.py --models shipped small --batches 1 4 --quantize none int8 bf16
    .venv/bin/python bench/pipeline.py --model path/to/one-stage-bundle --batches 1 --quantize int8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench/tokenize.py shadows the standard module of that name: keep bench/ last on the path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import torch  # noqa: E402

import common  # noqa: E402


def build_pipeline(model: str, folder: Path, one_stage: bool = False):
    """The shipped pipeline, a bundle folder's, or one with the three stages at preset `model`'s size (random
    weights); `one_stage`: the preset's semantic stage and one delay-pattern stage over every codebook instead."""
    from soundlm.lm.model import TokenLM, lm_preset, save_lm
    from soundlm.pipeline import AudioLMPipeline
    from soundlm.pretrained import default_model_dir, load_pipeline
    from soundlm.stages import stage_layout

    if Path(model).is_dir():
        return load_pipeline(Path(model), device="cpu")
    shipped = load_pipeline(default_model_dir(), device="cpu")
    if model == "shipped":
        return shipped
    for part in shipped.stages:
        if one_stage and part.name != "semantic":
            if part.name == "coarse":  # as `soundlm recipe --acoustic-pattern delay1` trains it
                from soundlm.stages import build_stage

                (folder / "coarse").mkdir(parents=True, exist_ok=True)  # built again for each weight mode
                build_stage("coarse", part.meta.tokenizers, model, pattern="delay", window_seconds=part.window_seconds,
                            coarse_codebooks=shipped.codec.total_codebooks).save(folder / "coarse")
            continue
        layout = stage_layout(part.name, shipped.semantic_tokenizer.vocab_size, shipped.codec.codebook_size,
                              shipped.codec.total_codebooks, shipped.num_coarse)
        positions = part.model.config.max_positions if hasattr(part.model, "config") else 1024
        cfg = lm_preset(model, layout.vocab_size, max_positions=max(positions, 1024))
        save_lm(TokenLM.from_config(cfg, layout=layout, meta=part.meta.to_json()), folder / part.name)
    return AudioLMPipeline.from_runs(folder / "semantic", folder / "coarse",
                                     folder / "fine" if shipped.fine is not None and not one_stage else None,
                                     semantic_tokenizer=default_model_dir() / "semantic_tokenizer",
                                     codec=default_model_dir() / "codec", device="cpu")


def stage_names(pipe) -> str:
    """The stages a pipeline runs, e.g. "semantic+coarse+fine" or "semantic+coarse(delay)" (one-stage)."""
    return "+".join(s.name + ("(delay)" if getattr(s, "delayed", False) else "") for s in pipe.stages)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", "--model", nargs="+", default=["shipped", "small"],
                    help="'shipped', LM size presets (random weights) and/or bundle folders of any kind.")
    ap.add_argument("--one-stage", action="store_true",
                    help="Size presets get one delay-pattern acoustic stage over every codebook and no fine stage.")
    ap.add_argument("--first-window", type=float, default=None,
                    help="Seconds each stage generates in its first window (0: whole windows; default: the "
                         "library's). Both timed calls use it.")
    ap.add_argument("--quantize", nargs="+", default=["none", "int8"], help="LM weight modes: none, int8, bf16.")
    ap.add_argument("--seconds", type=float, default=4.0, help="Seconds generated after the prompt.")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 4], help="Samples generated together.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="Timed rounds (median); one warm-up first.")
    ap.add_argument("--out", type=Path, default=_HERE / "results" / "pipeline.json")
    args = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    torch.set_num_threads(args.threads)

    from soundlm.audio import load_audio
    from soundlm.pretrained import default_prompt_path

    prompt = load_audio(default_prompt_path(), sample_rate=16000)[0]  # [S]
    from soundlm.lm.model import LM_PRESETS

    unknown = [m for m in args.models if m != "shipped" and m not in LM_PRESETS and not Path(m).is_dir()]
    if unknown:
        raise SystemExit(f"--models {' '.join(unknown)}: neither 'shipped', a size preset ({', '.join(LM_PRESETS)}) "
                         "nor a bundle folder")
    # An older soundlm has no first window: pass sampling only when one is asked for.
    from soundlm.pipeline import AudioLMSampling

    sampling = {}
    if args.first_window is not None:
        sampling["sampling"] = AudioLMSampling(first_window=args.first_window or None)
    first_window = getattr(sampling.get("sampling", AudioLMSampling()), "first_window", None)
    started, load_before = time.time(), os.getloadavg()
    cases = []  # (row, pipeline)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for mode in args.quantize:
                pipe = build_pipeline(model, Path(tmp) / Path(model).name, args.one_stage)
                if hasattr(pipe, "quantize"):  # an older soundlm (before issue 19) has none: fp32 only
                    pipe = pipe.quantize(mode)
                elif mode != "none":
                    raise SystemExit(f"this soundlm ({pipe.__module__}) cannot run --quantize {mode}")
                params = sum(p.numel() for s in pipe.stages for p in s.model.parameters())
                params += sum(b.numel() for s in pipe.stages for b in s.model.buffers()
                              if b.dtype == torch.int8)
                for batch in args.batches:
                    # Warm-up: allocations, rotary tables, the int8 layers' stacked weights.
                    pipe.continue_audio(prompt, seconds=0.5, num_samples=batch, seed=0, prompt_sample_rate=16000,
                                        **sampling)
                    cases.append(({"model": model, "stages": stage_names(pipe), "quantize": mode,
                                   "params_millions": round(params / 1e6, 1), "batch": batch,
                                   "first_window": first_window, "wall": [], "cpu": [], "first_chunk": []}, pipe))
                print(f"  built {model} ({mode})", flush=True)
        for r in range(args.repeats):
            for row, pipe in cases:
                wall, cpu = time.perf_counter(), time.process_time()
                pipe.continue_audio(prompt, seconds=args.seconds, num_samples=row["batch"], seed=r,
                                    prompt_sample_rate=16000, **sampling)
                row["wall"].append(time.perf_counter() - wall)
                row["cpu"].append(time.process_time() - cpu)
                if not hasattr(pipe, "stream_continue"):
                    continue
                # Time to the first chunk of generated audio; the rest of the stream is not waited for.
                t = time.perf_counter()
                stream = pipe.stream_continue(prompt, seconds=args.seconds, num_samples=row["batch"], seed=r,
                                              prompt_sample_rate=16000, include_prompt=False, **sampling)
                next(stream)
                row["first_chunk"].append(time.perf_counter() - t)
                stream.close()
            print(f"  round {r + 1}/{args.repeats} done", flush=True)
    rows = []
    for row, _ in cases:
        wall, cpu = statistics.median(row["wall"]), statistics.median(row["cpu"])
        audio = args.seconds * row["batch"]
        rows.append(row | {"generated_seconds": audio, "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                           "realtime_factor": round(audio / wall, 2), "realtime_factor_cpu": round(audio / cpu, 2),
                           "realtime_factor_per_stream": round(args.seconds / wall, 2),
                           "first_chunk_seconds": (round(statistics.median(row["first_chunk"]), 2)
                                                   if row["first_chunk"] else None)})
    load_after = os.getloadavg()
    print(f"\nAudioLM pipeline: 3 s prompt + {args.seconds:g} s, {args.threads} threads, CPU; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    common.print_table(rows, [("model", "model", "s"), ("stages", "stages", "s"), ("quantize", "weights", "s"),
                              ("params_millions", "M params", ".1f"),
                              ("batch", "B", "d"), ("wall_seconds", "wall s", ".2f"), ("cpu_seconds", "cpu s", ".2f"),
                              ("realtime_factor", "rtf", ".2f"), ("realtime_factor_per_stream", "rtf/stream", ".2f"),
                              ("realtime_factor_cpu", "rtf (cpu s)", ".2f"),
                              ("first_window", "first window s", ".2f"),
                              ("first_chunk_seconds", "first chunk s", ".2f")])
    import soundlm

    payload = {"benchmark": "pipeline", "machine": common.machine_info(args.threads),
               "soundlm": str(Path(soundlm.__file__).parent),
               "load_average": {"before": load_before, "after": load_after},
               "settings": vars(args) | {"out": str(args.out)}, "rows": rows,
               "wall_seconds": round(time.time() - started, 1)}
    path = common.write_results("pipeline", payload, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
