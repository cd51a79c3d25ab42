"""Linear factor probe (IODINE §4.1, Fig. 5): after training, a single linear layer predicts each
ground-truth factor of an object from the latent of the slot matched to it.

Pairs come from `slot_factor_table` (slots matched to objects by mask IoU). Continuous factors get a
least-squares linear regression scored by test R^2; categorical ones a multinomial logistic
regression scored by test accuracy. Codes are standardised first (still a linear map).
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.metrics.dci import KINDS, split_indices


def linear_probe(codes: np.ndarray, factors: np.ndarray, kinds: list[str], names: list[str], seed: int = 0,
                 train_fraction: float = 0.5) -> dict[str, dict]:
    """codes [N,D], factors [N,F] -> {name: {"kind", "score", "metric"}} on the held-out part.

    A factor that cannot be probed (a single class in the training part) gets score None and a reason.
    """
    if len(codes) != len(factors):
        raise ValueError(f"{len(codes)} codes but {len(factors)} factor rows")
    if len(codes) < 4:
        raise ValueError(f"the linear probe needs at least 4 matched objects, got {len(codes)}")
    tr, te = split_indices(len(codes), seed, train_fraction)
    out = {}
    for j, (kind, name) in enumerate(zip(kinds, names)):
        if kind not in KINDS:
            raise ValueError(f"factor {name!r}: kind must be one of {KINDS}, got {kind!r}")
        y = factors[:, j]
        if kind == "categorical" and len(np.unique(y[tr])) < 2:
            out[name] = {"kind": kind, "metric": "accuracy", "score": None,
                         "reason": "one class in the training part"}
            continue
        head = LogisticRegression(max_iter=2000) if kind == "categorical" else LinearRegression()
        probe = make_pipeline(StandardScaler(), head).fit(codes[tr], y[tr])
        out[name] = {"kind": kind, "metric": "accuracy" if kind == "categorical" else "r2",
                     "score": float(probe.score(codes[te], y[te]))}
    return out
