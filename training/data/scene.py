"""Drawing blocks of the synthetic scenes: layers and how they are warped into a frame,
sensor noise and light, backgrounds, and the soft shapes everything is painted with.

Everything that moves in a scene is a :class:`Layer`: a premultiplied RGBA image plus
where the face sits in it, built once per scene and warped into each frame by
:func:`composite`. Building a layer may be slow (blurs on a few hundred pixels square);
drawing a frame is only warps, blends, a lookup table and added noise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

SKIN_RGB = np.array(
    [[236, 200, 175], [224, 180, 150], [200, 150, 115], [165, 115, 85], [120, 80, 58], [90, 60, 45]],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Layer:
    """A premultiplied RGBA uint8 image (h, w, 4) and the face centre and size in its pixels."""

    rgba: np.ndarray
    face_center: tuple[float, float]
    face_size: float


class Wobble:
    """Smooth random signals, one per amplitude: each a sum of a few sinusoids."""

    def __init__(self, rng: np.random.Generator, amps, fmin: float = 0.1, fmax: float = 0.8, terms: int = 3):
        self.amps = np.asarray(amps, dtype=np.float64)
        n = len(self.amps)
        self.freq = rng.uniform(fmin, fmax, (n, terms))
        self.phase = rng.uniform(0.0, 2 * np.pi, (n, terms))
        weight = rng.uniform(0.3, 1.0, (n, terms))
        self.weight = weight / weight.sum(axis=1, keepdims=True)

    def __call__(self, t: float) -> np.ndarray:
        return self.amps * (self.weight * np.sin(2 * np.pi * self.freq * t + self.phase)).sum(axis=1)


# --------------------------------------------------------------------------- compositing


def plane_homography(
    layer: Layer, *, center: tuple[float, float], size: float, roll: float, yaw: float, pitch: float, focal: float
) -> np.ndarray:
    """3x3 map from layer pixels to frame pixels for a flat layer seen by a pinhole camera.

    The layer's face lands at ``center`` with face size ``size`` pixels when the plane
    faces the camera; ``roll``/``yaw``/``pitch`` (radians) tilt the plane about its face centre.
    """
    k = size / layer.face_size
    ax, ay = layer.face_center
    to_plane = np.array([[k, 0.0, -k * ax], [0.0, k, -k * ay], [0.0, 0.0, 1.0]])
    cr, sr, cy_, sy_, cp, sp = (
        math.cos(roll),
        math.sin(roll),
        math.cos(yaw),
        math.sin(yaw),
        math.cos(pitch),
        math.sin(pitch),
    )
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    ry = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rot = rz @ ry @ rx
    extrinsic = np.column_stack([rot[:, 0], rot[:, 1], [0.0, 0.0, focal]])
    intrinsic = np.array([[focal, 0.0, center[0]], [0.0, focal, center[1]], [0.0, 0.0, 1.0]])
    matrix = intrinsic @ extrinsic @ to_plane
    return matrix / matrix[2, 2]


def composite(frame: np.ndarray, layer: Layer, matrix: np.ndarray, shade: Wobble | None = None, t: float = 0.0) -> None:
    """Warp ``layer`` by the 3x3 ``matrix`` and blend it over ``frame`` (uint8 RGB) in place.

    Only the frame rectangle the layer lands on is touched. ``shade`` gives a side light:
    a left-to-right brightness ramp of slope ``shade(t)[0]`` per face size.
    """
    fh, fw = frame.shape[:2]
    lh, lw = layer.rgba.shape[:2]
    corners = np.array([[[0, 0], [lw, 0], [lw, lh], [0, lh]]], dtype=np.float64)
    pts = cv2.perspectiveTransform(corners, matrix)[0]
    x0, y0 = max(int(pts[:, 0].min()), 0), max(int(pts[:, 1].min()), 0)
    x1, y1 = min(int(pts[:, 0].max()) + 2, fw), min(int(pts[:, 1].max()) + 2, fh)
    if x1 <= x0 or y1 <= y0:
        return
    shifted = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]]) @ matrix
    size = (x1 - x0, y1 - y0)
    if np.allclose(shifted[2], (0.0, 0.0, 1.0)):
        warped = cv2.warpAffine(layer.rgba, shifted[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    else:
        warped = cv2.warpPerspective(layer.rgba, shifted, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    roi = frame[y0:y1, x0:x1]
    fg = cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB)
    if shade is not None:
        center_x = pts.mean(axis=0)[0] - x0
        face_px = abs(np.linalg.det(matrix[:2, :2])) ** 0.5 * layer.face_size
        ramp = 128.0 * (1.0 + shade(t)[0] * (np.arange(size[0], dtype=np.float32) - center_x) / face_px)
        ramp = np.clip(ramp, 0, 255).astype(np.uint8)[None, :]
        ramp = cv2.cvtColor(cv2.resize(ramp, size, interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2RGB)
        fg = cv2.multiply(fg, ramp, scale=1.0 / 128.0)
    keep = cv2.cvtColor(cv2.bitwise_not(cv2.extractChannel(warped, 3)), cv2.COLOR_GRAY2RGB)
    cv2.add(cv2.multiply(roi, keep, scale=1.0 / 255.0), fg, dst=roi)


@functools.lru_cache(maxsize=8)
def _noise_bank(sigma: float, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed Gaussian noise frames as (positive part, negative part), uint8 (2, side, side, 3)."""
    noise = np.random.default_rng(12345).normal(0.0, sigma, (2, side, side, 3))
    noise = np.clip(np.rint(noise), -255, 255).astype(np.int16)
    return np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8)


