"""Which face regions are blocked: the region-occlusion model, its card, and the session rule.

One small CNN, shared by the four regions of :data:`REGIONS`, looks at each region's crop
(placed by the face mesh landmarks with :func:`pipeline.faces.landmarks.region_crops`) and has
one output per region; the crop of region ``r`` is judged by output ``r``. Training and
scanning both import the network, the preprocessing and the checkpoint format from here.

The scanner's path for one frame: the main face's ``mesh_crop = crop_face(frame, box,
scale=MESH_CROP_SCALE, size=MESH_CROP_SIZE)``, ``FaceMesh(tracking=True).landmarks(mesh_crop)``,
then :class:`OcclusionScorer` gives a probability per region, and :func:`occluded_regions`
turns a session's per-frame probabilities into the regions it reports as occluded.

A checkpoint is a directory holding ``model.safetensors`` (fp16 weights) and
``model.json`` (an :class:`OcclusionCard`). No pickle is ever loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.checkpoint import (
    DEFAULT_ONNX_CACHE,
    MODELS_DIR,
    WEIGHTS_FILE,
    cached_onnx,
    load_weights,
    onnx_cache_path,
    read_checkpoint_card,
)
from pipeline.config import DEFAULT_MIN_FRACTION
from pipeline.errors import ModelError
from pipeline.faces.landmarks import region_crops
from pipeline.schema import REGIONS

DEFAULT_OCCLUSION_DIR = MODELS_DIR / "occlusion"
MESH_CROP_SCALE = 1.6  # the face crop that face mesh runs on: scale around the detector's box
MESH_CROP_SIZE = 192  # ... and its side in pixels


class OcclusionCard(BaseModel):
    """What a user or the scanner needs to know to use an occlusion checkpoint correctly."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    architecture: str = "region-cnn-v1"
    version: str = "untrained"
    trained: bool = False
    regions: list[str] = Field(default_factory=lambda: list(REGIONS))
    input_size: int = 40
    pad: float = 1.6
    mean: float = 0.5
    std: float = 0.25
    widths: tuple[int, int, int, int] = (16, 24, 48, 64)
    mesh_crop_scale: float = MESH_CROP_SCALE
    mesh_crop_size: int = MESH_CROP_SIZE
    thresholds: dict[str, float] = Field(default_factory=lambda: {r: 0.5 for r in REGIONS})
    min_fraction: float = DEFAULT_MIN_FRACTION
    session_rule: str = ""
    seed: int = 0
    trained_on: str = ""
    limits: str = ""
    reproduce: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: str = ""
    notes: dict[str, Any] = Field(default_factory=dict, description="free-form facts about the model")


def create_network(card: OcclusionCard):
    """The card's network, randomly initialised: (N, 3, S, S) crops to (N, len(regions)) logits.

    Four 3x3 conv blocks (the first three followed by 2x2 max pooling), then a linear
    layer on the flattened map, which keeps where in the crop something is (fingers
    across the top of a mouth crop belong to a covered nose, not a covered mouth).
    """
    import torch.nn as nn

    if card.input_size % 8:
        raise ValueError(f"input_size must be a multiple of 8, got {card.input_size}")
    layers: list[nn.Module] = []
    in_ch = 3
    for i, out_ch in enumerate(card.widths):
        layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
        if i < 3:
            layers.append(nn.MaxPool2d(2))
        in_ch = out_ch
    side = card.input_size // 8
    layers += [nn.Flatten(), nn.Dropout(0.2), nn.Linear(in_ch * side * side, len(card.regions))]
    return nn.Sequential(*layers)


def region_logits(network, x):
    """Logits (N, R) of frames given as crops (N, R, 3, S, S): region r's crop through output r."""
    import torch

    n, r = x.shape[:2]
    every = network(x.reshape(n * r, *x.shape[2:])).reshape(n, r, r)
    return (every * torch.eye(r, dtype=every.dtype)).sum(dim=2)  # the diagonal, in a form ONNX export keeps


def preprocess(crops: np.ndarray, card: OcclusionCard) -> np.ndarray:
    """Region crops, RGB uint8 (N, R, S, S, 3), to normalised float32 (N, R, 3, S, S)."""
    size = card.input_size
    if crops.ndim != 5 or crops.shape[1:] != (len(card.regions), size, size, 3):
        raise ValueError(
            f"crops must be (N, {len(card.regions)}, {size}, {size}, 3) RGB uint8, got shape {crops.shape}"
        )
    x = crops.astype(np.float32) * np.float32(1.0 / (255.0 * card.std)) - np.float32(card.mean / card.std)
    return np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3))


def frame_region_crops(mesh_crop: np.ndarray, landmarks: np.ndarray, card: OcclusionCard) -> np.ndarray:
    """The (R, S, S, 3) region crops of one face, in the card's region order."""
    crops = region_crops(mesh_crop, landmarks, size=card.input_size, pad=card.pad)
    return np.stack([crops[region] for region in card.regions])


def read_occlusion_card(model_dir: str | Path, *, require_trained: bool = False) -> OcclusionCard:
    """The validated card of the occlusion checkpoint in ``model_dir``."""
    card = read_checkpoint_card(model_dir, OcclusionCard, "occlusion card")
    if tuple(card.regions) != REGIONS or set(card.thresholds) != set(REGIONS):
        raise ModelError(f"occlusion card in {model_dir} must cover the regions {REGIONS} (regions and thresholds)")
    if require_trained and not card.trained:
        raise ModelError(f"the occlusion checkpoint in {model_dir} is marked untrained: run `liveness train-occlusion`")
    return card


