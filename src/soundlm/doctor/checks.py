"""The known failure modes of soundlm's trainers, read from a run's metrics, each with its likely cause and fix.

Each check takes the run (and its stage's reference, None when there is none) and returns
`Finding`s: a "problem" makes `soundlm doctor` exit non-zero, a "note" is said and does not.
Thresholds that are not relative to the reference are set where a healthy run of the recipe
is far away from them (see the shipped reference curves and docs/RESULTS.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from soundlm.doctor.reference import StageReference
from soundlm.doctor.runlog import RunLog, Series

PROBLEM, NOTE = "problem", "note"

# Codec codebooks (metrics of `codec.rvq.codebook_stats` on the held-out clips)
MIN_CODES_USED = 0.05  # a level using under 5% of the codes it could reach has collapsed...
MIN_CODE_PERPLEXITY = 8.0  # ...or spreads its frames over fewer than ~8 codes
CODEBOOK_WARMUP = 1000  # steps: k-means init and dead-code restarts settle before this
FIRST_LEVEL_SHARE = 0.97  # of the energy the whole RVQ explains
# Discriminator: its loss when it separates real from fake almost perfectly
DISC_COLLAPSE = {"hinge": 0.2, "lsgan": 0.05}
# LM: a held-out loss this close to the unigram entropy, after this share of the steps, is "stuck"
STUCK_MARGIN_NATS, STUCK_MARGIN_SHARE, STUCK_AFTER = 0.05, 0.03, 0.2
# Overfitting: held-out loss this far above its best, while the training loss went on falling
OVERFIT_RISE = 0.02  # relative


@dataclass
class Finding:
    level: str  # PROBLEM | NOTE
    name: str  # the failure mode, e.g. "overfitting"
    message: str  # what the metrics show
    cause: str = ""
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"{self.level}: {self.name}: {self.message}"]
        if self.cause:
            out.append(f"  likely cause: {self.cause}")
        if self.fix:
            out.append(f"  fix: {self.fix}")
        return out


def _tail(series: Series, share: float = 0.1, at_least: int = 3) -> np.ndarray:
    """The values of the last `share` of a series' points (at least `at_least`)."""
    n = max(at_least, math.ceil(len(series) * share))
    return series.values[-n:]


def check_nonfinite(run: RunLog, ref: StageReference | None) -> list[Finding]:
    bad = []
    for name, s in sorted(run.series.items()):
        where = np.flatnonzero(~np.isfinite(s.values))
        if where.size:
            bad.append(f"{name} from step {int(s.steps[where[0]])}")
    if not bad:
        return []
    return [Finding(PROBLEM, "NaN/inf", "non-finite values: " + "; ".join(bad),
                    cause="the learning rate is too high for this batch, or fp16 overflowed, or a batch held "
                          "broken audio (NaN samples, a file of pure silence normalised by zero)",
                    fix="delete the checkpoints at and after the first bad step, then resume with a lower --lr "
                        "(half), --mixed-precision bf16 instead of fp16, and check RUN/errors.jsonl and the data")]


def _levels(run: RunLog, prefix: str) -> list[tuple[int, Series]]:
    out = []
    for name, s in run.series.items():
        m = re.fullmatch(rf"eval/{prefix}@level(\d+)", name)
        if m and len(s):
            out.append((int(m.group(1)), s))
    return sorted(out, key=lambda x: x[0])


def check_codebooks(run: RunLog, ref: StageReference | None) -> list[Finding]:
    """Codebook collapse / dead codes: a level that uses few of its codes on the held-out clips."""
    used, ppl = dict(_levels(run, "codes_used")), dict(_levels(run, "code_perplexity"))
    if not used:
        return []
    step = int(next(iter(used.values())).steps[-1])
    if step < CODEBOOK_WARMUP:
        return []
    def floor(name: str, absolute: float) -> float:
        """The absolute floor, or lower where the reference run itself is lower at this step (a level that
        wakes up late in the recipe's own codec is not a failure before then)."""
        m = ref.metrics.get(name) if ref is not None else None
        if m is None or not m.steps[0] <= step <= m.steps[-1]:
            return absolute
        return min(absolute, float(m.band_at(np.array([step]))[1][0]))

    weak = []
    for q, s in used.items():
        frac = float(s.values[-1])
        perplexity = float(ppl[q].values[-1]) if q in ppl else math.inf
        if (frac < floor(f"eval/codes_used@level{q}", MIN_CODES_USED)
                or perplexity < floor(f"eval/code_perplexity@level{q}", MIN_CODE_PERPLEXITY)):
            weak.append(f"level {q} uses {frac:.1%} of its reachable codes (perplexity {perplexity:.1f})")
    if not weak:
        return []
    return [Finding(PROBLEM, "codebook collapse / dead codes", f"at step {step}: " + "; ".join(weak),
                    cause="the encoder's outputs bunch into a few codes, and the EMA codebook only moves the codes "
                          "that are picked; the dead-code restart (dead_code_threshold) is off or too low, or the "
                          "latents carry little (a silence-heavy corpus, a too-high commitment weight)",
                    fix="keep dead_code_threshold > 0 (the presets' 0.02; raise it to 0.05-0.1 in the codec config "
                        "and restart), trim long silences from the data, lower --commit-weight; a smaller "
                        "codebook_size suits a small corpus")]


