"""Speaker similarity with Resemblyzer's d-vector encoder (GE2E; weights ship with the package).

Embeddings are 256-d and L2-normalised, so cosine similarity is a dot product. Two uses:
voice preservation (similarity between a prompt and a continuation) and a nearest-voice
classifier (enrol per-speaker mean embeddings, classify by cosine) for speaker accuracy.
`voice_spread` and `distinct_voices` measure a voice inventory: how close each voice's centroid
is to its nearest other voice, and which voices duplicate another (bench/voices.py).
"""

from __future__ import annotations

import importlib.metadata
import sys
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from soundlm.audio import resample

ENCODER_SAMPLE_RATE = 16_000  # resemblyzer's sampling_rate hyperparameter
MIN_SECONDS = 0.5  # shorter clips give embeddings dominated by padding


def _import_resemblyzer():
    """Import resemblyzer on setuptools >= 81 too.

    Its dependency webrtcvad 2.0.10 runs `import pkg_resources` only to read its own
    version, and new setuptools no longer ships pkg_resources. A throwaway module answering
    that one call is installed for the import and removed afterwards, so nothing else sees it.
    """
    try:
        return _import_quietly()
    except ModuleNotFoundError as e:
        if e.name == "resemblyzer":
            raise ModuleNotFoundError("resemblyzer is not installed; pip install 'soundlm[eval]'") from e
        if e.name != "pkg_resources":
            raise
    shim = types.ModuleType("pkg_resources")
    shim.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
    sys.modules["pkg_resources"] = shim
    try:
        for name in [m for m in sys.modules if m == "resemblyzer" or m.startswith("resemblyzer.")]:
            del sys.modules[name]  # drop the half-imported package from the failed attempt
        return _import_quietly()
    finally:
        del sys.modules["pkg_resources"]


def _import_quietly():
    # resemblyzer imports scipy.ndimage.morphology, which warns on every import in scipy >= 1.8.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import resemblyzer
    return resemblyzer


@lru_cache(maxsize=2)
def load_voice_encoder(device: str | None = None):
    """The pretrained VoiceEncoder (loaded once per device; CUDA when available)."""
    from soundlm.devices import default_device

    resemblyzer = _import_resemblyzer()
    return resemblyzer.VoiceEncoder(device=default_device(device), verbose=False)


def speaker_embedding(audio, sample_rate: int, encoder=None) -> np.ndarray:
    """[S] or [C, S] audio (numpy or torch) -> unit-norm float32 [256] speaker embedding.

    Audio is mixed to mono, resampled to 16 kHz, volume-normalised and stripped of long
    silences (resemblyzer's own preprocessing), then embedded.
    """
    resemblyzer = _import_resemblyzer()
    if hasattr(audio, "detach"):
        audio = audio.detach().float().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise ValueError(f"audio must be [S] or [C, S], got shape {audio.shape}")
    if audio.shape[1] < MIN_SECONDS * sample_rate:
        raise ValueError(f"clip too short for a speaker embedding: {audio.shape[1] / sample_rate:.2f} s "
                         f"< {MIN_SECONDS} s; use longer utterances")
    wav = resample(audio.mean(axis=0, keepdims=True), sample_rate, ENCODER_SAMPLE_RATE)[0]  # [S16k]
    wav = resemblyzer.audio.normalize_volume(wav, resemblyzer.hparams.audio_norm_target_dBFS,
                                             increase_only=True)
    trimmed = resemblyzer.audio.trim_long_silences(wav)
    # Trimming can remove nearly everything from a quiet clip; fall back to the full clip.
    wav = trimmed if len(trimmed) >= MIN_SECONDS * ENCODER_SAMPLE_RATE else wav
    encoder = encoder or load_voice_encoder()
    emb = np.asarray(encoder.embed_utterance(wav.astype(np.float32)), dtype=np.float32)
    return emb / max(float(np.linalg.norm(emb)), 1e-12)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def speaker_similarity(audio_a, sample_rate_a: int, audio_b, sample_rate_b: int, encoder=None) -> float:
    """Cosine similarity of two clips' speaker embeddings (about 0.4 to 1; higher = same voice)."""
    return cosine_similarity(speaker_embedding(audio_a, sample_rate_a, encoder),
                             speaker_embedding(audio_b, sample_rate_b, encoder))


def similarities_to_reference(reference: np.ndarray, clips: Sequence[np.ndarray], sample_rate: int,
                              device: str | None = "cpu") -> tuple[list[float | None], str | None]:
    """Speaker similarity of each clip to `reference` (all at `sample_rate`), or Nones and the reason why not.

    For reports around generated audio (the demo, `soundlm serve`): the audio is the point,
    so a missing optional package or a clip too short to embed gives a note instead of an error.
    """
    try:
        encoder = load_voice_encoder(device)
        ref = speaker_embedding(reference, sample_rate, encoder)
        return [cosine_similarity(ref, speaker_embedding(c, sample_rate, encoder)) for c in clips], None
    except (ImportError, ValueError, OSError, RuntimeError) as e:
        return [None] * len(clips), f"{type(e).__name__}: {e}"


