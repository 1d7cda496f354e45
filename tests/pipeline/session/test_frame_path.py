"""One per-frame path: the benchmark and the evaluations see exactly the frames the scan sees."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.cli.bench.stages import stage_session
from pipeline.config import ScanConfig
from pipeline.scoring.model import DEFAULT_MODEL_DIR, read_card
from pipeline.session.analyse import analyse_session
from pipeline.session.frame_path import FramePath
from pipeline.video.decode import VideoReader
from pipeline.video.sources import Session
from tests.videos import write_rendered_session
from training.measure.eval_signals import session_frames


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, face_sources):
    return write_rendered_session(tmp_path_factory.mktemp("frame-path") / "swap.mp4", face_sources)


def _assert_same(a, b) -> None:
    for name in a.records.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a.records, name), getattr(b.records, name), err_msg=name)
    np.testing.assert_array_equal(a.crops, b.crops)
    assert a.verdicts == b.verdicts
    assert (a.identity is None) == (b.identity is None)
    if a.identity is not None and b.identity is not None:
        np.testing.assert_array_equal(a.identity.vector, b.identity.vector)


def test_benchmark_and_evaluation_frames_equal_the_scans(rendered):
    config, card = ScanConfig(), read_card(DEFAULT_MODEL_DIR)
    session = Session("swap", str(rendered))
    scan = analyse_session(
        session, config.decode, config.detect, config.signals, crop=card.crop_spec, identity=config.identity
    )
    assert scan.error is None and scan.n_crops >= 20
    assert scan.frames.verdicts.swap_detected  # the session is a real test of the signals, not an empty one
    assert scan.frames.identity is not None
    timed = FramePath(card.crop_spec, config.detect, config.signals, identity=config.identity, timed=True)
    bench, _, _ = stage_session(timed, session, config)
    _assert_same(scan.frames, bench)
    with VideoReader(rendered, sample_fps=config.decode.sample_fps, max_frames=config.decode.max_frames) as video:
        decoded = list(video.sampled())
    evaluation = session_frames(
        FramePath(card.crop_spec, config.detect, config.signals, identity=config.identity),
        [f.image for f in decoded],
        [f.pts_s for f in decoded],
    )
    _assert_same(scan.frames, evaluation)


def test_the_path_follows_the_main_face_and_forgets_it_between_sessions(rendered):
    config, card = ScanConfig(), read_card(DEFAULT_MODEL_DIR)
    path = FramePath(card.crop_spec, config.detect, config.signals)
    with VideoReader(rendered, sample_fps=config.decode.sample_fps) as video:
        frames = list(video.sampled())
    first = path.run(frames)
    second = path.run(frames)  # the same video again: nothing carried over from the first run
    _assert_same(first, second)
    assert len(first.crops) == int(first.records.has_face.sum())


def test_a_photo_is_a_one_frame_session_with_who_it_is_and_what_covers_it(real_material):
    """A still image scans as one frame: nothing happens over time (no blinks, swap or
    stillness), but its identity template and blocked regions are still computed."""
    config, card = ScanConfig(), read_card(DEFAULT_MODEL_DIR)
    photo = real_material / "images" / "deepface" / "img1.jpg"
    scan = analyse_session(
        Session("photo", str(photo)), config.decode, config.detect, config.signals, crop=card.crop_spec,
        identity=config.identity,
    )  # fmt: skip
    assert scan.error is None and scan.n_crops == 1
    verdicts = scan.frames.verdicts
    assert verdicts.blink_count is None and verdicts.swap_detected is None and verdicts.static is None
    assert verdicts.too_short  # so it is never decided live unseen (decision.too_short)
    assert verdicts.occluded_regions == ()  # a bare face: measured, and nothing blocked
    assert scan.frames.identity is not None and scan.frames.identity.frames == 1


def test_each_stage_runs_at_its_rate_and_densely_around_a_swap(rendered):
    """The scan's schedules: the face mesh on every sampled frame, detection and the scorers
    on fewer, and every face scored for scoring.dense_s after the cut; with every rate off,
    every stage runs on every frame and the session's verdicts are the same."""
    config, card = ScanConfig(), read_card(DEFAULT_MODEL_DIR)
    with VideoReader(rendered, sample_fps=config.decode.sample_fps) as video:
        frames = list(video.sampled())
    path = FramePath(card.crop_spec, config.detect, config.signals, identity=config.identity, scoring=config.scoring)
    paced = path.run(frames)
    counts, records = paced.counts, paced.records
    faces = int(records.has_face.sum())
    assert counts.frames == len(frames) and counts.meshes >= faces
    assert counts.detections < counts.frames and counts.scheduled < faces
    assert paced.verdicts.swap_detected
    swap_at = paced.verdicts.swap_at_s
    assert swap_at is not None
    face_times = records.face_pts_s
    after_cut = (face_times >= swap_at) & (face_times <= swap_at + config.scoring.dense_s)
    assert after_cut.any() and paced.scheduled[after_cut].all()  # no face of the cut's half second unscored
    every = config.model_copy(
        update={
            "detect": config.detect.model_copy(update={"recheck_hz": None}),
            "scoring": config.scoring.model_copy(update={"rate_hz": None}),
            "signals": config.signals.model_copy(
                update={"occlusion": config.signals.occlusion.model_copy(update={"rate_hz": None})}
            ),
        }
    )
    dense = FramePath(card.crop_spec, every.detect, every.signals, identity=every.identity, scoring=every.scoring)
    full = dense.run(frames)
    assert full.counts.detections == full.counts.frames and bool(full.scheduled.all())
    assert full.counts.occlusion >= int(full.records.has_face.sum()) - 1
    assert (full.verdicts.swap_detected, full.verdicts.blink_count) == (True, paced.verdicts.blink_count)
    assert abs((full.verdicts.swap_at_s or 0.0) - swap_at) <= 0.5


