"""Face-crop data sets for training: the crops manifest, the split by subject, augmentation."""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pydantic import ConfigDict

from pipeline.errors import InputError
from pipeline.faces.crop import CropSpec
from training.data.preprocess import CROPS_MANIFEST, read_crop_spec, read_image_rgb

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)


def split_for_subject(
    subject_id: str, seed: int, fractions: tuple[float, float, float] = SPLIT_FRACTIONS
) -> str:
    """``train``, ``val`` or ``test`` for a subject: a fixed function of (subject, seed), in the
    shares ``fractions`` (~70/15/15 by default).

    All of a subject's images and sessions land in one split, so no face is in two.
    """
    digest = hashlib.sha256(f"{seed}:{subject_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return SPLITS[0] if u < fractions[0] else SPLITS[1] if u < fractions[0] + fractions[1] else SPLITS[2]


def split_of(row: dict, seed: int) -> str:
    """The split of one ``crops.csv`` row: its ``split`` column when set, else its subject's."""
    split = row.get("split") or split_for_subject(row["subject"], seed)
    if split not in SPLITS:
        raise InputError(f"crop {row.get('path')!r} has split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


@dataclass
class CropSet:
    """Crops of one split as arrays: ``images`` (N, S, S, 3) uint8, ``labels`` (N,), ``attack_types``,
    ``subjects``, and ``targets`` (N,) float32, the spoof probability each is trained towards
    (its label, or a teacher's soft label: ``target`` in ``crops.csv``)."""

    images: np.ndarray
    labels: np.ndarray
    attack_types: list[str]
    subjects: list[str]
    targets: np.ndarray

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
            targets=np.concatenate([p.targets for p in parts]),
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
            targets=np.asarray([_target(r) for r in items], np.float32),
        )
    return sets


def _target(row: dict) -> float:
    """A crop row's training target: its ``target`` column when set (a soft label), else its label."""
    text = row.get("target") or ""
    if not text:
        return 1.0 if row["label"] == "spoof" else 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise InputError(f"crop {row.get('path')!r} has target {text!r}: a spoof probability in [0, 1] is needed")
    return value


@dataclass(frozen=True)
class AugmentSettings:
    """Probabilities and ranges of :func:`augment`'s transforms; ``*_p`` is the chance per crop.

    Ranges are ``(low, high)``, drawn uniformly per crop unless said otherwise. Set a ``*_p``
    to 0 to switch a transform off (tests do), to 1 to always apply it. ``liveness train``
    takes them from its config's ``augment`` group (``--set augment.moire_p=0``)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # a misspelt setting is an error, not ignored

    flip_p: float = 0.5  # mirror left-right
    affine_p: float = 1.0  # crop jitter: rotation, shift and zoom together
    rotate_deg: float = 8.0  # rotation in [-rotate_deg, rotate_deg] degrees
    shift: float = 0.05  # shift in [-shift, shift] of the crop size, each axis
    zoom: tuple[float, float] = (0.9, 1.15)  # < 1 zooms out (face a little smaller), > 1 in
    rescale_p: float = 0.3  # down- then up-scale: the face seen smaller, further away
    rescale: tuple[float, float] = (0.4, 1.0)  # the intermediate size, as a fraction of the crop
    blur_p: float = 0.3  # Gaussian (defocus) or motion (hand shake) blur
    motion_blur_share: float = 0.5  # of the blurs, the share that are motion blurs
    blur_sigma: tuple[float, float] = (0.4, 1.5)  # Gaussian sigma in pixels
    motion_length: tuple[int, int] = (3, 7)  # motion-blur streak length in pixels, both ends included
    moire_p: float = 0.4  # spoof crops only: a faint screen-replay interference pattern
    moire_period: tuple[float, float] = (2.5, 16.0)  # pattern period in pixels, drawn log-uniformly
    moire_amplitude: tuple[float, float] = (2.0, 6.0)  # grey levels, peak
    noise_p: float = 0.3  # Gaussian sensor noise
    noise_sigma: tuple[float, float] = (1.0, 5.0)  # grey levels
    white_balance_p: float = 0.5  # per-channel gains
    channel_gain: tuple[float, float] = (0.85, 1.15)  # drawn per channel
    gamma_p: float = 0.3  # tone curve: out = in ** gamma on [0, 1]
    gamma: tuple[float, float] = (0.75, 1.35)
    saturation_p: float = 0.3  # blend with the grey image: 0 grey, 1 unchanged
    saturation: tuple[float, float] = (0.6, 1.4)
    brightness_p: float = 1.0  # out = in * gain + bias (exposure, contrast)
    brightness_gain: tuple[float, float] = (0.8, 1.2)
    brightness_bias: tuple[float, float] = (-20.0, 20.0)
    jpeg_p: float = 0.5  # JPEG re-compression
    jpeg_quality: tuple[int, int] = (30, 95)  # both ends included


AUGMENT_DEFAULTS = AugmentSettings()
_LUMA = np.asarray([0.299, 0.587, 0.114], np.float32)  # RGB weights of grey (BT.601)


def augment(
    images: np.ndarray,
    rng: np.random.Generator,
    *,
    labels: np.ndarray | None = None,
    settings: AugmentSettings = AUGMENT_DEFAULTS,
) -> np.ndarray:
    """Training augmentation of uint8 RGB crops (N, S, S, 3): new crops, same shape and dtype.

    Each transform is applied per crop with its own probability and strength (``settings``),
    in the order a selfie capture meets them:

    - flip: the other side of the face;
    - rotation, shift and zoom (in or a little out): the face detector's crop jitter and head roll;
    - down- then up-scale: a face further from the camera, or a low-resolution camera;
    - Gaussian blur: defocus; motion blur: hand shake or head movement during the exposure;
    - moiré, on spoof crops only (``labels`` 1): the interference of a replay screen's pixel
      grid with the camera's, at random period, angle and phase, a few grey levels faint, the
      colour channels slightly out of phase. It is a spoof cue, so it never goes on live crops
      nor, without ``labels``, on any;
    - Gaussian noise: sensor noise in low light;
    - per-channel gains: white balance; gamma: the camera's tone curve; saturation: its colour
      processing; gain and bias: exposure and contrast;
    - JPEG at quality 30-95: the compression of the video archives the crops come from.

    Deterministic given ``rng``. The random numbers drawn do not depend on ``labels``: a crop
    gets the same transforms whatever its label, moiré apart, and ``labels`` all 0 gives the
    same output as no ``labels``."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"augment takes uint8 crops (N, S, S, 3), got {images.dtype} {images.shape}")
    n, height, width = images.shape[:3]
    if labels is None:
        spoof = np.zeros(n, bool)
    else:
        spoof = np.asarray(labels).reshape(-1) == 1
        if len(spoof) != n:
            raise ValueError(f"augment got {n} crops but {len(spoof)} labels")
    s = settings
    out = np.empty_like(images)
    for i in range(n):
        image = images[i]
        if rng.random() < s.flip_p:
            image = image[:, ::-1]
        image = np.ascontiguousarray(image)
        if rng.random() < s.affine_p:
            angle, zoom = rng.uniform(-s.rotate_deg, s.rotate_deg), rng.uniform(*s.zoom)
            dx, dy = rng.uniform(-s.shift, s.shift, 2) * (width, height)
            m: np.ndarray = cv2.getRotationMatrix2D((width / 2, height / 2), angle, zoom)
            m[:, 2] += (dx, dy)
            image = cv2.warpAffine(image, m, (width, height), borderMode=cv2.BORDER_REFLECT)
        if rng.random() < s.rescale_p:
            f = float(rng.uniform(*s.rescale))
            small = (max(4, round(width * f)), max(4, round(height * f)))
            image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        if rng.random() < s.blur_p:
            if rng.random() < s.motion_blur_share:
                image = cv2.filter2D(image, -1, _motion_kernel(int(rng.integers(*s.motion_length, endpoint=True)), rng))
            else:
                image = cv2.GaussianBlur(image, (0, 0), rng.uniform(*s.blur_sigma))
        x = image.astype(np.float32)
        # Moiré: drawn for every crop, so that labels never shift the random stream; added to spoofs only.
        moire = rng.random() < s.moire_p
        period = float(np.exp(rng.uniform(np.log(s.moire_period[0]), np.log(s.moire_period[1]))))
        moire_angle, phase, chroma = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.6)
        amplitude = rng.uniform(*s.moire_amplitude)
        if moire and spoof[i]:
            x += _moire(height, width, period, moire_angle, phase, chroma, amplitude)
        if rng.random() < s.noise_p:
            x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(rng.uniform(*s.noise_sigma))
        if rng.random() < s.white_balance_p:
            x *= rng.uniform(*s.channel_gain, 3).astype(np.float32)
        if rng.random() < s.gamma_p:
            x = np.power(np.clip(x, 0, 255) / np.float32(255), np.float32(rng.uniform(*s.gamma))) * np.float32(255)
        if rng.random() < s.saturation_p:
            grey = x @ _LUMA
            x = grey[..., None] + (x - grey[..., None]) * np.float32(rng.uniform(*s.saturation))
        if rng.random() < s.brightness_p:
            x = x * np.float32(rng.uniform(*s.brightness_gain)) + np.float32(rng.uniform(*s.brightness_bias))
        image = np.clip(x + 0.5, 0, 255).astype(np.uint8)
        if rng.random() < s.jpeg_p:
            quality = int(rng.integers(*s.jpeg_quality, endpoint=True))
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError("cv2 could not JPEG-encode a crop")
            image = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out[i] = image
    return out


