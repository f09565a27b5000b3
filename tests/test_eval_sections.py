"""The `soundlm eval` sections (soundlm.eval.sections) on a tiny random bundle and a tiny espeak-ng corpus."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_world import NUM_COARSE, SR, VOICES, make_eval_world

from soundlm.data import CorpusItem
from soundlm.eval.sections import acoustic, continuation, lexical, lm
from soundlm.store import load_store_tokens


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    return make_eval_world(tmp_path_factory.mktemp("evalsuite"))


@pytest.fixture(scope="module")
def pipe(world):
    from soundlm.pipeline import AudioLMPipeline

    return AudioLMPipeline.from_bundle(world["bundle"], device="cpu")


def _manual_stage_loss(stage, records) -> tuple[float, int]:
    """Loss by hand: cut each record into whole windows, build the stage sequence, sum -log p of its targets."""
    from soundlm import patterns

    layout, qc = stage.layout, NUM_COARSE
    n = int(round(stage.window_seconds * 50))  # both streams run at 50 Hz here
    total, count = 0.0, 0
    for sem, ac in ((r.semantic, r.acoustic) for r in records.records):
        frames = sem.shape[0] if stage.name == "semantic" else min(sem.shape[0], ac.shape[1])
        for i in range(frames // n):
            s = torch.from_numpy(sem[i * n:(i + 1) * n])[None]
            a = torch.from_numpy(ac[:, i * n:(i + 1) * n])[None]
            if stage.name == "semantic":
                seq = patterns.semantic_sequence(s, layout, eos=False)
            elif stage.name == "coarse":
                seq = patterns.coarse_sequence(s, a[:, :qc], layout, eos=False)
            else:
                seq = patterns.fine_sequence(a[:, :qc], a[:, qc:], layout, eos=False)
            with torch.no_grad():
                logp = torch.log_softmax(stage.model(seq.tokens).logits[0].double(), dim=-1)  # [L, V]
            for t in range(seq.prefix_len, seq.tokens.shape[1]):
                total -= float(logp[t - 1, seq.tokens[0, t]])
                count += 1
    return total / count, count


def test_lm_eval_loss_equals_manual_computation(world, pipe):
    records = load_store_tokens(world["store"], split="heldout")
    assert sorted(r.id for r in records.records) == sorted(f"{s}_{i}" for s in VOICES for i in range(3))  # carol is train
    section = lm.eval_lm([pipe.semantic, pipe.coarse, pipe.fine], world["store"], progress=False)
    by_stage = {r["stage"]: r for r in section.rows}
    for stage in (pipe.semantic, pipe.coarse, pipe.fine):
        loss, count = _manual_stage_loss(stage, records)
        row = by_stage[stage.name]
        assert row["num_tokens"] == count
        assert row["loss_nats"] == pytest.approx(loss, rel=1e-4)
        assert row["bits_per_token"] == pytest.approx(loss / math.log(2), rel=1e-4)
    # An untrained model is near uniform over its vocabulary: loss close to log V.
    assert by_stage["semantic"]["loss_nats"] == pytest.approx(math.log(pipe.semantic.layout.vocab_size), rel=0.2)


def test_lm_eval_without_heldout_records_says_how_to_fix(world):
    with pytest.raises(ValueError, match="no record has split 'nosuch'"):
        load_store_tokens(world["store"], split="nosuch")


def test_tile_windows_cover_whole_windows_only():
    sem, ac = np.arange(23), np.arange(2 * 23).reshape(2, 23)
    ws = lm.tile_windows("r", sem, ac, 0.2, 50.0, 50.0)  # 10 frames a window: 2 whole ones
    assert [w.semantic.tolist() for w in ws] == [list(range(10)), list(range(10, 20))]
    assert all(w.acoustic.shape == (2, 10) for w in ws)
    short = lm.tile_windows("r", sem[:4], ac[:, :4], 0.2, 50.0, 50.0)
    assert len(short) == 1 and short[0].semantic.shape == (4,)  # a short record is scored whole
    assert lm.tile_windows("r", sem[:4], ac[:, :4], 0.2, 50.0, 50.0, full_only=True) == []


def test_lm_eval_delay_pattern_stage(world, pipe):
    """A delay-pattern coarse stage is scored on whole windows, every coarse code of each frame once."""
    from soundlm.lm.model import DelayLM, DelayLMConfig, lm_tiny
    from soundlm.stages import Stage, StageMeta, stage_layout

    card = pipe.codec.codebook_size
    model = DelayLM(DelayLMConfig(num_codebooks=NUM_COARSE, codebook_size=card, backbone=lm_tiny(1, max_positions=128),
                                  prefix_vocab_size=16))
    meta = StageMeta("coarse", 0.2, NUM_COARSE, pipe.num_codebooks, 50.0, 50.0, pattern="delay")
    stage = Stage(model=model, meta=meta, layout=stage_layout("coarse", 16, card, pipe.num_codebooks, NUM_COARSE),
                  folder=world["root"])
    records = load_store_tokens(world["store"], split="heldout")
    row = lm.stage_heldout_loss(stage, records, batch_size=3, device="cpu", progress=False)
    windows = sum(min(r.semantic.shape[0], r.acoustic.shape[1]) // 10 for r in records.records)
    assert row.pattern == "delay" and row.num_windows == windows
    assert row.num_tokens == windows * 10 * NUM_COARSE  # delay padding is never a target
    assert row.loss_nats == pytest.approx(math.log(card), rel=0.2)


def test_continuation_accuracy_and_contrast(world, pipe, tmp_path):
    section = continuation.eval_continuation(pipe, world["corpus"], prompt_seconds=0.6, seconds=0.6, num_prompts=2,
                                      seed=3, out_dir=tmp_path, progress=False)
    s = section.summary
    assert s["num_voices"] == 2 and s["chance"] == 0.5 and s["num_prompts"] == 2
    for key in ("accuracy_acoustic_prompt", "accuracy_semantic_prompt_only"):
        assert 0.0 <= s[key] <= 1.0
    assert -1.0 <= s["similarity_acoustic_prompt"] <= 1.0 and -1.0 <= s["similarity_semantic_prompt_only"] <= 1.0
    # Round-robin over voices: one prompt per voice, never an enrolment utterance.
    assert sorted(r["speaker"] for r in section.rows) == ["alice", "bob"]
    wavs = sorted((tmp_path / "continuation_audio").glob("*.wav"))
    assert len(wavs) == 4
    import soundfile as sf

    assert sf.info(wavs[0]).frames == int(round(0.6 * SR))  # the continuation only
    # What Whisper heard: a transcript per continuation and for the real next seconds, and their word numbers.
    assert all(isinstance(r[k], str) for r in section.rows
               for k in ("heard_acoustic_prompt", "heard_semantic_prompt", "heard_ground_truth"))
    for kind in ("acoustic_prompt", "semantic_prompt_only", "ground_truth"):
        assert s[f"words_per_second_{kind}"] >= 0 and 0 <= s[f"silent_clips_{kind}"] <= 2
    assert s["words_per_second_ground_truth"] > 0  # the recorded speech is heard as words
    assert all(r["ground_truth_seconds"] == pytest.approx(0.6) for r in section.rows)
    # Resume: a rerun with the same settings reads the finished prompts from the state file.
    again = continuation.eval_continuation(pipe, world["corpus"], prompt_seconds=0.6, seconds=0.6, num_prompts=2,
                                    seed=3, out_dir=tmp_path, progress=False)
    assert again.rows == section.rows


def test_acoustic_generation_section_scores_three_kinds_of_audio(world, pipe, tmp_path):
    import soundfile as sf

    section = acoustic.eval_acoustic(pipe, world["corpus"], max_files=2, seed=1, out_dir=tmp_path, progress=False)
    s = section.summary
    assert s["num_files"] == 2 and [r["id"] for r in section.rows] == ["alice_0", "alice_1"]
    assert s["num_reference_words"] == 6 + 6
    # Whisper hears the clean espeak-ng recordings; the random stages' output is no speech.
    assert s["wer_original"] <= 0.25, section.rows
    assert s["wer_acoustic"] >= 0.5 and 0 <= s["cer_acoustic"]
    if s["wer_resynthesized"] > 0:
        assert s["wer_ratio_acoustic_to_resynthesized"] == pytest.approx(s["wer_acoustic"] / s["wer_resynthesized"])
        assert s["meets_acoustic_target"] == (s["wer_ratio_acoustic_to_resynthesized"] <= 1.5)
    # The generated audio covers the utterance's codec frames, like the resynthesis.
    for i in range(2):
        resynth, generated = (sf.info(tmp_path / "acoustic_audio" / f"{i:04d}_{kind}.wav").frames
                              for kind in ("resynthesized", "acoustic"))
        assert resynth == generated > 0
    again = acoustic.eval_acoustic(pipe, world["corpus"], max_files=2, seed=1, out_dir=tmp_path, progress=False)
    assert again.rows == section.rows  # resumed from the state file


def test_acoustic_generation_needs_transcripts(pipe, tmp_path):
    from soundlm.audio import save_audio
    from soundlm.eval.tts import synthesize

    save_audio(tmp_path / "a.wav", synthesize("hello", sample_rate=SR), SR)  # a folder of files: no transcripts
    with pytest.raises(ValueError, match="needs a manifest with transcripts"):
        acoustic.eval_acoustic(pipe, tmp_path, progress=False)


def test_semantic_prompt_only_resamples_the_acoustics(pipe):
    t = np.arange(int(0.4 * SR)) / SR
    prompt = (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    with_codes = pipe.continue_audio(prompt, 0.2, prompt_sample_rate=SR, seed=0)[0]
    without = pipe.continue_audio(prompt, 0.2, prompt_sample_rate=SR, seed=0, acoustic_prompt=False)[0]
    assert with_codes.shape == without.shape
    # With the acoustic prompt the prompt part is the codec's decoding of the prompt's own codes.
    assert not np.allclose(with_codes[:, :3200], without[:, :3200])


def test_plan_speaker_test_keeps_enrolment_and_prompts_apart():
    utts = [CorpusItem(id=f"{s}{i}", path=Path("x"), rel_path="x", speaker=s, duration=4.0)
            for s in "ab" for i in range(4)]
    enrol, prompts = continuation.plan_speaker_test(utts, 3.0, 10, seed=1)
    assert set(enrol) == {"a", "b"} and len(prompts) == 4
    enrolled = {u.id for us in enrol.values() for u in us}
    assert not enrolled & {u.id for u in prompts}
    with pytest.raises(ValueError, match="at least 2 voices"):
        continuation.plan_speaker_test(utts[:4], 3.0, 10)


def test_semantic_logprob_matches_the_lm(pipe):
    from soundlm.eval.tts import synthesize

    audio = synthesize("garden", sample_rate=SR)
    score = lexical.semantic_logprob(pipe, audio, SR)
    ids = pipe.semantic_tokenizer.encode(torch.from_numpy(audio)[None, None])  # [1, T]
    assert score.num_tokens == ids.shape[1] and score.total_logprob < 0
    tokens = torch.cat([torch.tensor([[pipe.semantic.layout.bos_id]]), pipe.semantic.layout.semantic_to_global(ids)], 1)
    with torch.no_grad():
        loss = pipe.semantic.model(tokens, labels=tokens).loss  # mean next-token cross-entropy
    assert score.mean_logprob == pytest.approx(-float(loss), rel=1e-4)


def test_lexical_over_several_voices_is_the_mean_of_each(pipe, world, tmp_path):
    args = dict(num_pairs=3, seed=0, progress=False, data=world["corpus"])
    each = {v: lexical.eval_lexical(pipe, voice=v, work_dir=tmp_path / v, **args) for v in ("en-us", "en-gb+m3")}
    both = lexical.eval_lexical(pipe, voice="en-us, en-gb+m3", work_dir=tmp_path / "both", **args)
    accs = [each[v].summary["accuracy"] for v in each]
    assert both.summary["accuracy"] == pytest.approx(np.mean(accs))
    assert (both.summary["accuracy_min"], both.summary["accuracy_max"]) == (min(accs), max(accs))
    assert both.summary["num_voices"] == 2 and both.summary["num_pairs"] == 3
    assert both.settings["voice"] == "en-us,en-gb+m3"
    # The same pairs, spoken by each voice in turn; one voice's rows are what it scores alone.
    assert [r["voice"] for r in both.rows] == ["en-us"] * 3 + ["en-gb+m3"] * 3
    assert [{k: v for k, v in r.items() if k != "voice"} for r in both.rows[3:]] == each["en-gb+m3"].rows
    assert "voice" not in each["en-us"].rows[0] and "num_voices" not in each["en-us"].summary
    for bad in ("", " , ", "en-us,en-us"):
        with pytest.raises(ValueError, match="--voice"):
            lexical.eval_lexical(pipe, voice=bad, work_dir=tmp_path / "bad", **args)


def test_lm_eval_compares_flatten_and_delay_per_acoustic_code(world, pipe):
    """Under full_windows a flattened and a delay-pattern coarse stage predict the same codes, and
    acoustic_bits_per_code weighs the coarse and fine stages by the codes each predicts."""
    from soundlm.lm.model import DelayLM, DelayLMConfig, lm_tiny
    from soundlm.stages import Stage, StageMeta, stage_layout

    card = pipe.codec.codebook_size
    model = DelayLM(DelayLMConfig(num_codebooks=NUM_COARSE, codebook_size=card, backbone=lm_tiny(1, max_positions=128),
                                  prefix_vocab_size=16))
    meta = StageMeta("coarse", pipe.coarse.window_seconds, NUM_COARSE, pipe.num_codebooks, 50.0, 50.0, pattern="delay")
    delay = Stage(model=model, meta=meta,
                  layout=stage_layout("coarse", 16, card, pipe.num_codebooks, NUM_COARSE), folder=world["root"])
    records = load_store_tokens(world["store"], split="heldout")
    flat = lm.stage_heldout_loss(pipe.coarse, records, device="cpu", progress=False, full_windows=True)
    delayed = lm.stage_heldout_loss(delay, records, device="cpu", progress=False, full_windows=True)
    assert flat.num_tokens == delayed.num_tokens and flat.num_windows == delayed.num_windows

    section = lm.eval_lm([pipe.semantic, pipe.coarse, pipe.fine], world["store"], progress=False, full_windows=True)
    coarse, fine = (next(r for r in section.rows if r["stage"] == s) for s in ("coarse", "fine"))
    assert coarse["num_tokens"] == flat.num_tokens
    expected = (coarse["loss_nats"] * coarse["num_tokens"] + fine["loss_nats"] * fine["num_tokens"]) / (
        (coarse["num_tokens"] + fine["num_tokens"]) * math.log(2))
    assert section.summary["acoustic_bits_per_code"] == pytest.approx(expected)
    assert min(coarse["bits_per_token"], fine["bits_per_token"]) <= section.summary["acoustic_bits_per_code"] <= max(
        coarse["bits_per_token"], fine["bits_per_token"])
    assert section.settings["full_windows"] and section.settings["patterns"]["coarse"] == "flatten"
