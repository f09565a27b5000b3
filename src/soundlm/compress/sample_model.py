"""The sample-level model of lossless mode, in exact integer arithmetic.

For each sample the model sees the last `history` residuals of the block LPC predictor
(`soundlm.compress.lpc`) and returns a discretised logistic distribution for the sample:
its mean (LPC prediction + a learned correction) and its scale. A small MLP does this on
residuals normalised by their recent level, so one network serves quiet and loud audio.

Determinism. The MLP is trained in float (`soundlm.compress.trainer`) and then stored as
integers: weights with `W_FRAC` fractional bits, activations with `A_FRAC`. Inference
multiplies integer-valued float64 arrays and clips every activation to `ACT_LIMIT` and
every weight to `W_LIMIT`, so each partial sum is an integer below 2**53: float64 holds
it exactly, whatever the summation order, the BLAS kernel, the batch size or the number
of threads. Rescaling divides by powers of two and floors (also exact). The step from
(mean, scale) to the coder's integer frequencies is a table lookup: `tables` holds the
frequencies of every (scale level, sub-sample phase) pair, computed once when the model is
exported and stored with its weights. So the encoder's one batched forward over a whole
segment and the decoder's one-sample-at-a-time forwards give the same integers.

Coding a sample x given the model's (mu, phase, level):
    r = x - mu, folded into the PCM range (mod 2**bits), so it fits `bits` bits;
    h = r >> shift[level] is coded with tables[level, phase] (symbols 0..2H-1 for
    h in [-H, H), symbol 2H an escape followed by r itself as `bits` uniform bits);
    the low `shift[level]` bits of r are coded uniformly (at scales past 8 units the
    distribution is flat over them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from soundlm.compress.coder import FREQ_TOTAL, categorical

MODEL_TYPE = "soundlm-compressor"
MODEL_FORMAT = 1
A_FRAC = 8  # fractional bits of activations (and of the model's outputs)
W_FRAC = 10  # fractional bits of weights
ACT_LIMIT = 1 << 20
W_LIMIT = 1 << 15
BIAS_LIMIT = 1 << 40
LOG2_MIN_SCALE = -6  # the smallest scale, 2**-6 units: digital silence costs next to nothing


@dataclass
class SampleModelConfig:
    """Shape of the sample model and of its LPC front end (stored in config.json)."""

    bits: int = 16  # PCM bits per sample this model codes (16, or 8 for the paper's setting)
    history: int = 16  # LPC residuals the MLP sees
    hidden: int = 64
    layers: int = 2  # hidden layers
    lpc_block: int = 1024  # samples per LPC block (coefficients are sent once per block)
    lpc_orders: tuple[int, ...] = (0, 2, 4, 8, 12, 16, 24, 32)  # the orders a block may use
    coef_shift: int = 12  # fractional bits of the sent LPC coefficients
    scales_per_octave: int = 8
    phases: int = 4  # sub-sample positions of the mean the tables distinguish
    table_half: int = 256  # H: the tables cover h in [-H, H) plus an escape

    def __post_init__(self) -> None:
        self.lpc_orders = tuple(int(p) for p in self.lpc_orders)
        if self.bits not in (8, 16):
            raise ValueError(f"bits must be 8 or 16, got {self.bits}")
        for name in ("history", "hidden", "layers", "lpc_block", "scales_per_octave", "phases", "table_half"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.hidden > 256 or self.history > 256:
            raise ValueError("hidden and history must be <= 256 (exactness bound of the integer forward)")
        if 0 not in self.lpc_orders or len(self.lpc_orders) < 2:
            raise ValueError(f"lpc_orders must include 0 and at least one other order, got {self.lpc_orders}")

    @property
    def num_levels(self) -> int:
        """Scale levels: 2**LOG2_MIN_SCALE up to 2**(bits+1) sample units."""
        return (self.bits + 1 - LOG2_MIN_SCALE) * self.scales_per_octave

    @property
    def input_size(self) -> int:
        return self.history + 1

    def to_json(self) -> dict:
        d = asdict(self)
        d["lpc_orders"] = list(self.lpc_orders)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "SampleModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown compressor config keys {sorted(unknown)}; was this written by a newer soundlm?")
        return cls(**d)


@dataclass
class SampleParams:
    """The model's distribution for each sample: [N] int64 arrays."""

    mean: np.ndarray  # integer mean, inside the PCM range
    phase: np.ndarray  # which sub-sample position of the mean, 0..phases-1
    level: np.ndarray  # scale level, 0..num_levels-1


def log2_fixed(v: np.ndarray) -> np.ndarray:
    """log2(v) for integers v >= 1 with A_FRAC fractional bits (piecewise linear between powers of two)."""
    _, exp = np.frexp(v.astype(np.float64))  # v = m * 2**exp, m in [0.5, 1): exp is v's bit length
    exp = exp.astype(np.int64)
    return ((exp - 1) << A_FRAC) + ((v << A_FRAC) >> (exp - 1)) - (1 << A_FRAC)


