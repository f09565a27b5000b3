"""Figures of training curves: a run against its reference band (`soundlm doctor --plot`), and the reference
curves themselves (docs/reference_curves/*.png). Drawn on a bare matplotlib `Figure` (no pyplot, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from soundlm.doctor.metrics import RunMetrics, read_run
from soundlm.doctor.reference import COMPARED, ReferenceCurve, ReferenceCurves, band, load_reference, smooth


def _figure(panels: int):
    from matplotlib.figure import Figure

    cols = min(panels, 3)
    rows = -(-panels // cols)
    fig = Figure(figsize=(4.6 * cols, 3.3 * rows), dpi=100, layout="constrained")
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(panels)]


def _draw_reference(ax, curve: ReferenceCurve, metric: str, relative: tuple[float, float] | None) -> None:
    steps, values = map(np.asarray, curve.metrics[metric])
    ax.plot(steps, values, color="tab:gray", lw=1.2, label="reference")
    if relative is not None:
        low, high = band(values, relative)
        ax.fill_between(steps, low, high, color="tab:gray", alpha=0.25, lw=0, label="band")


def _panels(curve: ReferenceCurve | None, run: RunMetrics | None) -> list[str]:
    """The metrics to draw: those compared with the reference, then the run's other main series."""
    kind = curve.kind if curve is not None else ("lm" if run is not None and run.kind == "finetune" else
                                                 run.kind if run is not None else "")
    names = [m for m, _, _ in COMPARED.get(kind, [])
             if (curve is not None and m in curve.metrics) or (run is not None and m in run.series)]
    extra = ["train/lr", "lr", "eval/energy@level1", "eval/code_perplexity@level1", "train/disc"]
    names += [m for m in extra if (run is not None and m in run.series) or (curve is not None and m in curve.metrics)]
    return list(dict.fromkeys(names))


def plot_run(run_dir: str | Path, out: str | Path, reference: ReferenceCurves | None = None) -> Path:
    """PNG of a run's main metrics (smoothed train losses) over its reference curve and band."""
    run = read_run(run_dir)
    reference = reference or load_reference()
    ref_kind = "lm" if run.kind == "finetune" else run.kind
    curve = reference.find(ref_kind, run.stage if ref_kind == "lm" else None)
    if run.kind == "finetune":
        curve = None  # a fine-tuning starts from a trained model: its curve is not the from-scratch one
    names = _panels(curve, run) or sorted(run.series)[:6]
    bands = {m: rel for m, _, rel in COMPARED.get(ref_kind, [])}
    fig, axes = _figure(len(names))
    for ax, metric in zip(axes, names):
        if curve is not None and metric in curve.metrics:
            _draw_reference(ax, curve, metric, bands.get(metric))
        s = run.series.get(metric)
        if s is not None:
            values = smooth(s.values) if metric.startswith("train/") and "lr" not in metric else s.values
            ax.plot(s.steps, values, color="tab:red", lw=1.5, marker="." if len(s.steps) < 40 else None,
                    label="this run")
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    title = f"{Path(run_dir).name}: {run.kind}" + (f" {run.stage}" if run.stage else "")
    fig.suptitle(title + (f" vs reference {curve.name}" if curve is not None else ""), fontsize=11)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def plot_reference(curves: ReferenceCurves, folder: str | Path) -> list[Path]:
    """One PNG per reference curve (every metric it holds), for docs/."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for curve in curves.curves:
        bands = {m: rel for m, _, rel in COMPARED.get(curve.kind, [])}
        names = sorted(curve.metrics, key=lambda m: (m not in bands, m))
        fig, axes = _figure(len(names))
        for ax, metric in zip(axes, names):
            _draw_reference(ax, curve, metric, bands.get(metric))
            if metric in ("heldout/loss", "train/loss") and curve.unigram_entropy is not None:
                ax.axhline(curve.unigram_entropy, color="tab:orange", ls="--", lw=1, label="unigram entropy")
            ax.set_title(metric, fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"{curve.name}: {curve.about}", fontsize=9, wrap=True)
        path = folder / f"{curve.name}.png"
        fig.savefig(path)
        written.append(path)
    return written
