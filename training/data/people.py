"""The people of the synthetic scenes: a head and shoulders cut from a face photograph, its
eyes shut for blinks, and what covers a face (hands, masks, sunglasses, patches, cards)
drawn over exactly the regions a session names.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.faces.landmarks import FACE_OVAL_IDX, REGION_IDX
from training.data.face_sources import FaceSource
from training.data.scene import (
    Layer,
    background,
    capsule_mask,
    draw_hand,
    ellipse_mask,
    paint,
    poly_mask,
    random_colour,
    skin_tone,
    soft,
)

FACE_PX = 200.0  # face size (max side of the face box) inside person and print layers
HAIR_RGB = np.array(
    [[20, 18, 16], [45, 32, 24], [80, 55, 35], [130, 95, 60], [190, 160, 110], [150, 150, 150]], dtype=np.float32
)
# Lower and upper lid of each eye, corner to corner (MediaPipe face mesh indices).
LOWER_LID = {
    "right_eye": (33, 7, 163, 144, 145, 153, 154, 155, 133),
    "left_eye": (263, 249, 390, 373, 374, 380, 381, 382, 362),
}
UPPER_LID = {
    "right_eye": (33, 246, 161, 160, 159, 158, 157, 173, 133),
    "left_eye": (263, 466, 388, 387, 386, 385, 384, 398, 362),
}
CHEEK_IDX = (50, 280)



# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class FaceGeometry:
    """Face landmarks of a source moved into layer pixels."""

    landmarks: np.ndarray
    centers: dict[str, tuple[float, float]]
    eye_distance: float


def _normalised_crop(src: FaceSource, left: float, top: float, right: float, bottom: float):
    """The source photo around its face, scaled to face size :data:`FACE_PX` (border replicated).

    Extents are in face sizes from the face centre. Returns the float32 image and the
    landmarks moved into it.
    """
    x, y, w, h = src.box
    s = max(w, h)
    k = FACE_PX / s
    cx, cy = x + w / 2, y + h / 2
    out_w, out_h = int(round((left + right) * FACE_PX)), int(round((top + bottom) * FACE_PX))
    shift = np.array([[k, 0.0, -k * (cx - left * s)], [0.0, k, -k * (cy - top * s)]])
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
    img = cv2.warpAffine(src.image, shift, (out_w, out_h), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    lm = src.landmarks * k + shift[:, 2]
    centers = {r: (c[0] * k + shift[0, 2], c[1] * k + shift[1, 2]) for r, c in src.centers.items()}
    return img.astype(np.float32), FaceGeometry(lm, centers, src.eye_distance * k)


def _skin_colour(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    r = 4
    patches = [img[int(y) - r : int(y) + r, int(x) - r : int(x) + r].reshape(-1, 3) for x, y in lm[list(CHEEK_IDX)]]
    return np.median(np.concatenate(patches), axis=0).astype(np.float32)


def close_eyes(rgb: np.ndarray, geo: FaceGeometry, skin: np.ndarray) -> np.ndarray:
    """A copy of ``rgb`` with both eyes shut: each eye opening painted as eyelid skin, with a
    dark lash line just below the eye's middle and a soft crease above it."""
    out = rgb.copy()
    d = geo.eye_distance
    for region in ("left_eye", "right_eye"):
        pts = geo.landmarks[list(REGION_IDX[region])]
        centre = pts.mean(axis=0)
        hull = cv2.convexHull(((pts - centre) * 1.35 + centre).astype(np.float32))[:, 0]
        paint(out, None, poly_mask(out.shape, hull, d / 40), skin * 0.88)
        for lid, shape, width, colour, strength in (
            (LOWER_LID[region], (1.05, 0.35), d / 14, skin * 0.15, 0.9),  # lashes
            (UPPER_LID[region], (0.9, 1.6), d / 18, skin * 0.65, 0.5),  # crease
        ):
            line = centre + (geo.landmarks[list(lid)] - centre) * np.array(shape)
            mask = np.zeros(out.shape[:2], np.float32)
            cv2.polylines(
                mask, [np.round(line).astype(np.int32)], False, (1.0,), max(1, int(round(width))), cv2.LINE_AA
            )
            paint(out, None, strength * soft(mask, width / 4), colour)
    return out


