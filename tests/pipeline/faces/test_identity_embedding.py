import json

import numpy as np
import pytest

from pipeline.errors import ModelError
from pipeline.faces.identity import DEFAULT_IDENTITY_DIR, FIVE_POINT_IDX, IdentityCard, five_points, unusable
from training.cards.identity_card import deepface_pairs, embed_images, pair_metrics


def frontal(eye_px: float = 60.0, nose_shift: float = 0.0) -> np.ndarray:
    """Face-mesh points with the eye corners ``eye_px`` apart and the nose tip shifted sideways."""
    points = np.zeros((478, 3), np.float32)
    left_outer, left_inner, right_outer, right_inner, nose_bottom = FIVE_POINT_IDX
    points[right_outer, :2], points[right_inner, :2] = (100, 100), (100 + 0.3 * eye_px, 100)
    points[left_outer, :2], points[left_inner, :2] = (100 + eye_px, 100), (100 + 0.7 * eye_px, 100)
    points[nose_bottom, :2] = (100 + eye_px / 2, 100 + 0.6 * eye_px)
    points[1, :2] = (100 + eye_px / 2 + nose_shift * eye_px, 100 + 0.5 * eye_px)
    return points


def test_small_and_turned_faces_are_refused():
    assert unusable(frontal(60), min_eye_px=20, max_turn=0.6) is None
    assert unusable(frontal(12), min_eye_px=20, max_turn=0.6) == "small"
    assert unusable(frontal(60, nose_shift=0.7), min_eye_px=20, max_turn=0.6) == "turned"
    assert unusable(frontal(60, nose_shift=-0.7), min_eye_px=20, max_turn=0.6) == "turned"
    assert five_points(frontal()).shape == (5, 2)
    with pytest.raises(ValueError, match="face-mesh landmarks"):
        five_points(np.zeros((5, 2)))


def test_the_shipped_card_loads_and_a_bad_one_is_a_model_error(tmp_path):
    card = IdentityCard.load(DEFAULT_IDENTITY_DIR)
    assert 0 < card.threshold < 2 and card.real_evaluation["deepface_master_csv"]["pairs"] == 300
    with pytest.raises(ModelError, match="unreadable"):
        IdentityCard.load(tmp_path)
    card = {"version": "x", "threshold": 7, "real_evaluation": {}, "same_person_distance": 0.4}
    (tmp_path / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="threshold must lie in"):
        IdentityCard.load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps(card | {"threshold": 0.6, "same_person_distance": 0.9}))
    with pytest.raises(ModelError, match="same_person_distance must lie in"):
        IdentityCard.load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps(card | {"threshold": 0.6}))
    with pytest.raises(ModelError, match="face_resnet.onnx is missing"):  # a card without its network
        IdentityCard.load(tmp_path)


def test_pair_metrics_count_matches_under_the_threshold():
    m = pair_metrics(np.array([0.2, 0.7, 0.5, 0.9]), np.array([True, True, False, False]), 0.6)
    assert m["accuracy"] == 0.5 and m["false_match_rate"] == 0.5 and m["false_non_match_rate"] == 0.5


def test_verification_on_the_real_pairs_matches_the_card(real_material):
    """The embedding through the scan's per-frame path tells the 300 real pairs apart as its card says."""
    pairs = deepface_pairs(real_material)
    embeddings = embed_images(sorted({p for a, b, _ in pairs for p in (a, b)}))
    assert all(v is not None for v in embeddings.values())
    d = np.array([np.linalg.norm(embeddings[a] - embeddings[b]) for a, b, _ in pairs])  # type: ignore[operator]
    same = np.array([s for _, _, s in pairs])
    card = IdentityCard.load()
    measured = pair_metrics(d, same, card.threshold)
    assert measured["accuracy"] >= 0.97
    assert measured["accuracy"] == pytest.approx(card.real_evaluation["deepface_master_csv"]["accuracy"], abs=0.01)
    assert d[same].mean() < 0.5 < d[~same].mean()


def test_the_shipped_onnx_network_embeds_as_dlibs_own_code(real_material):
    """models/identity/face_resnet.onnx is dlib's ResNet: on real faces aligned the scan's way,
    its embeddings lie within 0.005 of dlib's own (one person's pairs lie about 0.36 apart)."""
    import cv2
    import dlib

    from pipeline.faces.identity import FaceEmbedder, network_path
    from pipeline.faces.landmarks import FaceMesh

    embedder, mesh = FaceEmbedder(), FaceMesh()
    chips = []
    for path in sorted((real_material / "images" / "face_recognition").glob("*.jpg"))[:6]:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        points = mesh.landmarks(image)
        if points is not None:
            chips.append(embedder.chip(image, points))
    assert len(chips) >= 4
    ours = embedder.embed(chips)
    theirs = np.asarray(dlib.face_recognition_model_v1(str(network_path())).compute_face_descriptor(chips))
    assert ours.shape == (len(chips), 128)
    assert float(np.linalg.norm(ours - theirs, axis=1).max()) < 5e-3


def test_a_missing_or_corrupt_identity_network_is_a_model_error(tmp_path):
    from pipeline.faces.identity import ONNX_FILE, FaceEmbedder

    with pytest.raises(ModelError, match="cannot be loaded"):
        FaceEmbedder(tmp_path)
    (tmp_path / ONNX_FILE).write_bytes(b"not a network")
    with pytest.raises(ModelError, match="face_resnet.onnx"):
        FaceEmbedder(tmp_path)
