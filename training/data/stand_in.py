"""A stand-in customer archive of KYC selfie sessions, built from the real material in ``../shared/real``.

The training loop (scan, analysts' verdicts, mine, train, promote) runs on a customer's
archive, which is not here. This builds one of the same shape from real, licensed footage,
so that the loop can be run end to end:

- **real clips**: each clip of ``videos/live/`` cut into consecutive segments of
  ``--segment-s`` seconds (at most ``--max-segments`` per clip, spread over it; a clip shorter
  than one segment is one session), re-encoded; labelled as ``SOURCES.csv`` says (all live);
- **real photos**: every photograph of ``images/`` (live press photos and the two real attack
  photos, a print and a tablet replay), copied as it is: a photo is a one-frame session;
- **rendered sessions**: ``--rendered`` sessions of 2.5 s at 15 fps drawn by
  :mod:`training.data.synth` from one real live photo each (the persons taken in turn):
  about 2/3 print or replay attacks and 1/3 live faces, so that being rendered is not by
  itself the attack cue.

``videos/mixed/`` and ``videos/short_hamilton_clip.mp4`` are left out: they are held out for
other checks. Written to ``--out`` (which must be new or empty):

- ``sessions/``: the files to scan, named ``s0001.mp4``, ``s0002.jpg``... in a seeded order,
  so that neither name nor order tells what a session is; a scan of this folder gives each
  its name without extension as session id (``--set 'input.extensions=[mp4, jpg, jpeg, png]'``
  lets the scan read the photos);
- ``truth.csv``: ``session_id, label (live|spoof), attack (none|print|replay), person,
  origin``; ``person`` names the real person shown, one id for all their sessions (their
  clips, their photos and what was rendered from those), so that data can be split by person;
- ``verdicts.csv``: the analysts' verdicts for ``liveness verdicts add``: the true label of
  every session of a seeded ``--verdict-share`` of the persons, none for the others (the
  teacher labels those);
- ``faces/``: the live photos upright (their EXIF rotation applied): the renderer's faces.

Videos are streamed (decoded, cut and encoded one frame at a time) and rendered one frame at
a time. Everything is a pure function of ``--seed``, but for the bytes of the videos: the
multithreaded libx264 encoder of :func:`~training.data.video_writer.write_video` compresses
the same frames a little differently from run to run.

    uv run python -m training.data.stand_in --real ../shared/real --out data/stand_in [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import math
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, ImageOps

from pipeline.errors import DecodeError, InputError
from pipeline.video.decode import SampledFrame, VideoReader
from training.data.face_sources import FaceSource, load_face_sources
from training.data.preprocess import write_csv
from training.data.real_data import REAL, SPLITS, clip_sources, clip_split, real_labels
from training.data.synth import ROTATED_FRACTION, SessionSpec, random_spec, render_session_frames
from training.data.video_writer import write_video

TRUTH_COLUMNS = ("session_id", "label", "attack", "person", "origin")
VERDICT_COLUMNS = ("session_id", "verdict", "attack", "note")
RENDERED_S = 2.5
RENDERED_FPS = 15.0
RENDERED_LIVE_SHARE = 1 / 3
CRF_RANGE = (18, 28)  # x264 quality of every written video, drawn per session (as liveness synth does)
EVERY_FRAME_FPS = 1000.0  # a sampling rate above any clip's frame rate: the reader keeps every frame
EXIF_ORIENTATION = 0x0112

# Photographs of one person that ``real_labels`` gives different subjects: its deepface
# subjects come from master.csv's same-person pairs, which leave most photographs unpaired
# (seven of Katy Perry's, for one, are seven subjects there). Read off the photographs and
# checked with the identity embedding (models/identity): every photo of a person so joined
# lies within dlib's 0.6 of another photo of that person (tests/training/data/test_stand_in.py).
# A photo of several people joins the group of each person in it: ``couple`` and
# ``selfie-many-people`` show img1's person (and a man seen nowhere else), ``two_people``
# Obama and Biden. The three Silent-Face photos show one woman (live, a print of her photo,
# a tablet showing her).
SAME_PERSON: tuple[tuple[str, ...], ...] = (
    ("deepface/img1", "deepface/couple", "deepface/selfie-many-people"),
    ("deepface/img12", "deepface/img53", "deepface/img54", "deepface/img55", "deepface/img56"),
    ("deepface/img15", "deepface/img57", "deepface/img58"),
    ("deepface/img17", "deepface/img59", "deepface/img61", "deepface/img62"),
    ("deepface/img19", "deepface/img67"),
    ("deepface/img9", "deepface/img47", "deepface/img48", "deepface/img49", "deepface/img50", "deepface/img51"),
    ("deepface/img26", "deepface/img27", "deepface/img28") + tuple(f"deepface/img{i}" for i in range(42, 47)),
    tuple(f"deepface/img{i}" for i in range(29, 34)),
    tuple(f"deepface/img{i}" for i in range(34, 38)),
    tuple(f"deepface/img{i}" for i in range(38, 42)),
    ("face_recognition/obama", "face_recognition/two_people", "face_recognition/biden"),
    ("silent-face/image_T1", "silent-face/image_F1", "silent-face/image_F2"),
)


@dataclass(frozen=True)
class Options:
    """What to build (the command-line options)."""

    seed: int = 0
    segment_s: float = 3.0
    max_segments: int = 6
    rendered: int = 120
    verdict_share: float = 0.5
    hold_out: str | None = None  # a split of training.data.real_data left out: its people and clips


@dataclass(frozen=True)
class ClipCut:
    """A segment ``[start_s, end_s)`` of a real clip."""

    kind: ClassVar[str] = "real clip"
    suffix: ClassVar[str] = ".mp4"
    clip: Path
    start_s: float
    end_s: float
    fps: float
    label: str
    attack: str
    person: str
    crf: int

    @property
    def origin(self) -> str:
        return f"real clip {self.clip.name} {self.start_s:.1f}-{self.end_s:.1f} s"


@dataclass(frozen=True)
class Photo:
    """A real photograph, a session as it is."""

    kind: ClassVar[str] = "real photo"
    path: Path
    label: str
    attack: str
    person: str

    @property
    def key(self) -> str:
        """``folder/name`` under ``images/``."""
        return f"{self.path.parent.name}/{self.path.name}"

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()

    @property
    def origin(self) -> str:
        return f"real photo {self.key}"


@dataclass(frozen=True)
class Render:
    """A session rendered from the face of one real live photo."""

    kind: ClassVar[str] = "rendered"
    suffix: ClassVar[str] = ".mp4"
    spec: SessionSpec
    face: Photo
    crf: int

    @property
    def label(self) -> str:
        return "live" if self.spec.label == "live" else "spoof"

    @property
    def attack(self) -> str:
        return self.spec.attack_type

    @property
    def person(self) -> str:
        return self.face.person

    @property
    def origin(self) -> str:
        return f"rendered {self.spec.kind} of {self.face.key}"


Material = ClipCut | Photo | Render


@dataclass(frozen=True)
class Truth:
    """One row of ``truth.csv``."""

    session_id: str
    label: str
    attack: str
    person: str
    origin: str


@dataclass(frozen=True)
class VerdictRow:
    """One row of ``verdicts.csv`` (the columns ``liveness verdicts add`` reads)."""

    session_id: str
    verdict: str
    attack: str
    note: str


@dataclass
class Summary:
    """What was built."""

    out: Path
    truth: list[Truth]
    kinds: dict[str, str]  # session id -> the kind of material (real clip, real photo, rendered)
    verdicts: list[VerdictRow]
    skipped: list[str] = field(default_factory=list)
    faces_unused: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def text(self) -> str:
        """A few lines for the terminal."""
        persons = {t.person for t in self.truth}
        with_verdict = {v.session_id for v in self.verdicts}
        judged = {t.person for t in self.truth if t.session_id in with_verdict}
        by_kind = Counter(self.kinds[t.session_id] for t in self.truth)
        by_attack = Counter(f"{t.label}/{t.attack}" for t in self.truth)
        by_kind_label = Counter(f"{self.kinds[t.session_id]} {t.label}/{t.attack}" for t in self.truth)
        lines = [
            f"stand-in archive {self.out}: {len(self.truth)} sessions of {len(persons)} persons"
            f" in {self.seconds:.0f} s",
            "  by origin: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())),
            "  by label/attack: " + ", ".join(f"{k} {n}" for k, n in sorted(by_attack.items())),
            "  by origin and label: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind_label.items())),
            f"  verdicts: {len(self.verdicts)} sessions of {len(judged)} persons"
            f" ({len(self.truth) - len(self.verdicts)} sessions of {len(persons) - len(judged)} persons left to"
            " the teacher)",
        ]
        if self.faces_unused:
            lines.append(f"  photos the renderer could not use (no face mesh): {', '.join(self.faces_unused)}")
        lines += [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


def _photo_key(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def real_photos(real: Path) -> list[Photo]:
    """Every photograph of ``real/images`` (live and attack), its person from
    ``real_labels``' subject joined by :data:`SAME_PERSON`."""
    rows = real_labels(real)
    subject_of = {_photo_key(Path(r["path"])): r["subject"] for r in rows}
    parent: dict[str, str] = {}

    def root(subject: str) -> str:
        while parent.get(subject, subject) != subject:
            subject = parent[subject]
        return subject

    for group in SAME_PERSON:
        subjects = [subject_of[key] for key in group if key in subject_of]
        for subject in subjects[1:]:
            first, other = root(subjects[0]), root(subject)
            if first != other:
                parent[other] = first
    return [Photo(Path(r["path"]), r["label"], r["attack"] or "none", root(r["subject"])) for r in rows]


