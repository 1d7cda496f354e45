"""Synthetic selfie sessions and scene images with known truth, for training and testing.

No face anti-spoofing data set can be downloaded here, so live faces, printed photos
and screen replays are rendered from the real photographs of
:mod:`training.data.face_sources`. Each attack carries the cues a 1.6x face crop at 128 px
still shows: a printed sheet has a white paper border, halftone, flat contrast and
thumbs on its edge; a screen has a dark bezel, subpixel grid, moire, colour cast and
glare; a live face blinks and is lit unevenly. Sessions also cover identity swaps,
occluded face regions, no face, several faces and phone-style rotated storage.

Everything is a pure function of its seed. Frames are rendered one at a time.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from training.data.datasets import split_for_subject
from training.data.face_sources import REGIONS, FaceSource, load_face_sources
from training.data.attacks import print_layer, replay_layer
from training.data.people import person_layers
from training.data.scene import (
    NOISE_SIGMAS,
    Layer,
    Wobble,
    add_sensor_noise,
    background,
    composite,
    lighting_lut,
    plane_homography,
)
from training.data.video_writer import write_video

KINDS = ("live", "print", "replay", "swap", "occluded", "no_face", "multi_face")
KIND_BROKEN = "broken"  # only in manifests: a file that is not a decodable video
FACE_TYPES = ("live", "print", "replay")
# What may happen to a live face that is not a swap: the hard negatives of swap detection.
DISTURBANCES = ("none", "head_turn", "lighting", "hand")
SESSION_KIND_WEIGHTS = {
    "live": 0.28,
    "print": 0.16,
    "replay": 0.16,
    "swap": 0.10,
    "occluded": 0.14,
    "no_face": 0.06,
    "multi_face": 0.10,
}
ROTATED_FRACTION = 0.2  # sessions stored sideways with a display rotation, as phones do
# Hand-held sheet or screen: amplitudes of x, y (fractions of the frame), roll, yaw, pitch
# (radians) and relative scale.
SHEET_MOTION = (0.04, 0.03, 0.06, 0.25, 0.2, 0.04)
SHAKE_PX = 8  # camera shake: the background is this much larger on every side
MANIFEST_COLUMNS = (
    "session_id",
    "uri",
    "label",
    "attack_type",
    "kind",
    "subject",
    "subjects",
    "split",
    "swap_at_s",
    "occluded_regions",
    "n_faces",
    "blink_times_s",
    "rotation",
    "duration_s",
    "fps",
    "width",
    "height",
)
IMAGE_MANIFEST_COLUMNS = ("path", "subject", "label", "attack_type", "split")


@dataclass(frozen=True)
class SessionSpec:
    """Everything that defines one synthetic session; the frames are a pure function of it.

    ``subjects``: the primary subject first; for ``swap`` the subject before and after
    the swap; for ``multi_face`` one per face. ``size`` is the displayed (width, height);
    with a ``rotation`` (counter-clockwise display rotation, as PyAV's ``frame.rotation``
    reports it) the pixels are stored turned so that the displayed video is upright.
    ``swap_to`` is what replaces the first subject at ``swap_at_s``. ``blinks`` holds
    (start_s, duration_s) of each blink of whichever live face is on screen.
    ``disturbance`` changes a live session without changing who is in it: ``head_turn``
    (slow yaw of up to 0.6 rad), ``lighting`` (the light halves at mid-session) or ``hand``
    (a hand-coloured shape sweeps across the face around mid-session).
    """

    session_id: str
    kind: str
    subjects: tuple[str, ...] = ()
    duration_s: float = 3.0
    fps: float = 15.0
    size: tuple[int, int] = (640, 480)
    swap_at_s: float | None = None
    swap_to: str = "live"
    occluded_regions: tuple[str, ...] = ()
    blinks: tuple[tuple[float, float], ...] = ()
    rotation: int = 0
    seed: int = 0
    disturbance: str = "none"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown session kind {self.kind!r}; expected one of {KINDS}")
        needed = {"no_face": 0, "swap": 2}.get(self.kind, 1)
        if self.kind == "multi_face":
            if not 2 <= len(self.subjects) <= 3:
                raise ValueError("multi_face needs 2 or 3 subjects")
        elif len(self.subjects) != needed:
            raise ValueError(f"{self.kind} needs {needed} subject(s), got {len(self.subjects)}")
        if (self.kind == "swap") != (self.swap_at_s is not None):
            raise ValueError("swap_at_s is set exactly for swap sessions")
        if self.swap_to not in FACE_TYPES:
            raise ValueError(f"swap_to must be one of {FACE_TYPES}")
        if (self.kind != "occluded" and self.occluded_regions) or not set(self.occluded_regions) <= set(REGIONS):
            raise ValueError(f"occluded_regions must be a subset of {REGIONS}, for occluded sessions only")
        if self.kind == "occluded" and not self.occluded_regions:
            raise ValueError("an occluded session needs occluded_regions")
        if self.rotation not in (0, 90, -90, 180):
            raise ValueError("rotation must be 0, 90, -90 or 180")
        if any(side % 2 for side in self.size):
            raise ValueError("frame width and height must be even")
        if self.disturbance not in DISTURBANCES:
            raise ValueError(f"disturbance must be one of {DISTURBANCES}, got {self.disturbance!r}")
        if self.disturbance != "none" and self.kind != "live":
            raise ValueError("a disturbance happens to a live session only")

    @property
    def n_frames(self) -> int:
        """Number of frames: ``round(duration_s * fps)``."""
        return int(round(self.duration_s * self.fps))

    @property
    def n_faces(self) -> int:
        """Faces in every frame."""
        return {"no_face": 0, "multi_face": len(self.subjects)}.get(self.kind, 1)

    @property
    def attack_type(self) -> str:
        """``print`` or ``replay`` if a presentation attack appears in the session, else ``none``."""
        face = self.swap_to if self.kind == "swap" else self.kind
        return face if face in ("print", "replay") else "none"

    @property
    def label(self) -> str | None:
        """Session truth: ``spoof`` for attacks and identity swaps, ``live`` for real people,
        None where there is no face to judge."""
        if self.kind == "no_face":
            return None
        return "spoof" if self.kind in ("print", "replay", "swap") else "live"

    @property
    def blink_times_s(self) -> tuple[float, ...]:
        """Start time (eyes shut) of each blink."""
        return tuple(start for start, _ in self.blinks)

    @property
    def stored_size(self) -> tuple[int, int]:
        """(width, height) of the pixels as stored in the file."""
        w, h = self.size
        return (h, w) if self.rotation in (90, -90) else (w, h)


# --------------------------------------------------------------------------- rendering


@dataclass
class _Actor:
    """A layer that moves through the frame during [t0, t1): a person, a printed sheet or a screen."""

    layer: Layer
    center: tuple[float, float]
    size: float
    motion: Wobble  # dx, dy, roll, yaw, pitch, relative scale
    focal: float
    shut: Layer | None = None
    shade: Wobble | None = None
    t0: float = 0.0
    t1: float = math.inf
    blinks: tuple[tuple[float, float], ...] = ()

    def draw(self, frame: np.ndarray, t: float) -> None:
        if not self.t0 <= t < self.t1:
            return
        dx, dy, roll, yaw, pitch, ds = self.motion(t)
        layer = self.layer
        if self.shut is not None and any(s <= t < s + d for s, d in self.blinks):
            layer = self.shut
        matrix = plane_homography(
            layer,
            center=(self.center[0] + dx, self.center[1] + dy),
            size=self.size * (1.0 + ds),
            roll=roll,
            yaw=yaw,
            pitch=pitch,
            focal=self.focal,
        )
        composite(frame, layer, matrix, self.shade, t)


class _Scene:
    """The background, actors, lighting and noise of one session; ``frame(i)`` renders frame i."""

    def __init__(self, spec: SessionSpec, sources: Sequence[FaceSource]):
        by_id = {s.subject_id: s for s in sources}
        missing = [s for s in spec.subjects if s not in by_id]
        if missing:
            raise KeyError(f"subjects not among the face sources: {missing}")
        rng = np.random.default_rng(spec.seed)
        self.spec = spec
        w, h = spec.size
        self.background = background(rng, w + 2 * SHAKE_PX, h + 2 * SHAKE_PX)
        self.shake = Wobble(rng, (SHAKE_PX * 0.6, SHAKE_PX * 0.6), 0.2, 1.5)
        self.light = Wobble(rng, (0.12, 0.04, 0.04, 0.04, 0.12), 0.05, 0.5)
        self.gain = rng.uniform(0.85, 1.1) * rng.uniform(0.94, 1.06, 3)
        self.noise_sigma = float(rng.choice(NOISE_SIGMAS))
        self.actors: list[_Actor] = []
        focal = 1.2 * max(w, h)
        short = min(w, h)
        subjects = [by_id[s] for s in spec.subjects]
        if spec.kind == "multi_face":
            n = len(subjects)
            size = min(rng.uniform(0.2, 0.26) * short, 0.55 * w / n)
            for k, src in enumerate(subjects):
                center = (w * (k + 0.5) / n + rng.uniform(-0.04, 0.04) * w, h * rng.uniform(0.38, 0.5))
                blinks = spec.blinks if k == 0 else ()
                self.actors.append(self._person(rng, src, center, size, focal, 0.4, blinks=blinks))
        elif spec.kind != "no_face":
            center = (w * rng.uniform(0.42, 0.58), h * rng.uniform(0.4, 0.5))
            size = rng.uniform(0.3, 0.44) * short
            first = spec.kind if spec.kind in FACE_TYPES else "live"
            t1 = spec.swap_at_s if spec.kind == "swap" else math.inf
            self.actors.append(self._face(rng, first, subjects[0], center, size, focal, t1=t1))
            if spec.kind == "swap":
                center = (center[0] + rng.uniform(-0.05, 0.05) * w, center[1] + rng.uniform(-0.03, 0.03) * h)
                size *= rng.uniform(0.9, 1.1)
                self.actors.append(self._face(rng, spec.swap_to, subjects[1], center, size, focal, t0=t1))

    def _person(self, rng, src, center, size, focal, motion_scale, *, occluded=(), blinks=(), t0=0.0, t1=math.inf):
        w, h = self.spec.size
        layer, shut = person_layers(src, rng, occluded)
        yaw = 0.6 if self.spec.disturbance == "head_turn" else 0.0
        amps = np.array([0.05 * w, 0.03 * h, 0.08, yaw, 0.0, 0.05]) * motion_scale
        motion = Wobble(rng, amps, 0.1, 0.7)
        shade = Wobble(rng, (rng.uniform(0.05, 0.3),), 0.05, 0.3)
        return _Actor(layer, center, size, motion, focal, shut=shut, shade=shade, t0=t0, t1=t1, blinks=blinks)

    def _face(self, rng, face_type, src, center, size, focal, *, t0=0.0, t1=math.inf):
        """An actor for one face shown live, printed or on a screen."""
        spec = self.spec
        if face_type == "live":
            return self._person(
                rng, src, center, size, focal, 1.0, occluded=spec.occluded_regions, blinks=spec.blinks, t0=t0, t1=t1
            )
        w, h = spec.size
        layer = print_layer(src, rng) if face_type == "print" else replay_layer(src, rng)
        dx, dy, roll, yaw, pitch, scale = SHEET_MOTION
        motion = Wobble(rng, (dx * w, dy * h, roll, yaw, pitch, scale), 0.1, 0.6)
        return _Actor(layer, center, size, motion, focal, t0=t0, t1=t1)

    def _hand(self, frame: np.ndarray, t: float) -> None:
        """A hand (a skin-coloured ellipse with fingers) crossing the face in the 0.6 s around mid-session."""
        actor = self.actors[0]
        progress = (t - (self.spec.duration_s / 2 - 0.3)) / 0.6
        if not 0.0 <= progress <= 1.0:
            return
        dx, dy = actor.motion(t)[:2]
        cx = actor.center[0] + dx + (progress - 0.5) * 2.4 * actor.size
        cy = actor.center[1] + dy + 0.1 * actor.size
        colour = (205, 160, 130)
        axes = (int(0.35 * actor.size), int(0.45 * actor.size))
        cv2.ellipse(frame, (int(cx), int(cy)), axes, 10.0, 0, 360, colour, -1, cv2.LINE_AA)
        for k in range(4):  # fingers
            fx = int(cx + (k - 1.5) * 0.16 * actor.size)
            cv2.line(frame, (fx, int(cy)), (fx + 8, int(cy - 0.75 * actor.size)), colour, int(0.1 * actor.size))

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as displayed (upright), RGB uint8 (height, width, 3)."""
        t = index / self.spec.fps
        rng = np.random.default_rng([self.spec.seed, index])
        w, h = self.spec.size
        ox, oy = (np.round(self.shake(t)) + SHAKE_PX).astype(int)
        frame = self.background[oy : oy + h, ox : ox + w].copy()
        for actor in self.actors:
            actor.draw(frame, t)
        if self.spec.disturbance == "hand" and self.actors:
            self._hand(frame, t)
        light = self.light(t)
        gain = self.gain * (0.5 if self.spec.disturbance == "lighting" and t >= self.spec.duration_s / 2 else 1.0)
        cv2.LUT(frame, lighting_lut(gain * (1 + light[0]) * (1 + light[1:4]), 1.0 + light[4]), dst=frame)
        add_sensor_noise(frame, self.noise_sigma, rng)
        return frame


