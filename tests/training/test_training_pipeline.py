"""preprocess -> train -> predict -> export on a tiny generated data set (real MediaPipe, real network)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.faces import FaceDetector, crop_main_face
from pipeline.model import load_checkpoint, read_card
from tests.videos import face_scene
from training.preprocess import preprocess, read_image_rgb

SIZE = 64


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def flat_print(rgb: np.ndarray) -> np.ndarray:
    """A crude 'print': compressed dynamic range and a coarse dot pattern."""
    dots = (np.indices(rgb.shape[:2]).sum(0) % 4 == 0)[..., None]
    return (rgb * 0.6 + 60 - dots * 30).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    lines = ["path,subject,split"]
    for s, split in enumerate(["train", "train", "val", "test"]):
        for i in range(2):
            scene = face_scene(shift=8 * i - 4 + s, face_px=260 + 10 * s)
            live = write_png(root / "live" / f"s{s}_{i}.png", scene)
            spoof = write_png(root / "spoof" / "print" / f"s{s}_{i}.png", flat_print(scene))
            lines += [f"{live.relative_to(root)},s{s},{split}", f"{spoof.relative_to(root)},s{s},{split}"]
    write_png(root / "live" / "blank_0.png", np.full((240, 320, 3), 128, np.uint8))
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def processed(raw: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("processed")
    summary = preprocess(raw, out, size=SIZE, scale=1.6)
    assert summary["crops"] == 16 and summary["no_face_files"] == ["live/blank_0.png"]
    return out


def test_training_crop_equals_scanner_crop(raw: Path, processed: Path):
    image = read_image_rgb(raw / "live" / "s0_0.png")
    with FaceDetector() as detector:
        _, scanner_crop = crop_main_face(image, detector.detect(image), size=SIZE, scale=1.6)
    assert np.array_equal(read_image_rgb(processed / "live" / "s0_0_000.png"), scanner_crop)


def test_a_few_steps_of_training_give_a_loadable_checkpoint_and_card(processed: Path, tmp_path: Path):
    out = tmp_path / "ckpt"
    argv = ["train", "--data", str(processed), "--out", str(out), "--set", f"input_size={SIZE}", "--set", "epochs=2",
            "--set", "batch_size=4", "--set", "max_train_batches=2", "--set", "version=test-tiny"]
    assert main(argv) == 0
    model, card = load_checkpoint(out)
    assert card.trained and card.version == "test-tiny" and card.input_size == SIZE and card.crop_scale == 1.6
    assert "scratch" in card.init
    for key in ("accuracy", "recall", "precision", "f1", "roc_auc", "apcer", "bpcer", "acer", "eer", "bpcer20", "hter", "apcer_per_attack"):
        assert key in card.metrics
    assert 0.0 <= card.threshold <= 1.0
    assert not (out / "resume.pt").exists() and not (out / "best").exists()
    assert json.loads((out / "metrics.json").read_text())["n_attack"] == 2


@pytest.fixture(scope="module")
def tiny_model(processed: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    main(["train", "--data", str(processed), "--out", str(out), "--set", f"input_size={SIZE}", "--set", "epochs=1", "--set", "batch_size=4", "--set", "max_train_batches=1"])
    return out


def test_predict_on_a_face_image(raw: Path, tiny_model: Path, capsys):
    assert main(["predict", "--image", str(raw / "live" / "s0_0.png"), "--model", str(tiny_model), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["spoof_score"] <= 1.0 and result["decision"] in ("live", "spoof", "review")


def test_predict_without_a_face_is_a_clear_error(raw: Path, tiny_model: Path, capsys):
    assert main(["predict", "--image", str(raw / "live" / "blank_0.png"), "--model", str(tiny_model)]) == 1
    assert "no face" in capsys.readouterr().err


def test_onnx_export_matches_torch(tiny_model: Path, tmp_path: Path, capsys):
    assert main(["export-onnx", "--model", str(tiny_model), "--out", str(tmp_path / "m.onnx")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parity_ok"] and report["max_abs_diff"] <= 1e-4 and report["crops"] == 4
    assert read_card(tiny_model).trained
