"""`soundlm finetune`: LoRA and full fine-tuning of a tiny random bundle on a folder of audio files.

Invariants: bad files are skipped and logged; the run resumes after a kill exactly as if it
had not been killed; early stopping keeps the best held-out weights (the base, when nothing
beats it); merged adapters decode through the KV cache and give the wrapped model's logits;
merged weights and adapters alone load to the same model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_bundle import SR, make_tiny_bundle, tone

from soundlm.adapters import ADAPTERS_JSON, add_lora, is_wrapped, merge_lora
from soundlm.finetune import FinetuneConfig, finetune
from soundlm.finetune.trainer import StageFinetuner
from soundlm.pretrained import load_pipeline

FAST = dict(steps=6, batch_size=4, eval_every=2, ckpt_every=2, log_every=1, warmup=1, workers=0, progress=False,
            device="cpu", heldout_fraction=0.3)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("ft-base"))


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> Path:
    """Eight 1.2 s 'utterances' of a new 'voice' (tones with harmonics) and one unusable file."""
    folder = tmp_path_factory.mktemp("voice")
    for i in range(8):
        sf.write(folder / f"utt{i}.wav", tone(1.2, freq=180.0 + 15 * i), SR)
    sf.write(folder / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    return folder


def _stage_logits(pipe, name: str) -> torch.Tensor:
    stage = getattr(pipe, name)
    tokens = torch.arange(2, 2 + 20).remainder(stage.layout.vocab_size)[None]  # [1, 20]
    with torch.no_grad():
        return stage.model(tokens).logits


def test_lora_finetune_end_to_end(bundle, voice, tmp_path):
    out = tmp_path / "ft"
    result = finetune(FinetuneConfig(data=str(voice), out=str(out), base=str(bundle), save="both",
                                     stages=("coarse", "fine"), patience=100, **FAST))
    record = json.loads((out / "finetune.json").read_text())
    # The silent file is skipped and logged; the rest is split into train and held-out files.
    assert record["data_summary"]["skipped"] == 1 and record["data_summary"]["files"] == 8
    assert record["data_summary"]["heldout_files"] >= 1
    assert "silent" in (out / "store" / "errors.jsonl").read_text()
    for name in ("coarse", "fine"):
        r = result.stages[name]
        assert r.steps == 6 and not r.stopped_early and r.trainable_parameters > 0
        assert r.heldout_loss_best <= r.heldout_loss_base
        lines = [json.loads(x) for x in (out / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        assert lines[0] == {"step": 0, "heldout/loss": r.heldout_loss_base}  # the base model, before training
        assert [x["step"] for x in lines if "heldout/loss" in x] == [0, 2, 4, 6]
    # Adapters alone are small; the merged bundle and the adapter bundle load to the same model.
    adapter_bytes = sum(p.stat().st_size for p in result.adapters_dir.rglob("*.safetensors"))
    bundle_bytes = sum(p.stat().st_size for p in result.model_dir.rglob("*.safetensors"))
    assert adapter_bytes < 0.2 * bundle_bytes
    assert (result.adapters_dir / ADAPTERS_JSON).is_file() and (result.model_dir / "README.md").is_file()
    merged, from_adapters, base = (load_pipeline(result.model_dir, device="cpu"),
                                   load_pipeline(result.adapters_dir, device="cpu"), load_pipeline(bundle, "cpu"))
    for name in ("coarse", "fine"):
        assert torch.allclose(_stage_logits(merged, name), _stage_logits(from_adapters, name), atol=1e-5)
        assert not torch.allclose(_stage_logits(merged, name), _stage_logits(base, name), atol=1e-4)
        assert getattr(from_adapters, name).model.fast_decoding and getattr(merged, name).model.fast_decoding
    assert torch.equal(_stage_logits(merged, "semantic"), _stage_logits(base, "semantic"))  # not fine-tuned
    # Both decode end to end.
    audio = from_adapters.continue_audio(tone(0.6), 0.3, prompt_sample_rate=SR, seed=0)[0]
    assert np.isfinite(audio).all() and audio.shape[-1] > 0


def test_merged_lora_decodes_with_the_cache_like_the_wrapped_model(bundle):
    """PEFT-wrapped layers fall back to uncached forwards; merged they run the KV-cached decoder, same logits."""
    from soundlm.lm.generate import generate
    from soundlm.sampler import SamplingParams

    pipe = load_pipeline(bundle, device="cpu")
    model = pipe.coarse.model
    torch.manual_seed(1)
    from soundlm.adapters import LoraSettings

    wrapped = add_lora(model, LoraSettings(rank=4, dropout=0.0))
    for n, p in wrapped.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.2)  # as after training: adapters that change the output
    wrapped.eval()
    assert is_wrapped(model) and not model.fast_decoding
    prompt = torch.randint(4, model.vocab_size, (1, 8))
    greedy = SamplingParams(temperature=0.0)
    slow = generate(model, prompt, 12, greedy)
    with torch.no_grad():
        wrapped_logits = model(prompt).logits
    merged = merge_lora(wrapped)
    assert merged is model and not is_wrapped(merged) and merged.fast_decoding
    with torch.no_grad():
        assert torch.allclose(merged(prompt).logits, wrapped_logits, atol=1e-5)
    assert torch.equal(generate(merged, prompt, 12, greedy), slow)


def test_killed_finetune_resumes_to_the_same_adapters(bundle, voice, tmp_path, monkeypatch):
    straight = finetune(FinetuneConfig(data=str(voice), out=str(tmp_path / "a"), base=str(bundle), stages=("coarse",),
                                       save="adapters", patience=100, **FAST))
    original = StageFinetuner.train_step
    calls = {"n": 0}

    def dies_at_step_5(self, step):
        calls["n"] += 1
        if step == 5 and calls["n"] < 10:
            raise KeyboardInterrupt  # kill between checkpoints (they are at steps 2 and 4)
        return original(self, step)

    monkeypatch.setattr(StageFinetuner, "train_step", dies_at_step_5)
    cfg = FinetuneConfig(data=str(voice), out=str(tmp_path / "b"), base=str(bundle), stages=("coarse",),
                         save="adapters", patience=100, **FAST)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg)
    calls["n"] = 10
    resumed = finetune(cfg)
    assert resumed.stages["coarse"] == straight.stages["coarse"]
    from safetensors.torch import load_file

    a = load_file(str(straight.adapters_dir / "coarse" / "adapter_model.safetensors"))
    b = load_file(str(resumed.adapters_dir / "coarse" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a/runs/coarse/metrics.jsonl").read_text() == (tmp_path / "b/runs/coarse/metrics.jsonl").read_text()
    # A finished run trains nothing more when rerun.
    calls["n"] = 0
    monkeypatch.setattr(StageFinetuner, "train_step", lambda self, step: pytest.fail("retrained a finished run"))
    assert finetune(cfg).stages["coarse"] == straight.stages["coarse"]
    with pytest.raises(ValueError, match="other settings"):
        finetune(FinetuneConfig(**{**cfg.__dict__, "rank": 4}))


def test_early_stopping_keeps_the_base_when_nothing_beats_it(bundle, voice, tmp_path):
    """No evaluation improves by min_delta: the run stops after `patience` evaluations and is the base itself."""
    result = finetune(FinetuneConfig(data=str(voice), out=str(tmp_path / "ft"), base=str(bundle), stages=("fine",),
                                     patience=2, min_delta=100.0, **{**FAST, "steps": 40}))
    r = result.stages["fine"]
    assert r.stopped_early and r.steps == 4 and r.best_step == 0  # evaluations at steps 2 and 4
    assert r.heldout_loss_best == r.heldout_loss_base
    tuned, base = load_pipeline(result.model_dir, device="cpu"), load_pipeline(bundle, device="cpu")
    assert torch.allclose(_stage_logits(tuned, "fine"), _stage_logits(base, "fine"), atol=1e-5)


def test_early_stopping_exports_the_best_evaluation(bundle, voice, tmp_path):
    """A learning rate far too high: the run stops `patience` evaluations after its best one, and the exported
    model scores the best held-out loss, not the last."""
    from soundlm.eval.sections.lm import stage_heldout_loss
    from soundlm.finetune.run import _heldout_split
    from soundlm.store import StoreTokens, load_store_tokens

    out = tmp_path / "ft"
    result = finetune(FinetuneConfig(data=str(voice), out=str(out), base=str(bundle), stages=("fine",), lr=30.0,
                                     patience=2, min_delta=0.0, **{**FAST, "steps": 40}))
    r = result.stages["fine"]
    assert r.stopped_early and r.steps == r.best_step + 2 * FAST["eval_every"] < 40
    evals = [json.loads(x) for x in (out / "runs/fine/metrics.jsonl").read_text().splitlines()]
    losses = {x["step"]: x["heldout/loss"] for x in evals if "heldout/loss" in x}
    assert losses[r.best_step] == min(losses.values()) == r.heldout_loss_best
    tokens = load_store_tokens(out / "store")
    _, held = _heldout_split(tokens, FAST["heldout_fraction"], str(voice))
    heldout = StoreTokens([tokens.records[i] for i in held], tokens.manifest, tokens.semantic_rate,
                          tokens.acoustic_rate)
    tuned = load_pipeline(result.model_dir, device="cpu")
    exported = stage_heldout_loss(tuned.fine, heldout, batch_size=4, device="cpu", progress=False).loss_nats
    assert exported == pytest.approx(r.heldout_loss_best, abs=1e-4)


def test_full_finetune_changes_every_weight_of_the_stage(bundle, voice, tmp_path):
    result = finetune(FinetuneConfig(data=str(voice), out=str(tmp_path / "ft"), base=str(bundle), stages=("coarse",),
                                     full=True, patience=100, lr=1e-2, **FAST))
    tuned, base = load_pipeline(result.model_dir, device="cpu"), load_pipeline(bundle, device="cpu")
    changed = {n for (n, a), (_, b) in zip(tuned.coarse.model.named_parameters(), base.coarse.model.named_parameters())
               if not torch.equal(a, b)}
    assert any("embed_tokens" in n for n in changed) and any("mlp" in n for n in changed)
    assert result.adapters_dir is None and result.stages["coarse"].best_step > 0


def test_bad_settings_and_data_are_refused(bundle, voice, tmp_path):
    with pytest.raises(ValueError, match="no adapters"):
        FinetuneConfig(data=str(voice), out=str(tmp_path), full=True, save="adapters").validate()
    with pytest.raises(ValueError, match="--stages"):
        FinetuneConfig(data=str(voice), out=str(tmp_path), stages=("acoustic",)).validate()
    one = tmp_path / "one"
    one.mkdir()
    sf.write(one / "a.wav", tone(1.0), SR)
    with pytest.raises(ValueError, match="at least 2"):
        finetune(FinetuneConfig(data=str(one), out=str(tmp_path / "x"), base=str(bundle), **FAST))
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        finetune(FinetuneConfig(data=str(voice), out=str(tmp_path / "y"), base=str(tmp_path / "nothing"), **FAST))


def test_cli_finetune_prints_what_it_did(bundle, voice, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    out = tmp_path / "ft"
    result = CliRunner().invoke(app, ["finetune", str(voice), "--base", str(bundle), "--out", str(out), "--steps", "2",
                                      "--eval-every", "1", "--batch-size", "2", "--workers", "0", "--no-progress",
                                      "--device", "cpu", "--save", "adapters"])
    assert result.exit_code == 0, result.output
    assert "data: 8 files" in result.output and "1 skipped" in result.output
    assert "coarse: held-out loss" in result.output and f"adapters: {out / 'adapters'}" in result.output
    assert json.loads((out / "finetune.json").read_text())["stages"] == ["coarse"]  # the default
    bad = CliRunner().invoke(app, ["finetune", str(voice), "--out", str(tmp_path / "x"), "--full", "--save", "both"])
    assert bad.exit_code == 2 and "error: --full" in bad.output
