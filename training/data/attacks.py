"""The attacks of the synthetic scenes: a printed photo (paper, halftone, a bend's shading,
thumbs on its edges) and a screen replay (pixel grid, moire, refresh banding, glare, bezel),
each a :class:`Layer` held in front of the camera.
"""

from __future__ import annotations

import math
from typing import TypedDict

import cv2
import numpy as np

from training.data.face_sources import FaceSource
from training.data.people import FACE_PX, finish_layer, portrait
from training.data.scene import Layer, capsule_mask, ellipse_mask, low_freq_noise, paint, skin_tone, soft

SCREEN_UPSAMPLE = 2.0  # screen layers are drawn this much finer, so their pixel grid aliases

# --------------------------------------------------------------------------- print and replay

Range = tuple[float, float]  # (low, high)


class PrintRanges(TypedDict):
    """The ranges of :data:`PRINT`."""

    margin: tuple[Range, Range, Range, Range]
    border: Range
    black: Range
    white: Range
    saturation: Range
    blur: Range
    halftone: Range
    bend: Range


class ReplayRanges(TypedDict):
    """The ranges of :data:`REPLAY`."""

    margin: tuple[Range, Range, Range, Range]
    gamma: Range
    grid: Range
    moire: Range
    moire_period: Range
    glare: Range
    banding: Range
    bezel: Range
    blur: Range


# Ranges (low, high) of the print and screen artefacts. Margins (photo shown beyond the
# face box) and borders are in face sizes: small enough at the sides that the paper or
# bezel edges lie inside a 1.6x crop of the face box; larger at the bottom and often at
# the top, because face detection on these low-resolution faces needs the head outline.
PHOTO_MARGIN = ((0.04, 0.14), (0.08, 0.4), (0.04, 0.14), (0.3, 0.6))  # left, top, right, bottom
# A close-up: the photo reaches past the 1.6x crop on every side (the sheet or screen fills
# the view, as in real attacks held near the camera), so only the print's or the screen's
# texture, contrast and colour tell it from a face.
CLOSE_UP_MARGIN = ((0.4, 0.8), (0.4, 0.55), (0.4, 0.8), (0.6, 1.2))
CLOSE_UP_FRACTION = 0.35
PRINT: PrintRanges = {
    "margin": PHOTO_MARGIN,
    "border": (0.03, 0.07),
    "black": (10.0, 30.0),
    "white": (210.0, 245.0),
    "saturation": (0.7, 1.0),
    "blur": (0.7, 1.6),
    "halftone": (0.05, 0.12),
    "bend": (0.0, 0.25),
}
REPLAY: ReplayRanges = {
    "margin": PHOTO_MARGIN,
    "gamma": (0.7, 1.3),
    "grid": (0.08, 0.18),
    "moire": (0.03, 0.06),
    "moire_period": (20.0, 50.0),
    "glare": (20.0, 80.0),
    "banding": (0.0, 0.1),
    "bezel": (0.03, 0.09),
    "blur": (0.4, 0.7),
}


def _photo_margin(rng: np.random.Generator, ranges: tuple[Range, Range, Range, Range]) -> np.ndarray:
    """How much of the photo shows beyond the face box (face sizes): usually ``ranges``, so the
    edge is in the crop; a :data:`CLOSE_UP_FRACTION` of the time a close-up."""
    chosen = CLOSE_UP_MARGIN if rng.random() < CLOSE_UP_FRACTION else ranges
    return np.array([rng.uniform(*r) for r in chosen])


def _fingers_on_edges(rgb, alpha, rng, sheet_box, s: float) -> None:
    """One or two thumbs gripping the sheet edges (left, right or bottom), hand outside the sheet."""
    x0, y0, x1, y1 = sheet_box
    skin = skin_tone(rng)
    sides = rng.choice(["left", "right", "bottom"], size=rng.integers(1, 3), replace=False)
    for side in sides:
        f = rng.uniform(0.25, 0.85)
        width = rng.uniform(0.12, 0.17) * s
        reach = rng.uniform(0.08, 0.15) * s
        if side == "bottom":
            edge = np.array([x0 + f * (x1 - x0), y1])
            inward = np.array([0.0, -1.0])
        else:
            edge = np.array([x0 if side == "left" else x1, y0 + f * (y1 - y0)])
            inward = np.array([1.0, 0.0]) if side == "left" else np.array([-1.0, 0.0])
        along = np.array([-inward[1], inward[0]])
        tilt = along * rng.uniform(-0.5, 0.5)
        tip = edge + (inward + tilt) * reach
        palm_center = edge - inward * 0.2 * s + along * rng.uniform(-0.1, 0.1) * s
        palm_angle = math.degrees(math.atan2(along[1], along[0]))
        paint(rgb, alpha, ellipse_mask(rgb.shape, palm_center, (0.3 * s, 0.22 * s), palm_angle, 1.5), skin * 0.85)
        paint(rgb, alpha, capsule_mask(rgb.shape, edge - inward * 0.12 * s, tip, width, 1.0), skin)
        nail = ellipse_mask(
            rgb.shape, tip - (inward + tilt) * width * 0.15, (width * 0.28, width * 0.22), palm_angle, 1.0
        )
        paint(rgb, None, 0.25 * nail, np.array([250, 225, 215], np.float32))