def render_session_frames(
    spec: SessionSpec, sources: Sequence[FaceSource], *, upright: bool = False
) -> Iterator[np.ndarray]:
    """Yield the session's frames one at a time, RGB uint8.

    Frames come as stored in the file (turned by ``-spec.rotation``, so that a player
    applying the display rotation shows them upright), or as displayed with ``upright=True``.
    """
    scene = _Scene(spec, sources)
    turns = 0 if upright else (-spec.rotation // 90) % 4
    for i in range(spec.n_frames):
        frame = scene.frame(i)
        yield np.ascontiguousarray(np.rot90(frame, turns)) if turns else frame


# --------------------------------------------------------------------------- random specs


def _blink_schedule(rng: np.random.Generator, t0: float, t1: float) -> list[tuple[float, float]]:
    """0-3 blinks of 130-300 ms, at least 0.5 s apart, inside [t0 + 0.15, t1 - 0.35]."""
    n = int(rng.choice(4, p=[0.15, 0.45, 0.3, 0.1]))
    lo, hi = t0 + 0.15, t1 - 0.35
    blinks: list[tuple[float, float]] = []
    if hi <= lo:
        return blinks
    for _ in range(10 * n):  # rejection sampling; fewer blinks where they do not fit
        start = float(rng.uniform(lo, hi))
        if len(blinks) < n and all(abs(start - s) >= 0.5 for s, _ in blinks):
            blinks.append((round(start, 3), round(float(rng.uniform(0.13, 0.3)), 3)))
    return sorted(blinks)


def _occluded_regions(rng: np.random.Generator) -> tuple[str, ...]:
    pairs = [("left_eye", "right_eye"), ("nose", "mouth")]
    if rng.random() < 0.25:
        return pairs[rng.integers(2)]
    return (REGIONS[rng.integers(len(REGIONS))],)


def random_spec(
    session_id: str,
    kind: str,
    subjects: Sequence[str],
    rng: np.random.Generator,
    *,
    duration_s: float = 3.0,
    fps: float = 15.0,
    size: tuple[int, int] = (640, 480),
    rotated: bool = False,
) -> SessionSpec:
    """A random session of ``kind``; ``subjects`` lists enough candidates (primary first).

    With ``rotated`` the displayed frame is ``size`` turned to portrait/landscape and the
    file stores it sideways with a display rotation, as phones do.
    """
    seed = int(rng.integers(2**31))
    n = {"no_face": 0, "swap": 2, "multi_face": int(rng.integers(2, 4))}.get(kind, 1)
    chosen = tuple(subjects[:n])
    swap_at = round(float(rng.uniform(0.35, 0.65) * duration_s), 3) if kind == "swap" else None
    swap_to = str(rng.choice(FACE_TYPES, p=[0.5, 0.3, 0.2])) if kind == "swap" else "live"
    occluded = _occluded_regions(rng) if kind == "occluded" else ()
    blinks: list[tuple[float, float]] = []
    eyes_visible = not {"left_eye", "right_eye"} <= set(occluded)
    if kind in ("live", "occluded", "multi_face") and eyes_visible:
        blinks = _blink_schedule(rng, 0.0, duration_s)
    elif kind == "swap":
        assert swap_at is not None  # set above for a swap
        blinks = _blink_schedule(rng, 0.0, swap_at)
        if swap_to == "live":
            blinks += _blink_schedule(rng, swap_at, duration_s)
    rotation = int(rng.choice([-90, 90], p=[0.7, 0.3])) if rotated else 0
    if rotated:
        size = (size[1], size[0])
    return SessionSpec(
        session_id=session_id,
        kind=kind,
        subjects=chosen,
        duration_s=duration_s,
        fps=fps,
        size=size,
        swap_at_s=swap_at,
        swap_to=swap_to,
        occluded_regions=occluded,
        blinks=tuple(blinks),
        rotation=rotation,
        seed=seed,
    )


class _SubjectCycler:
    """Hands out subjects evenly (a fresh shuffle each round), with partners from the same split."""

    def __init__(self, sources: Sequence[FaceSource], seed: int, rng: np.random.Generator):
        if not sources:
            raise ValueError("no face sources")
        self.rng = rng
        self.seed = seed
        self.ids = [s.subject_id for s in sources]
        self.by_split: dict[str, list[str]] = {}
        for sid in self.ids:
            self.by_split.setdefault(split_for_subject(sid, seed), []).append(sid)
        self.queue: list[str] = []

    def take(self, n_partners: int = 2) -> list[str]:
        """A primary subject followed by up to ``n_partners`` others of its split (never itself)."""
        if not self.queue:
            self.queue = list(self.rng.permutation(self.ids))
        primary = self.queue.pop()
        others = [s for s in self.by_split[split_for_subject(primary, self.seed)] if s != primary]
        if len(others) < n_partners:  # a tiny split: borrow partners from anywhere
            others += [s for s in self.ids if s != primary and s not in others]
        picks: np.ndarray | list[int] = (
            self.rng.choice(len(others), size=min(n_partners, len(others)), replace=False) if others else []
        )
        return [primary] + [others[i] for i in picks]


# --------------------------------------------------------------------------- manifests


def _manifest_row(
    spec: SessionSpec | None, *, session_id: str, uri: str, split: str | None, kind: str | None = None
) -> dict:
    """One manifest row; ``spec`` None describes a broken file."""
    if spec is None:
        return {
            "session_id": session_id, "uri": uri, "label": None, "attack_type": "none", "kind": kind or KIND_BROKEN,
            "subject": None, "subjects": [], "split": split, "swap_at_s": None, "occluded_regions": [], "n_faces": None,
            "blink_times_s": [], "rotation": 0, "duration_s": None, "fps": None, "width": None, "height": None,
        }  # fmt: skip
    return {
        "session_id": session_id,
        "uri": uri,
        "label": spec.label,
        "attack_type": spec.attack_type,
        "kind": spec.kind,
        "subject": spec.subjects[0] if spec.subjects else None,
        "subjects": list(spec.subjects),
        "split": split,
        "swap_at_s": spec.swap_at_s,
        "occluded_regions": list(spec.occluded_regions),
        "n_faces": spec.n_faces,
        "blink_times_s": list(spec.blink_times_s),
        "rotation": spec.rotation,
        "duration_s": spec.duration_s,
        "fps": spec.fps,
        "width": spec.size[0],
        "height": spec.size[1],
    }


def write_session_manifest(rows: list[dict], folder: Path) -> None:
    """Write ``manifest.csv`` (lists ';'-joined) and ``manifest.parquet`` (lists as lists) into ``folder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("session_id", pa.string()), ("uri", pa.string()), ("label", pa.string()), ("attack_type", pa.string()),
            ("kind", pa.string()), ("subject", pa.string()), ("subjects", pa.list_(pa.string())),
            ("split", pa.string()), ("swap_at_s", pa.float64()), ("occluded_regions", pa.list_(pa.string())),
            ("n_faces", pa.int32()), ("blink_times_s", pa.list_(pa.float64())), ("rotation", pa.int32()),
            ("duration_s", pa.float64()), ("fps", pa.float64()), ("width", pa.int32()), ("height", pa.int32()),
        ]
    )  # fmt: skip
    assert tuple(schema.names) == MANIFEST_COLUMNS
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "manifest.parquet")
    flat = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    for col in ("subjects", "occluded_regions"):
        flat[col] = flat[col].map(";".join)
    flat["blink_times_s"] = flat["blink_times_s"].map(lambda ts: ";".join(f"{t:g}" for t in ts))
    for col in ("n_faces", "rotation", "width", "height"):
        flat[col] = flat[col].astype("Int64")
    flat.to_csv(folder / "manifest.csv", index=False)


# --------------------------------------------------------------------------- data sets


def make_image_dataset(
    out_dir: Path,
    sources: Sequence[FaceSource],
    *,
    images_per_class: int,
    seed: int,
    size: tuple[int, int] = (640, 480),
) -> list[dict]:
    """Whole-scene JPEG images (not face crops) for the classifier: ``images_per_class`` live
    and as many spoof (half print, half replay).

    Files go to ``out_dir/images/{live,spoof/print,spoof/replay}/`` named ``<subject>_...``;
    ``out_dir/images/manifest.csv`` lists path (relative to it), subject, label, attack_type
    and split. About one live image in six has an occluder (hand, mask, card...) so that
    hands and straight edges near a face are not spoof cues by themselves.
    """
    root = Path(out_dir) / "images"
    folders = {"live": root / "live", "print": root / "spoof" / "print", "replay": root / "spoof" / "replay"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 1])
    cycler = _SubjectCycler(sources, seed, rng)
    n_print = (images_per_class + 1) // 2
    plan = ["live"] * images_per_class + ["print"] * n_print + ["replay"] * (images_per_class - n_print)
    rows = []
    for i, face_type in enumerate(plan):
        subject = cycler.take(0)[0]
        kind = "occluded" if face_type == "live" and rng.random() < 0.17 else face_type
        spec = random_spec(f"img{i:06d}", kind, [subject], rng, size=size, duration_s=2.0)
        frame = _Scene(spec, sources).frame(int(rng.integers(spec.n_frames)))
        quality = int(rng.integers(80, 97))
        path = folders[face_type] / f"{subject}_{face_type}_{i:06d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        rows.append(
            {
                "path": path.relative_to(root).as_posix(),
                "subject": subject,
                "label": "live" if face_type == "live" else "spoof",
                "attack_type": "none" if face_type == "live" else face_type,
                "split": split_for_subject(subject, seed),
            }
        )
    pd.DataFrame(rows, columns=list(IMAGE_MANIFEST_COLUMNS)).to_csv(root / "manifest.csv", index=False)
    return rows


def make_session_dataset(
    out_dir: Path,
    sources: Sequence[FaceSource],
    *,
    n_sessions: int,
    seed: int,
    duration_s: float = 3.0,
    fps: float = 15,
    size: tuple[int, int] = (640, 480),
) -> list[dict]:
    """``n_sessions`` videos of a mix of :data:`KINDS` in ``out_dir/sessions/*.mp4``, with the
    ground truth in ``out_dir/sessions/manifest.csv`` and ``manifest.parquet`` (see
    :data:`MANIFEST_COLUMNS`; ``uri`` is relative to the manifest's folder). Returns the rows.
    """
    folder = Path(out_dir) / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 2])
    cycler = _SubjectCycler(sources, seed, rng)
    kinds = list(SESSION_KIND_WEIGHTS)
    weights = np.array(list(SESSION_KIND_WEIGHTS.values()))
    rows = []
    for i in range(n_sessions):
        kind = kinds[i] if i < len(kinds) else str(rng.choice(kinds, p=weights / weights.sum()))
        rotated = kind != "multi_face" and rng.random() < ROTATED_FRACTION
        subjects = cycler.take(2)
        spec = random_spec(
            f"s{i:05d}_{kind}", kind, subjects, rng, duration_s=duration_s, fps=fps, size=size, rotated=rotated
        )
        uri = f"{spec.session_id}.mp4"
        write_video(
            folder / uri,
            render_session_frames(spec, sources),
            fps=fps,
            rotation=spec.rotation,
            crf=int(rng.integers(18, 28)),
        )
        split = split_for_subject(subjects[0], seed)
        rows.append(_manifest_row(spec, session_id=spec.session_id, uri=uri, split=split))
    write_session_manifest(rows, folder)
    return rows


DEMO_SUBJECTS = ("grace_hopper", "astronaut")


def make_demo_sessions(out_dir: Path, sources: Sequence[FaceSource], *, seed: int = 0) -> list[dict]:
    """A small fixed set of ~3 s, 15 fps sessions for the product demo, in ``out_dir`` with a
    manifest: live, print, replay, swap (live to live), occluded mouth, no face, two faces,
    a phone-style rotated live video, and two broken files (truncated mp4, text named .mp4).
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [s.subject_id for s in sources]
    preferred = [s for s in DEMO_SUBJECTS if s in ids] + [s for s in ids if s not in DEMO_SUBJECTS]
    if len(preferred) < 3:
        raise ValueError("the demo needs at least 3 face sources")
    a, b, c = preferred[:3]
    rng = np.random.default_rng([seed, 3])
    fixed = [
        ("demo_live", "live", [a], False),
        ("demo_print", "print", [b], False),
        ("demo_replay", "replay", [a], False),
        ("demo_swap", "swap", [a, c], False),
        ("demo_occluded_mouth", "occluded", [b], False),
        ("demo_no_face", "no_face", [], False),
        ("demo_two_faces", "multi_face", [a, b], False),
        ("demo_live_phone_rotated", "live", [c], True),
    ]
    rows = []
    for session_id, kind, subjects, rotated in fixed:
        spec = random_spec(session_id, kind, subjects, rng, rotated=rotated)
        if kind == "swap":
            spec = replace(spec, swap_to="live", swap_at_s=1.5, blinks=((0.6, 0.2), (2.2, 0.2)))
        elif kind == "occluded":
            spec = replace(spec, occluded_regions=("mouth",))
        elif kind == "multi_face":
            spec = replace(spec, subjects=(a, b))
        if rotated:
            spec = replace(spec, rotation=-90)
        uri = f"{session_id}.mp4"
        write_video(folder / uri, render_session_frames(spec, sources), fps=spec.fps, rotation=spec.rotation)
        split = split_for_subject(spec.subjects[0], seed) if spec.subjects else None
        rows.append(_manifest_row(spec, session_id=session_id, uri=uri, split=split))
    whole = (folder / "demo_live.mp4").read_bytes()
    (folder / "demo_broken_truncated.mp4").write_bytes(whole[: len(whole) // 3])
    (folder / "demo_broken_not_video.mp4").write_text("this is not a video\n")
    for session_id in ("demo_broken_truncated", "demo_broken_not_video"):
        rows.append(_manifest_row(None, session_id=session_id, uri=f"{session_id}.mp4", split=None))
    write_session_manifest(rows, folder)
    return rows


def run_synth(out_dir: Path, *, sessions: int, images_per_class: int, seed: int, faces_dir: Path | None) -> dict:
    """Make the image data set and the session data set under ``out_dir``; return counts."""
    out_dir = Path(out_dir)
    sources = load_face_sources(faces_dir)
    images = make_image_dataset(out_dir, sources, images_per_class=images_per_class, seed=seed)
    session_rows = make_session_dataset(out_dir, sources, n_sessions=sessions, seed=seed)
    splits = Counter(split_for_subject(s.subject_id, seed) for s in sources)
    return {
        "face_sources": len(sources),
        "subjects_per_split": dict(splits),
        "images": len(images),
        "images_per_attack": dict(Counter(r["attack_type"] for r in images)),
        "images_per_split": dict(Counter(r["split"] for r in images)),
        "sessions": len(session_rows),
        "sessions_per_kind": dict(Counter(r["kind"] for r in session_rows)),
        "sessions_per_split": dict(Counter(r["split"] for r in session_rows)),
        "out_dir": str(out_dir),
    }
