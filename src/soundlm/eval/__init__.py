"""Evaluation metrics: codec signal quality, speaker similarity, ASR word/character error rate
(Whisper tiny.en or pocketsphinx), words heard in generated speech and sWUGGY-style lexical
discrimination. Plain functions returning dataclasses; heavy dependencies (torch, pystoi,
pesq, resemblyzer, faster-whisper, pocketsphinx, jiwer) load on first use.

The `soundlm eval` sections that run them on a corpus or a bundle are `soundlm.eval.sections.*`,
their report format and resume state `soundlm.eval.report`, the `eval all` driver `soundlm.eval.suite`."""

from soundlm.eval.asr import (PocketsphinxASR, Recognizer, WERResult, WhisperASR, load_recognizer, normalize_text,
                              transcribe_and_score, whisper_normalize, word_error_rate)
from soundlm.eval.codec_metrics import (CodecEvalRow, CodecReport, codec_report, evaluate_codec, mel_distance,
                                        multi_resolution_stft_distance, pesq_wideband, render_markdown_table,
                                        si_sdr, stoi, write_rows_json)
from soundlm.eval.lexical import (LexicalPair, LexicalResult, lexical_accuracy, load_lexicon, make_lexical_pairs,
                                  synthesize_pairs)
from soundlm.eval.speaker import (SpeakerEnrolment, SpeakerIdResult, SpeakerPrediction, classify_speaker,
                                  enrol_speakers, load_voice_encoder, speaker_embedding, speaker_id_accuracy,
                                  speaker_similarity)
from soundlm.eval.words import HeardWords, heard_words, repetition_rate

__all__ = [
    "PocketsphinxASR", "Recognizer", "WERResult", "WhisperASR", "load_recognizer", "normalize_text",
    "transcribe_and_score", "whisper_normalize", "word_error_rate",
    "HeardWords", "heard_words", "repetition_rate",
    "CodecEvalRow", "CodecReport", "codec_report", "evaluate_codec", "mel_distance",
    "multi_resolution_stft_distance", "pesq_wideband", "render_markdown_table", "si_sdr", "stoi",
    "write_rows_json",
    "LexicalPair", "LexicalResult", "lexical_accuracy", "load_lexicon", "make_lexical_pairs", "synthesize_pairs",
    "SpeakerEnrolment", "SpeakerIdResult", "SpeakerPrediction", "classify_speaker", "enrol_speakers",
    "load_voice_encoder", "speaker_embedding", "speaker_id_accuracy", "speaker_similarity",
]
