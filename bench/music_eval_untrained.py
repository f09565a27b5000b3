"""`soundlm eval music`'s floor: an untrained (random) tiny music bundle judged by a trained MuLan.

No trained MusicLM ships yet, so this measures what the evaluation reports for a generator that
knows nothing: attribute accuracy at chance, adherence equal with and without the caption, and
the Frechet distance of noise-like clips against the real-vs-real floor. The bundle is the tests'
tiny random one (`tests/tiny_bundle.py`) with condition ids shaped like the MuLan's (levels x
codes) and that MuLan as mulan/; then `soundlm eval music` runs on it.

    PYTHONPATH=src:.:tests OMP_NUM_THREADS=1 python -m bench.music_eval_untrained \
        --mulan /work/mulan-run/final --data /work/music-data/music400 \
        --instrument-model /work/music-data/instrument/final --out /tmp/eval-music-untrained
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tiny_bundle import make_tiny_bundle  # tests/ on PYTHONPATH


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mulan", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--instrument-model", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--captions", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()

    from soundlm.eval.report import write_section
    from soundlm.eval.sections.music import eval_music
    from soundlm.music.mulan import load_mulan
    from soundlm.music.pipeline import MusicLMPipeline
    from soundlm.pipeline import AudioLMPipeline

    mulan = load_mulan(args.mulan)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = make_tiny_bundle(Path(tmp), condition=(mulan.num_condition_tokens, mulan.condition_codebook_size))
        music = MusicLMPipeline(AudioLMPipeline.from_bundle(bundle, device="cpu"), mulan)
        section = eval_music(music, args.data, num_captions=args.captions, seconds=args.seconds,
                             instrument_model=args.instrument_model, out_dir=args.out,
                             settings_extra={"model": "tests/tiny_bundle.py random, condition "
                                                      f"{mulan.num_condition_tokens}x{mulan.condition_codebook_size}",
                                             "mulan": str(args.mulan)})
    md, _ = write_section(section, args.out)
    print(section.markdown())
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
