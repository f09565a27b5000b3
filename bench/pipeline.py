"""Real-time factor of the full AudioLM pipeline (semantic -> coarse -> fine -> codec decode).

Builds the three stages at a preset's size (random weights: speed does not depend on
training) over the shipped model's tokenizers (MFCC k-means + our 16 kHz codec, 8 x 1024
codes at 50 Hz, 3 coarse codebooks), continues a 3 s prompt and reports generated audio
seconds per wall second (> 1 = faster than real time). Prints a table, writes JSON.

    .venv/bin/python bench/pipeline.py --presets mini small --seconds 4 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

# bench/tokenize.py shadows the standard module of that name: keep bench/ last on the path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent] + [
    str(Path(__file__).resolve().parent)]

import torch  # noqa: E402


def build_pipeline(preset: str, folder: Path):
    from soundlm.lm.model import TokenLM, lm_preset, save_lm
    from soundlm.pipeline import AudioLMPipeline
    from soundlm.pretrained import default_model_dir, load_pipeline
    from soundlm.stages import stage_layout

    shipped = load_pipeline(default_model_dir(), device="cpu")
    for part in (shipped.semantic, shipped.coarse, shipped.fine):
        layout = stage_layout(part.name, shipped.semantic_tokenizer.vocab_size, shipped.codec.codebook_size,
                              shipped.codec.total_codebooks, shipped.num_coarse)
        positions = part.model.config.max_positions if hasattr(part.model, "config") else 1024
        cfg = lm_preset(preset, layout.vocab_size, max_positions=max(positions, 1024))
        save_lm(TokenLM.from_config(cfg, layout=layout, meta=part.meta.to_json()), folder / part.name)
    pipe = AudioLMPipeline.from_runs(folder / "semantic", folder / "coarse", folder / "fine",
                                     semantic_tokenizer=default_model_dir() / "semantic_tokenizer",
                                     codec=default_model_dir() / "codec", device="cpu")
    params = sum(p.numel() for s in (pipe.semantic, pipe.coarse, pipe.fine) for p in s.model.parameters())
    return pipe, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["mini", "small"], help="LM size presets to time.")
    ap.add_argument("--seconds", type=float, default=4.0, help="Seconds generated after the prompt.")
    ap.add_argument("--batches", nargs="+", type=int, default=[1], help="Samples generated together.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="Timed runs per case (median); one warm-up first.")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "pipeline.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from soundlm.audio import load_audio
    from soundlm.pretrained import default_prompt_path

    prompt = load_audio(default_prompt_path(), sample_rate=16000)[0]  # [S]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            pipe, params = build_pipeline(preset, Path(tmp) / preset)
            for batch in args.batches:
                pipe.continue_audio(prompt, seconds=0.5, num_samples=batch, seed=0, prompt_sample_rate=16000)  # warm-up
                times = []
                for r in range(args.repeats):
                    start = time.perf_counter()
                    pipe.continue_audio(prompt, seconds=args.seconds, num_samples=batch, seed=r, prompt_sample_rate=16000)
                    times.append(time.perf_counter() - start)
                wall = sorted(times)[len(times) // 2]
                rows.append({"preset": preset, "params_millions": round(params / 1e6, 1), "batch": batch,
                             "generated_seconds": args.seconds * batch, "wall_seconds": round(wall, 2),
                             "realtime_factor": round(args.seconds * batch / wall, 2)})
                print(f"{preset}: batch {batch} done", flush=True)
    print(f"\nAudioLM pipeline, 3 s prompt + {args.seconds:g} s generated, {args.threads} threads, CPU, "
          "random weights at each preset's size\n")
    header = ["preset", "params_millions", "batch", "generated_seconds", "wall_seconds", "realtime_factor"]
    print("  ".join(f"{h:>17}" for h in header))
    for row in rows:
        print("  ".join(f"{row[h]!s:>17}" for h in header))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from soundlm.fileio import write_json_atomic

    write_json_atomic(args.out, {"machine": {"cpu": platform.processor() or platform.machine(),
                                             "threads": args.threads, "torch": torch.__version__},
                                 "settings": vars(args) | {"out": str(args.out)}, "rows": rows})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