def features(hist: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual history [N, H] (column 0 the latest) -> (MLP inputs [N, H+1], level v [N], log2 v [N]).

    Inputs are the residuals divided by their mean magnitude v (A_FRAC fractional bits)
    and log2 v centred on the middle of the PCM range. All integers.
    """
    n, h = hist.shape
    v = np.abs(hist).sum(axis=1) // h + 1  # [N]
    normed = (hist << A_FRAC) // v[:, None]  # [N, H], |.| < 256 * H
    lvl = log2_fixed(v)  # [N]
    inputs = np.concatenate([normed, (lvl - ((bits // 2) << A_FRAC))[:, None]], axis=1)  # [N, H+1]
    return inputs, v, lvl


def scale_tables(config: SampleModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Integer frequencies [levels, phases, 2H+1] and the low-bit shift of each level [levels].

    Level k stands for a logistic of scale 2**(LOG2_MIN_SCALE + (k + 0.5) / scales_per_octave);
    phase p centres it (p + 0.5) / phases - 0.5 samples from the integer mean.
    """
    spo, half = config.scales_per_octave, config.table_half
    levels = np.arange(config.num_levels)
    octave = LOG2_MIN_SCALE + (2 * levels + 1) // (2 * spo)  # floor(log2 scale), in integers
    shifts = np.maximum(octave - 3, 0).astype(np.int64)
    scales = 2.0 ** (LOG2_MIN_SCALE + (levels + 0.5) / spo)
    centres = (np.arange(config.phases) + 0.5) / config.phases - 0.5
    h = np.arange(-half, half + 1, dtype=np.float64)  # bin edges in units of 2**shift
    freqs = np.zeros((config.num_levels, config.phases, 2 * half + 1), dtype=np.int64)
    for k in levels:
        edges = h * float(1 << int(shifts[k])) - 0.5  # [2H+1]
        for p, c in enumerate(centres):
            with np.errstate(over="ignore"):  # exp overflows to inf far in the tails: cdf 0, as it should
                cdf = 1.0 / (1.0 + np.exp(-(edges - c) / scales[k]))
            probs = np.diff(cdf)  # [2H]
            escape = max(1.0 - probs.sum(), 0.0)
            p_all = np.append(probs, escape)
            freqs[k, p] = np.floor(p_all / p_all.sum() * (FREQ_TOTAL - p_all.size)).astype(np.int64) + 1
    return freqs, shifts


def quantize_layers(layers: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Float (weight [out, in], bias [out]) per layer -> integer-valued float64 arrays (the stored form)."""
    out = []
    for w, b in layers:
        wq = np.clip(np.round(np.asarray(w, np.float64) * (1 << W_FRAC)), -W_LIMIT, W_LIMIT)
        bq = np.clip(np.round(np.asarray(b, np.float64) * (1 << (W_FRAC + A_FRAC))), -BIAS_LIMIT, BIAS_LIMIT)
        out.append((wq, bq))
    return out


class SampleModel:
    """Integer MLP + frequency tables; `params` maps LPC predictions and residual history to distributions."""

    def __init__(self, config: SampleModelConfig, layers: list[tuple[np.ndarray, np.ndarray]],
                 tables: np.ndarray, shifts: np.ndarray, metrics: dict | None = None):
        self.config = config
        self.layers = [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in layers]
        self.tables = np.asarray(tables, np.int64)
        self.shifts = np.asarray(shifts, np.int64)
        self.metrics = dict(metrics or {})
        expected = (config.num_levels, config.phases, 2 * config.table_half + 1)
        if self.tables.shape != expected:
            raise ValueError(f"frequency tables have shape {self.tables.shape}, the config needs {expected}")
        if len(self.layers) != config.layers + 1 or self.layers[0][0].shape[1] != config.input_size:
            raise ValueError(f"weights do not match the config ({config.layers} hidden layers, "
                             f"{config.input_size} inputs)")
        for w, b in self.layers:
            if np.abs(w).max(initial=0) > W_LIMIT or np.abs(b).max(initial=0) > BIAS_LIMIT or np.any(w != np.round(w)):
                raise ValueError("weights must be integers within the exactness bounds; export with quantize_layers")
        self._coder_models: dict[tuple[int, int], object] = {}

    @classmethod
    def from_float(cls, config: SampleModelConfig, layers: list[tuple[np.ndarray, np.ndarray]],
                   metrics: dict | None = None) -> "SampleModel":
        """Quantise a trained float MLP and attach the frequency tables."""
        tables, shifts = scale_tables(config)
        return cls(config, quantize_layers(layers), tables, shifts, metrics)

    # ---- inference -------------------------------------------------------------------
    def forward(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer inputs [N, H+1] -> (mean correction, log2 scale offset) [N] each, A_FRAC fractional bits."""
        a = inputs.astype(np.float64)
        for w, b in self.layers[:-1]:
            z = a @ w.T + b  # [N, hidden], W_FRAC + A_FRAC fractional bits, exact (< 2**53)
            a = np.minimum(np.floor(np.maximum(z, 0.0) / (1 << W_FRAC)), ACT_LIMIT)
        w, b = self.layers[-1]
        out = np.floor((a @ w.T + b) / (1 << W_FRAC)).astype(np.int64)  # [N, 2]
        out = np.minimum(np.maximum(out, -ACT_LIMIT), ACT_LIMIT)  # (np.clip costs more per call at batch 1)
        return out[:, 0], out[:, 1]

    def params(self, pred: np.ndarray, hist: np.ndarray) -> SampleParams:
        """LPC predictions [N] and residual history [N, H] (int64) -> the distribution of each sample."""
        cfg = self.config
        inputs, v, lvl = features(hist, cfg.bits)
        mu_corr, log_scale = self.forward(inputs)
        mean_fx = (pred << A_FRAC) + mu_corr * v  # A_FRAC fractional bits, sample units
        rounded = (mean_fx + (1 << (A_FRAC - 1))) >> A_FRAC
        frac = mean_fx + (1 << (A_FRAC - 1)) - (rounded << A_FRAC)  # [0, 2**A_FRAC)
        phase = (frac * cfg.phases) >> A_FRAC
        half = 1 << (cfg.bits - 1)
        level = ((log_scale + lvl - (LOG2_MIN_SCALE << A_FRAC)) * cfg.scales_per_octave) >> A_FRAC
        return SampleParams(mean=np.minimum(np.maximum(rounded, -half), half - 1), phase=phase,
                            level=np.minimum(np.maximum(level, 0), cfg.num_levels - 1))

    def coder_model(self, level: int, phase: int):
        """The constriction model of table (level, phase), built once and cached."""
        key = (int(level), int(phase))
        model = self._coder_models.get(key)
        if model is None:
            model = self._coder_models[key] = categorical(self.tables[key])
        return model

    # ---- files -------------------------------------------------------------------------
    def _tensors(self) -> dict[str, np.ndarray]:
        t = {"tables": self.tables.astype(np.int32), "shifts": self.shifts.astype(np.int32)}
        for i, (w, b) in enumerate(self.layers):
            t[f"layer{i}.weight"] = w.astype(np.int64)
            t[f"layer{i}.bias"] = b.astype(np.int64)
        return t

    @property
    def hash(self) -> bytes:
        """16-byte id written into every file this model compresses (config + integer tensors)."""
        from soundlm.compress.container import model_hash

        tensors = self._tensors()
        parts = [json.dumps({"type": MODEL_TYPE, "format_version": MODEL_FORMAT, "config": self.config.to_json()},
                            sort_keys=True).encode()]
        parts += [name.encode() + tensors[name].tobytes() for name in sorted(tensors)]
        return model_hash(*parts)

    def save(self, folder: str | Path) -> Path:
        """Write config.json + model.safetensors into `folder` (atomically, as a whole)."""
        from safetensors.numpy import save_file

        from soundlm.fileio import atomic_dir, write_json_atomic

        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            write_json_atomic(tmp / "config.json", {"type": MODEL_TYPE, "format_version": MODEL_FORMAT,
                                                     "config": self.config.to_json(), "metrics": self.metrics})
            save_file(self._tensors(), str(tmp / "model.safetensors"))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "SampleModel":
        """Load a folder written by `save` (or a `soundlm train compressor` run: its final/)."""
        from safetensors.numpy import load_file

        from soundlm.checkpoint import resolve_model_folder
        from soundlm.fileio import read_json

        resolved = resolve_model_folder(folder, lambda p: (p / "config.json").is_file()
                                        and (p / "model.safetensors").is_file())
        if resolved is None:
            raise FileNotFoundError(f"{folder}: no compressor model here (needs config.json and model.safetensors, "
                                    "or a run folder with final/); train one with `soundlm train compressor`")
        cfg = read_json(resolved / "config.json")
        if cfg.get("type") != MODEL_TYPE:
            raise ValueError(f"{resolved}/config.json has type {cfg.get('type')!r}, not {MODEL_TYPE!r}; pass a "
                             "model written by `soundlm train compressor`")
        if cfg.get("format_version") != MODEL_FORMAT:
            raise ValueError(f"{resolved}: compressor format {cfg.get('format_version')}, this soundlm reads "
                             f"{MODEL_FORMAT}; use the soundlm release that trained it")
        config = SampleModelConfig.from_json(cfg["config"])
        t = load_file(str(resolved / "model.safetensors"))
        layers = [(t[f"layer{i}.weight"], t[f"layer{i}.bias"]) for i in range(config.layers + 1)]
        return cls(config, layers, t["tables"], t["shifts"], cfg.get("metrics"))

