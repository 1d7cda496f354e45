"""What the liveness classifier is: its architecture, its card, its preprocessing, its checkpoint.

Training and scanning both import this module, so the network, the normalisation and
the checkpoint format cannot drift apart. A checkpoint is a directory (or the path of
its ``.safetensors`` file) holding ``model.safetensors`` (fp16 weights) and
``model.json`` (the model card). No pickle is ever loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.atomic import write_aside
from pipeline.crop import DEFAULT_CROP_SCALE

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"
SPOOF_CLASS = 1
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
CardT = TypeVar("CardT", bound=BaseModel)


class ModelError(Exception):
    """A checkpoint that cannot be used: missing, unreadable or inconsistent."""


class ModelCard(BaseModel):
    """Everything a user or the scanner needs to know to use a checkpoint correctly."""

    model_config = ConfigDict(extra="allow")

    architecture: str = "efficientnet_b2"
    num_classes: int = 2
    labels: list[str] = Field(default_factory=lambda: ["live", "spoof"])
    drop_rate: float = 0.3
    input_size: int = 128
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop_scale: float = DEFAULT_CROP_SCALE
    threshold: float = 0.5
    version: str = "untrained"
    trained: bool = False
    trained_on: str = ""
    init: str = "scratch"
    limits: str = ""
    reproduce: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: str = ""


def create_model(card: ModelCard):
    """The network the card describes, randomly initialised (timm, no download)."""
    import timm

    return timm.create_model(card.architecture, pretrained=False, num_classes=card.num_classes, drop_rate=card.drop_rate)


def check_crops(crops: np.ndarray, card: ModelCard) -> None:
    """Raise ValueError unless ``crops`` are RGB (N, S, S, 3) at the card's input size."""
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be (N, S, S, 3) RGB, got shape {crops.shape}")
    if crops.shape[1:3] != (card.input_size, card.input_size):
        raise ValueError(f"crops must be {card.input_size}x{card.input_size} for this model, got {crops.shape[1]}x{crops.shape[2]}")


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


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, card)`` paths of a checkpoint given as its directory or its weights file."""
    path = Path(path)
    directory = path.parent if path.suffix == ".safetensors" else path
    weights = path if path.suffix == ".safetensors" else directory / WEIGHTS_FILE
    return weights, directory / CARD_FILE


def read_card(path: str | Path) -> ModelCard:
    """The model card of a checkpoint, validated."""
    weights, card_path = checkpoint_paths(path)
    if not card_path.is_file():
        raise ModelError(f"no model card at {card_path}")
    if not weights.is_file():
        raise ModelError(f"no weights at {weights}")
    return validate_card(card_path, ModelCard, "model card")


def validate_card(card_path: Path, card_type: type[CardT], what: str) -> CardT:
    """The JSON card at ``card_path`` validated as ``card_type`` (any checkpoint's card);
    a :class:`ModelError` naming ``what`` when it cannot be read."""
    try:
        return card_type.model_validate(json.loads(card_path.read_text()))
    except (ValueError, OSError) as exc:
        raise ModelError(f"unreadable {what} {card_path}: {exc}") from exc


def weights_digest(path: str | Path) -> str:
    """Short content hash of a checkpoint's weights (keys caches such as the ONNX export)."""
    weights, _ = checkpoint_paths(path)
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def load_checkpoint(path: str | Path, *, require_trained: bool = True):
    """``(model, card)`` from a checkpoint; the model is float32, in eval mode, on the CPU."""
    card = read_card(path)
    if require_trained and not card.trained:
        raise ModelError(f"the checkpoint at {path} is marked untrained: train one with `liveness train` first")
    weights, _ = checkpoint_paths(path)
    return load_weights(create_model(card), weights, card.architecture), card


def load_weights(network, weights: Path, what: str):
    """``network`` (torch) with the fp16 safetensors ``weights`` loaded as float32, in eval
    mode; a :class:`ModelError` naming ``what`` when they do not fit it."""
    from safetensors.torch import load_file

    try:
        network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()})
    except Exception as exc:  # safetensors and torch raise several unrelated types here
        raise ModelError(f"weights at {weights} do not fit {what}: {exc}") from exc
    return network.eval()


def save_checkpoint(model, card: BaseModel, directory: str | Path) -> Path:
    """Write fp16 weights and the card (any pydantic card) into ``directory`` (files written aside, then renamed)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    state = {k: v.detach().to("cpu").half().contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}
    state.update({k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if not v.is_floating_point()})
    write_aside(directory / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
    write_card(card, directory)
    return directory


def write_card(card: BaseModel, directory: str | Path) -> Path:
    """Write the card JSON atomically beside the weights."""
    text = json.dumps(card.model_dump(mode="json"), indent=2) + "\n"
    return write_aside(Path(directory) / CARD_FILE, lambda tmp: tmp.write_text(text))
