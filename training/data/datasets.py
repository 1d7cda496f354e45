"""Face-crop data sets for training: the crops manifest, the split by subject, augmentation."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.faces.crop import CropSpec
from training.data.preprocess import CROPS_MANIFEST, read_crop_spec, read_image_rgb

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)


def split_for_subject(subject_id: str, seed: int) -> str:
    """``train``, ``val`` or ``test`` for a subject: a fixed function of (subject, seed), ~70/15/15.

    All of a subject's images and sessions land in one split, so no face is in two.
    """
    digest = hashlib.sha256(f"{seed}:{subject_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return (
        SPLITS[0] if u < SPLIT_FRACTIONS[0] else SPLITS[1] if u < SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1] else SPLITS[2]
    )


def split_of(row: dict, seed: int) -> str:
    """The split of one ``crops.csv`` row: its ``split`` column when set, else its subject's."""
    split = row.get("split") or split_for_subject(row["subject"], seed)
    if split not in SPLITS:
        raise InputError(f"crop {row.get('path')!r} has split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


@dataclass
class CropSet:
    """Crops of one split as arrays: ``images`` (N, S, S, 3) uint8, ``labels`` (N,), ``attack_types``, ``subjects``."""

    images: np.ndarray
    labels: np.ndarray
    attack_types: list[str]
    subjects: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def concat(cls, parts: list[CropSet]) -> CropSet:
        """One set of the crops of ``parts``, in order."""
        return cls(
            images=np.concatenate([p.images for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            attack_types=[a for p in parts for a in p.attack_types],
            subjects=[s for p in parts for s in p.subjects],
        )


def load_crop_sets(processed: Path, spec: CropSpec, *, seed: int) -> dict[str, CropSet]:
    """The train/val/test crop sets of a preprocessed folder; the manifest's split wins when given.

    The crops must have been cut with ``spec`` (the model card's crop): a model is never
    trained or measured on crops it was not made for."""
    made = read_crop_spec(processed)
    if made != spec:
        raise InputError(
            f"the crops in {processed} were cut at {made.size} px, scale {made.scale:g}; "
            f"this model needs {spec.size} px, scale {spec.scale:g}: "
            f"run `liveness preprocess --size {spec.size} --scale {spec.scale:g}`"
        )
    size = spec.size
    manifest = processed / CROPS_MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: run `liveness preprocess` first")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    buckets: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for row in rows:
        buckets[split_of(row, seed)].append(row)
    sets = {}
    for split, items in buckets.items():
        images = []
        for row in items:
            image = read_image_rgb(processed / row["path"])
            if image is None or image.shape[:2] != (size, size):
                raise InputError(f"{processed / row['path']} is not a {size}x{size} crop image")
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
        m: np.ndarray = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-8, 8), zoom)
        m[:, 2] += (dx, dy)
        image = cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), borderMode=cv2.BORDER_REFLECT)
        gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
        out[i] = np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return out
