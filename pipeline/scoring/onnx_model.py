"""A scorer shipped as ONNX files with a card: one network or an ensemble, each member on
its own crop of the same face, its probabilities averaged.

This is how third-party real-data models join (the Silent-Face reference scorer in
``models/reference/``) and how a user's own ONNX model joins with no code change: its
card (``model.json``, ``"kind": "onnx"``) names the files, each member's crop, the pixel
format the network wants and which output class is a live face.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.checkpoint import CARD_FILE, MODELS_DIR
from pipeline.errors import ModelError
from pipeline.faces.crop import CropSpec, Fit
from pipeline.scoring.model import VERSION_PATTERN, RealEvaluation, SessionOperatingPoint, Std

DEFAULT_REFERENCE_DIR = MODELS_DIR / "reference"


class OnnxMember(BaseModel):
    """One network of an ONNX scorer: its file (beside the card) and the crop it is given."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*\.onnx$", description="file name beside the card")
    size: int = Field(ge=16, le=640)
    scale: float = Field(gt=0, le=8)
    fit: Fit = "shift"
    input: str = "input"
    output: str = "logits"

    @property
    def crop(self) -> CropSpec:
        return CropSpec(size=self.size, scale=self.scale, fit=self.fit)


class OnnxModelCard(BaseModel):
    """The card of an ONNX scorer; every field declared, values range-checked."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["onnx"]
    version: str = Field(pattern=VERSION_PATTERN)
    members: list[OnnxMember] = Field(min_length=1, max_length=8)
    channels: Literal["rgb", "bgr"] = "rgb"
    pixel_scale: float = Field(1.0 / 255.0, gt=0, le=1, description="pixels 0..255 times this (1.0 keeps 0..255)")
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Std = (1.0, 1.0, 1.0)
    outputs: Literal["logits", "probabilities"] = "logits"
    live_class: int = Field(ge=0, le=63, description="the output class of a live face; spoof = 1 - p(live)")
    threshold: float = Field(0.5, ge=0, le=1, description="spoof probability at or above which a face is an attack")
    threshold_method: str = ""
    trained: bool = True
    origin: str = ""
    licence: str = ""
    trained_on: str = ""
    limits: str = ""
    real_evaluation: RealEvaluation | None = None
    session: SessionOperatingPoint | None = Field(None, description="its operating point for sessions, if measured")
    metrics: dict[str, Any] = Field(default_factory=dict)
    notes: dict[str, Any] = Field(default_factory=dict)

    @property
    def crop_specs(self) -> tuple[CropSpec, ...]:
        """The crops the members are given, in member order."""
        return tuple(m.crop for m in self.members)


def read_onnx_card(model_dir: str | Path) -> OnnxModelCard:
    """The validated card of an ONNX scorer, with every member file present."""
    model_dir = Path(model_dir)
    path = model_dir / CARD_FILE
    try:
        card = OnnxModelCard.model_validate(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ModelError(f"no model card at {path}") from None
    except (ValueError, OSError) as exc:
        raise ModelError(f"unreadable model card {path}: {exc}") from exc
    for member in card.members:
        if not (model_dir / member.file).is_file():
            raise ModelError(f"{model_dir / member.file} (named in {path}) is missing")
    return card


class OnnxEnsembleScorer:
    """ONNX Runtime on CPU over every member; the spoof probability is 1 - mean p(live)."""

    def __init__(self, model_dir: str | Path, *, threads: int = 0) -> None:
        import onnxruntime as ort

        model_dir = Path(model_dir)
        self.card = read_onnx_card(model_dir)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._sessions = []
        for member in self.card.members:
            try:
                session = ort.InferenceSession(
                    str(model_dir / member.file), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own unrelated types for a bad file
                raise ModelError(f"{model_dir / member.file} is not a loadable ONNX model: {exc}") from exc
            self._sessions.append(session)
        self._scale = np.float32(self.card.pixel_scale)
        self._mean = np.asarray(self.card.mean, np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(self.card.std, np.float32).reshape(1, 3, 1, 1)
        self.name = "onnxruntime-cpu"

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """RGB uint8 crops (N, S, S, 3) to the members' float32 NCHW input."""
        x = crops[..., ::-1] if self.card.channels == "bgr" else crops
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) * self._scale
        return (x - self._mean) / self._std

    def __call__(self, crops: Mapping[str, np.ndarray]) -> np.ndarray:
        """Spoof probabilities (N,) of faces given as ``{crop key: crops}`` (every member's crop)."""
        live = None
        for member, session in zip(self.card.members, self._sessions, strict=True):
            batch = crops[member.crop.key]
            if len(batch) == 0:
                return np.zeros((0,), np.float32)
            (out,) = session.run([member.output], {member.input: self.preprocess(batch)})
            probs = _softmax(out) if self.card.outputs == "logits" else out
            live = probs[:, self.card.live_class] if live is None else live + probs[:, self.card.live_class]
        assert live is not None
        return (1.0 - live / len(self._sessions)).astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