def cut_times(duration_s: float, segment_s: float, max_segments: int) -> list[tuple[float, float]]:
    """Up to ``max_segments`` of the consecutive ``segment_s`` segments of a clip, spread over it;
    the whole clip when it is shorter than one."""
    fit = math.floor(duration_s / segment_s + 1e-6)
    if fit == 0:
        return [(0.0, duration_s)]
    chosen = sorted({int(round(i)) for i in np.linspace(0, fit - 1, min(fit, max_segments))})
    return [(i * segment_s, (i + 1) * segment_s) for i in chosen]


def plan_clip_cuts(real: Path, options: Options, rng: np.random.Generator) -> list[ClipCut]:
    """The segments of every clip of ``real/videos/live``; the person of a clip is who filmed it
    (the source repository's owner: one man is in the four clips of one owner), as
    :func:`training.data.real_data.clip_split` splits them."""
    videos = real / "videos"
    sources = clip_sources(videos)
    cuts = []
    for clip in sorted((videos / "live").glob("*.mp4")):
        row = sources.get("live/" + clip.stem)
        if row is None:
            raise InputError(f"{clip.name} is not in {videos / 'live' / 'SOURCES.csv'}: its label is unknown")
        with VideoReader(clip) as reader:
            duration = reader.header.duration_s or float(row["duration_s"])
            fps = reader.header.average_fps or 25.0
        person = "clips-" + row["source_repo"].split("/")[0]
        for start, end in cut_times(duration, options.segment_s, options.max_segments):
            crf = int(rng.integers(*CRF_RANGE))
            cuts.append(ClipCut(clip, start, end, fps, row["label"], row["attack_type"] or "none", person, crf))
    return cuts


