"""Raw labelled images and videos to face crops: the same detector and crop as the scanner.

Input layout: ``RAW/live/...`` (or ``RAW/normal/...``) and ``RAW/spoof/[ATTACK/]...``;
images and videos anywhere below. A ``manifest.csv`` anywhere in RAW with ``path``,
``subject`` (and optionally ``split``) columns says whose face each file is; without
it the subject is the part of the file name before the first ``_``. Output: one PNG crop
per face found, ``crops.csv`` with path, label, attack_type, subject, split, source and the
source's width and height, ``skipped.csv`` with the files where no face was found, and
``crop_spec.json``: the crop (size, scale) and detector settings the crops were made with.
Training takes the model card's crop from that file, so a card can never state a crop its
training crops did not have.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from pipeline.atomic import write_aside
from pipeline.config import DetectConfig
from pipeline.errors import DecodeError, InputError
from pipeline.faces.crop import CropSpec
from pipeline.faces.detect import FaceDetector, crop_main_face
from pipeline.video.decode import VideoReader

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
LIVE_FOLDERS = {"live", "normal", "real", "bona_fide"}
CROPS_MANIFEST = "crops.csv"
SKIPPED_MANIFEST = "skipped.csv"
CROP_COLUMNS = ("path", "label", "attack_type", "subject", "split", "source", "width", "height")
SKIPPED_COLUMNS = ("source", "label", "attack_type", "subject", "split", "reason")
CROP_SPEC_FILE = "crop_spec.json"


def write_crop_spec(out: Path, crop: CropSpec, detect: DetectConfig) -> Path:
    """Record how the crops in ``out`` were made (atomically)."""
    text = json.dumps({"size": crop.size, "scale": crop.scale, "detect": detect.model_dump()}, indent=2) + "\n"
    return write_aside(out / CROP_SPEC_FILE, lambda tmp: tmp.write_text(text))


def read_crop_spec(processed: Path) -> CropSpec:
    """The crop the crops in ``processed`` were made with; an :class:`InputError` when the
    folder does not say (made by an older ``preprocess``: run it again)."""
    path = processed / CROP_SPEC_FILE
    try:
        data = json.loads(path.read_text())
        return CropSpec(size=int(data["size"]), scale=float(data["scale"]))
    except FileNotFoundError:
        raise InputError(
            f"{path} not found: the crops do not say how they were cut; run `liveness preprocess` again"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a readable crop spec: {exc}") from exc


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


def write_csv(
    path: Path, columns: Sequence[str], rows: Iterable[dict], *, extra: Literal["raise", "ignore"] = "raise"
) -> Path:
    """Write ``rows`` as a CSV of ``columns`` all or nothing (aside, then renamed); keys not in
    ``columns`` are an error, or left out with ``extra="ignore"``. Returns the path."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction=extra)
            writer.writeheader()
            writer.writerows(rows)

    return write_aside(path, write)


def preprocess(
    raw: Path,
    out: Path,
    *,
    crop: CropSpec,
    detect: DetectConfig | None = None,
    video_fps: float = 2.0,
    max_video_frames: int = 16,
) -> dict:
    """Crop every face in RAW into OUT with ``crop`` and the scan's detector settings
    (``detect``, default: the scan's defaults); returns counts, including what had no face."""
    detect = detect or DetectConfig()
    out.mkdir(parents=True, exist_ok=True)
    known = _subjects(raw)
    counts: Counter[str] = Counter()
    skipped: list[dict] = []
    rows = []
    with FaceDetector.from_config(detect) as detector:
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
            base = {
                "label": label[0],
                "attack_type": label[1],
                "subject": subject,
                "split": meta.get("split", ""),
                "source": rel.as_posix(),
            }
            found = 0
            for i, image in enumerate(images):
                _, face = crop_main_face(image, detector.detect(image), crop, rule=detect.main_face)
                if face is None:
                    continue
                target = out / rel.parent / f"{path.stem}_{i:03d}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(target), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
                rows.append(
                    {
                        "path": target.relative_to(out).as_posix(),
                        **base,
                        "width": image.shape[1],
                        "height": image.shape[0],
                    }
                )
                found += 1
            counts[f"{label[0]}/{label[1]}"] += found
            if not found:
                skipped.append({**base, "reason": "no face found" if images else "unreadable"})
    write_crop_spec(out, crop, detect)
    write_csv(out / CROPS_MANIFEST, CROP_COLUMNS, rows)
    write_csv(out / SKIPPED_MANIFEST, SKIPPED_COLUMNS, skipped)
    summary = {
        "crops": len(rows),
        "by_class": dict(counts),
        "no_face": len(skipped),
        "no_face_files": [s["source"] for s in skipped[:50]],
    }
    log.info("preprocess: %d crops, %d files without a face", len(rows), len(skipped))
    return summary