def check_first_level_energy(run: RunLog, ref: StageReference | None) -> list[Finding]:
    """The first RVQ level removes nearly all the energy the quantizer explains: the other levels are wasted."""
    energy = _levels(run, "energy")
    if len(energy) < 2:
        return []
    step = int(energy[0][1].steps[-1])
    if step < CODEBOOK_WARMUP:
        return []
    shares = np.array([float(s.values[-1]) for _, s in energy])
    total = float(np.clip(shares, 0, None).sum())
    limit = FIRST_LEVEL_SHARE
    m = ref.metrics.get("eval/energy@level1") if ref is not None else None
    if m is not None and m.steps[0] <= step <= m.steps[-1]:
        limit = max(limit, float(m.band_at(np.array([step]))[2][0]))  # early on, the reference is there too
    if total <= 0 or shares[0] / total < limit:
        return []
    mels = {int(m.group(1)): s for n, s in run.series.items() if (m := re.fullmatch(r"eval/mel_distance@(\d+)", n))}
    gain = ""
    if len(mels) >= 2:
        lo, hi = min(mels), max(mels)
        gain = (f"; mel distance {float(mels[lo].values[-1]):.3f} with {lo} codebook(s), "
                f"{float(mels[hi].values[-1]):.3f} with {hi}")
    return [Finding(PROBLEM, "first codebook takes all the energy",
                    f"at step {step} level 1 removes {shares[0] / total:.1%} of the energy the RVQ explains{gain}",
                    cause="the residual after level 1 is tiny next to its codebooks, so the later levels quantize "
                          "noise: the encoder's latent carries little beyond what one codebook holds (a too-high "
                          "commitment weight pulls it onto the first codebook), or quantizer dropout is off so the "
                          "later levels are never trained to matter",
                    fix="keep quantizer_dropout on (the presets' default), lower --commit-weight, and check that "
                        "eval/mel_distance@N keeps improving over @1 as training goes on")]


def check_discriminator(run: RunLog, ref: StageReference | None) -> list[Finding]:
    disc, adv = run.series.get("train/disc"), run.series.get("train/adv")
    if disc is None or len(disc) < 5:
        return []
    kind = run.settings.get("adv_kind", "hinge")
    limit = DISC_COLLAPSE.get(kind, DISC_COLLAPSE["hinge"])
    d = float(np.median(_tail(disc)))
    if d >= limit:
        return []
    g = f", the generator's adversarial loss {float(np.median(_tail(adv))):.2f}" if adv is not None else ""
    return [Finding(PROBLEM, "discriminator overpowering the generator",
                    f"the discriminator's {kind} loss is {d:.3f} over the last logged steps (under {limit}: it tells "
                    f"real from reconstructed almost perfectly){g}; the generator gets no useful gradient from it",
                    cause="the discriminator learns faster than the codec: its learning rate or width is too large, "
                          "or the adversarial phase started before the reconstruction losses had settled",
                    fix="resume from a checkpoint before the drop with a lower --disc-lr (e.g. a third), fewer "
                        "--disc-filters, or start again with a later --adv-start-step")]


def check_unigram(run: RunLog, ref: StageReference | None, unigram_entropy: float | None) -> list[Finding]:
    """An LM stage whose held-out loss stays at the unigram entropy has learned frequencies, not context."""
    held = run.series.get("heldout/loss")
    if run.lm_stage is None or held is None or len(held) == 0 or unigram_entropy is None:
        return []
    planned = run.planned_steps or run.last_step
    step, loss = int(held.steps[-1]), float(held.values[-1])
    margin = max(STUCK_MARGIN_NATS, STUCK_MARGIN_SHARE * unigram_entropy)
    if step < STUCK_AFTER * planned or loss < unigram_entropy - margin:
        return []
    m = ref.metrics.get("heldout/loss") if ref is not None and ref.stage == run.lm_stage else None
    if m is not None and m.steps[0] <= step <= m.steps[-1] and m.band_at(np.array([step]))[2][0] >= loss:
        return []  # the reference is no further from the frequencies here: the band check speaks for this stage
    return [Finding(PROBLEM, "LM loss stuck at the unigram entropy",
                    f"held-out loss {loss:.3f} nats at step {step} of {planned}; the stage's unigram entropy is "
                    f"{unigram_entropy:.3f}: the model predicts token frequencies only, not from context",
                    cause="the learning rate is far off (too high: it diverged to the frequency solution; too low: "
                          "still there), or the tokens carry no sequence (a collapsed semantic tokenizer or codec)",
                    fix="try --lr 3e-4 with --warmup 500; check the tokens (`soundlm eval units`, the codec's "
                        "codebook usage); a window too short for the stage also hides the context")]


