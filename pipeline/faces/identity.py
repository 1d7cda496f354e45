"""Who a face is: dlib's face-recognition ResNet (128-d), aligned from the face-mesh landmarks.

The network is dlib's (``dlib_face_recognition_resnet_model_v1``, from the registry package
``face-recognition-models``, CC0), shipped converted to ONNX with fp16 weights
(``models/identity/face_resnet.onnx``, made by ``training/cards/identity_export.py``; its
embeddings lie within 0.001 of dlib's own on real photographs) and run by ONNX Runtime:
4.5 ms of CPU per face against 80 ms for the ``dlib-bin`` wheel's own code, which has no
BLAS. Nothing is downloaded. dlib aligns a face from five points (the corners of both eyes
and the bottom of the nose); here those five come from the MediaPipe face mesh the scan
already runs, so there is no second detector. Two embeddings of one
person lie about 0.36 apart (Euclidean), of two people about 0.9; the identity card
(``models/identity/model.json``) holds the verification threshold and where it was measured.

A face too small or too turned for a trustworthy embedding is refused (:func:`unusable`),
never embedded: a wrong template would link strangers or hide a swap.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ModelError
from pipeline.schema import EMBEDDING_DIM

CHIP_SIZE = 150  # the aligned face the network takes (dlib's get_face_chip)
CHIP_PADDING = 0.25
# dlib's five alignment points in its order: the person's left eye outer and inner corner,
# the right eye outer and inner corner, the bottom of the nose; as face-mesh indices
# (matched against dlib's own 5-point predictor on real photographs: 1-7 px apart).
FIVE_POINT_IDX = (263, 362, 33, 133, 2)
NOSE_TIP = 1

DEFAULT_IDENTITY_DIR = Path(__file__).resolve().parents[2] / "models" / "identity"
NETWORK_FILE = "dlib_face_recognition_resnet_model_v1.dat"
ONNX_FILE = "face_resnet.onnx"  # the same network as ONNX: uint8 (N, 150, 150, 3) RGB chips in, (N, 128) out


def network_path() -> Path:
    """dlib's own weights of the ResNet inside the installed ``face-recognition-models``
    package (what ``training/cards/identity_export.py`` converts).

    Found without importing the package (its ``__init__`` needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ModelError("the face-recognition model package is not installed (face-recognition-models)")
    path = Path(spec.origin).parent / "models" / NETWORK_FILE
    if not path.is_file():
        raise ModelError(f"face-recognition weights missing: {path}")
    return path


@dataclass(frozen=True)
class IdentityCard:
    """The identity model's card: its version, the verification threshold and its measurement."""

    version: str
    threshold: float  # Euclidean distance under which two embeddings are one person
    real_evaluation: dict
    same_person_distance: float  # 90th percentile of one person's pair distances on the real pairs

    @classmethod
    def load(cls, directory: str | Path = DEFAULT_IDENTITY_DIR) -> IdentityCard:
        """Read ``model.json`` from ``directory``; a missing or bad card, or no network
        (:data:`ONNX_FILE`) beside it, is a :class:`ModelError`."""
        path = Path(directory) / "model.json"
        try:
            raw = json.loads(path.read_text())
            card = cls(
                version=str(raw["version"]),
                threshold=float(raw["threshold"]),
                real_evaluation=dict(raw["real_evaluation"]),
                same_person_distance=float(raw["same_person_distance"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"identity card {path} is unreadable: {exc}") from exc
        if not 0.0 < card.threshold < 2.0:
            raise ModelError(f"identity card {path}: threshold must lie in (0, 2), got {card.threshold}")
        if not 0.0 < card.same_person_distance <= card.threshold:
            raise ModelError(
                f"identity card {path}: same_person_distance must lie in (0, threshold],"
                f" got {card.same_person_distance}"
            )
        if not (Path(directory) / ONNX_FILE).is_file():
            raise ModelError(f"identity model {directory} has no network: {ONNX_FILE} is missing")
        return card


def five_points(points: np.ndarray) -> np.ndarray:
    """dlib's five alignment points, float64 (5, 2), from face-mesh landmarks (478, >=2) in image pixels."""
    if points.ndim != 2 or points.shape[0] < 468 or points.shape[1] < 2:
        raise ValueError(f"points must be face-mesh landmarks of shape (478, 2 or 3), got {points.shape}")
    return points[list(FIVE_POINT_IDX), :2].astype(np.float64)


def unusable(points: np.ndarray, *, min_eye_px: float, max_turn: float) -> str | None:
    """Why the face at these face-mesh landmarks (image pixels) gives no trustworthy
    embedding, or None: ``"small"`` when its eyes are under ``min_eye_px`` apart (outer
    corners), ``"turned"`` when the nose tip sits off the eyes' middle by more than
    ``max_turn`` of their distance (0 frontal; about 0.55 in a three-quarter view)."""
    five = five_points(points)
    left, right = five[0], five[2]
    eye_px = float(np.linalg.norm(left - right))
    if not eye_px >= min_eye_px:
        return "small"
    axis = (left - right) / eye_px
    offset = float(np.dot(points[NOSE_TIP, :2] - (left + right) / 2.0, axis)) / eye_px
    return "turned" if abs(offset) > max_turn else None


class FaceEmbedder:
    """dlib's face-recognition ResNet (its ONNX export in ``model_dir``, one thread): aligned
    chips in, 128-d embeddings out. A missing or unreadable network is a :class:`ModelError`.

    >>> embedder = FaceEmbedder()  # doctest: +SKIP
    >>> chip = embedder.chip(image, landmarks)  # doctest: +SKIP
    >>> embedder.embed([chip]).shape  # doctest: +SKIP
    (1, 128)
    """

    def __init__(self, model_dir: str | Path = DEFAULT_IDENTITY_DIR) -> None:
        import dlib
        import onnxruntime as ort

        self._dlib = dlib
        path = Path(model_dir) / ONNX_FILE
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for missing and corrupt files
            raise ModelError(f"face-recognition network {path} cannot be loaded: {exc}") from exc
        self._input = self._session.get_inputs()[0].name

    def chip(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The aligned 150 x 150 RGB face of ``image`` (RGB uint8) at face-mesh ``points`` (image pixels)."""
        dlib = self._dlib
        five = five_points(points)
        x0, y0 = five.min(axis=0)
        x1, y1 = five.max(axis=0)
        rect = dlib.rectangle(int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1)))
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in five])
        return np.asarray(dlib.get_face_chip(np.ascontiguousarray(image), shape, CHIP_SIZE, CHIP_PADDING))

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of aligned chips, float32 (K, 128)."""
        if not chips:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        batch = np.ascontiguousarray(np.stack(chips), dtype=np.uint8)
        return np.asarray(self._session.run(None, {self._input: batch})[0], np.float32).reshape(-1, EMBEDDING_DIM)