def finish_layer(rgb: np.ndarray, alpha: np.ndarray, face_center, face_size: float) -> Layer:
    rgba = np.empty(rgb.shape[:2] + (4,), np.uint8)
    np.multiply(rgb, alpha[..., None], out=rgb)  # premultiply; the caller's canvas is spent
    rgba[..., :3] = np.clip(rgb, 0, 255, out=rgb)
    rgba[..., 3] = np.clip(alpha * 255.0, 0, 255)
    return Layer(rgba, (float(face_center[0]), float(face_center[1])), float(face_size))


# Layer extents around the face centre, in face sizes: left, top, right, bottom.
PERSON_EXTENT = (1.35, 1.05, 1.35, 2.6)


def _person_canvas(src: FaceSource, rng: np.random.Generator):
    """Torso, neck and hair drawn behind where the head goes, plus what the head needs.

    Returns (rgb, alpha, head mask, normalised photo, geometry, skin colour).
    """
    img, geo = _normalised_crop(src, *PERSON_EXTENT)
    h, w = img.shape[:2]
    cx, cy = PERSON_EXTENT[0] * FACE_PX, PERSON_EXTENT[1] * FACE_PX
    s = FACE_PX
    skin = _skin_colour(img, geo.landmarks)
    rgb = np.zeros_like(img)
    alpha = np.zeros((h, w), np.float32)
    shirt = random_colour(rng, 20, 230, 0.6)
    shoulders = (cx + rng.uniform(-0.1, 0.1) * s, cy + 1.5 * s)
    half_width = rng.uniform(1.0, 1.3) * s
    torso = np.zeros((h, w), np.float32)
    cv2.ellipse(
        torso,
        (int(shoulders[0]), int(shoulders[1])),
        (int(half_width), int(0.8 * s)),
        0,
        180,
        360,
        (1.0,),
        -1,
        cv2.LINE_AA,
    )
    cv2.rectangle(
        torso, (int(shoulders[0] - half_width), int(shoulders[1])), (int(shoulders[0] + half_width), h), (1.0,), -1
    )
    shading = np.linspace(1.08, 0.85, h, dtype=np.float32)[:, None, None]
    paint(rgb, alpha, soft(torso, 3), shirt * shading)
    neck = [(cx - 0.22 * s, cy), (cx + 0.22 * s, cy), (cx + 0.25 * s, cy + 0.95 * s), (cx - 0.25 * s, cy + 0.95 * s)]
    paint(rgb, alpha, poly_mask(img.shape, neck, 3), skin * 0.8)
    hair = HAIR_RGB[rng.integers(len(HAIR_RGB))] * rng.uniform(0.8, 1.15)
    paint(rgb, alpha, ellipse_mask(img.shape, (cx, cy - 0.18 * s), (0.6 * s, 0.56 * s), 0, 4), hair)
    (ex, ey), (ea, eb), eangle = cv2.fitEllipse(geo.landmarks[list(FACE_OVAL_IDX)].astype(np.float32))
    head = ellipse_mask(img.shape, (ex, ey - 0.05 * s), (ea * 0.56, eb * 0.58), eangle, 0.035 * s)
    return rgb, alpha, head, img, geo, skin


def person_layers(src: FaceSource, rng: np.random.Generator, occluded: tuple[str, ...] = ()) -> tuple[Layer, Layer]:
    """A head-and-shoulders person cut from ``src``: (eyes open, eyes shut) layers.

    Occluders cover exactly the ``occluded`` regions and move with the head.
    """
    base, alpha, head, img, geo, skin = _person_canvas(src, rng)
    shut, shut_alpha = base.copy(), alpha.copy()
    paint(base, alpha, head, img)
    paint(shut, shut_alpha, head, close_eyes(img, geo, skin))
    if occluded:
        plan = occluder_plan(occluded, rng)
        draw_seed = int(rng.integers(2**31))
        for layer_rgb, layer_alpha in ((base, alpha), (shut, shut_alpha)):
            draw_occluders(layer_rgb, layer_alpha, geo, plan, np.random.default_rng(draw_seed))
    centre = (PERSON_EXTENT[0] * FACE_PX, PERSON_EXTENT[1] * FACE_PX)
    return finish_layer(base, alpha, centre, FACE_PX), finish_layer(shut, shut_alpha, centre, FACE_PX)


