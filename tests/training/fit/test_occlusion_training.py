"""Training the region-occlusion model: a tiny real run (real renderer, real MediaPipe) gives a
loadable checkpoint with an honest card; thresholds, metrics and the subject split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from pipeline.cli.main import main
from pipeline.schema import REGIONS
from pipeline.signals.occlusion import OcclusionCard, OcclusionScorer, load_occlusion_checkpoint, read_occlusion_card
from training.data.face_sources import load_face_sources
from training.fit.occlusion import (
    choose_thresholds,
    frame_metrics,
    predict,
    render_region_data,
    scanner_path,
    subjects_by_split,
    train_occlusion,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("occlusion") / "model"
    metrics = train_occlusion(out, images=48, sessions=2, epochs=1, seed=0)
    return out, metrics


def test_tiny_run_writes_a_loadable_checkpoint_with_a_card(tiny_run):
    out, metrics = tiny_run
    card = read_occlusion_card(out)
    assert card.trained and tuple(card.regions) == REGIONS
    assert json.loads((out / "model.json").read_text())["metrics"]["frame"] == metrics["frame"]
    for region in REGIONS:
        assert {"precision", "recall", "f1", "tp", "fp", "fn", "positives", "negatives"} <= set(
            metrics["frame"][region]
        )
        assert {"precision", "recall", "positives", "negatives"} <= set(metrics["session"]["per_region"][region])
    assert metrics["session"]["sessions"] == 2
    assert "SYNTHETIC" in card.trained_on and card.limits and "--images 48" in card.reproduce
    weights = load_file(str(out / "model.safetensors"))
    assert {str(v.dtype) for v in weights.values() if v.dtype.kind == "f"} == {"float16"}
    scores = OcclusionScorer(out).score_crops(np.zeros((2, 4, card.input_size, card.input_size, 3), np.uint8))
    assert scores.shape == (2, 4) and ((scores >= 0) & (scores <= 1)).all()


def test_onnx_scorer_matches_the_torch_network(tiny_run):
    out, _ = tiny_run
    network, card = load_occlusion_checkpoint(out)
    crops = np.random.default_rng(0).integers(0, 256, (5, 4, card.input_size, card.input_size, 3), dtype=np.uint8)
    np.testing.assert_allclose(OcclusionScorer(out).score_crops(crops), predict(network, crops, card), atol=1e-5)


def test_region_data_keeps_to_its_subjects_and_labels_the_covered_regions():
    sources = load_face_sources()
    splits = subjects_by_split(sources, 0)
    assert not set(splits["train"]) & set(splits["test"]) and not set(splits["val"]) & set(splits["test"])
    data = render_region_data(
        sources, splits["test"][:3], 24, OcclusionCard(), np.random.default_rng(1), scanner_path()
    )
    assert data.frames_rendered >= 24 and 0 < len(data) <= data.frames_rendered
    assert set(data.subjects) <= set(splits["test"][:3])
    assert data.crops.shape == (len(data), 4, 40, 40, 3) and data.crops.dtype == np.uint8
    assert set(np.unique(data.labels)) <= {0.0, 1.0}


def test_thresholds_maximise_f1_on_validation_scores():
    labels = np.zeros((6, 4), np.float32)
    labels[:3, 3] = 1  # mouth covered in the first three frames
    probs = np.full((6, 4), 0.1, np.float32)
    probs[:3, 3] = [0.9, 0.8, 0.7]
    probs[3:, 3] = [0.4, 0.3, 0.2]
    thresholds = choose_thresholds(probs, labels)
    assert 0.4 < thresholds["mouth"] <= 0.7
    assert thresholds["left_eye"] == 0.5  # no positives to choose from
    metrics = frame_metrics(probs, labels, thresholds)
    assert metrics["mouth"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "tp": 3,
        "fp": 0,
        "fn": 0,
        "positives": 3,
        "negatives": 3,
    }
    assert metrics["nose"]["precision"] is None and metrics["nose"]["recall"] is None


def test_cli_refuses_too_few_images(tmp_path, capsys):
    assert main(["train-occlusion", "--out", str(tmp_path / "m"), "--images", "5"]) == 2
    assert "--images must be at least" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
