"""Region occlusion: the session rule on hand-made scores, and the shipped model on rendered
faces of held-out subjects through the scanner's own path (real MediaPipe, real renderer)."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from pipeline.config import DEFAULT_MIN_FRACTION
from pipeline.errors import ModelError
from pipeline.schema import REGIONS
from pipeline.signals.occlusion import (
    DEFAULT_OCCLUSION_DIR,
    OcclusionScorer,
    occluded_regions,
    read_occlusion_card,
)
from training.data.synth import SessionSpec, render_session_frames
from training.fit.occlusion import mesh_faces, scanner_path, subjects_by_split

HALF = {r: 0.5 for r in REGIONS}


# --------------------------------------------------------------------------- the session rule


def test_region_counts_when_enough_frames_reach_its_threshold():
    scores = np.array(
        [
            [0.1, 0.9, 0.0, 0.5],  # mouth exactly at its threshold counts
            [0.1, 0.1, 0.0, 0.6],
            [0.1, 0.1, 0.0, 0.2],
            [0.9, 0.1, 0.0, 0.7],
        ]
    )
    assert occluded_regions(scores, HALF, 0.5) == ["mouth"]  # left eye and right eye: 1 frame of 4
    assert occluded_regions(scores, HALF, 0.25) == ["left_eye", "right_eye", "mouth"]
    assert occluded_regions(scores, HALF, 1.0) == []
    assert occluded_regions(scores, {**HALF, "mouth": 0.8}, 0.25) == ["left_eye", "right_eye"]


def test_thresholds_are_per_region():
    scores = np.full((3, 4), 0.4)
    assert occluded_regions(scores, {**HALF, "nose": 0.3}, DEFAULT_MIN_FRACTION) == ["nose"]


def test_no_frames_no_regions():
    assert occluded_regions(np.zeros((0, 4)), HALF) == []


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"scores must be \(N, 4\)"):
        occluded_regions(np.zeros((3, 3)), HALF)
    with pytest.raises(KeyError, match="mouth"):
        occluded_regions(np.zeros((3, 4)), {r: 0.5 for r in REGIONS if r != "mouth"})
    with pytest.raises(ValueError, match="min_fraction must be in"):
        occluded_regions(np.zeros((3, 4)), HALF, 0.0)


# --------------------------------------------------------------------------- the shipped model


@pytest.fixture(scope="module")
def scorer():
    return OcclusionScorer()


def _session_regions(scorer: OcclusionScorer, face_sources, spec: SessionSpec) -> tuple[list[str], np.ndarray]:
    """What the scanner would report for the rendered session: (occluded regions, frame scores)."""
    faces = [
        face
        for face in mesh_faces(scanner_path(), render_session_frames(spec, face_sources, upright=True))
        if face is not None
    ]
    assert len(faces) >= spec.n_frames - 1, "face mesh should find the rendered face"
    scores = scorer.score_many(faces)
    return occluded_regions(scores, scorer.thresholds), scores


def _held_out_subjects(face_sources, seed: int) -> list[str]:
    """Test-split subjects of the shipped card's seed: faces the model was not trained on."""
    return sorted(subjects_by_split(face_sources, seed)["test"])[:3]


def test_shipped_card_is_complete_and_honest():
    card = read_occlusion_card(DEFAULT_OCCLUSION_DIR)
    assert card.trained and tuple(card.regions) == REGIONS
    assert set(card.thresholds) == set(REGIONS) and all(0 < t < 1 for t in card.thresholds.values())
    assert "SYNTHETIC" in card.trained_on and "never seen a real occlusion" in card.trained_on
    assert card.limits and card.reproduce.startswith("uv run liveness train-occlusion")
    for level in ("frame", "session"):
        per_region = card.metrics[level] if level == "frame" else card.metrics[level]["per_region"]
        for region in REGIONS:
            assert {"precision", "recall", "positives", "negatives"} <= set(per_region[region])
            assert per_region[region]["positives"] > 0
    weights = load_file(str(DEFAULT_OCCLUSION_DIR / "model.safetensors"))
    assert {str(v.dtype) for v in weights.values() if v.dtype.kind == "f"} == {"float16"}
    assert (DEFAULT_OCCLUSION_DIR / "model.safetensors").stat().st_size < 1_000_000


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_covered_mouth_is_named_and_the_eyes_are_not(scorer, face_sources, seed):
    subject = _held_out_subjects(face_sources, read_occlusion_card(DEFAULT_OCCLUSION_DIR).seed)[seed % 3]
    spec = SessionSpec(
        f"mouth{seed}", "occluded", (subject,), duration_s=2.0, fps=3.0, occluded_regions=("mouth",), seed=seed
    )
    regions, scores = _session_regions(scorer, face_sources, spec)
    assert "mouth" in regions, scores
    assert "left_eye" not in regions and "right_eye" not in regions, scores


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_clean_face_has_no_occluded_region(scorer, face_sources, seed):
    subject = _held_out_subjects(face_sources, read_occlusion_card(DEFAULT_OCCLUSION_DIR).seed)[seed % 3]
    spec = SessionSpec(f"clean{seed}", "live", (subject,), duration_s=2.0, fps=3.0, seed=seed)
    regions, scores = _session_regions(scorer, face_sources, spec)
    assert regions == [], scores


def test_scorer_call_and_batch_agree(scorer, face_sources):
    subject = _held_out_subjects(face_sources, 0)[0]
    spec = SessionSpec("one", "live", (subject,), duration_s=1.0, fps=2.0, seed=1)
    faces = [
        face
        for face in mesh_faces(scanner_path(), render_session_frames(spec, face_sources, upright=True))
        if face is not None
    ]
    batch = scorer.score_many(faces)
    assert batch.shape == (len(faces), len(REGIONS)) and batch.dtype == np.float32
    single = scorer(*faces[0])
    assert list(single) == list(REGIONS)
    np.testing.assert_allclose([single[r] for r in REGIONS], batch[0], atol=1e-6)
    assert scorer.score_many([]).shape == (0, len(REGIONS))


def test_missing_checkpoint_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no occlusion card"):
        OcclusionScorer(tmp_path)