def portrait(src: FaceSource, rng: np.random.Generator, margin: np.ndarray) -> np.ndarray:
    """A head-and-shoulders photo of ``src`` on a random backdrop, as shown by a print or a
    screen: float32 RGB cropped to the face box plus ``margin`` (face sizes: left, top, right, bottom)."""
    rgb, alpha, head, img, _, _ = _person_canvas(src, rng)
    paint(rgb, alpha, head, img)
    h, w = alpha.shape
    backdrop = background(rng, w, h).astype(np.float32)
    rgb += (1.0 - alpha[..., None]) * backdrop
    cx, cy = PERSON_EXTENT[0] * FACE_PX, PERSON_EXTENT[1] * FACE_PX
    x0, y0 = int(round(cx - (0.5 + margin[0]) * FACE_PX)), int(round(cy - (0.5 + margin[1]) * FACE_PX))
    x1, y1 = int(round(cx + (0.5 + margin[2]) * FACE_PX)), int(round(cy + (0.5 + margin[3]) * FACE_PX))
    return rgb[y0:y1, x0:x1]


# --------------------------------------------------------------------------- occluders


def occluder_plan(regions: tuple[str, ...], rng: np.random.Generator) -> list[tuple[str, tuple[str, ...]]]:
    """Which occluder covers which regions: [(style, regions)]."""
    left = set(regions)
    plan: list[tuple[str, tuple[str, ...]]] = []
    if {"left_eye", "right_eye"} <= left and rng.random() < 0.6:
        plan.append(("sunglasses", ("left_eye", "right_eye")))
        left -= {"left_eye", "right_eye"}
    if {"nose", "mouth"} <= left and rng.random() < 0.7:
        plan.append(("mask", ("nose", "mouth")))
        left -= {"nose", "mouth"}
    styles = {
        "left_eye": ["hand", "patch", "card"],
        "right_eye": ["hand", "patch", "card"],
        "nose": ["hand", "card"],
        "mouth": ["mask", "hand", "card"],
    }
    for region in sorted(left):
        plan.append((str(rng.choice(styles[region])), (region,)))
    return plan


