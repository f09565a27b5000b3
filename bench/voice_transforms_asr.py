"""Do the wide inventory's voice transforms keep speech intelligible? Pocketsphinx WER, plain vs transformed.

One espeak-ng voice (en-us, variant m3, pitch 50, rate 160) reads `--sentences` random
sentences; the same clips are then passed through random training transforms (one per clip,
drawn like the wide inventory's pseudo-speakers) and through the held-out vibrato transforms.
Pocketsphinx decodes every clip with a trigram LM of 2,000 other random sentences (plus the
references' words as unigrams), as `soundlm eval asr` does. Same words, same decoder: the
WER difference is what the transforms cost a recogniser. Pocketsphinx is a weak recogniser
(issue 20); read the difference, not the level.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/voice_transforms_asr.py --sentences 100   # ~1 min
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402

from common import print_table, write_results  # noqa: E402

from soundlm.audio import load_audio  # noqa: E402
from soundlm.data.speech import Speaker, SpeechTask, render_utterance  # noqa: E402
from soundlm.data.text import random_sentence  # noqa: E402
from soundlm.data.transforms import apply_voice_transform, random_transform  # noqa: E402
from soundlm.eval.asr import PocketsphinxASR, word_error_rate  # noqa: E402

SR = 16_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sentences", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/voice_transforms_asr.json).")
    args = p.parse_args()
    rng = random.Random(f"bench-transforms-asr-{args.seed}")
    refs = [random_sentence(rng).text["en"] for _ in range(args.sentences)]
    lm = [random_sentence(rng).text["en"] for _ in range(2000)]
    asr = PocketsphinxASR(sentences=lm, extra_words=refs, seed=args.seed)
    speaker = Speaker("bench", "espeak-ng", "en", "en-us", "m3", 50, 160, "train")
    plain = []
    with tempfile.TemporaryDirectory(prefix="soundlm-tasr-") as tmp:
        for i, text in enumerate(refs):
            path = Path(tmp) / f"{i}.wav"
            render_utterance(SpeechTask(str(path), text, speaker, SR))
            plain.append(load_audio(path, sample_rate=SR, mono=True))
    t_rng = random.Random(f"bench-transforms-asr-t-{args.seed}")
    variants = {"plain": plain,
                "training transforms": [apply_voice_transform(a, SR, random_transform(t_rng)) for a in plain],
                "held-out (vibrato) transforms": [apply_voice_transform(a, SR, random_transform(t_rng, vibrato=True))
                                                  for a in plain]}
    rows = []
    for name, clips in variants.items():
        result = word_error_rate(refs, [asr.transcribe(c, SR) for c in clips])
        rows.append({"clips": name, "wer": result.wer, "words": result.num_reference_words,
                     "seconds": sum(c.shape[1] for c in clips) / SR})
    print_table(rows, [("clips", "clips", "s"), ("wer", "WER", ".3f"), ("words", "words", "d"),
                       ("seconds", "audio s", ".0f")])
    path = write_results("voice_transforms_asr", {"command": " ".join(sys.argv), "seed": args.seed, "rows": rows},
                         args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