def load_occlusion_checkpoint(model_dir: str | Path, *, require_trained: bool = True) -> tuple[Any, OcclusionCard]:
    """``(network, card)`` from a checkpoint directory; float32, eval mode, CPU."""
    card = read_occlusion_card(model_dir, require_trained=require_trained)
    return load_weights(create_network(card), Path(model_dir) / WEIGHTS_FILE, "the occlusion network"), card


def export_onnx(network: Any, card: OcclusionCard, path: str | Path) -> None:
    """Write the network with its region selection and sigmoid as ONNX to ``path``:
    (N, R, 3, S, S) normalised crops in, (N, R) probabilities out."""
    import warnings

    import torch

    class _Probabilities(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(region_logits(self.network, x))

    wrapped = _Probabilities().eval()
    example = torch.zeros(1, len(card.regions), 3, card.input_size, card.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped, (example,), str(path), input_names=["crops"], output_names=["probs"],
            dynamic_axes={"crops": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
    network.eval()  # export puts the wrapper back in its former mode; keep the network in eval


def occlusion_onnx(model_dir: str | Path, cache_dir: str | Path = DEFAULT_ONNX_CACHE) -> Path:
    """The ONNX export of the checkpoint in ``model_dir``, made once per weights and card and
    kept in ``cache_dir``, so later processes load it without importing torch."""
    card = read_occlusion_card(model_dir)

    def export(tmp: Path) -> None:
        network, _ = load_occlusion_checkpoint(model_dir, require_trained=False)
        export_onnx(network, card, tmp)

    return cached_onnx(onnx_cache_path("occlusion", model_dir, card, cache_dir), export, f"occlusion model {model_dir}")


class OcclusionScorer:
    """Per-region occlusion probabilities of faces; loads the checkpoint once, then scores frames.

    Runs on ONNX Runtime with one thread: the network is tiny (four 40 px crops per face),
    and a multi-threaded runtime sharing the CPU with other workers spends more time
    waiting for its threads than computing (measured: torch on 2 threads next to a busy
    process took 36 ms a frame, ONNX Runtime on 1 thread 0.2 ms).

    >>> scorer = OcclusionScorer()  # doctest: +SKIP
    >>> scorer(mesh_crop, landmarks)  # doctest: +SKIP
    {'left_eye': 0.01, 'right_eye': 0.02, 'nose': 0.03, 'mouth': 0.97}
    """

    def __init__(
        self, model_dir: str | Path = DEFAULT_OCCLUSION_DIR, *, cache_dir: str | Path = DEFAULT_ONNX_CACHE
    ) -> None:
        import onnxruntime as ort

        self.card = read_occlusion_card(model_dir, require_trained=True)
        self.thresholds = dict(self.card.thresholds)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(occlusion_onnx(model_dir, cache_dir)), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, mesh_crop: np.ndarray, landmarks: np.ndarray) -> dict[str, float]:
        """Probability that each region is occluded, for one face (its mesh crop and landmarks)."""
        scores = self.score_many([(mesh_crop, landmarks)])[0]
        return {region: float(s) for region, s in zip(self.card.regions, scores, strict=False)}

    def score_many(self, faces: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Probabilities (N, 4) in :data:`REGIONS` order for ``(mesh_crop, landmarks)`` pairs."""
        if not faces:
            return np.zeros((0, len(self.card.regions)), np.float32)
        return self.score_crops(np.stack([frame_region_crops(crop, lm, self.card) for crop, lm in faces]))

    def score_crops(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities (N, 4) for region crops already cut, RGB uint8 (N, 4, S, S, 3)."""
        return self._session.run(None, {"crops": preprocess(crops, self.card)})[0]


def occluded_regions(
    scores: np.ndarray, thresholds: dict[str, float], min_fraction: float = DEFAULT_MIN_FRACTION
) -> list[str]:
    """The regions a session reports as occluded, in :data:`REGIONS` order.

    ``scores`` holds one row per frame with landmarks (columns in :data:`REGIONS` order;
    frames without a face or landmarks are left out by the caller). A region is occluded
    when the share of those frames whose score reaches the region's threshold (``>=``)
    is at least ``min_fraction``: a hand raised for a third of the session counts, one bad frame
    does not. No frames, no regions.

    >>> occluded_regions(np.array([[0.1, 0.1, 0.2, 0.9], [0.1, 0.8, 0.2, 0.9], [0.1, 0.1, 0.1, 0.7]]),
    ...                  {"left_eye": 0.5, "right_eye": 0.5, "nose": 0.5, "mouth": 0.5}, 0.5)
    ['mouth']
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(REGIONS):
        raise ValueError(f"scores must be (N, {len(REGIONS)}) in the order {REGIONS}, got shape {scores.shape}")
    missing = [r for r in REGIONS if r not in thresholds]
    if missing:
        raise KeyError(f"thresholds lack the regions {missing}")
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    if len(scores) == 0:
        return []
    above = scores >= np.array([thresholds[r] for r in REGIONS])
    return [region for region, share in zip(REGIONS, above.mean(axis=0), strict=False) if share >= min_fraction]