@dataclass
class SpeakerEnrolment:
    """Per-speaker mean embeddings; row i of `centroids` [N, D] belongs to `speakers[i]`."""

    speakers: list[str]
    centroids: np.ndarray  # [N, D], unit-norm rows


@dataclass
class SpeakerPrediction:
    speaker: str
    score: float  # cosine similarity to the chosen centroid


@dataclass
class SpeakerIdResult:
    accuracy: float
    num_utterances: int
    predictions: list[SpeakerPrediction]


def enrol_speakers(embeddings: Mapping[str, Sequence[np.ndarray]]) -> SpeakerEnrolment:
    """Average each speaker's utterance embeddings (then re-normalise) into one centroid."""
    if not embeddings:
        raise ValueError("no speakers to enrol; pass {speaker: [embedding, ...]}")
    speakers, rows = [], []
    for spk, embs in embeddings.items():
        if len(embs) == 0:
            raise ValueError(f"speaker {spk!r} has no enrolment utterances")
        mean = np.mean(np.stack([np.asarray(e, dtype=np.float32) for e in embs]), axis=0)  # [D]
        speakers.append(str(spk))
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return SpeakerEnrolment(speakers=speakers, centroids=np.stack(rows))


def classify_speaker(enrolment: SpeakerEnrolment, embedding: np.ndarray) -> SpeakerPrediction:
    """Nearest enrolled voice by cosine similarity."""
    emb = np.asarray(embedding, dtype=np.float32)
    if emb.shape != enrolment.centroids.shape[1:]:
        raise ValueError(f"embedding has shape {emb.shape}, the enrolment has "
                         f"{enrolment.centroids.shape[1:]}; use the same encoder for both")
    scores = enrolment.centroids @ (emb / max(float(np.linalg.norm(emb)), 1e-12))  # [N]
    best = int(np.argmax(scores))
    return SpeakerPrediction(speaker=enrolment.speakers[best], score=float(scores[best]))


def speaker_id_accuracy(enrolment: SpeakerEnrolment,
                        labelled: Sequence[tuple[str, np.ndarray]]) -> SpeakerIdResult:
    """Accuracy of `classify_speaker` on (true speaker, embedding) pairs."""
    if not labelled:
        raise ValueError("no test utterances; pass [(speaker, embedding), ...]")
    unknown = sorted({spk for spk, _ in labelled} - set(enrolment.speakers))
    if unknown:
        raise ValueError(f"test speakers {unknown[:5]} were never enrolled; enrol them first")
    preds = [classify_speaker(enrolment, emb) for _, emb in labelled]
    correct = sum(p.speaker == spk for p, (spk, _) in zip(preds, labelled))
    return SpeakerIdResult(accuracy=correct / len(labelled), num_utterances=len(labelled), predictions=preds)


@dataclass
class VoiceSpread:
    """How far apart enrolled voices are: for each voice, its nearest other voice by centroid cosine."""

    speakers: list[str]
    nearest: list[str]
    nearest_cosine: np.ndarray  # [N]


@dataclass
class DistinctVoices:
    kept: list[str]
    dropped: list[tuple[str, str, float]]  # (voice, the kept voice it duplicates, cosine)


def voice_spread(enrolment: SpeakerEnrolment) -> VoiceSpread:
    """Nearest other voice of every enrolled voice (needs at least two)."""
    if len(enrolment.speakers) < 2:
        raise ValueError(f"voice spread needs at least two voices, got {len(enrolment.speakers)}")
    sims = enrolment.centroids @ enrolment.centroids.T  # [N, N]
    np.fill_diagonal(sims, -np.inf)
    best = np.argmax(sims, axis=1)  # [N]
    return VoiceSpread(speakers=list(enrolment.speakers), nearest=[enrolment.speakers[j] for j in best],
                       nearest_cosine=sims[np.arange(len(best)), best].astype(np.float64))


def distinct_voices(enrolment: SpeakerEnrolment, threshold: float) -> DistinctVoices:
    """Keep voices in enrolment order, dropping any whose centroid cosine to a kept one is >= `threshold`.

    Order decides which of two duplicates survives: enrol training voices before held-out
    ones, and a held-out voice that duplicates a training voice is the one dropped.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"duplicate threshold is a cosine in [-1, 1], got {threshold}")
    kept: list[int] = []
    dropped: list[tuple[str, str, float]] = []
    for i, spk in enumerate(enrolment.speakers):
        if kept:
            sims = enrolment.centroids[kept] @ enrolment.centroids[i]  # [len(kept)]
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                dropped.append((spk, enrolment.speakers[kept[j]], float(sims[j])))
                continue
        kept.append(i)
    return DistinctVoices(kept=[enrolment.speakers[i] for i in kept], dropped=dropped)
