"""The one checkpoint format of every network the product ships or trains, and its ONNX cache.

A checkpoint is a directory holding ``model.safetensors`` (fp16 weights) and
``model.json`` (the network's card, a pydantic model). No pickle is ever loaded. The
spoof classifier (:mod:`pipeline.scoring.model`) and the region-occlusion model
(:mod:`pipeline.signals.occlusion`) both read, write and export through here.

ONNX exports are cached under a name made from a digest of the weights and the card,
never from card text, so a card cannot choose where anything is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from pipeline.atomic import write_aside
from pipeline.errors import ModelError

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"
DEFAULT_ONNX_CACHE = "~/.cache/liveness/onnx"
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"  # the shipped checkpoints
CardT = TypeVar("CardT", bound=BaseModel)

log = logging.getLogger(__name__)


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, card)`` paths of a checkpoint given as its directory or its weights file."""
    path = Path(path)
    directory = path.parent if path.suffix == ".safetensors" else path
    weights = path if path.suffix == ".safetensors" else directory / WEIGHTS_FILE
    return weights, directory / CARD_FILE


def read_checkpoint_card(path: str | Path, card_type: type[CardT], what: str) -> CardT:
    """The validated card of the checkpoint at ``path``; a :class:`ModelError` naming
    ``what`` and the missing or unreadable file otherwise."""
    weights, card_path = checkpoint_paths(path)
    if not card_path.is_file():
        raise ModelError(f"no {what} at {card_path}")
    if not weights.is_file():
        raise ModelError(f"no weights at {weights}")
    try:
        return card_type.model_validate(json.loads(card_path.read_text()))
    except (ValueError, OSError) as exc:
        raise ModelError(f"unreadable {what} {card_path}: {exc}") from exc


def weights_digest(path: str | Path) -> str:
    """Short content hash of a checkpoint's weights (keys caches and the ledger)."""
    weights, _ = checkpoint_paths(path)
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def load_weights(network: Any, weights: Path, what: str) -> Any:
    """``network`` (torch) with the fp16 safetensors ``weights`` loaded as float32, in eval
    mode; a :class:`ModelError` naming ``what`` when they do not fit it."""
    from safetensors.torch import load_file

    try:
        network.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
        )
    except Exception as exc:  # safetensors and torch raise several unrelated types here
        raise ModelError(f"weights at {weights} do not fit {what}: {exc}") from exc
    return network.eval()


def save_checkpoint(network: Any, card: BaseModel, directory: str | Path) -> Path:
    """Write fp16 weights and the card into ``directory`` (each file written aside, then renamed)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    items = network.state_dict().items()
    state = {k: v.detach().to("cpu").half().contiguous() for k, v in items if v.is_floating_point()}
    state.update({k: v.detach().to("cpu").contiguous() for k, v in items if not v.is_floating_point()})
    write_aside(directory / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
    write_card(card, directory)
    return directory


def write_card(card: BaseModel, directory: str | Path) -> Path:
    """Write the card JSON atomically beside the weights."""
    text = json.dumps(card.model_dump(mode="json"), indent=2) + "\n"
    return write_aside(Path(directory) / CARD_FILE, lambda tmp: tmp.write_text(text))


def onnx_cache_path(kind: str, checkpoint: str | Path, card: BaseModel, cache_dir: str | Path) -> Path:
    """Where the ONNX export of a checkpoint is cached: ``<kind>-<digest>.onnx`` in
    ``cache_dir``, the digest over the weights and the card (``kind`` is the code's own
    name for the network, never card text)."""
    card_text = json.dumps(card.model_dump(mode="json"), sort_keys=True)
    digest = hashlib.sha256(f"{weights_digest(checkpoint)}\0{card_text}".encode()).hexdigest()[:24]
    return Path(os.path.expanduser(str(cache_dir))) / f"{kind}-{digest}.onnx"


def cached_onnx(path: Path, export: Callable[[Path], object], what: str) -> Path:
    """``path``, after ``export(tmp)`` wrote the ONNX file there if it was not there yet
    (written aside and renamed, so processes exporting at once never mix their bytes)."""
    if not path.is_file():
        log.info("exporting %s to ONNX at %s", what, path)
        write_aside(path, export)
    return path
