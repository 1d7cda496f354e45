"""A fusion scorer: a calibrated combination of other scorers' spoof probabilities.

Its card (``model.json``, ``"kind": "fusion"``) names the member scorers (by their scan
names, e.g. ``b2`` and ``reference``) with the weights fitted on analysts' verdicts
(``liveness promote``) and a content hash of each member's weights: a fusion applies only
to the very models it was fitted on. Per face it gives

    p = sigmoid(bias + sum_i weight_i * logit(p_i)),

logistic regression on the members' logits, so a scan pools and decides it like any other
scorer. It has no crops of its own and no network: it runs where its members run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.checkpoint import CARD_FILE
from pipeline.errors import ModelError
from pipeline.scoring.model import VERSION_PATTERN, RealEvaluation, SessionOperatingPoint

EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before the logit


class FusionMember(BaseModel):
    """One member of a fusion: its weight on the logit and the weights it was fitted with."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    weight: float
    digest: str = Field(min_length=8, description="content hash of the member's weights (registry.scorer_digest)")
    version: str = ""


class FusionCard(BaseModel):
    """The card of a fusion scorer; every field declared."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["fusion"]
    version: str = Field(pattern=VERSION_PATTERN)
    members: dict[str, FusionMember] = Field(min_length=1, max_length=8)
    bias: float = 0.0
    threshold: float = Field(0.5, ge=0, le=1)
    threshold_method: str = ""
    trained: bool = True
    trained_on: str = ""
    limits: str = ""
    real_evaluation: RealEvaluation | None = None
    session: SessionOperatingPoint | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    notes: dict[str, Any] = Field(default_factory=dict)

    @property
    def crop_specs(self) -> tuple:
        """A fusion cuts no crops of its own: its members' crops feed it."""
        return ()


def read_fusion_card(model_dir: str | Path) -> FusionCard:
    """The validated card of a fusion scorer."""
    path = Path(model_dir) / CARD_FILE
    try:
        return FusionCard.model_validate(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ModelError(f"no fusion card at {path}") from None
    except (ValueError, OSError) as exc:
        raise ModelError(f"invalid fusion card {path}: {exc}") from exc


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with ``p`` clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def combine(bias: float, weights: Mapping[str, float], members: Mapping[str, np.ndarray]) -> np.ndarray:
    """sigmoid(bias + sum of weight * logit(member probability)), per face (N,) float64."""
    z = bias + sum(w * logit(members[name]) for name, w in weights.items())
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def fuse(card: FusionCard, members: Mapping[str, np.ndarray]) -> np.ndarray:
    """The fused spoof probability (N,) float32 from each member's probabilities (N,)."""
    return combine(card.bias, {n: m.weight for n, m in card.members.items()}, members).astype(np.float32)