def test_a_person_far_behind_the_applicant_is_not_a_second_face(real_material):
    """Issue 26 item 2: a person in the background is not a second applicant. In the real
    Hamilton clip at 1.0 s a man fills the frame (169 px face) and someone stands in the dark
    far behind (56 px): one face counts, unless detect.min_face_share is lowered. The real
    clips of people side by side keep two (their second faces are 0.55 of the first and wider)."""
    from pipeline.config import DetectConfig, OcclusionSignalConfig, SignalsConfig

    with VideoReader(real_material / "videos" / "short_hamilton_clip.mp4", sample_fps=12, max_frames=200) as reader:
        frame = next(f for f in reader.sampled() if f.pts_s >= 1.0)

    def faces(share: float) -> int:
        path = FramePath(
            read_card(DEFAULT_MODEL_DIR).crop_spec, DetectConfig(min_face_share=share),
            SignalsConfig(occlusion=OcclusionSignalConfig(enabled=False)),
        )  # fmt: skip
        return int(path.run([frame]).records.n_faces[0])

    assert faces(0.4) == 1 and faces(0.0) == 2


@pytest.fixture(scope="module")
def two_people(tmp_path_factory, face_sources):
    from training.data.synth import SessionSpec, render_session_frames
    from training.data.video_writer import write_video

    spec = SessionSpec("two", "multi_face", ("grace_hopper", "astronaut"), duration_s=2.5, fps=12.0, seed=5)
    path = tmp_path_factory.mktemp("two-people") / "two.mp4"
    return write_video(path, render_session_frames(spec, face_sources, upright=True), fps=12.0)


def test_every_face_beside_the_main_one_is_cut_for_every_scorer_and_scored_with_the_first_round(two_people):
    from pipeline.scoring.registry import crop_specs, resolve_scorers

    specs = crop_specs(resolve_scorers({"b2": None, "reference": None}))
    config = ScanConfig()

    def analyse(detect):
        return analyse_session(
            Session("two", str(two_people)), config.decode, detect, config.signals, crop=specs[0],
            extra_crops=specs[1:], scoring=config.scoring,
        ).frames  # fmt: skip

    frames = analyse(config.detect)
    rows = frames.other_rows
    assert len(rows) >= 4 and frames.counts.others == len(rows)
    assert (frames.records.n_faces[rows] == 2).all()  # cut on frames where both people are in view
    times = frames.records.pts_s[np.unique(rows)]
    assert np.diff(times).min() >= 1 / config.scoring.other_rate_hz - 1e-3  # at most other_rate_hz frames a second
    assert {key: len(c) for key, c in frames.other_crops.items()} == {spec.key: len(rows) for spec in specs}
    for spec in specs:
        assert frames.other_crops[spec.key].shape[1:] == (spec.size, spec.size, 3)
    # the other face is another person: its crop differs from the main face's on the same frame
    main_at = np.cumsum(frames.records.has_face) - 1
    main = frames.crops[main_at[rows[0]]].astype(np.float32)
    assert np.abs(frames.other_face_crops[0].astype(np.float32) - main).mean() > 10
    first = frames.first_round_crops()
    n = int(frames.scheduled.sum())
    assert {key: len(c) for key, c in first.items()} == {spec.key: n + len(rows) for spec in specs}
    scores = {"b2": np.arange(n + len(rows), dtype=np.float32)}
    scheduled, others = frames.split_first_round(scores)
    assert scheduled["b2"].tolist() == list(range(n)) and others["b2"].tolist() == list(range(n, n + len(rows)))
    np.testing.assert_array_equal(first[specs[0].key][n:], frames.other_crops[specs[0].key])

    alone = analyse(config.detect.model_copy(update={"max_others": 0}))
    assert len(alone.other_rows) == 0 and alone.first_round_crops().keys() == first.keys()
    tiny = analyse(config.detect.model_copy(update={"other_min_px": 10_000}))
    assert len(tiny.other_rows) == 0