def draw_occluders(rgb, alpha, geo: FaceGeometry, plan, rng: np.random.Generator) -> None:
    """Draw each planned occluder over its regions (sized by the eye distance), in place."""
    d = geo.eye_distance
    c = {k: np.array(v) for k, v in geo.centers.items()}
    face_mid_x = (c["left_eye"][0] + c["right_eye"][0]) / 2
    skin = skin_tone(rng)
    for style, regions in plan:
        sigma = d * 0.02
        if style == "sunglasses":
            frame_col = random_colour(rng, 5, 60, 0.2)
            for eye in ("left_eye", "right_eye"):
                centre, (hw, hh) = _region_box(geo, eye)
                lens = (max(0.36 * d, hw + 0.08 * d), max(0.27 * d, hh + 0.1 * d))
                paint(rgb, alpha, ellipse_mask(rgb.shape, centre, lens, 0, sigma), frame_col * 0.6 + np.float32(8))
                outward = 1.0 if c[eye][0] > face_mid_x else -1.0
                paint(
                    rgb,
                    alpha,
                    capsule_mask(
                        rgb.shape,
                        c[eye] + (outward * 0.34 * d, -0.05 * d),
                        c[eye] + (outward * 0.75 * d, -0.1 * d),
                        0.06 * d,
                        sigma,
                    ),
                    frame_col,
                )
            paint(
                rgb,
                alpha,
                capsule_mask(
                    rgb.shape,
                    c["right_eye"] + (0.3 * d, -0.08 * d),
                    c["left_eye"] - (0.3 * d, 0.08 * d),
                    0.07 * d,
                    sigma,
                ),
                frame_col,
            )
            # a glint on each lens
            for eye in ("left_eye", "right_eye"):
                glint = ellipse_mask(rgb.shape, c[eye] + (-0.12 * d, -0.1 * d), (0.1 * d, 0.04 * d), -25, sigma * 2)
                paint(rgb, None, 0.3 * glint, 255.0)
        elif style == "mask":
            colour = rng.choice([[200, 220, 235], [235, 235, 235], [60, 60, 70], [120, 170, 210]]).astype(np.float32)
            if "nose" in regions:
                top = max(c["nose"][1] - 0.35 * d, max(c["left_eye"][1], c["right_eye"][1]) + 0.22 * d)
            else:
                top = c["mouth"][1] - 0.22 * d
            bottom = c["mouth"][1] + 0.75 * d
            mx = c["mouth"][0]
            poly = [
                (mx - 0.55 * d, top),
                (mx + 0.55 * d, top),
                (mx + 0.8 * d, top + 0.35 * d),
                (mx + 0.55 * d, bottom),
                (mx - 0.55 * d, bottom),
                (mx - 0.8 * d, top + 0.35 * d),
            ]
            pleats = np.ones(rgb.shape[:2], np.float32)
            for j in range(1, 4):
                y = int(top + j * (bottom - top) / 4)
                cv2.line(
                    pleats, (int(mx - 0.7 * d), y), (int(mx + 0.7 * d), y), (0.85,), max(1, int(d / 40)), cv2.LINE_AA
                )
            paint(rgb, alpha, poly_mask(rgb.shape, poly, sigma), colour * pleats[..., None])
            for side in (-1, 1):
                paint(
                    rgb,
                    alpha,
                    capsule_mask(
                        rgb.shape,
                        (mx + side * 0.78 * d, top + 0.3 * d),
                        (mx + side * 1.2 * d, top - 0.1 * d),
                        0.03 * d,
                        sigma,
                    ),
                    colour * 0.9,
                )
        elif style == "patch":
            (eye,) = regions
            outward = 1.0 if c[eye][0] > face_mid_x else -1.0
            centre, (hw, hh) = _region_box(geo, eye)
            patch = (max(0.33 * d, hw + 0.08 * d), max(0.25 * d, hh + 0.1 * d))
            paint(rgb, alpha, ellipse_mask(rgb.shape, centre, patch, 0, sigma), np.array([25, 22, 20], np.float32))
            paint(
                rgb,
                alpha,
                capsule_mask(rgb.shape, c[eye], c[eye] + (outward * 0.9 * d, -0.45 * d), 0.05 * d, sigma),
                np.array([20, 18, 16], np.float32),
            )
        elif style == "card":
            (region,) = regions
            centre, (hw, hh) = _region_box(geo, region)
            half = (max(hw + 0.07 * d, 0.3 * d), hh + 0.07 * d)
            box = [centre + (sx * half[0], sy * half[1]) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            paint(rgb, alpha, poly_mask(rgb.shape, box, sigma), random_colour(rng, 30, 240, 0.6))
        else:  # hand
            (region,) = regions
            outward = 1.0 if c[region][0] > face_mid_x else -1.0
            if region == "nose":
                # fingers laid across the nose from the side, stacked to cover its height
                centre, (hw, hh) = _region_box(geo, "nose")
                finger_w = (2 * hh + 0.08 * d) / 4.2
                palm = centre + (outward * (hw + 0.55 * d), 0.0)
                arm_to = centre + (outward * 2.4 * d, 0.4 * d)
                draw_hand(
                    rgb,
                    alpha,
                    rng,
                    palm,
                    (0.25 * d, 2.2 * finger_w),
                    (-outward, 0.0),
                    2 * hw + 0.6 * d,
                    finger_w,
                    arm_to,
                    skin,
                )
            elif region == "mouth":
                outward = float(rng.choice([-1.0, 1.0]))
                arm_to = c[region] + (outward * 1.4 * d, 1.8 * d)
                draw_hand(
                    rgb, alpha, rng, c[region], (0.55 * d, 0.3 * d), (-outward, -0.1), 0.5 * d, 0.11 * d, arm_to, skin
                )
            else:
                arm_to = c[region] + (outward * 2.0 * d, 0.1 * d)
                draw_hand(
                    rgb,
                    alpha,
                    rng,
                    c[region],
                    (0.36 * d, 0.26 * d),
                    (-0.5 * outward, -0.85),
                    0.5 * d,
                    0.11 * d,
                    arm_to,
                    skin,
                )


def _region_box(geo: FaceGeometry, region: str) -> tuple[np.ndarray, tuple[float, float]]:
    """Centre and half-size (x, y) of the bounding box of a region's landmarks."""
    pts = geo.landmarks[list(REGION_IDX[region])]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (lo + hi) / 2, tuple((hi - lo) / 2)