def without_split(
    real: Path, photos: list[Photo], cuts: list[ClipCut], split: str
) -> tuple[list[Photo], list[ClipCut]]:
    """The photos and clip segments without those :func:`training.data.real_data.real_labels`
    and :func:`clip_split` put in ``split``: material held out from the archive, and so from
    anything trained on it. (Photos are held out one by one, as ``real_labels`` splits them: its
    subjects do not join every photo of one person, so a person may be on both sides; the clips
    are held out by who filmed them, and no person is.)"""
    in_split = {_photo_key(Path(r["path"])) for r in real_labels(real) if r["split"] == split}
    sources = clip_sources(real / "videos")
    kept_cuts = [c for c in cuts if clip_split(sources["live/" + c.clip.stem]) != split]
    return [p for p in photos if _photo_key(p.path) not in in_split], kept_cuts


def write_faces(photos: Sequence[Photo], folder: Path) -> dict[str, Photo]:
    """Write the live photos upright into ``folder`` (the faces ``load_face_sources`` reads),
    named ``<source folder>_<name>``; returns the photo of each file name."""
    folder.mkdir(parents=True)
    written = {}
    for photo in photos:
        if photo.label != "live":
            continue
        target = folder / f"{photo.path.parent.name}_{photo.path.name}"
        with Image.open(photo.path) as image:
            turned = image.getexif().get(EXIF_ORIENTATION, 1) != 1
            if turned:
                ImageOps.exif_transpose(image).save(target, quality=95)
        if not turned:
            shutil.copyfile(photo.path, target)
        written[target.name] = photo
    return written


