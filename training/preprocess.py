"""Raw labelled images and videos to face crops: the same detector and crop as the scanner.

Input layout: ``RAW/live/...`` (or ``RAW/normal/...``) and ``RAW/spoof/[ATTACK/]...``;
images and videos anywhere below. A ``manifest.csv`` anywhere in RAW with ``path``,
``subject`` (and optionally ``split``) columns says whose face each file is; without
it the subject is the part of the file name before the first ``_``. Output: one PNG crop
per face found, ``crops.csv`` with path, label, attack_type, subject, split, source and the
source's width and height, and ``skipped.csv`` with the files where no face was found.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from pipeline.atomic import write_aside
from pipeline.decode import DecodeError, VideoReader
from pipeline.faces import FaceDetector, crop_main_face

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
LIVE_FOLDERS = {"live", "normal", "real", "bona_fide"}
CROPS_MANIFEST = "crops.csv"
SKIPPED_MANIFEST = "skipped.csv"
CROP_COLUMNS = ("path", "label", "attack_type", "subject", "split", "source", "width", "height")
SKIPPED_COLUMNS = ("source", "label", "attack_type", "subject", "split", "reason")


def read_image_rgb(path: Path) -> np.ndarray | None:
    """An image file as RGB uint8, or None when it cannot be read (non-ASCII paths work)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def label_of(relative: Path) -> tuple[str, str] | None:
    """``(label, attack_type)`` from a path relative to RAW, or None if it is in no class folder."""
    parts = [p.lower() for p in relative.parts]
    if parts[0] in LIVE_FOLDERS:
        return "live", "none"
    if parts[0] == "spoof":
        return "spoof", parts[1] if len(parts) > 2 else "unknown"
    return None


def _subjects(raw: Path) -> dict[str, dict[str, str]]:
    found = {}
    for manifest in raw.rglob("manifest.csv"):
        with open(manifest, newline="") as f:
            for row in csv.DictReader(f):
                if "path" in row and "subject" in row:
                    found[os.path.normpath(str((manifest.parent / row["path"]).resolve()))] = row
    return found


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(rows)

    write_aside(path, write)


def preprocess(raw: Path, out: Path, *, size: int, scale: float, video_fps: float = 2.0, max_video_frames: int = 16) -> dict:
    """Crop every face in RAW into OUT; returns counts, including what had no face."""
    out.mkdir(parents=True, exist_ok=True)
    known = _subjects(raw)
    counts: Counter[str] = Counter()
    skipped: list[dict] = []
    rows = []
    with FaceDetector(model_selection=1, min_confidence=0.5) as detector:
        for path in sorted(p for p in raw.rglob("*") if p.is_file()):
            rel = path.relative_to(raw)
            label = label_of(rel)
            suffix = path.suffix.lower()
            if label is None or suffix not in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
                continue
            meta = known.get(os.path.normpath(str(path.resolve())), {})
            subject = meta.get("subject") or path.stem.split("_")[0]
            if suffix in IMAGE_EXTENSIONS:
                image = read_image_rgb(path)
                images = [] if image is None else [image]
            else:
                try:
                    with VideoReader(path, sample_fps=video_fps, max_frames=max_video_frames) as video:
                        images = [f.image for f in video.sampled()]
                except DecodeError as exc:
                    log.warning("skipping %s: %s", rel, exc)
                    images = []
            base = {"label": label[0], "attack_type": label[1], "subject": subject, "split": meta.get("split", ""), "source": rel.as_posix()}
            found = 0
            for i, image in enumerate(images):
                _, crop = crop_main_face(image, detector.detect(image), size=size, scale=scale)
                if crop is None:
                    continue
                target = out / rel.parent / f"{path.stem}_{i:03d}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(target), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                rows.append({"path": target.relative_to(out).as_posix(), **base, "width": image.shape[1], "height": image.shape[0]})
                found += 1
            counts[f"{label[0]}/{label[1]}"] += found
            if not found:
                skipped.append({**base, "reason": "no face found" if images else "unreadable"})
    _write_csv(out / CROPS_MANIFEST, CROP_COLUMNS, rows)
    _write_csv(out / SKIPPED_MANIFEST, SKIPPED_COLUMNS, skipped)
    summary = {"crops": len(rows), "by_class": dict(counts), "no_face": len(skipped), "no_face_files": [s["source"] for s in skipped[:50]]}
    log.info("preprocess: %d crops, %d files without a face", len(rows), len(skipped))
    return summary
