"""`soundlm eval codec`: codec reconstruction quality (mel, STFT, SI-SDR, STOI, PESQ) per bitrate."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from soundlm.eval.report import EvalSection, state_path

if TYPE_CHECKING:
    from soundlm.codec.base import AcousticTokenizer


def eval_codec(codec: AcousticTokenizer, data: str | Path, split: str | None = "heldout",
               max_files: int | None = None, num_codebooks: Sequence[int] | None = None,
               max_seconds: float | None = None, include_stoi: bool = True, include_pesq: bool = True,
               out_dir: str | Path | None = None, progress: bool = True) -> EvalSection:
    """Signal metrics (mel, multi-resolution STFT, SI-SDR, STOI, PESQ-wb) at each bitrate, mean over files.

    num_codebooks None: powers of two up to the codec's total, plus the total.
    """
    from soundlm.data import open_corpus
    from soundlm.eval.codec_metrics import default_codebook_counts, evaluate_codec

    start = time.perf_counter()
    utts = open_corpus(data, split=split)[:max_files]
    counts = list(num_codebooks) if num_codebooks else default_codebook_counts(codec.total_codebooks)
    rows = evaluate_codec(codec, [u.path for u in utts], counts, include_stoi=include_stoi,
                          include_pesq=include_pesq, max_seconds=max_seconds,
                          state_path=state_path(out_dir, "codec"), progress=progress)
    best = rows[-1]
    settings = {"codec": codec.describe(), "data": str(data), "split": split, "num_files": len(utts),
                "num_codebooks": counts, "max_seconds": max_seconds}
    summary = {"bitrate_kbps": best.bitrate_kbps, "num_codebooks": best.num_codebooks,
               "mel_distance": best.mel_distance, "si_sdr": best.si_sdr, "stoi": best.stoi, "pesq": best.pesq}
    return EvalSection(name="codec", title="Codec reconstruction quality", settings=settings, summary=summary,
                       rows=[asdict(r) for r in rows], wall_seconds=time.perf_counter() - start,
                       notes=["Rows: mean over files at each number of codebooks; the summary is the highest "
                              "bitrate. Lower is better for the distances, higher for SI-SDR (dB), STOI, PESQ."])
