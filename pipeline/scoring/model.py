"""What the liveness classifier is: its card, its network and its preprocessing.

Training and scanning both import this module, so the network, the normalisation and
the crop cannot drift apart: the card is the single source of the crop
(:attr:`ModelCard.crop_spec`), and every card field is declared (a misspelt key is an
error, never a silent default). Checkpoints are read and written in the one format of
:mod:`pipeline.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pipeline.checkpoint import MODELS_DIR, checkpoint_paths, load_weights, read_checkpoint_card
from pipeline.errors import ModelError
from pipeline.faces.crop import DEFAULT_CROP_SCALE, CropSpec

SPOOF_CLASS = 1


def _positive_channels(value: tuple[float, float, float]) -> tuple[float, float, float]:
    if min(value) <= 0:
        raise ValueError(f"std must be > 0 per channel, got {value}")
    return value


Std = Annotated[tuple[float, float, float], AfterValidator(_positive_channels)]  # a card's per-channel std


class RealEvaluation(BaseModel):
    """Where a scorer was measured on real faces (not renders): the data, how its threshold
    was chosen, and what it measured. Only scorers with one may decide a session by default."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    data: str = Field(
        min_length=1, description="the real data measured on, e.g. which images, how many live and attack"
    )
    threshold_data: str = Field("", description="the real data the threshold was chosen on (held apart from `data`)")
    measured_at: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)


class SessionOperatingPoint(BaseModel):
    """A scorer's operating point for whole sessions, chosen on real session videos: a session
    score pools many faces, so it is not judged by the threshold chosen on single photographs.
    ``live`` at or below ``threshold - review_band``, ``spoof`` at or above ``threshold +
    review_band``, ``review`` between."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    threshold: float = Field(ge=0, le=1)
    review_band: float = Field(ge=0, le=0.5)
    pooling: str = Field(min_length=1, description="the session pooling it was chosen for (aggregate.method)")
    method: str = Field(min_length=1, description="how the two edges were chosen")
    threshold_data: str = Field(min_length=1, description="the real sessions the edges were chosen on")
    data: str = Field(min_length=1, description="the real sessions, held apart from the choice, it was measured on")
    measured_at: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)

    @property
    def live_below(self) -> float:
        return self.threshold - self.review_band

    @property
    def spoof_from(self) -> float:
        return self.threshold + self.review_band


DEFAULT_MODEL_DIR = MODELS_DIR / "default"
ARCHITECTURES = ("efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "tf_efficientnet_lite2")


def _known_architecture(value: str) -> str:
    if value not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {value!r}; allowed: {', '.join(ARCHITECTURES)}")
    return value


Architecture = Annotated[str, AfterValidator(_known_architecture)]  # a network timm builds here
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"


class ModelCard(BaseModel):
    """Everything a user or the scanner needs to know to use a checkpoint correctly.

    Every field is declared (``extra="forbid"``); free-form facts go into ``notes``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["timm"] = "timm"
    architecture: Architecture = "efficientnet_b2"
    num_classes: int = Field(2, ge=2, le=2)
    labels: list[str] = Field(default_factory=lambda: ["live", "spoof"])
    drop_rate: float = Field(0.3, ge=0, lt=1)
    input_size: int = Field(128, ge=32, le=640)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Std = (0.229, 0.224, 0.225)
    crop_scale: float = Field(DEFAULT_CROP_SCALE, gt=0, le=8)
    threshold: float = Field(0.5, ge=0, le=1)
    threshold_method: str = "eer"
    version: str = Field("untrained", pattern=VERSION_PATTERN)
    trained: bool = False
    trained_on: str = ""
    evaluated_on: str = ""
    init: str = "scratch"
    limits: str = ""
    reproduce: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    best_epoch: int | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    created_at: str = ""
    real_evaluation: RealEvaluation | None = Field(
        None, description="its measurement on real faces; None = never measured on real data"
    )
    session: SessionOperatingPoint | None = Field(None, description="its operating point for sessions, if measured")
    notes: dict[str, Any] = Field(default_factory=dict, description="free-form facts about the model")

    @property
    def crop_spec(self) -> CropSpec:
        """The crop this model was trained on and must be given."""
        return CropSpec(size=self.input_size, scale=self.crop_scale)

    @property
    def crop_specs(self) -> tuple[CropSpec, ...]:
        """The crops a scorer of this card is given (one)."""
        return (self.crop_spec,)


def create_model(card: ModelCard) -> Any:
    """The network the card describes, randomly initialised (timm, no download)."""
    import timm

    return timm.create_model(
        card.architecture, pretrained=False, num_classes=card.num_classes, drop_rate=card.drop_rate
    )


def check_crops(crops: np.ndarray, card: ModelCard) -> None:
    """Raise ValueError unless ``crops`` are RGB (N, S, S, 3) at the card's input size."""
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be (N, S, S, 3) RGB, got shape {crops.shape}")
    if crops.shape[1:3] != (card.input_size, card.input_size):
        raise ValueError(
            f"crops must be {card.input_size}x{card.input_size} for this model, got {crops.shape[1]}x{crops.shape[2]}"
        )


def normalisation(card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` per channel, float32: a uint8 pixel ``p`` becomes ``p * scale - shift``."""
    std = np.asarray(card.std, dtype=np.float32)
    return 1.0 / (255.0 * std), np.asarray(card.mean, dtype=np.float32) / std


def preprocess(crops: np.ndarray, card: ModelCard) -> np.ndarray:
    """Face crops, RGB uint8 (N, S, S, 3) at the card's input size, to normalised float32 NCHW."""
    check_crops(crops, card)
    scale, shift = normalisation(card)
    x = crops.astype(np.float32) * scale.reshape(1, 1, 1, 3) - shift.reshape(1, 1, 1, 3)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def load_checkpoint(path: str | Path, *, require_trained: bool = True) -> tuple[Any, ModelCard]:
    """``(model, card)`` from a checkpoint; the model is float32, in eval mode, on the CPU."""
    card = read_card(path)
    if require_trained and not card.trained:
        raise ModelError(f"the checkpoint at {path} is marked untrained: train one with `liveness train` first")
    weights, _ = checkpoint_paths(path)
    return load_weights(create_model(card), weights, card.architecture), card


def read_card(path: str | Path) -> ModelCard:
    """The validated model card of the checkpoint at ``path`` (its directory or weights file)."""
    return read_checkpoint_card(path, ModelCard, "model card")
