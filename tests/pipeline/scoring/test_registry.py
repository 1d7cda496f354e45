"""The scorer registry: named scorers with their cards, loaded together; decisions only from
scorers measured on real data."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_scan_config
from pipeline.errors import ModelError
from pipeline.faces.crop import CropSpec
from pipeline.scoring.onnx_model import DEFAULT_REFERENCE_DIR
from pipeline.scoring.registry import Scorers, crop_specs, resolve_scorers
from pipeline.session.aggregate import decide_scores, near_threshold, pool_scores, refinement_crops, spread_scores
from tests.videos import face_scene


def test_the_shipped_scorers_and_their_crops():
    b2, reference = resolve_scorers({"b2": None, "reference": None})
    assert b2.name == "b2" and b2.measured_on_real_data  # measured on held-out real people (its card)
    assert reference.measured_on_real_data and reference.card.real_evaluation is not None
    assert crop_specs([b2, reference]) == (
        CropSpec(128, 1.6, "pad"), CropSpec(80, 2.7, "shift"), CropSpec(80, 4.0, "shift"))  # fmt: skip


def _copy_reference(tmp_path: Path) -> Path:
    model = tmp_path / "reference"
    shutil.copytree(DEFAULT_REFERENCE_DIR, model)
    return model


def test_a_missing_or_corrupt_reference_file_is_a_model_error_naming_it(tmp_path: Path):
    model = _copy_reference(tmp_path)
    (model / "MiniFASNetV1SE_4.0_80x80.onnx").unlink()
    with pytest.raises(ModelError, match="MiniFASNetV1SE_4.0_80x80.onnx .*is missing"):
        resolve_scorers({"reference": model})
    (model / "MiniFASNetV1SE_4.0_80x80.onnx").write_bytes(b"garbage")
    [entry] = resolve_scorers({"reference": model})
    with pytest.raises(ModelError, match="MiniFASNetV1SE_4.0_80x80.onnx is not a loadable ONNX model"):
        Scorers([entry])
    (model / "model.json").write_text(json.dumps({"kind": "tflite"}))
    with pytest.raises(ModelError, match="unknown kind 'tflite'; allowed: timm, onnx"):
        resolve_scorers({"reference": model})
    with pytest.raises(ModelError, match="needs a model directory"):
        resolve_scorers({"mine": None})


def test_a_users_own_onnx_scorer_joins_by_its_card(tmp_path: Path):
    """A third scorer is a folder with ONNX files and a card: here one of the reference's
    networks alone, given a different crop and no real-data measurement."""
    model = _copy_reference(tmp_path)
    card = json.loads((model / "model.json").read_text())
    card |= {"version": "mine-1", "members": card["members"][:1], "real_evaluation": None, "threshold": 0.7}
    card["members"][0]["scale"] = 2.0
    (model / "model.json").write_text(json.dumps(card))
    entries = resolve_scorers({"reference": None, "mine": model})
    assert crop_specs(entries)[-1] == CropSpec(80, 2.0, "shift") and not entries[1].measured_on_real_data
    scorers = Scorers(entries)
    image = face_scene()
    box = (170.0, 90.0, 300.0, 300.0)
    crops = {spec.key: spec.crop(image, box)[None] for spec in crop_specs(entries)}
    scores = scorers(crops)
    assert set(scores) == {"reference", "mine"} and all(s.shape == (1,) and 0 <= s[0] <= 1 for s in scores.values())


def test_only_scorers_measured_on_real_data_decide(tmp_path: Path):
    from pipeline.config import load_scan_config

    b2, reference = resolve_scorers({"b2": None, "reference": None})
    entries = [b2, reference]
    t = reference.threshold
    deciders = load_scan_config().decision.scorers
    assert deciders == ["reference"]  # the scan's default: the stronger real-data measurement decides alone
    verdict = decide_scores({"b2": 0.99, "reference": t - 0.3}, entries, review_band=0.1, deciders=deciders)
    assert (verdict.decision, verdict.fired) == ("live", None) and verdict.spoof_score == pytest.approx(t - 0.3)
    verdict = decide_scores({"b2": 0.0, "reference": min(1.0, t + 0.11)}, entries, review_band=0.1, deciders=deciders)
    assert (verdict.decision, verdict.fired) == ("spoof", "reference")
    assert decide_scores({"b2": 0.99}, entries, review_band=0.1, deciders=deciders).decision == "live"
    # a scorer with no real-data measurement never decides unless named
    unmeasured = replace(b2, card=b2.card.model_copy(update={"real_evaluation": None}))
    verdict = decide_scores({"b2": 0.99, "reference": t - 0.3}, [unmeasured, reference], review_band=0.1)
    assert (verdict.decision, verdict.fired) == ("live", None)
    # a user who measured b2 on their own data lets it decide through the config
    verdict = decide_scores({"b2": 0.99, "reference": 0.0}, entries, review_band=0.1, deciders=["b2", "reference"])
    assert (verdict.decision, verdict.fired) == ("spoof", "b2")
    mean = decide_scores(
        {"b2": 0.99, "reference": 0.0}, entries, review_band=0.1, deciders=["b2", "reference"], combine="mean"
    )
    assert mean.spoof_score == pytest.approx(0.495)
    with pytest.raises(ModelError, match="not registered"):
        decide_scores({"b2": 0.5}, entries, review_band=0.1, deciders=["nope"])


def test_a_face_at_the_frame_edge_is_still_cropped_for_the_4x_crop():
    image = np.zeros((240, 320, 3), np.uint8)
    for box in ((0.0, 0.0, 60.0, 70.0), (280.0, 190.0, 40.0, 50.0), (10.0, 5.0, 300.0, 230.0)):
        crop = CropSpec(80, 4.0, "shift").crop(image, box)
        assert crop.shape == (80, 80, 3)


def test_a_scan_with_a_corrupt_reference_model_exits_2_naming_the_file_before_any_work(tmp_path: Path, capsys):
    from pipeline.cli.main import main
    from tests.videos import write_face_video

    model = _copy_reference(tmp_path)
    (model / "MiniFASNetV2_2.7_80x80.onnx").write_bytes(b"\x00" * 100)
    video = write_face_video(tmp_path / "v.mp4", n=4)
    out = tmp_path / "out"
    assert main(["scan", str(video), "--out", str(out), "--quiet", "--set", f"scorers.reference.model={model}"]) == 2
    assert "MiniFASNetV2_2.7_80x80.onnx is not a loadable ONNX model" in capsys.readouterr().err
    assert not out.exists()


def test_a_session_near_a_deciders_threshold_is_refined_and_its_scores_spread_over_its_faces():
    b2, reference = resolve_scorers({"b2": None, "reference": None})
    entries, t = [b2, reference], reference.threshold
    # near an edge of the decision (threshold +- review band), and only the deciders' scores count
    near = {"band": 0.05, "review_band": 0.1, "deciders": ["reference"]}
    assert near_threshold({"b2": b2.threshold - 0.1, "reference": t + 0.08}, entries, **near)
    assert near_threshold({"reference": t - 0.13}, entries, **near)
    assert not near_threshold({"b2": b2.threshold + 0.1, "reference": t - 0.3}, entries, **near)
    assert not near_threshold({"reference": t}, entries, **near)  # in the middle of the review band
    assert not near_threshold({"reference": None}, entries, **near)
    scheduled = np.array([True, False, False, True])
    first = {"reference": np.array([0.2, 0.4], np.float32)}
    once = spread_scores(scheduled, first)["reference"]
    assert once[[0, 3]].tolist() == pytest.approx([0.2, 0.4]) and np.isnan(once[[1, 2]]).all()
    refined = spread_scores(scheduled, first, {"reference": np.array([0.6, 0.8], np.float32)})["reference"]
    assert refined.tolist() == pytest.approx([0.2, 0.6, 0.8, 0.4])
    assert pool_scores(once.tolist()) == pytest.approx(0.3)  # faces not scored are left out of the pool
    # a refinement round scores the deciders only: the b2 keeps its scheduled faces' scores
    both = spread_scores(scheduled, first | {"b2": np.array([0.5, 0.7], np.float32)}, {"reference": np.ones(2)})
    assert both["reference"].tolist() == pytest.approx([0.2, 1.0, 1.0, 0.4])
    assert both["b2"][[0, 3]].tolist() == pytest.approx([0.5, 0.7]) and np.isnan(both["b2"][[1, 2]]).all()


def test_a_refinement_round_brings_and_scores_the_deciding_scorers_crops_only():
    b2, reference = resolve_scorers({"b2": None, "reference": None})
    config = load_scan_config()
    assert config.decision.scorers == ["reference"]
    keys = refinement_crops([b2, reference], config)
    assert keys == {spec.key for spec in reference.card.crop_specs} and b2.card.crop_spec.key not in keys
    both = load_scan_config(overrides=["decision.scorers=[b2,reference]"])
    assert refinement_crops([b2, reference], both) == {spec.key for spec in crop_specs([b2, reference])}
    scorers = Scorers([b2, reference])
    faces = face_scene()
    box = (170.0, 90.0, 300.0, 300.0)
    crops = {spec.key: spec.crop(faces, box)[None] for spec in crop_specs([b2, reference])}
    assert scorers(crops).keys() == {"b2", "reference"}
    only = scorers({key: v for key, v in crops.items() if key in keys})
    assert only.keys() == {"reference"} and only["reference"] == pytest.approx(scorers(crops)["reference"])


def test_sessions_are_decided_at_the_cards_session_point_unless_calibrated():
    """Issue 26 item 3: a session score pools many faces, so it has its own operating point,
    chosen on real session videos; a calibration from an archive's verdicts overrides it, and a
    scorer never measured on sessions keeps its photo threshold."""
    (reference,) = resolve_scorers({"reference": None})
    point = reference.card.session
    assert point is not None and point.live_below < reference.card.threshold <= point.spoof_from
    scan = reference.for_sessions()
    assert (scan.operating_point, scan.threshold, scan.band(0.1)) == ("session", point.threshold, point.review_band)
    assert reference.threshold == reference.card.threshold  # photos keep the photo threshold
    calibrated = reference.for_sessions(0.42)
    assert (calibrated.operating_point, calibrated.threshold, calibrated.band(0.1)) == ("calibration", 0.42, 0.1)
    unmeasured = replace(reference, card=reference.card.model_copy(update={"session": None})).for_sessions()
    assert (unmeasured.operating_point, unmeasured.threshold) == ("image", reference.card.threshold)
    # each decider is judged within its own band: a session score between the photo edge and
    # the session's live edge goes to review, not live
    between = (point.live_below + reference.card.threshold - 0.1) / 2
    assert decide_scores({"reference": between}, [reference], review_band=0.1).decision == "live"
    assert decide_scores({"reference": between}, [scan], review_band=0.1).decision == "review"
    assert decide_scores({"reference": point.live_below - 0.01}, [scan], review_band=0.1).decision == "live"
    assert near_threshold({"reference": point.live_below + 0.01}, [scan], band=0.05, review_band=0.1)


def test_the_shipped_session_point_obeys_its_own_method(real_material):
    """The reference card's session point, as training.cards.session_points chose it: at most 10% of
    the tune split's live clips above live_below, none at or above spoof_from, and on the
    held-out live clips no spoof."""
    from training.cards.session_points import TUNE_REVIEW

    (reference,) = resolve_scorers({"reference": None})
    point = reference.card.session
    assert point is not None
    tune = np.array(list(point.metrics["scores"]["tune"].values()))
    assert len(tune) >= 8 and (tune > point.live_below).mean() <= TUNE_REVIEW and (tune < point.spoof_from).all()
    assert point.spoof_from >= reference.card.threshold + load_scan_config().aggregate.review_band - 1e-9
    assert point.metrics["test_live"]["spoof"] == 0 and point.metrics["attack_stretches"]["live"] == 0
