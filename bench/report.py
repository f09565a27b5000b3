"""Print the benchmark JSON results as Markdown tables (the ones in docs/BENCHMARKS.md).

    python bench/report.py                      # bench/results/generate.json + tokenize.json
    python bench/report.py --generate FILE --tokenize FILE
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _fmt(value, spec: str) -> str:
    return "-" if value is None or value == 0 else format(value, spec)


def _table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def _machine(m: dict) -> str:
    return (f"{m.get('cpu', 'unknown CPU')}, {m.get('cpu_count')} cores, torch {m.get('torch')} "
            f"({m.get('device')}), {m.get('torch_threads')} threads")


def generate_report(data: dict) -> str:
    s = data["settings"]
    lines = []
    for r in data["results"]:
        lines.append([r["workload"], r["impl"], str(r["batch"]), _fmt(r.get("weight_mb"), ".1f"),
                      _fmt(r.get("tokens_per_s"), ".1f"), _fmt(r.get("frames_per_s"), ".1f"),
                      _fmt(r.get("vs_soundlm"), ".2f"), _fmt(r.get("floor_tokens_per_s"), ".0f"),
                      _fmt(r.get("floor_fraction"), ".0%"), str(r.get("runs", len(r.get("seconds", [])))),
                      r.get("error") or ""])
    head = (f"Machine: {_machine(data['machine'])}. Copy bandwidth {data['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s. "
            f"Prompt {s['prompt']}, {s['new_tokens']} new tokens, {s['sampling']}, fp32 "
            f"(soundlm-int8 / soundlm-bf16 rows: weight-only int8 / bf16); "
            f"median of up to {s['repeats']} rounds after a warm-up.")
    return head + "\n\n" + _table(["workload", "impl", "B", "weights MB", "tokens/s", "frames/s", "x soundlm",
                                   "B1 floor tok/s", "of floor", "runs", "note"], lines)


def tokenize_report(data: dict) -> str:
    s = data["settings"]
    lines = []
    for r in data["results"]:
        lines.append([r["tokenizer"], str(r["batch"]), f"{r['clip_seconds']:.0f}", str(r["sample_rate"]),
                      f"{r['params'] / 1e6:.1f}M", _fmt(r.get("audio_s_per_s"), ".1f"),
                      _fmt(r.get("frames_per_s"), ".0f"), _fmt(r.get("vs_soundlm_codec"), ".2f"),
                      r.get("error") or ""])
    head = (f"Machine: {_machine(data['machine'])}. Clips of {s['clip_seconds']:.0f} s, "
            f"median of {s['repeats']} rounds after a warm-up.")
    return head + "\n\n" + _table(["tokenizer", "B", "clip s", "Hz", "params", "audio s / s", "frames/s",
                                   "x soundlm-codec", "note"], lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generate", type=Path, default=RESULTS / "generate.json")
    ap.add_argument("--tokenize", type=Path, default=RESULTS / "tokenize.json")
    args = ap.parse_args()
    for path, render in ((args.generate, generate_report), (args.tokenize, tokenize_report)):
        if not path.exists():
            print(f"({path} not found: run the benchmark first)\n")
            continue
        print(render(json.loads(path.read_text())) + "\n")


if __name__ == "__main__":
    main()
