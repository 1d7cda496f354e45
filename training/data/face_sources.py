"""Real face photographs that ship inside installed packages, with their landmarks.

No face anti-spoofing data set can be downloaded here, so the synthetic scenes of
:mod:`training.data.synth` are built from the few real faces that come with matplotlib and
scikit-image (plus any images a user puts in a folder). Each photograph is its own
subject. Landmarks come from MediaPipe face mesh (478 points, iris refined) and are
computed once per process.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.faces.landmarks import (
    FACE_OVAL_IDX,
    LEFT_IRIS_CENTER,
    LIPS_IDX,
    NOSE_IDX,
    REGION_IDX,
    RIGHT_IRIS_CENTER,
    FaceMesh,
)
from pipeline.schema import REGIONS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LFW_FACES = 100  # lfw_subset(): the first 100 of its 200 images are faces, the rest are not
LFW_SIDE = 200  # upscaled side of the 25 x 25 LFW faces
LFW_PAD = 0.35  # border added around the tight LFW crops, as a fraction of LFW_SIDE

# Skin tones (RGB, 0..1) used to colour the grey LFW faces, light to dark.
SKIN_TONES = np.array(
    [
        [1.00, 0.86, 0.76],
        [0.98, 0.80, 0.68],
        [0.92, 0.72, 0.58],
        [0.80, 0.60, 0.45],
        [0.62, 0.44, 0.32],
        [0.45, 0.31, 0.22],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True, eq=False)
class FaceSource:
    """One real face photograph and where its face is.

    ``landmarks`` holds the 478 face-mesh points as (x, y) image pixels; ``box`` is their
    bounding box ``(x, y, w, h)``; ``centers`` maps each of :data:`REGIONS` to an (x, y)
    point (the person's ``left_eye`` is on the image's right side).
    """

    subject_id: str
    name: str
    image: np.ndarray = field(repr=False)
    landmarks: np.ndarray = field(repr=False)
    box: tuple[float, float, float, float]
    centers: dict[str, tuple[float, float]]

    def region_points(self, region: str) -> np.ndarray:
        """The landmark points (N, 2) outlining ``region`` (one of :data:`REGIONS`)."""
        return self.landmarks[list(REGION_IDX[region])]

    @property
    def face_oval(self) -> np.ndarray:
        """The landmark points (N, 2) on the face's outline."""
        return self.landmarks[list(FACE_OVAL_IDX)]

    @property
    def eye_distance(self) -> float:
        """Distance in pixels between the two eye centres."""
        (lx, ly), (rx, ry) = self.centers["left_eye"], self.centers["right_eye"]
        return float(np.hypot(lx - rx, ly - ry))


def _xy(point: np.ndarray) -> tuple[float, float]:
    """An (x, y) landmark point as a pair of floats."""
    x, y = point
    return float(x), float(y)


def _make_source(subject_id: str, name: str, image: np.ndarray, face_mesh: FaceMesh) -> FaceSource | None:
    landmarks = face_mesh.landmarks(image)
    if landmarks is None:
        return None
    landmarks = np.ascontiguousarray(landmarks[:, :2])
    x0, y0 = landmarks.min(axis=0)
    x1, y1 = landmarks.max(axis=0)
    centers = {
        "left_eye": _xy(landmarks[LEFT_IRIS_CENTER]),
        "right_eye": _xy(landmarks[RIGHT_IRIS_CENTER]),
        "nose": _xy(landmarks[list(NOSE_IDX)].mean(axis=0)),
        "mouth": _xy(landmarks[list(LIPS_IDX)].mean(axis=0)),
    }
    assert set(centers) == set(REGIONS)
    image = np.ascontiguousarray(image)
    image.flags.writeable = False
    landmarks.flags.writeable = False
    return FaceSource(
        subject_id=subject_id,
        name=name,
        image=image,
        landmarks=landmarks,
        box=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
        centers=centers,
    )


def _lfw_face(grey: np.ndarray, tone: np.ndarray) -> np.ndarray:
    """A 25 x 25 grey float LFW face as an upscaled, skin-tinted RGB uint8 image with a border."""
    # Plain bicubic: smoothing the upscaled face further costs face detection about 15% of the faces.
    big = np.clip(cv2.resize(grey.astype(np.float32), (LFW_SIDE, LFW_SIDE), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    rgb = np.clip(big[..., None] * tone[None, None, :] * 255.0, 0, 255).astype(np.uint8)
    pad = int(LFW_SIDE * LFW_PAD)
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    # Smooth the replicated streaks so the border reads as out-of-focus background.
    blurred = cv2.GaussianBlur(padded, (0, 0), 12)
    inner: np.ndarray = np.zeros(padded.shape[:2], np.float32)
    inner[pad:-pad, pad:-pad] = 1.0
    inner = cv2.GaussianBlur(inner, (0, 0), 6)[..., None]
    return (padded * inner + blurred * (1.0 - inner)).astype(np.uint8)


def _builtin_images() -> list[tuple[str, str, np.ndarray]]:
    """(subject_id, name, RGB image) of every face photograph bundled with installed packages."""
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        hopper = np.asarray(im.convert("RGB"))
    images = [("grace_hopper", "matplotlib grace_hopper.jpg", hopper)]
    images.append(("astronaut", "skimage.data.astronaut", skimage.data.astronaut()))
    lfw = skimage.data.lfw_subset()[:LFW_FACES]
    for i, grey in enumerate(lfw):
        tone = SKIN_TONES[i % len(SKIN_TONES)]
        images.append((f"lfw{i:03d}", f"skimage.data.lfw_subset[{i}]", _lfw_face(grey, tone)))
    return images


def _dir_images(extra_dir: Path) -> list[tuple[str, str, np.ndarray]]:
    from PIL import Image

    images = []
    for path in sorted(p for p in extra_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except OSError as err:
            log.warning("skipping unreadable face image %s: %s", path, err)
            continue
        scale = 1024.0 / max(rgb.shape[:2])
        if scale < 1.0:
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        subject = "user_" + "".join(c if c.isalnum() else "_" for c in path.stem)
        images.append((subject, str(path), rgb))
    return images


@functools.lru_cache(maxsize=8)
def _load(extra_dir: Path | None) -> tuple[FaceSource, ...]:
    candidates = _builtin_images()
    if extra_dir is not None:
        candidates += _dir_images(extra_dir)
    sources, dropped = [], []
    with FaceMesh() as face_mesh:
        for subject_id, name, image in candidates:
            source = _make_source(subject_id, name, image, face_mesh)
            if source is None:
                dropped.append(name)
            else:
                sources.append(source)
    if dropped:
        log.info("face mesh found no face in %d of %d face images: %s", len(dropped), len(candidates), dropped)
    return tuple(sources)


def load_face_sources(extra_dir: Path | None = None) -> list[FaceSource]:
    """Every usable face photograph: the ones bundled with matplotlib and scikit-image,
    plus the images in ``extra_dir`` (jpg/png/bmp/webp; each file is its own subject).

    Images on which face mesh finds no face are dropped (logged at INFO). Results are
    cached per process; the images and landmarks are read-only.
    """
    key = None if extra_dir is None else Path(extra_dir).resolve()
    if key is not None and not key.is_dir():
        raise NotADirectoryError(f"faces directory not found: {key}")
    return list(_load(key))
