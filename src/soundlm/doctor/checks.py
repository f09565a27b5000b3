"""The known ways a soundlm training run fails, each a check over its metrics with its likely cause and fix.

Every check returns a `Finding` (what is wrong, the evidence in numbers, the likely cause,
the fix) or None. Thresholds are stated beside each check; they are set between what the
reference runs log (`assets/reference_curves.json`) and what the failure looks like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from soundlm.doctor.metrics import RunMetrics
from soundlm.doctor.reference import smooth


@dataclass
class Finding:
    check: str  # short name: "nan", "codebook-collapse", ...
    message: str  # what is wrong, with the numbers
    cause: str
    fix: str

    def line(self) -> str:
        return f"PROBLEM ({self.check}): {self.message}. Likely cause: {self.cause}. Fix: {self.fix}."


def check_non_finite(run: RunMetrics) -> Finding | None:
    """Any logged value NaN or infinite."""
    bad = {}
    for name, s in run.series.items():
        idx = np.flatnonzero(~np.isfinite(s.values))
        if idx.size:
            bad[name] = int(s.steps[idx[0]])
    if not bad:
        return None
    first = min(bad.values())
    names = ", ".join(sorted(bad, key=bad.get)[:4])
    return Finding("nan", f"non-finite values (NaN/inf) in {names}, first at step {first}",
                   "the learning rate is too high for this batch, or fp16 overflowed (a loss or gradient beyond "
                   "float16's range)",
                   f"resume from a checkpoint before step {first} with a lower --lr (half), keep gradient clipping on, "
                   "and use --mixed-precision bf16 or no instead of fp16")


def check_lr_finished_early(run: RunMetrics) -> Finding | None:
    """The learning rate reached its floor with more than 10% of the run still to go (at the floor).

    A warmup-cosine schedule reaches its floor at its last step; a floor reached earlier means
    the schedule was made for fewer steps than the run trains (a resumed run given a larger
    --steps keeps training at the floor), and those steps learn little.
    """
    lr = run.get("train/lr", "lr")
    if lr is None or len(lr.steps) < 5:
        return None
    top = int(np.argmax(lr.values))  # the warmup's low start is not the schedule's floor
    after = lr.values[top:]
    peak, floor = float(lr.values[top]), float(np.min(after))
    if peak <= 0 or floor > 0.5 * peak:
        return None  # a constant or nearly constant learning rate: no schedule to finish
    reached = int(lr.steps[top + int(np.flatnonzero(after <= floor * 1.01 + 1e-12)[0])])
    flat = lr.steps[top:][after <= floor * 1.01 + 1e-12]
    end = max(run.last_step, run.planned_steps or 0)
    # A cosine still on its way down has its lowest value at the last logged step only: not finished.
    if len(flat) < 3 or end - reached <= 0.1 * end:
        return None
    return Finding("lr-finished-early",
                   f"the learning rate fell to its floor ({floor:.2e}, {floor / peak:.0%} of the peak {peak:.2e}) at "
                   f"step {reached}, and {end - reached} of the run's {end} steps train at the floor",
                   "the schedule's length is not the run's: it was set for fewer steps than the run trains (e.g. a "
                   "run resumed with a larger --steps, or a scheduler built before --steps was raised)",
                   "set --steps to the total the run will train before it starts (the cosine then ends at the last "
                   "step), or start a new run from the last checkpoint with a fresh schedule")


def check_loss_at_unigram(run: RunMetrics, unigram: float | None) -> Finding | None:
    """LM loss within 2% of the unigram entropy after a fifth of the run (at least 100 steps)."""
    if unigram is None or run.kind not in ("lm", "finetune"):
        return None
    s = run.get("heldout/loss", "train/loss")
    if s is None:
        return None
    values = smooth(s.values)
    settled = s.steps >= max(100, 0.2 * (run.planned_steps or run.last_step))
    if not settled.any() or not np.isfinite(values[settled][-1]):
        return None
    last = float(values[settled][-1])
    if last < unigram * 0.98:
        return None
    name = "held-out" if run.get("heldout/loss") is not None else "training"
    first = float(s.values[0])
    if run.kind == "finetune" and s.steps[0] == 0 and first < unigram * 1.05:
        return Finding("stuck-at-unigram",
                       f"the {name} loss is {last:.3f} nats/token at step {int(s.steps[settled][-1])}, at the unigram "
                       f"entropy of the stage's targets on this data ({unigram:.3f}), where the base model already "
                       f"was (step 0: {first:.3f})",
                       "the base stage predicts these tokens little better than their frequencies on your data, and "
                       "adapters on top of it do not change that",
                       f"leave the {run.stage} stage out of --stages (it costs time and buys nothing here), or try "
                       "--full on it with more data")
    return Finding("stuck-at-unigram",
                   f"the {name} loss is {last:.3f} nats/token at step {int(s.steps[settled][-1])}, at the unigram "
                   f"entropy of the stage's targets ({unigram:.3f}): the model predicts token frequencies and uses "
                   "no context",
                   "a learning rate too low to leave the frequency solution (or so high that it keeps being knocked "
                   "back to it), or tokens that carry no sequence structure (a store tokenized with another codec or "
                   "semantic tokenizer than the stage's, shuffled crops)",
                   "check the store with `soundlm eval lm` on a trained model, then retry with --lr 3e-4..1e-3 and "
                   "--warmup 100-500; a loss that never moved from the first logged value points at the data")


def check_heldout_rising(run: RunMetrics) -> Finding | None:
    """Held-out loss at least 2% (0.01 nats) above its best for its last two evaluations, the best not the last."""
    held = run.get("heldout/loss")
    if held is None or len(held.steps) < 4:
        return None
    best = int(np.nanargmin(held.values))
    tail = held.values[best + 1:]
    if len(tail) < 2:
        return None
    margin = max(0.02 * held.values[best], 0.01)
    if not (tail[-2:] > held.values[best] + margin).all():
        return None
    train = run.get("train/loss")
    trend = ""
    if train is not None:
        before, after = train.at_or_before(int(held.steps[best])), train
        if len(before.values) and len(after.values):
            trend = (f" while the training loss went from {float(np.median(before.values[-5:])):.3f} to "
                     f"{float(np.median(after.values[-5:])):.3f}")
    return Finding("overfitting",
                   f"the held-out loss rose from {held.values[best]:.4f} at step {int(held.steps[best])} to "
                   f"{held.values[-1]:.4f} at step {int(held.steps[-1])}{trend}",
                   "the model memorises its training data: too little data for the model size or the steps "
                   "(fine-tuning on a few minutes of audio overfits within hundreds of steps)",
                   f"use the checkpoint nearest step {int(held.steps[best])} (`soundlm finetune` keeps the best "
                   "held-out weights by itself), add data, train fewer steps or with a lower --lr; for fine-tuning, "
                   "a smaller --rank or more --lora-dropout")


def check_codebook_collapse(run: RunMetrics, codebook_size: int | None) -> Finding | None:
    """A codec level using under 10% of the codes it could reach on the held-out clips (latest evaluation), or a
    code perplexity under 4."""
    if run.kind != "codec":
        return None
    levels = sorted(int(n.rsplit("level", 1)[1]) for n in run.series if n.startswith("eval/codes_used@level"))
    dead = []
    for q in levels:
        used = run.series[f"eval/codes_used@level{q}"].values[-1]
        ppl_series = run.series.get(f"eval/code_perplexity@level{q}")
        ppl = float(ppl_series.values[-1]) if ppl_series is not None else math.inf
        if used < 0.10 or ppl < 4:
            dead.append((q, float(used), ppl))
    if not dead:
        # Runs logged before the per-level statistics: the mean training perplexity of the active levels.
        ppl = run.get("train/perplexity")
        if levels or ppl is None or len(ppl.steps) < 5 or float(np.median(ppl.values[-5:])) >= 4:
            return None
        dead = [(0, float("nan"), float(np.median(ppl.values[-5:])))]
    step = run.last_step
    where = ", ".join(f"level {q}: {u:.0%} of codes used, perplexity {p:.1f}" if q else
                      f"mean training perplexity {p:.1f}" for q, u, p in dead)
    size = f" of {codebook_size}" if codebook_size else ""
    return Finding("codebook-collapse",
                   f"dead codes / codebook collapse at step {step}: {where} (codebooks{size})",
                   "the encoder's outputs fall into a few cells (k-means init on a silent or tiny first batch, a "
                   "latent scale that shrank), and codes nobody picks are not restarted (dead-code threshold 0)",
                   "keep dead-code restart on (CodecConfig.dead_code_threshold 0.01-0.05), start from a batch of "
                   "real speech (check for silent files), lower --lr; restart the run if a level stays collapsed")


def check_first_level_energy(run: RunMetrics) -> Finding | None:
    """Level 1 removes over 97% of the latents' energy and the other levels together under 1%."""
    if run.kind != "codec" or "eval/energy@level1" not in run.series:
        return None
    first = float(run.series["eval/energy@level1"].values[-1])
    rest = sum(float(s.values[-1]) for n, s in run.series.items()
               if n.startswith("eval/energy@level") and n != "eval/energy@level1")
    levels = sum(1 for n in run.series if n.startswith("eval/energy@level"))
    if levels < 2 or first < 0.97 or rest > 0.01:
        return None
    return Finding("first-level-energy",
                   f"the first codebook takes {first:.1%} of the latent energy and the other {levels - 1} levels "
                   f"{rest:.2%} together: their bits carry almost nothing",
                   "the latents sit on a few points that one codebook covers (collapsed encoder output), often with a "
                   "commitment weight that pulls them onto the first level's codes",
                   "lower the commitment weight (CodecTrainConfig.commit_weight), check the encoder's latent scale, "
                   "keep quantizer dropout on so the later "
                   "levels are trained as refinements; compare `soundlm eval codec` at 1 vs all codebooks")


