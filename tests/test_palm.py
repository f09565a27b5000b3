"""AudioPaLM groundwork: vocabulary, initialisation from a text LM, task formatting, data, metrics."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from soundlm.palm.data import build_task_examples, parse_tasks
from soundlm.palm.metrics import bleu, cer, wer
from soundlm.palm.model import extend_causal_lm, load_palm, save_palm
from soundlm.palm.tasks import IGNORE_INDEX, TaskExample, collate, format_example
from soundlm.palm.vocab import PalmTokenizer, PalmVocab, task_tag, train_text_tokenizer

SEMANTIC = 32
SENTENCES = [
    {"en": "The dog sleeps.", "fr": "Le chien dort."},
    {"en": "The cat runs.", "fr": "Le chat court."},
    {"en": "The bird sings.", "fr": "L'oiseau chante."},
    {"en": "The cow eats.", "fr": "La vache mange."},
]


def word_semantic(text: str, repeat: int = 2) -> np.ndarray:
    """Deterministic fake semantic ids: each word becomes a short run of ids (learnable like speech)."""
    ids = []
    for word in text.lower().split():
        h = hashlib.sha1(word.encode()).digest()
        ids += [h[0] % SEMANTIC] * repeat + [h[1] % SEMANTIC]
    return np.array(ids, dtype=np.int64)


def make_store(folder: Path, sentences=SENTENCES) -> Path:
    from soundlm.store import TokenRecord, StoreManifest, write_part

    records = []
    for i, pair in enumerate(sentences):
        for lang, text in pair.items():
            sem = word_semantic(text)
            records.append(TokenRecord(id=f"{lang}{i}", path=f"wavs/{lang}{i}.wav", duration=1.0, semantic=sem,
                                       acoustic=np.zeros((2, 5), dtype=np.int64), speaker=f"spk_{lang}",
                                       transcript=text, language=lang, sample_rate=16000, split="train",
                                       text_id=f"t{i}"))
    write_part(folder, 0, 1, 0, records, [])
    StoreManifest.from_json({"version": 1, "semantic_vocab_size": SEMANTIC, "acoustic_num_codebooks": 2,
                            "acoustic_codebook_size": 8, "semantic_frame_rate": 25.0, "num_shards": 1}).write(folder)
    return folder


def tiny_text_lm(folder: Path, tie: bool = False) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    texts = [t for pair in SENTENCES for t in pair.values()] * 3
    tok = train_text_tokenizer(texts, vocab_size=300)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok) + 4, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=256,
                                         tie_word_embeddings=tie))
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def text_lm(tmp_path_factory) -> Path:
    return tiny_text_lm(tmp_path_factory.mktemp("textlm"))


def test_tags_and_vocab_layout_do_not_overlap():
    vocab = PalmVocab.build(text_size=100, languages=["en", "fr"], semantic_size=SEMANTIC, codebook_size=8,
                            num_codebooks=2)
    assert vocab.range_of("text") == (0, 100)
    lo, hi = vocab.range_of("semantic")
    assert hi - lo == SEMANTIC and lo > vocab.tag_id("[CONTINUE]")
    assert vocab.range_of("acoustic") == (hi, vocab.vocab_size)
    tags = {vocab.tag_id(t) for t in ("[ASR en]", "[TTS fr]", "[AST en->fr]", "[S2ST fr->en]", "[ASR AST en->fr]")}
    assert len(tags) == 5 and all(100 <= t < lo for t in tags)
    ids = torch.tensor([0, 5, SEMANTIC - 1])
    assert torch.equal(vocab.global_to_semantic(vocab.semantic_to_global(ids)), ids)
    codes = torch.tensor([[1, 7], [0, 3]])  # [K, T]
    assert torch.equal(vocab.global_to_acoustic(vocab.acoustic_to_global(codes)), codes)
    with pytest.raises(ValueError, match="unknown task tag"):
        vocab.tag_id("[ASR de]")
    with pytest.raises(ValueError, match="target language"):
        task_tag("ast", "en", "en")


def test_tokenizer_round_trip(tmp_path, text_lm):
    from soundlm.palm.vocab import load_text_tokenizer

    text_tok = load_text_tokenizer(text_lm)
    vocab = PalmVocab.build(len(text_tok) + 4, ["en", "fr", "de"], SEMANTIC)
    tok = PalmTokenizer(vocab, text_tok)
    tok.save(tmp_path / "v")
    back = PalmTokenizer.load(tmp_path / "v")
    assert back.vocab == vocab
    sentence = "L'oiseau chante. Der Vogel singt."
    ids = back.encode_text(sentence)
    assert ids == tok.encode_text(sentence) and max(ids) < vocab.text_size
    # Non-text ids (tags, SEP, semantic) are dropped when decoding text.
    assert back.decode_text([vocab.bos_id, *ids, vocab.sep_id, vocab.semantic_to_global(torch.tensor(3)).item()]) \
        == sentence
    with pytest.raises(FileNotFoundError, match="palm_vocab.json"):
        PalmTokenizer.load(tmp_path)


@pytest.mark.parametrize("tie", [False, True])
def test_extended_model_keeps_text_logits(tmp_path, tie):
    from transformers import AutoModelForCausalLM

    folder = tiny_text_lm(tmp_path / "lm", tie=tie)
    original = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    palm = extend_causal_lm(folder, ["en", "fr"], SEMANTIC, new_rows="mean")
    palm.model.eval()
    text = torch.tensor([palm.tokenizer.encode_text("Le chien dort. The cat runs.")])  # [1, T]
    with torch.no_grad():
        ref = original(text).logits  # [1, T, V_text]
        new = palm.model(text).logits  # [1, T, V_text + new]
    assert new.shape[-1] == palm.vocab.vocab_size == ref.shape[-1] + palm.vocab.num_new_tokens
    torch.testing.assert_close(new[..., : ref.shape[-1]], ref)
    # New rows are distinct (the model can tell the tags apart) and the model round-trips through its folder.
    emb = palm.model.get_input_embeddings().weight
    assert not torch.allclose(emb[palm.vocab.bos_id], emb[palm.vocab.eos_id])
    save_palm(palm, tmp_path / "palm")
    loaded = load_palm(tmp_path / "palm")
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(text).logits, new)
    assert loaded.vocab == palm.vocab


def test_scratch_init_same_architecture_new_weights(text_lm):
    pre = extend_causal_lm(text_lm, ["en", "fr"], SEMANTIC)
    scratch = extend_causal_lm(text_lm, ["en", "fr"], SEMANTIC, from_scratch=True, seed=1)
    assert pre.vocab == scratch.vocab
    a, b = pre.model.state_dict(), scratch.model.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(a[key], b[key])


def test_format_masks_everything_but_the_target(text_lm):
    from soundlm.palm.vocab import load_text_tokenizer

    text_tok = load_text_tokenizer(text_lm)
    tok = PalmTokenizer(PalmVocab.build(len(text_tok) + 4, ["en", "fr"], SEMANTIC), text_tok)
    v = tok.vocab
    sem = word_semantic("The dog sleeps.")
    ex = TaskExample("ast", "x", "en", "fr", source_semantic=sem, target_text="Le chien dort.")
    f = format_example(ex, tok)
    target = tok.encode_text("Le chien dort.")
    assert f.tokens[0] == v.bos_id and f.tokens[1] == v.tag_id("[AST en->fr]")
    assert f.tokens[f.prompt_len - 1] == v.sep_id and f.prompt_len == len(sem) + 3
    assert (f.labels[: f.prompt_len] == IGNORE_INDEX).all()
    assert f.labels[f.prompt_len:].tolist() == [*target, v.eos_id]
    # TTS: text in, semantic ids out; multi-step: transcript SEP translation.
    tts = format_example(TaskExample("tts", "t", "en", source_text="The dog sleeps.", target_semantic=sem), tok)
    lo, hi = v.range_of("semantic")
    out = tts.labels[tts.prompt_len:-1]
    assert ((out >= lo) & (out < hi)).all() and tts.labels[-1] == v.eos_id
    multi = format_example(TaskExample("asr_ast", "m", "en", "fr", source_semantic=sem,
                                       intermediate_text="The dog sleeps.", target_text="Le chien dort."), tok)
    assert multi.labels[multi.prompt_len:].tolist() == [*tok.encode_text("The dog sleeps."), v.sep_id, *target,
                                                       v.eos_id]
    batch = collate([f, tts], v.pad_id)
    assert batch.tokens.shape == batch.labels.shape == batch.attention_mask.shape
    short = min(range(2), key=lambda i: len([f, tts][i].tokens))
    n = len([f, tts][short].tokens)
    assert (batch.labels[short, n:] == IGNORE_INDEX).all() and batch.attention_mask[short, n:].sum() == 0
    with pytest.raises(ValueError, match="target text is missing"):
        format_example(TaskExample("asr", "bad", "en", source_semantic=sem), tok)


def test_examples_pair_translations_by_text_id(tmp_path):
    store = make_store(tmp_path / "store")
    ts = build_task_examples(store, ["asr", "tts", "ast", "s2st", "asr_ast"])
    n = len(SENTENCES)
    assert ts.counts == {"asr": 2 * n, "tts": 2 * n, "ast": 2 * n, "s2st": 2 * n, "asr_ast": 2 * n}
    assert ts.languages == ["en", "fr"]
    for ex in ts.examples:
        if ex.task == "ast":
            i = int(ex.id.split(":")[1][2:])
            assert ex.target_text == SENTENCES[i][ex.target_language]
            np.testing.assert_array_equal(ex.source_semantic, word_semantic(SENTENCES[i][ex.source_language]))
        if ex.task == "s2st":
            assert ex.voice_prompt is not None and ex.voice_prompt.shape[0] == 2
    with pytest.raises(ValueError, match="unknown tasks"):
        parse_tasks("asr,dance")
    with pytest.raises(ValueError, match="no asr examples"):
        build_task_examples(store, ["asr"], split="heldout")


def test_metrics():
    assert wer(["the dog sleeps"], ["The dog sleeps."]) == 0.0
    assert wer(["the dog sleeps"], ["the cat sleeps"]) == pytest.approx(1 / 3)
    assert 0 < cer(["the dog sleeps"], ["the dog sleep"]) < 0.1
    assert bleu(["the small dog sleeps in the garden"], ["the small dog sleeps in the garden"]) == pytest.approx(100)
    assert bleu(["the small dog sleeps in the garden"], ["a cat"]) < 10
    with pytest.raises(ValueError, match="same non-zero number"):
        wer(["a"], [])