def print_layer(src: FaceSource, rng: np.random.Generator) -> Layer:
    """The photo printed on paper and held by hand: halftone, paper texture, flat range, blur,
    the shading of a bent sheet, a white paper border whose edge falls inside a 1.6x face crop (but for a close-up), and
    thumbs on the edges."""
    margin = _photo_margin(rng, PRINT["margin"])
    border = rng.uniform(*PRINT["border"], 4)  # white paper around the photo
    photo = portrait(src, rng, margin)
    ph, pw = photo.shape[:2]
    lo, hi = rng.uniform(*PRINT["black"]), rng.uniform(*PRINT["white"])
    grey = photo.mean(axis=2, keepdims=True)
    photo = grey + rng.uniform(*PRINT["saturation"]) * (photo - grey)
    photo = lo + (hi - lo) * photo / 255.0
    photo *= rng.uniform(0.92, 1.06, 3).astype(np.float32)
    photo = cv2.GaussianBlur(photo, (0, 0), rng.uniform(*PRINT["blur"]))
    period, angle = rng.uniform(2.5, 4.5), rng.uniform(0, np.pi / 2)
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
    u = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * np.pi / period)
    v = (-xx * math.sin(angle) + yy * math.cos(angle)) * (2 * np.pi / period)
    dots = 0.5 + 0.5 * np.cos(u) * np.cos(v)
    np.multiply(photo, (1.0 - rng.uniform(*PRINT["halftone"]) * dots)[..., None], out=photo)

    bl, bt, br, bb = (border * FACE_PX).astype(int)
    paper = np.float32(rng.uniform(225, 252)) * rng.uniform(0.96, 1.02, 3).astype(np.float32)
    sheet_h, sheet_w = ph + bt + bb, pw + bl + br
    sheet = np.empty((sheet_h, sheet_w, 3), np.float32)
    sheet[:] = paper
    sheet[bt : bt + ph, bl : bl + pw] = photo
    sheet += 6.0 * (low_freq_noise(rng, sheet_h, sheet_w, 40)[..., None] - 0.5)
    sheet += rng.normal(0.0, 3.0, (sheet_h, sheet_w, 1)).astype(np.float32)
    ramp_angle = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-1, 1, sheet_w)[None, :] * math.cos(ramp_angle) + np.linspace(-1, 1, sheet_h)[
        :, None
    ] * math.sin(ramp_angle)
    sheet *= (1.0 + rng.uniform(0.03, 0.1) * ramp.astype(np.float32))[..., None]
    # a sheet held by its edges bows: the light falls off across it as off a cylinder
    axis, bend = rng.uniform(0.2, 0.8), rng.uniform(*PRINT["bend"])
    across = np.linspace(-1, 1, sheet_w, dtype=np.float32) - (2 * axis - 1)
    sheet *= (1.0 - bend * across**2)[None, :, None]

    pad = int(0.5 * FACE_PX)
    rgb = np.zeros((sheet_h + 2 * pad, sheet_w + 2 * pad, 3), np.float32)
    alpha = np.zeros(rgb.shape[:2], np.float32)
    rgb[pad : pad + sheet_h, pad : pad + sheet_w] = sheet
    alpha[pad : pad + sheet_h, pad : pad + sheet_w] = 1.0
    cv2.rectangle(rgb, (pad, pad), (pad + sheet_w - 1, pad + sheet_h - 1), (paper * 0.8).tolist(), 1)
    _fingers_on_edges(rgb, alpha, rng, (pad, pad, pad + sheet_w, pad + sheet_h), FACE_PX)
    face_center = (pad + bl + (0.5 + margin[0]) * FACE_PX, pad + bt + (0.5 + margin[1]) * FACE_PX)
    return finish_layer(rgb, alpha, face_center, FACE_PX)