def check_discriminator(run: RunMetrics) -> Finding | None:
    """Adversarial codec runs: the discriminator loss under 0.1 (hinge: it tells real from fake perfectly) over the
    last quarter of the adversarial steps, while the generator's adversarial loss rises."""
    disc, adv = run.get("train/disc"), run.get("train/adv")
    if disc is None or adv is None or len(disc.steps) < 8:
        return None
    tail = slice(len(disc.steps) * 3 // 4, None)
    d = float(np.median(disc.values[tail]))
    quarter = max(len(adv.values) // 4, 1)
    adv_early, adv_late = float(np.median(adv.values[:quarter])), float(np.median(adv.values[-quarter:]))
    if d >= 0.1 or adv_late <= adv_early:
        return None
    mel = run.get("train/mel")
    mel_note = ""
    if mel is not None:
        start = int(disc.steps[0])
        before = mel.at_or_before(start)
        if len(before.values):
            mel_note = (f"; the mel loss went from {float(np.median(before.values[-5:])):.3f} at the adversarial "
                        f"start to {float(np.median(mel.values[-5:])):.3f}")
    return Finding("discriminator-wins",
                   f"the discriminator overpowers the generator: its loss is {d:.3f} over the last quarter of the "
                   f"adversarial steps while the generator's adversarial loss rose from {adv_early:.3f} to "
                   f"{adv_late:.3f}{mel_note}",
                   "the discriminator learns faster than the generator can follow (its learning rate or size too "
                   "large, or it started before the reconstruction was decent)",
                   "lower the discriminator's learning rate (CodecTrainConfig.disc_lr, e.g. by 4x) or size "
                   "(disc_filters), start the adversary later (--adv-start-step after the mel loss flattens), raise "
                   "feat_weight; resume from a checkpoint before the collapse")
