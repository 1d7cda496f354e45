"""The real material in ``../shared/real`` as a labelled image set, split by person.

Builds the ``LABELS.csv`` that ``liveness evaluate --images`` reads (``path``, ``label``
live|spoof, ``attack``, ``subject``, ``split``) from the folders the material comes in:

- ``images/silent-face/``: ``image_T1.jpg`` a live person, ``image_F1.jpg`` a printed
  photo, ``image_F2.jpg`` a tablet-screen replay (their names say which);
- ``images/deepface/``: press photographs of real people (live); ``master.csv``'s
  same-person pairs group them into subjects, ``img11_reflection.jpg`` is ``img11``'s person;
- ``images/face_recognition/``: photographs of real people (live), subject from the name.

Splits are by subject, so no person is on both sides: ``tune`` (thresholds may be chosen
there) and ``test`` (held out from every choice). Subjects go to a split by a hash of their
id. There are only two attack photos, so they are placed by hand, one on each side (the
print photo held out in ``test``, the replay in ``tune``): with one side empty of attacks
nothing about attacks could be chosen or checked.

    uv run python -m training.data.real_data --real ../shared/real --out data/real_labels.csv

With ``--media DIR --split tune`` it also copies that split's images into ``DIR/live/`` and
``DIR/spoof/`` for ``liveness scan`` (photos are one-frame sessions) and writes
``DIR/verdicts.csv``, their known labels as the verdicts ``liveness verdicts add`` reads.
``DIR/live/`` is then the face folder ``liveness synth --faces`` renders attacks from.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
from pathlib import Path

from pipeline.errors import InputError
from training.data.preprocess import IMAGE_EXTENSIONS, write_csv

REAL = Path(__file__).resolve().parents[3] / "shared" / "real"  # the real material, beside the project
COLUMNS = ("path", "label", "attack", "subject", "split")
SPLITS = ("tune", "test")
ATTACKS = {"image_F1.jpg": ("print", "test"), "image_F2.jpg": ("replay", "tune")}


def _split(subject: str) -> str:
    return SPLITS[int(hashlib.sha256(subject.encode()).hexdigest(), 16) % 2]


def clip_sources(videos: Path) -> dict[str, dict[str, str]]:
    """The rows of ``videos/live/SOURCES.csv`` (the real clips of live people) by session id,
    as a scan of ``videos`` names them (``live/<file stem>``)."""
    with open(videos / "live" / "SOURCES.csv", newline="") as f:
        return {"live/" + Path(row["file"]).stem: row for row in csv.DictReader(f)}


def clip_split(row: dict[str, str]) -> str:
    """``tune`` or ``test`` for a real clip (a row of SOURCES.csv), by who filmed it (the source
    repository's owner: one man is in four clips of one owner), so no person is on both sides."""
    return _split("clips-" + row["source_repo"].split("/")[0])


def _deepface_subjects(folder: Path) -> dict[str, str]:
    """Image name -> subject id: the connected groups of ``master.csv``'s same-person pairs."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    with open(folder / "master.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["Decision"].strip() == "Yes":
                parent[root(row["file_x"])] = root(row["file_y"])
    return {name: "deepface-" + Path(root(name)).stem for name in parent}


def real_labels(real: Path) -> list[dict[str, str]]:
    """One labelled row per image of the real material (paths absolute)."""
    images = real.resolve() / "images"
    if not images.is_dir():
        raise InputError(f"{images} not found: point --real at the shared/real folder")
    rows = []
    for path in sorted((images / "silent-face").glob("*.jpg")):
        attack, split = ATTACKS.get(path.name, ("", ""))
        subject = "silent-face-" + path.stem
        label = "spoof" if attack else "live"
        rows.append(
            {"path": str(path), "label": label, "attack": attack, "subject": subject, "split": split or _split(subject)}
        )
    deepface = images / "deepface"
    groups = _deepface_subjects(deepface)
    for path in sorted(p for p in deepface.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        name = path.name.replace("_reflection", "")
        subject = groups.get(name, "deepface-" + Path(name).stem)
        rows.append({"path": str(path), "label": "live", "attack": "", "subject": subject, "split": _split(subject)})
    for path in sorted(p for p in (images / "face_recognition").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        person = path.stem.split("_partial")[0].rstrip("0123456789")
        subject = "face_recognition-" + person
        rows.append({"path": str(path), "label": "live", "attack": "", "subject": subject, "split": _split(subject)})
    return rows


def write_labels(rows: list[dict[str, str]], out: Path) -> Path:
    """Write the labels CSV atomically."""
    return write_csv(out, COLUMNS, rows)


def write_media(rows: list[dict[str, str]], folder: Path, split: str) -> Path:
    """Copy the images of ``split`` to ``folder/live`` and ``folder/spoof`` (named after their
    source folder, so that names do not collide) and write their labels as ``verdicts.csv``;
    returns that file."""
    verdicts = []
    for row in rows:
        if row["split"] != split:
            continue
        source = Path(row["path"])
        name = f"{source.parent.name}_{source.name}"
        target = folder / row["label"] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        verdicts.append({"session_id": f"{row['label']}/{target.stem}", "verdict": row["label"],
                         "attack": row["attack"], "note": f"known label of {source.name} in shared/real"})  # fmt: skip
    return write_csv(folder / "verdicts.csv", ("session_id", "verdict", "attack", "note"), verdicts)


def link_clips(videos: Path, folder: Path, split: str) -> list[Path]:
    """Link the real clips of live people of ``split`` (:func:`clip_split`) into ``folder``,
    named ``<owner>_<file>`` so that preprocessing takes the filming owner as the subject."""
    folder.mkdir(parents=True, exist_ok=True)
    linked = []
    for _, row in sorted(clip_sources(videos).items()):
        if clip_split(row) != split:
            continue
        owner = row["source_repo"].split("/")[0].replace("_", "-")
        target = folder / f"{owner}_{Path(row['file']).name}"
        if not target.exists():
            target.symlink_to((videos / "live" / row["file"]).resolve())
        linked.append(target)
    return linked


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, default=REAL)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--media", type=Path, help="copy the images of --split here, with verdicts.csv")
    parser.add_argument("--split", choices=SPLITS, default="tune", help="with --media or --clips: which split")
    parser.add_argument("--clips", type=Path, help="link the real clips of live people of --split here")
    args = parser.parse_args(argv)
    rows = real_labels(args.real)
    write_labels(rows, args.out)
    if args.media:
        write_media(rows, args.media, args.split)
    if args.clips:
        linked = link_clips(args.real / "videos", args.clips, args.split)
        print(f"{args.split}: {len(linked)} clips of live people linked into {args.clips}")
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        print(f"{split}: {len(part)} images, {sum(r['label'] == 'spoof' for r in part)} attacks, "
              f"{len({r['subject'] for r in part})} subjects")  # fmt: skip


if __name__ == "__main__":
    main()