def replay_layer(src: FaceSource, rng: np.random.Generator) -> Layer:
    """The photo on a phone or tablet screen: gamma and colour cast, RGB subpixel grid (which
    aliases into moire once resampled), moire bands, refresh banding, glare, and a dark bezel inside a 1.6x crop
    (but for a close-up)."""
    margin = _photo_margin(rng, REPLAY["margin"])
    photo = portrait(src, rng, margin)
    up = SCREEN_UPSAMPLE
    photo = cv2.resize(photo, None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR)
    sh, sw = photo.shape[:2]
    cast = (
        np.array([1.0, 1.0, 1.0], np.float32)
        + rng.uniform(-0.06, 0.06, 3).astype(np.float32)
        + np.array([-0.04, 0.0, 0.07], np.float32)
    )
    screen: np.ndarray = 255.0 * (photo / 255.0) ** rng.uniform(*REPLAY["gamma"]) * cast * rng.uniform(1.0, 1.15)

    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    stripe = np.full((sh, sw, 3), 0.35, np.float32)
    col = np.arange(sw) % 3
    for ch in range(3):
        stripe[:, col == ch, ch] = 1.0
    stripe[np.arange(sh) % 3 == 2] *= 0.55
    grid = rng.uniform(*REPLAY["grid"])
    screen *= (1.0 - grid) + grid * stripe * 1.55

    angle = rng.uniform(0, np.pi)
    period = rng.uniform(*REPLAY["moire_period"]) * up
    wave = rng.uniform(2.0, 6.0) * up
    phase = (
        xx * math.cos(angle)
        + yy * math.sin(angle)
        + wave * np.sin(2 * np.pi * (yy * math.cos(angle) - xx * math.sin(angle)) / (period * 4))
    ) * (2 * np.pi / period)
    screen *= (1.0 + rng.uniform(*REPLAY["moire"]) * np.cos(phase))[..., None]
    # the screen's refresh beating with the camera's rolling shutter: soft horizontal bands
    band_period = rng.uniform(0.15, 0.6) * sh
    banding = np.sin(2 * np.pi * yy[:, :1] / band_period + rng.uniform(0, 2 * np.pi))
    screen *= (1.0 + rng.uniform(*REPLAY["banding"]) * banding)[..., None]

    gx, gy = rng.uniform(0.1, 0.9) * sw, rng.uniform(0.1, 0.9) * sh
    glare = np.exp(
        -(((xx - gx) / (rng.uniform(0.15, 0.4) * sw)) ** 2 + ((yy - gy) / (rng.uniform(0.1, 0.3) * sh)) ** 2)
    )
    screen += (rng.uniform(*REPLAY["glare"]) * glare)[..., None]
    screen = cv2.GaussianBlur(screen, (0, 0), rng.uniform(*REPLAY["blur"]) * up)  # the camera's focus

    bezel = (rng.uniform(*REPLAY["bezel"], 4) * FACE_PX * up).astype(int)
    bl, bt, br, bb = bezel
    dev_h, dev_w = sh + bt + bb, sw + bl + br
    pad = int(0.45 * FACE_PX * up)
    rgb = np.zeros((dev_h + 2 * pad, dev_w + 2 * pad, 3), np.float32)
    alpha = np.zeros(rgb.shape[:2], np.float32)
    body = np.zeros(rgb.shape[:2], np.float32)
    radius = int(min(bezel) * 1.5 + 4)
    cv2.rectangle(body, (pad + radius, pad), (pad + dev_w - radius, pad + dev_h), (1.0,), -1)
    cv2.rectangle(body, (pad, pad + radius), (pad + dev_w, pad + dev_h - radius), (1.0,), -1)
    for corner in (
        (pad + radius, pad + radius),
        (pad + dev_w - radius, pad + radius),
        (pad + radius, pad + dev_h - radius),
        (pad + dev_w - radius, pad + dev_h - radius),
    ):
        cv2.circle(body, corner, radius, (1.0,), -1, cv2.LINE_AA)
    bezel_col = np.float32(rng.uniform(8, 40)) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    bezel_img = bezel_col + 25.0 * np.linspace(0, 1, rgb.shape[1], dtype=np.float32)[None, :, None] * rng.uniform(
        0.2, 1.0
    )
    paint(rgb, alpha, soft(body, 1.0), bezel_img)
    edge = np.zeros_like(body)
    cv2.rectangle(edge, (pad, pad), (pad + dev_w, pad + dev_h), (1.0,), max(2, int(up)))
    paint(rgb, None, soft(edge * body, 1.0) * rng.uniform(0.1, 0.35), 255.0)
    rgb[pad + bt : pad + bt + sh, pad + bl : pad + bl + sw] = screen
    if rng.random() < 0.5:
        _fingers_on_edges(rgb, alpha, rng, (pad, pad, pad + dev_w, pad + dev_h), FACE_PX * up)
    face_center = (pad + bl + (0.5 + margin[0]) * FACE_PX * up, pad + bt + (0.5 + margin[1]) * FACE_PX * up)
    return finish_layer(rgb, alpha, face_center, FACE_PX * up)