NOISE_SIGMAS = (1.5, 3.0, 5.0)


def add_sensor_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Add Gaussian noise (one of :data:`NOISE_SIGMAS`) to ``frame`` in place, from a cached bank."""
    h, w = frame.shape[:2]
    side = 64 * (max(h, w) // 64 + 2)
    pos, neg = _noise_bank(sigma, side)
    k = int(rng.integers(2))
    oy, ox = rng.integers(0, side - h + 1), rng.integers(0, side - w + 1)
    cv2.add(frame, pos[k, oy : oy + h, ox : ox + w], dst=frame)
    cv2.subtract(frame, neg[k, oy : oy + h, ox : ox + w], dst=frame)


def lighting_lut(gain_rgb: np.ndarray, gamma: float) -> np.ndarray:
    """A (1, 256, 3) uint8 lookup table: per-channel gain after a gamma curve."""
    x = np.arange(256, dtype=np.float32) / 255.0
    y = (x[:, None] ** gamma) * np.asarray(gain_rgb, dtype=np.float32)[None, :] * 255.0
    return np.clip(y, 0, 255).astype(np.uint8)[None]


# --------------------------------------------------------------------------- backgrounds


def random_colour(rng: np.random.Generator, lo: float = 40, hi: float = 220, sat: float = 0.35) -> np.ndarray:
    grey = rng.uniform(lo, hi)
    return np.clip(grey * (1.0 + rng.uniform(-sat, sat, 3)), 0, 255).astype(np.float32)


def low_freq_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    grid = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A random backdrop (room, texture or gradient with objects), RGB uint8 (h, w, 3).

    Drawn at half resolution and upscaled: a backdrop is out of focus anyway.
    """
    full = (w, h)
    w, h = (w + 1) // 2, (h + 1) // 2
    style = rng.choice(["room", "texture", "gradient"], p=[0.5, 0.25, 0.25])
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    if style == "texture":
        img: np.ndarray = np.zeros((h, w, 3), np.float32)
        for cell, weight in ((rng.integers(48, 160), 0.7), (rng.integers(8, 24), 0.3)):
            img += weight * low_freq_noise(rng, h, w, int(cell))[..., None]
        a, b = random_colour(rng), random_colour(rng)
        img = a + (b - a) * img
    else:
        a, b = random_colour(rng, 60, 230), random_colour(rng, 30, 200)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (xx * math.cos(angle) + yy * math.sin(angle) + 1.0) / 2.0
        img = a + (b - a) * ramp
        if style == "room":
            floor_y = int(h * rng.uniform(0.7, 0.95))
            img[floor_y:] = random_colour(rng, 40, 160) * (0.8 + 0.2 * yy[floor_y:] / yy[-1])
        img = np.ascontiguousarray(img)
        n_objects = rng.integers(2, 7) if style == "room" else rng.integers(0, 4)
        for _ in range(n_objects):
            _draw_object(img, rng)
        img += 12.0 * (low_freq_noise(rng, h, w, 24)[..., None] - 0.5)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.5))
    return cv2.resize(np.clip(img, 0, 255).astype(np.uint8), full, interpolation=cv2.INTER_LINEAR)