def _motion_kernel(length: int, rng: np.random.Generator) -> np.ndarray:
    """A normalised ``length``-pixel straight streak at a random angle, for cv2.filter2D."""
    kernel = np.zeros((length, length), np.float32)
    c, angle = (length - 1) / 2, float(rng.uniform(0, np.pi))
    dx, dy = math.cos(angle) * c, math.sin(angle) * c
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), (1.0,), 1, cv2.LINE_AA)
    return kernel / kernel.sum()


def _moire(
    height: int, width: int, period: float, angle: float, phase: float, chroma: float, amplitude: float
) -> np.ndarray:
    """A (H, W, 3) float32 sinusoidal grating: ``period`` px across, at ``angle`` rad, ``amplitude``
    grey levels peak; the channels shifted by ``chroma`` rad each, as a screen's sub-pixels are.

    sin(u x + v y + p) = sin(u x + p) cos(v y) + cos(u x + p) sin(v y): outer products of 1-D
    waves, much cheaper than a sine per pixel."""
    k = 2 * math.pi / period
    u, v = k * math.cos(angle), k * math.sin(angle)
    ux = (
        u * np.arange(width, dtype=np.float32)[None, :]
        + (phase + np.asarray([-chroma, 0.0, chroma], np.float32))[:, None]
    )
    vy = v * np.arange(height, dtype=np.float32)
    grating = np.cos(vy)[None, :, None] * np.sin(ux)[:, None, :] + np.sin(vy)[None, :, None] * np.cos(ux)[:, None, :]
    return np.float32(amplitude) * grating.transpose(1, 2, 0)