def plan_renders(
    sources: Sequence[FaceSource], photo_of: dict[str, Photo], ids: Sequence[str], rng: np.random.Generator
) -> list[Render]:
    """One rendered session per id: print, replay (about 2/3) or live, each of one face; the
    persons in turn (a fresh seeded order), and each person's photos in turn."""
    by_person: dict[str, list[FaceSource]] = {}
    for source in sources:
        by_person.setdefault(photo_of[Path(source.name).name].person, []).append(source)
    persons = [str(p) for p in rng.permutation(sorted(by_person))]
    for person in persons:
        by_person[person] = [by_person[person][i] for i in rng.permutation(len(by_person[person]))]
    n_live = round(len(ids) * RENDERED_LIVE_SHARE)
    n_print = (len(ids) - n_live + 1) // 2
    plan = ["live"] * n_live + ["print"] * n_print + ["replay"] * (len(ids) - n_live - n_print)
    kinds = [plan[i] for i in rng.permutation(len(plan))]
    renders = []
    for i, (session_id, kind) in enumerate(zip(ids, kinds, strict=True)):
        faces = by_person[persons[i % len(persons)]]
        source = faces[(i // len(persons)) % len(faces)]
        rotated = bool(rng.random() < ROTATED_FRACTION)
        spec = random_spec(
            session_id, kind, [source.subject_id], rng, duration_s=RENDERED_S, fps=RENDERED_FPS, rotated=rotated
        )
        renders.append(Render(spec, photo_of[Path(source.name).name], int(rng.integers(*CRF_RANGE))))
    return renders


class _Frames:
    """A clip's frames in order, handed out by time range (ranges in increasing order)."""

    def __init__(self, frames: Iterator[SampledFrame]) -> None:
        self._frames = frames
        self._next = next(frames, None)

    def between(self, start_s: float, end_s: float) -> Iterator[SampledFrame]:
        while self._next is not None and self._next.pts_s < end_s:
            frame, self._next = self._next, next(self._frames, None)
            if frame.pts_s >= start_s:
                yield frame


def _even(image: np.ndarray) -> np.ndarray:
    """``image`` without its last row or column where that side is odd (the encoder needs even sides)."""
    h, w = image.shape[:2]
    return image[: h - h % 2, : w - w % 2]


def write_clip_cuts(clip: Path, cuts: Sequence[tuple[Path, ClipCut]]) -> list[str]:
    """Decode ``clip`` once (upright, streamed) and encode each cut into its file; returns what
    was skipped and why (a cut without frames, a clip that does not decode)."""
    skipped = []
    try:
        with VideoReader(clip, sample_fps=EVERY_FRAME_FPS, max_frames=2**31) as reader:
            frames = _Frames(reader.sampled())
            for target, cut in sorted(cuts, key=lambda c: c[1].start_s):
                images, times = itertools.tee(frames.between(cut.start_s, cut.end_s))
                try:
                    write_video(
                        target,
                        (_even(f.image) for f in images),
                        fps=cut.fps,
                        times_s=(f.pts_s - cut.start_s for f in times),
                        crf=cut.crf,
                    )
                except ValueError as exc:  # no frame in the range: the clip is shorter than its header says
                    target.unlink(missing_ok=True)
                    skipped.append(f"{cut.origin}: {exc}")
    except DecodeError as exc:
        for target, cut in cuts:
            target.unlink(missing_ok=True)
            skipped.append(f"{cut.origin}: {exc}")
    return skipped


def choose_verdicts(truth: Sequence[Truth], share: float, rng: np.random.Generator) -> list[VerdictRow]:
    """The true verdict of every session of a seeded ``share`` of the persons."""
    persons = sorted({t.person for t in truth})
    chosen = {persons[i] for i in rng.permutation(len(persons))[: round(share * len(persons))]}
    return [
        VerdictRow(t.session_id, t.label, t.attack if t.label == "spoof" else "", f"stand-in truth: {t.origin}")
        for t in truth
        if t.person in chosen
    ]


def build(real: Path, out: Path, options: Options) -> Summary:
    """Build the stand-in archive under ``out`` (see the module's description)."""
    started = time.monotonic()
    real = real.resolve()
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty: the stand-in archive is written to a new or empty folder")
    photos = real_photos(real)
    cuts = plan_clip_cuts(real, options, np.random.default_rng([options.seed, 1]))
    if options.hold_out is not None:
        photos, cuts = without_split(real, photos, cuts, options.hold_out)
    sessions = out / "sessions"
    sessions.mkdir(parents=True)
    photo_of = write_faces(photos, out / "faces")
    usable = [s for s in load_face_sources(out / "faces") if Path(s.name).parent == (out / "faces").resolve()]
    unused = sorted(set(photo_of) - {Path(s.name).name for s in usable})
    if options.rendered and not usable:
        raise InputError("no real photo has a face the renderer can use")
    total = len(cuts) + len(photos) + options.rendered
    width = max(4, len(str(total)))
    order = np.random.default_rng([options.seed, 2]).permutation(total)
    ids = [f"s{int(n) + 1:0{width}d}" for n in order]
    renders = plan_renders(usable, photo_of, ids[len(cuts) + len(photos) :], np.random.default_rng([options.seed, 3]))
    planned: list[tuple[str, Material]] = list(zip(ids, [*cuts, *photos, *renders], strict=True))
    target = {sid: sessions / f"{sid}{item.suffix}" for sid, item in planned}

    skipped = []
    by_clip: dict[Path, list[tuple[Path, ClipCut]]] = {}
    for sid, item in planned:
        if isinstance(item, ClipCut):
            by_clip.setdefault(item.clip, []).append((target[sid], item))
    for clip, clip_cuts in by_clip.items():
        skipped += write_clip_cuts(clip, clip_cuts)
    for sid, item in planned:
        if isinstance(item, Photo):
            shutil.copyfile(item.path, target[sid])
        elif isinstance(item, Render):
            frames = render_session_frames(item.spec, usable)
            write_video(target[sid], frames, fps=item.spec.fps, rotation=item.spec.rotation, crf=item.crf)

    truth = sorted(
        (
            Truth(sid, item.label, item.attack, item.person, item.origin)
            for sid, item in planned
            if target[sid].exists()
        ),
        key=lambda t: t.session_id,
    )
    verdicts = choose_verdicts(truth, options.verdict_share, np.random.default_rng([options.seed, 4]))
    write_csv(out / "truth.csv", TRUTH_COLUMNS, [asdict(t) for t in truth])
    write_csv(out / "verdicts.csv", VERDICT_COLUMNS, [asdict(v) for v in verdicts])
    kinds = {sid: item.kind for sid, item in planned}
    return Summary(out, truth, kinds, verdicts, skipped, unused, time.monotonic() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, default=REAL, help="the shared/real folder")
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    parser.add_argument("--seed", type=int, default=Options.seed)
    parser.add_argument("--segment-s", type=float, default=Options.segment_s, help="seconds per real clip segment")
    parser.add_argument("--max-segments", type=int, default=Options.max_segments, help="segments per real clip")
    parser.add_argument("--rendered", type=int, default=Options.rendered, help="rendered sessions")
    parser.add_argument(
        "--verdict-share", type=float, default=Options.verdict_share, help="share of the persons with verdicts"
    )
    parser.add_argument(
        "--hold-out", choices=SPLITS, help="leave out the people and clips of this split of training.data.real_data"
    )
    args = parser.parse_args(argv)
    if args.segment_s <= 0 or args.max_segments < 1 or args.rendered < 0 or not 0 <= args.verdict_share <= 1:
        parser.error("--segment-s must be > 0, --max-segments >= 1, --rendered >= 0, --verdict-share in [0, 1]")
    options = Options(args.seed, args.segment_s, args.max_segments, args.rendered, args.verdict_share, args.hold_out)
    print(build(args.real, args.out, options).text())


if __name__ == "__main__":
    main()