def _draw_object(img: np.ndarray, rng: np.random.Generator) -> None:
    """A window, door, picture frame, shelf or lamp at a random place, drawn in place."""
    h, w = img.shape[:2]
    kind = rng.choice(["window", "door", "frame", "shelf", "lamp"])
    x0, y0 = int(rng.uniform(-0.1, 0.9) * w), int(rng.uniform(-0.1, 0.7) * h)
    bw, bh = int(rng.uniform(0.08, 0.35) * w), int(rng.uniform(0.1, 0.5) * h)
    colour = random_colour(rng).tolist()
    if kind == "window":
        cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), random_colour(rng, 200, 255, 0.1).tolist(), -1)
        frame_colour = random_colour(rng, 30, 240, 0.1).tolist()
        cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), frame_colour, max(2, bw // 25))
        cv2.line(img, (x0 + bw // 2, y0), (x0 + bw // 2, y0 + bh), frame_colour, max(2, bw // 30))
    elif kind == "door":
        cv2.rectangle(img, (x0, y0), (x0 + bw // 2, h), colour, -1)
        cv2.circle(img, (x0 + bw // 2 - bw // 10, y0 + (h - y0) // 2), max(2, bw // 30), (200, 190, 120), -1)
    elif kind == "frame":
        cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), colour, -1)
        inner = (x0 + bw // 8, y0 + bh // 8), (x0 + bw - bw // 8, y0 + bh - bh // 8)
        cv2.rectangle(img, *inner, random_colour(rng, 20, 240, 0.6).tolist(), -1)
        for _ in range(3):
            centre = (int(rng.uniform(inner[0][0], inner[1][0])), int(rng.uniform(inner[0][1], inner[1][1])))
            cv2.circle(img, centre, max(2, bw // 8), random_colour(rng, 20, 240, 0.6).tolist(), -1)
    elif kind == "shelf":
        cv2.rectangle(img, (x0, y0), (x0 + bw * 2, y0 + max(4, bh // 12)), colour, -1)
        for i in range(rng.integers(2, 8)):
            bx = x0 + int(i * bw / 4)
            cv2.rectangle(
                img, (bx, y0 - int(bh * rng.uniform(0.2, 0.5))), (bx + bw // 6, y0), random_colour(rng).tolist(), -1
            )
    else:
        cv2.circle(img, (x0, y0), max(4, bw // 4), random_colour(rng, 220, 255, 0.15).tolist(), -1, cv2.LINE_AA)


# --------------------------------------------------------------------------- shapes


def soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Feather ``mask`` in place with a Gaussian of ``sigma`` px, blurring only around its shape."""
    if sigma <= 0:
        return mask
    sigma = max(sigma, 0.5)
    x, y, w, h = cv2.boundingRect((mask > 0).view(np.uint8))
    if w == 0 or h == 0:
        return mask
    r = int(3 * sigma) + 1
    rows = slice(max(y - r, 0), min(y + h + r, mask.shape[0]))
    cols = slice(max(x - r, 0), min(x + w + r, mask.shape[1]))
    mask[rows, cols] = cv2.GaussianBlur(mask[rows, cols], (0, 0), sigma)
    return mask


def paint(rgb: np.ndarray, alpha: np.ndarray | None, mask: np.ndarray, colour) -> None:
    """Paint ``colour`` (a colour, or an image broadcastable to ``rgb``) with coverage ``mask``, in place.

    Only the bounding box of the mask is touched; ``alpha`` (if given) becomes the union.
    """
    x, y, w, h = cv2.boundingRect((mask > 1e-3).view(np.uint8))
    if w == 0 or h == 0:
        return
    rows, cols = slice(y, y + h), slice(x, x + w)
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 3:
        colour = colour[rows if colour.shape[0] > 1 else slice(None), cols if colour.shape[1] > 1 else slice(None)]
    m = mask[rows, cols, None]
    patch = rgb[rows, cols]
    patch += m * (colour - patch)
    if alpha is not None:
        np.maximum(alpha[rows, cols], mask[rows, cols], out=alpha[rows, cols])


def ellipse_mask(shape, center, axes, angle: float = 0.0, sigma: float = 1.0) -> np.ndarray:
    mask = np.zeros(shape[:2], np.float32)
    cv2.ellipse(
        mask,
        (int(center[0]), int(center[1])),
        (max(int(axes[0]), 1), max(int(axes[1]), 1)),
        angle,
        0,
        360,
        (1.0,),
        -1,
        cv2.LINE_AA,
    )
    return soft(mask, sigma)


def capsule_mask(shape, p0, p1, width: float, sigma: float = 1.0) -> np.ndarray:
    mask = np.zeros(shape[:2], np.float32)
    cv2.line(mask, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), (1.0,), max(int(width), 1), cv2.LINE_AA)
    return soft(mask, sigma)


def poly_mask(shape, points, sigma: float = 1.0) -> np.ndarray:
    mask = np.zeros(shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], (1.0,), cv2.LINE_AA)
    return soft(mask, sigma)


def skin_tone(rng: np.random.Generator) -> np.ndarray:
    return SKIN_RGB[rng.integers(len(SKIN_RGB))] * rng.uniform(0.9, 1.08, 3).astype(np.float32)


def draw_hand(rgb, alpha, rng, palm_center, palm_axes, finger_dir, finger_len, finger_w, arm_to, skin) -> None:
    """A hand: forearm from ``arm_to`` to the palm, palm ellipse, four fingers along ``finger_dir``."""
    sigma = finger_w * 0.12
    paint(rgb, alpha, capsule_mask(rgb.shape, arm_to, palm_center, palm_axes[1] * 1.4, sigma), skin * 0.92)
    angle = math.degrees(math.atan2(finger_dir[1], finger_dir[0]))
    paint(rgb, alpha, ellipse_mask(rgb.shape, palm_center, palm_axes, angle, sigma), skin)
    fx, fy = finger_dir
    nx, ny = -fy, fx
    for j, length in enumerate((0.8, 1.0, 0.95, 0.75)):
        off = (j - 1.5) * finger_w * 1.05
        base = (
            palm_center[0] + nx * off + fx * palm_axes[0] * 0.6,
            palm_center[1] + ny * off + fy * palm_axes[0] * 0.6,
        )
        tip = (base[0] + fx * finger_len * length, base[1] + fy * finger_len * length)
        paint(rgb, alpha, capsule_mask(rgb.shape, base, tip, finger_w, sigma), skin * rng.uniform(0.95, 1.05))
        gap = capsule_mask(rgb.shape, base, tip, max(finger_w * 0.08, 1), 0)
        paint(rgb, None, 0.25 * gap, 0.0)
