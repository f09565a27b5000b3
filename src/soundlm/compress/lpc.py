"""Forward-adaptive linear prediction (FLAC's idea): per block, integer coefficients sent in the stream.

The encoder fits an LPC filter to each block of samples (autocorrelation of the windowed
block, Levinson-Durbin), picks the order that its error energy says is cheapest, and
quantises the coefficients to integers with `coef_shift` fractional bits. Those integers
travel in the code stream, so the prediction

    pred[t] = (sum_i coefs[i] * x[t-1-i]) >> coef_shift        (floor)

is plain integer arithmetic, the same in encoder and decoder. The float analysis only
chooses what to send; it never has to be reproduced.
"""

from __future__ import annotations

import math

import numpy as np

COEF_LIMIT = 1 << 15  # coefficients are sent as 16-bit signed integers


def levinson(r: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation r[0..order] -> (predictor of each order [order, order], error energy [order + 1]).

    Row p-1 of the first array holds the order-p predictor a (x[t] ~ sum_i a[i] x[t-1-i]),
    zero-padded; errors[p] is the residual energy of the order-p predictor.
    """
    preds = np.zeros((order, order))
    errors = np.zeros(order + 1)
    errors[0] = r[0]
    a = np.zeros(order)
    err = float(r[0])
    for p in range(order):
        if err <= 0:
            errors[p + 1:] = 0.0
            break
        k = (r[p + 1] - np.dot(a[:p], r[p:0:-1])) / err
        a[:p] = a[:p] - k * a[:p][::-1]
        a[p] = k
        err *= 1.0 - k * k
        preds[p] = a
        errors[p + 1] = max(err, 0.0)
    return preds, errors


def fit_block(block: np.ndarray, orders: tuple[int, ...], coef_shift: int) -> np.ndarray:
    """Integer coefficients for one block (length = the chosen order; may be empty)."""
    n = len(block)
    usable = [p for p in orders if p == 0 or n > 2 * p]
    x = block.astype(np.float64)
    if len(usable) < 2 or not np.any(x):
        return np.zeros(0, dtype=np.int64)
    # A Hann window keeps the block edges from biasing the autocorrelation (FLAC's default is similar).
    w = x * np.hanning(n + 2)[1:-1]
    top = max(usable)
    r = np.array([np.dot(w[: n - i], w[i:]) for i in range(top + 1)])
    if r[0] <= 0:
        return np.zeros(0, dtype=np.int64)
    r[0] *= 1.0 + 1e-9  # white-noise floor: keeps Levinson stable on degenerate blocks
    preds, errors = levinson(r, top)
    energy = float(np.dot(x, x))
    # Cost estimate: Gaussian residual bits at the predicted error energy, plus 16 bits per coefficient.
    best, best_cost = 0, 0.5 * n * math.log2(max(energy / n, 1e-2)) if n else 0.0
    for p in usable:
        if p == 0:
            continue
        gain = errors[p] / r[0]
        cost = 0.5 * n * math.log2(max(gain * energy / n, 1e-2)) + 16 * p
        if cost < best_cost:
            best, best_cost = p, cost
    if best == 0:
        return np.zeros(0, dtype=np.int64)
    q = np.round(preds[best - 1, :best] * (1 << coef_shift))
    return np.clip(q, -COEF_LIMIT, COEF_LIMIT - 1).astype(np.int64)


def predict(x: np.ndarray, coefs: np.ndarray, start: int, end: int, coef_shift: int) -> np.ndarray:
    """Integer predictions of x[start:end] from earlier samples (before index 0 counts as silence)."""
    pred = np.zeros(end - start, dtype=np.int64)
    for i, c in enumerate(coefs):
        lag = i + 1
        lo = start - lag
        if lo >= 0:
            pred += int(c) * x[lo: end - lag]
        elif end - lag > 0:
            pred[-lo:] += int(c) * x[: end - lag]
    return pred >> coef_shift