def check_overfitting(run: RunLog, ref: StageReference | None) -> list[Finding]:
    held, train = run.series.get("heldout/loss"), run.series.get("train/loss")
    if held is None or len(held) < 3 or not np.isfinite(held.values).all():
        return []
    best = int(np.argmin(held.values))
    best_loss, last_loss = float(held.values[best]), float(held.values[-1])
    if best == len(held) - 1 or last_loss <= best_loss * (1 + OVERFIT_RISE):
        return []
    best_step, last_step = int(held.steps[best]), int(held.steps[-1])
    train_note = ""
    if train is not None and len(train):
        at_best = float(np.interp(best_step, train.steps, train.values))
        now = float(np.median(train.values[-5:]))
        if now >= at_best:
            return []  # both rose: not overfitting (see the NaN and schedule checks)
        train_note = f" while the training loss fell from {at_best:.3f} to {now:.3f}"
    return [Finding(PROBLEM, "held-out loss rising (overfitting)",
                    f"held-out loss rose from {best_loss:.3f} at step {best_step} to {last_loss:.3f} at step "
                    f"{last_step}{train_note}",
                    cause="the model memorises its training windows: too many steps for the amount of data, or "
                          "a model too large for it",
                    fix=f"keep the weights of about step {best_step} (train again with --steps {best_step}, or take "
                        "a checkpoint near it), add data, or use a smaller --preset / more --weight-decay")]


def check_schedule(run: RunLog, ref: StageReference | None) -> list[Finding]:
    """The learning rate reached its floor well before the run's last step (the schedule ended early)."""
    lr = run.series.get("train/lr") or run.series.get("lr")
    if lr is None or len(lr) < 5:
        return []
    top = int(np.argmax(lr.values))  # the warmup's low values before the peak are not the floor
    decay, decay_steps = lr.values[top:], lr.steps[top:]
    peak, floor = float(decay[0]), float(np.min(decay))
    if not (peak > 0 and floor < 0.5 * peak):
        return []
    at_floor = np.flatnonzero(decay <= floor * 1.01 + 1e-12)
    first = int(decay_steps[at_floor[0]])
    last = int(lr.steps[-1])
    flat = last - first
    if flat <= 0.1 * max(last, 1) or at_floor.size < 3:
        return []
    return [Finding(PROBLEM, "learning-rate schedule finished early",
                    f"the learning rate reached its floor {floor:.2e} at step {first} and stayed there for the last "
                    f"{flat} steps of {last}: those steps train at the floor and gain little",
                    cause="the schedule spans fewer steps than were trained (a run resumed with a larger --steps "
                          "whose scheduler state still ends at the old total, or a schedule set for another length)",
                    fix="set --steps to the number of steps you mean to train when starting the run (the cosine "
                        "decay spans it); to train longer, start a new run initialised from this one (--init)")]


def check_still_improving(run: RunLog, ref: StageReference | None) -> list[Finding]:
    """A finished run whose held-out loss was still falling fast at the end: more steps would help."""
    held = run.series.get("heldout/loss")
    planned = run.planned_steps
    if held is None or len(held) < 5 or planned is None or run.last_step < planned:
        return []
    cut = held.steps[-1] * 0.8
    before = held.values[held.steps <= cut]
    if before.size == 0 or not np.isfinite(held.values[-1]):
        return []
    drop = (float(before[-1]) - float(held.values[-1])) / max(abs(float(before[-1])), 1e-9)
    if drop < 0.02:
        return []
    return [Finding(NOTE, "not converged", f"the held-out loss fell {drop:.1%} over the last 20% of the steps: "
                    "a longer schedule (--steps) would likely lower it further")]


def check_incomplete(run: RunLog, ref: StageReference | None) -> list[Finding]:
    planned = run.planned_steps
    if planned is None or run.last_step >= planned:
        return []
    return [Finding(NOTE, "in progress", f"the run has logged step {run.last_step} of {planned} (rerun its command "
                    "to resume)")]
