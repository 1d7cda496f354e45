"""Face-crop data sets for training: the crops manifest, the split by subject, augmentation."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.preprocess import CROPS_MANIFEST, read_image_rgb

SPLITS = ("train", "val", "test")


def split_of_subject(subject: str, seed: int, fractions: tuple[float, float] = (0.7, 0.15)) -> str:
    """Deterministic split of a subject: all of a subject's crops land in one split."""
    u = int(hashlib.sha256(f"{seed}:{subject}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"


@dataclass
class CropSet:
    """Crops of one split as arrays: ``images`` (N, S, S, 3) uint8, ``labels`` (N,), ``attack_types``, ``subjects``."""

    images: np.ndarray
    labels: np.ndarray
    attack_types: list[str]
    subjects: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def load_crop_sets(processed: Path, *, size: int, seed: int) -> dict[str, CropSet]:
    """The train/val/test crop sets of a preprocessed folder; the manifest's split wins when given."""
    manifest = processed / CROPS_MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: run `liveness preprocess` first")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    buckets: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for row in rows:
        buckets[row.get("split") or split_of_subject(row["subject"], seed)].append(row)
    sets = {}
    for split, items in buckets.items():
        images = []
        for row in items:
            image = read_image_rgb(processed / row["path"])
            if image.shape[:2] != (size, size):
                image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
            images.append(image)
        sets[split] = CropSet(
            images=np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
            labels=np.asarray([1 if r["label"] == "spoof" else 0 for r in items], np.int64),
            attack_types=[r["attack_type"] if r["label"] == "spoof" else "none" for r in items],
            subjects=[r["subject"] for r in items],
        )
    return sets


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation on uint8 crops: flips, small shifts and zoom, brightness and contrast."""
    out = np.empty_like(images)
    n, size = len(images), images.shape[1]
    for i in range(n):
        image = images[i]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        zoom = rng.uniform(1.0, 1.12)
        dx, dy = rng.uniform(-0.05, 0.05, 2) * size
        m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-8, 8), zoom)
        m[:, 2] += (dx, dy)
        image = cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), borderMode=cv2.BORDER_REFLECT)
        gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
        out[i] = np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return out
