"""Where a music bundle loses the key a caption asks for: exact key+mode accuracy on `eval music`'s held-out
captions at each step of the path, and the codec's energy at multiples of its frame rate.

- real: the caption's own clip (first `--seconds`), by `soundlm.music.analysis.estimate_key`;
- codec resynthesis: the same clip through the bundle's codec (encode, decode);
- units of the real clip: the mean chroma of the semantic units' k-means centroids (chroma units only);
- units generated: the same for the ids the conditioned semantic stage draws for the caption;
- audio generated: the decoded generation, as `eval music` judges it.
Generation as `eval music`: caption i with seed i, `--seconds`, guidance 3.
The buzz row: median dB of (resynthesis / original) power at FFT bins within 1 Hz of a multiple of the codec's
frame rate, and elsewhere, 80-1000 Hz.

    PYTHONPATH=src:. python -m bench.music_key_path --model BUNDLE --eval EVAL/music.json --data CORPUS \
        --out bench/results/music_key_path.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from soundlm.fileio import write_json_atomic
from soundlm.music.analysis import estimate_key, key_from_chroma
from soundlm.music.pipeline import MusicLMPipeline
from soundlm.pipeline import AudioLMSampling


def frame_rate_lines(x: np.ndarray, y: np.ndarray, sample_rate: int, frame_rate: float) -> tuple[float, float]:
    """Median dB of |Y|^2 / |X|^2 near multiples of `frame_rate` and away from them, 80-1000 Hz."""
    n = min(len(x), len(y))
    ratio = 10 * np.log10((np.abs(np.fft.rfft(y[:n])) ** 2 + 1e-9) / (np.abs(np.fft.rfft(x[:n])) ** 2 + 1e-9))
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    dist = np.abs(((f + frame_rate / 2) % frame_rate) - frame_rate / 2)
    band = (f > 80) & (f < 1000)
    return float(np.median(ratio[band & (dist < 1)])), float(np.median(ratio[band & (dist > 10)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a music bundle with chroma semantic units")
    ap.add_argument("--eval", required=True, help="`soundlm eval music`'s music.json (its rows name the captions)")
    ap.add_argument("--data", required=True, help="the corpus those captions came from")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", required=True, help="JSON file to write")
    args = ap.parse_args()

    data = Path(args.data)
    manifest = {r["id"]: r for r in map(json.loads, (data / "manifest.jsonl").read_text().splitlines())}
    rows = json.loads(Path(args.eval).read_text())["rows"]
    music = MusicLMPipeline.from_bundle(args.model, device="cpu")
    pipe = music.audiolm
    centroids = dict(pipe.semantic_tokenizer.named_buffers())["centroids"].float().cpu().numpy()[:, :12]
    codec_rate = pipe.codec.sample_rate

    def hit(est, attrs) -> bool:
        return est.tonic == attrs["tonic"] and est.mode == attrs["mode"]

    hits = {"real": [], "codec resynthesis": [], "units of the real clip": [], "units generated": [],
            "audio generated": []}
    lines_on, lines_off, generated_keys = [], [], Counter()
    for r in rows:
        attrs = manifest[r["id"]]["music"]
        audio, sr = sf.read(data / manifest[r["id"]]["path"], dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)[: int(args.seconds * sr)]
        hits["real"].append(hit(estimate_key(audio, sr), attrs))
        semantic, codes = pipe.tokenize_prompt(audio, sr)
        with torch.inference_mode():
            resynth = pipe.codec.decode(codes).float()[0, 0].cpu().numpy()
        hits["codec resynthesis"].append(hit(estimate_key(resynth, codec_rate), attrs))
        hits["units of the real clip"].append(hit(key_from_chroma(centroids[semantic[0].cpu().numpy()].mean(0)), attrs))
        if sr == codec_rate:
            on, off = frame_rate_lines(audio, resynth, sr, pipe.codec.frame_rate)
            lines_on.append(on)
            lines_off.append(off)
    requests = music.requests([r["caption"] for r in rows], args.seconds, 1, seed=0)
    for r, g in zip(rows, pipe.generate_batch_tokens(requests, AudioLMSampling(guidance=3.0))):
        attrs = manifest[r["id"]]["music"]
        hits["units generated"].append(hit(key_from_chroma(centroids[g.semantic[0].cpu().numpy()].mean(0)), attrs))
        est = estimate_key(g.audio[0], music.sample_rate)
        hits["audio generated"].append(hit(est, attrs))
        generated_keys[est.name] += 1
    result = {"model": args.model, "captions": len(rows), "chance": 1 / 24,
              "accuracy": {k: float(np.mean(v)) for k, v in hits.items()},
              "frame_rate_lines_db": float(np.mean(lines_on)) if lines_on else None,
              "elsewhere_db": float(np.mean(lines_off)) if lines_off else None,
              "generated_keys": generated_keys.most_common(5)}
    print(f"{args.model}: {len(rows)} captions, chance {1 / 24:.3f}\n\n| step | key+mode accuracy |\n|---|---|")
    for k, v in result["accuracy"].items():
        print(f"| {k} | {v:.3f} |")
    if lines_on:
        print(f"\ncodec resynthesis / original at {pipe.codec.frame_rate:g} Hz multiples: "
              f"{result['frame_rate_lines_db']:+.1f} dB, elsewhere {result['elsewhere_db']:+.1f} dB")
    print("generated audio's keys:", result["generated_keys"])
    write_json_atomic(Path(args.out), result)


if __name__ == "__main__":
    main()
