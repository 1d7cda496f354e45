"""Fitting a fusion scorer: logistic regression on the members' per-face logits.

The faces of one session share its verdict, so each face is weighted by one over its
session's faces: every judged session counts once, however long. A small ridge keeps the
weights finite when the members separate the verdicts perfectly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.scoring.fusion import combine, logit

RIDGE = 1e-2  # L2 penalty on the weights (not the bias), per unit of session weight
NEWTON_STEPS = 50


@dataclass(frozen=True)
class FusionFit:
    """Weights per member (on its logit) and the bias of a fitted fusion."""

    weights: dict[str, float]
    bias: float

    def __call__(self, members: Mapping[str, np.ndarray]) -> np.ndarray:
        """Fused probabilities from the members' probabilities."""
        return combine(self.bias, self.weights, members)


def fit_fusion(
    members: Mapping[str, np.ndarray], labels: np.ndarray, sessions: Sequence[str], *, ridge: float = RIDGE
) -> FusionFit:
    """Logistic regression of ``labels`` (1 spoof, per face) on the members' logits (per face),
    each face weighted by one over its session's faces (Newton's method)."""
    names = list(members)
    x = np.column_stack([np.ones(len(labels))] + [logit(members[n]) for n in names])
    y = np.asarray(labels, np.float64)
    _, index, counts = np.unique(np.asarray(sessions), return_inverse=True, return_counts=True)
    w = 1.0 / counts[index]
    penalty = np.diag([0.0] + [ridge * float(w.sum())] * len(names))
    beta = np.zeros(x.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        gradient = x.T @ (w * (p - y)) + penalty @ beta
        hessian = (x * (w * p * (1 - p))[:, None]).T @ x + penalty
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(beta)), gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return FusionFit({n: float(b) for n, b in zip(names, beta[1:], strict=True)}, float(beta[0]))
