"""preprocess -> train -> predict -> export on a tiny generated data set (real MediaPipe, real network)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.cli.main import main
from pipeline.faces.crop import CropSpec
from pipeline.faces.detect import FaceDetector, crop_main_face
from pipeline.scoring.model import DEFAULT_MODEL_DIR, load_checkpoint, read_card
from tests.helpers import kill_when
from tests.videos import face_scene
from training.data.preprocess import preprocess, read_crop_spec, read_image_rgb

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
    summary = preprocess(raw, out, crop=CropSpec(size=SIZE, scale=1.6))
    assert summary["crops"] == 16 and summary["no_face_files"] == ["live/blank_0.png"]
    return out


def train_args(processed: Path, out: Path, *settings: str) -> list[str]:
    """``liveness train`` from scratch on the tiny crops at their size and batches of 4, with
    ``key=value`` settings (a later ``init=`` wins)."""
    args = [
        "train",
        "--data",
        str(processed),
        "--out",
        str(out),
        "--set",
        f"input_size={SIZE}",
        "--set",
        "batch_size=4",
        "--set",
        "init=scratch",
    ]
    return args + [arg for setting in settings for arg in ("--set", setting)]


def resumable_args(processed: Path, out: Path, epochs: int) -> list[str]:
    """Training runs of one batch per epoch that never stop early: a kill lands in a known epoch."""
    return train_args(processed, out, f"epochs={epochs}", "max_train_batches=1", "patience=100")


def test_training_crop_equals_scanner_crop(raw: Path, processed: Path):
    image = read_image_rgb(raw / "live" / "s0_0.png")
    with FaceDetector() as detector:
        _, scanner_crop = crop_main_face(image, detector.detect(image), CropSpec(size=SIZE, scale=1.6))
    assert np.array_equal(read_image_rgb(processed / "live" / "s0_0_000.png"), scanner_crop)


def test_a_few_steps_of_training_give_a_loadable_checkpoint_and_card(processed: Path, tmp_path: Path):
    out = tmp_path / "ckpt"
    argv = train_args(processed, out, "epochs=2", "max_train_batches=2", "version=test-tiny")
    assert main(argv) == 0
    model, card = load_checkpoint(out)
    assert card.trained and card.version == "test-tiny" and card.input_size == SIZE and card.crop_scale == 1.6
    assert "scratch" in card.init
    for key in EVALUATION_KEYS:  # train ends with the same evaluation as `liveness evaluate`
        assert key in card.metrics, key
    assert 0.0 <= card.threshold <= 1.0
    assert not (out / "resume.pt").exists() and not (out / "best").exists()
    assert json.loads((out / "evaluation.json").read_text())["n_attack"] == 2
    assert (out / "roc_det.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def tiny_model(processed: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    assert main(train_args(processed, out, "epochs=1", "max_train_batches=1")) == 0
    return out


def test_the_crops_rule_the_cards_crop(processed: Path, tmp_path: Path, capsys):
    """preprocess records the crop; train takes it from there and refuses a setting that contradicts it."""
    assert read_crop_spec(processed) == CropSpec(size=SIZE, scale=1.6)
    args = ["train", "--data", str(processed), "--out", str(tmp_path / "m"), "--set", "epochs=1"]
    assert main([*args, "--set", "crop_scale=2.0"]) == 2
    assert "crop_scale=2.0 conflicts with the crops" in capsys.readouterr().err
    assert main([*args, "--set", f"input_size={SIZE * 2}"]) == 2
    assert f"input_size={SIZE * 2} conflicts" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    (processed / "crop_spec.json").rename(tmp_path / "spec.json")
    try:
        assert main(args) == 2
        assert "crop_spec.json not found" in capsys.readouterr().err
    finally:
        (tmp_path / "spec.json").rename(processed / "crop_spec.json")


def test_predict_scores_a_face_with_a_trained_b2(raw: Path, tiny_model: Path, capsys):
    assert main(["predict", str(raw / "live" / "s0_0.png"), "--model", str(tiny_model), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["scores"]["b2"] <= 1.0 and result["decision"] in ("live", "spoof", "review")


def test_predict_without_a_face_says_so(raw: Path, tiny_model: Path, capsys):
    assert main(["predict", str(raw / "live" / "blank_0.png"), "--model", str(tiny_model)]) == 0
    assert "blank_0.png: no face found" in capsys.readouterr().out


def test_onnx_export_matches_torch(tiny_model: Path, tmp_path: Path, capsys):
    assert main(["export-onnx", "--model", str(tiny_model), "--out", str(tmp_path / "m.onnx")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parity_ok"] and report["max_abs_diff"] <= 1e-4 and report["crops"] == 4
    assert read_card(tiny_model).trained


EVALUATION_KEYS = (
    "loss",
    "accuracy",
    "recall",
    "precision",
    "f1",
    "roc_auc",
    "apcer",
    "apcer_per_attack",
    "bpcer",
    "acer",
    "eer",
    "bpcer20",
    "bpcer100",
    "hter",
    "threshold",
    "threshold_method",
    "split",
    "n_bona_fide",
    "n_attack",
)


def test_evaluate_writes_every_key_the_plot_and_the_threshold_into_the_card(
    tiny_model: Path, processed: Path, tmp_path: Path, capsys
):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    card = read_card(model).model_dump()
    card["threshold"] = 0.123456
    (model / "model.json").write_text(json.dumps(card))
    assert main(["evaluate", "--model", str(model), "--data", str(processed), "--threshold-method", "bpcer20"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((model / "evaluation.json").read_text())
    for key in EVALUATION_KEYS:
        assert key in written and key in printed
    assert written["split"] == "test" and written["n_bona_fide"] == 2 and written["n_attack"] == 2
    assert (model / "roc_det.png").read_bytes()[:4] == b"\x89PNG"
    updated = read_card(model)
    assert updated.threshold == written["threshold"] != 0.123456
    assert updated.threshold_method == "bpcer20" and updated.metrics["acer"] == written["acer"]


def test_evaluate_leaves_the_shipped_card_alone_unless_told(raw: Path, processed: Path, tmp_path: Path, capsys):
    assert main(["evaluate", "--data", str(processed)]) == 2
    assert "shipped model" in capsys.readouterr().err
    # the shipped model is never measured on crops it was not made for (these are 64 px)
    assert main(["evaluate", "--data", str(processed), "--no-card", "--out", str(tmp_path)]) == 2
    assert "were cut at 64 px, scale 1.6; this model needs 128 px" in capsys.readouterr().err
    own = tmp_path / "processed128"
    preprocess(raw, own, crop=read_card(DEFAULT_MODEL_DIR).crop_spec)
    before = (DEFAULT_MODEL_DIR / "model.json").read_bytes()
    assert main(["evaluate", "--data", str(own), "--no-card", "--out", str(tmp_path)]) == 0
    assert (DEFAULT_MODEL_DIR / "model.json").read_bytes() == before
    assert set(EVALUATION_KEYS) <= set(json.loads((tmp_path / "evaluation.json").read_text()))


def test_data_check_reports_balance_and_proves_no_leakage(processed: Path, tmp_path: Path):
    assert main(["check-data", "--data", str(processed), "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "data_check.json").read_text())
    assert summary["by_split"]["train"] == {"live": 4, "spoof/print": 4}
    assert summary["subjects_by_split"] == {"train": 2, "val": 1, "test": 1}
    assert summary["by_attack_type"] == {"print": 8}
    assert summary["no_face"]["by_class"] == {"live": 1} and summary["no_face"]["examples"] == ["live/blank_0.png"]
    assert summary["source_sizes"]["width"]["min"] > 0
    assert summary["leakage"] == {"subjects": {}, "sources": {}}
    assert "PASS" in (tmp_path / "data_check.md").read_text()
    assert (tmp_path / "data_check.png").read_bytes()[:4] == b"\x89PNG"


def test_data_check_names_a_subject_found_in_two_splits(processed: Path, tmp_path: Path, capsys):
    leaky = shutil.copytree(processed, tmp_path / "leaky")
    lines = (leaky / "crops.csv").read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if ",s0," in line and ",train," in line)
    lines[row] = lines[row].replace(",train,", ",test,")
    (leaky / "crops.csv").write_text("\n".join(lines) + "\n")
    assert main(["check-data", "--data", str(leaky)]) == 1
    assert "1 subject(s)" in capsys.readouterr().err
    report = (leaky / "data_check.md").read_text()
    assert "FAIL" in report and "subject `s0`: test, train" in report


def test_training_killed_mid_run_resumes_where_it_stopped(processed: Path, tmp_path: Path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *resumable_args(processed, out, 200)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kill_when(proc, (out / "resume.pt").exists, timeout=300, poll_s=0.2, grace_s=1.0)
    assert (out / "resume.pt").exists() and not (out / "model.json").exists()
    import torch

    done = int(torch.load(out / "resume.pt", weights_only=True)["epoch"]) + 1
    assert main(resumable_args(processed, out, done + 2)) == 0
    assert f"resuming after epoch {done}" in caplog.text
    card = read_card(out)
    assert [h["epoch"] for h in card.history] == list(range(1, done + 3))
    assert not (out / "resume.pt").exists()


def test_resume_with_another_configuration_is_refused(processed: Path, tmp_path: Path, capsys):
    out = tmp_path / "ckpt"
    out.mkdir()
    import torch

    torch.save({"config": "something else", "epoch": 0}, out / "resume.pt")
    assert main(resumable_args(processed, out, 3)) == 2
    assert "another configuration" in capsys.readouterr().err


def test_several_crop_folders_train_together_and_one_class_is_refused(processed: Path, tmp_path: Path, capsys):
    import csv
    import shutil

    twin = tmp_path / "twin"
    shutil.copytree(processed, twin)
    out = tmp_path / "both"
    argv = train_args(processed, out, "epochs=1", "max_train_batches=1", "sampling=subject")
    assert main([*argv, "--data", str(twin)]) == 0
    card = read_card(out)
    single = sum(1 for _ in csv.DictReader(open(processed / "crops.csv")))
    assert sum(part["crops"] for part in card.data.values()) == 2 * single
    with open(twin / "crops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(twin / "crops.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["label"] == "live")
    assert main(train_args(twin, tmp_path / "live-only", "epochs=1")) == 2
    assert "one class only: training needs live and spoof" in capsys.readouterr().err
    assert not (tmp_path / "live-only").exists()


def test_subject_sampling_draws_each_subject_about_equally():
    from collections import Counter

    from training.fit.train import epoch_order

    subjects = ["rendered"] * 90 + ["photo-a"] * 5 + ["photo-b"] * 5
    rng = np.random.default_rng(0)
    labels = np.zeros(100, np.int64)
    drawn = Counter(subjects[i] for _ in range(50) for i in epoch_order(subjects, labels, "subject", rng))
    shares = {s: n / sum(drawn.values()) for s, n in drawn.items()}
    assert all(abs(share - 1 / 3) < 0.03 for share in shares.values()), shares
    assert sorted(epoch_order(subjects, labels, "uniform", rng)) == list(range(100))


def test_balanced_sampling_draws_each_class_about_equally_and_each_subject_within_it():
    from collections import Counter

    from training.fit.train import epoch_order

    # An archive of 95% live: 3 live people (one seen 80 times) and 2 attackers (3 and 2 crops).
    subjects = ["live-a"] * 80 + ["live-b"] * 10 + ["live-c"] * 5 + ["spoof-a"] * 3 + ["spoof-b"] * 2
    labels = np.array([s.startswith("spoof") for s in subjects], np.int64)
    rng = np.random.default_rng(0)
    drawn = Counter(subjects[i] for _ in range(100) for i in epoch_order(subjects, labels, "balanced", rng))
    total = sum(drawn.values())
    assert abs((drawn["spoof-a"] + drawn["spoof-b"]) / total - 0.5) < 0.02
    for subject, share in (("live-a", 1 / 6), ("live-c", 1 / 6), ("spoof-a", 1 / 4), ("spoof-b", 1 / 4)):
        assert abs(drawn[subject] / total - share) < 0.02, (subject, drawn)


def test_soft_targets_train_towards_the_teachers_probability():
    import torch

    from training.fit.train import soft_cross_entropy

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 3.0]])
    hard = torch.tensor([0, 1, 1])
    assert soft_cross_entropy(logits, hard.float()).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, hard).item()
    )
    soft = torch.tensor([0.2, 0.7, 0.95])
    expected = -(soft * torch.log_softmax(logits, 1)[:, 1] + (1 - soft) * torch.log_softmax(logits, 1)[:, 0]).mean()
    assert soft_cross_entropy(logits, soft).item() == pytest.approx(expected.item())
    # Where the model already says what the teacher says, the loss is lowest.
    matched = torch.log(torch.stack([1 - soft, soft], 1))
    assert soft_cross_entropy(matched, soft) < soft_cross_entropy(logits, soft)


def test_fine_tuning_starts_from_the_shipped_b2_and_refuses_another_network_or_crop(
    raw: Path, processed: Path, tiny_model: Path, tmp_path: Path, capsys
):
    out = tmp_path / "m"
    base = ["train", "--data", str(processed), "--out", str(out), "--set", "batch_size=4", "--set", "epochs=1"]
    assert main(base) == 2  # the default start, the shipped B2, is a 128 px model; these crops are 64 px
    err = capsys.readouterr().err
    assert "cannot fine-tune" in err and f"input size 128 where this run has {SIZE}" in err
    assert main([*base, "--init", str(tiny_model), "--set", "architecture=efficientnet_b0"]) == 2
    assert "architecture efficientnet_b2 where this run has efficientnet_b0" in capsys.readouterr().err
    assert main([*base, "--init", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()  # nothing written

    assert main([*base, "--init", str(tiny_model), "--set", "max_train_batches=1"]) == 0
    assert read_card(out).init.startswith(f"fine-tuned from {read_card(tiny_model).version}")

    crops128 = tmp_path / "crops128"  # crops cut as the shipped B2 was: fine-tuned by default
    preprocess(raw, crops128, crop=CropSpec(size=128, scale=1.6))
    shipped = tmp_path / "shipped-tuned"
    args = ["train", "--data", str(crops128), "--out", str(shipped), "--set", "batch_size=4", "--set", "epochs=1"]
    assert main([*args, "--set", "max_train_batches=1"]) == 0
    card = read_card(shipped)
    assert card.init.startswith(f"fine-tuned from {read_card(DEFAULT_MODEL_DIR).version}") and card.input_size == 128


def test_a_crops_target_column_sets_what_it_is_trained_towards(processed: Path, tmp_path: Path, capsys):
    import csv
    import shutil

    from training.data.datasets import load_crop_sets

    soft = tmp_path / "soft"
    shutil.copytree(processed, soft)
    with open(soft / "crops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0]["target"] = "0.93"  # a teacher's soft label; the other rows keep their hard labels

    def write(rows: list[dict]) -> None:
        with open(soft / "crops.csv", "w", newline="") as f:
            writer = csv.DictWriter(
                f, fieldnames=list(rows[0])
            )  # rows[0] has the target column; the rest leave it empty
            writer.writeheader()
            writer.writerows(rows)

    write(rows)
    sets = load_crop_sets(soft, CropSpec(size=SIZE, scale=1.6), seed=0)
    targets = np.concatenate([s.targets for s in sets.values()])
    labels = np.concatenate([s.labels for s in sets.values()])
    assert sorted(targets[(targets != 0) & (targets != 1)].tolist()) == [pytest.approx(0.93)]
    assert ((targets == labels) | (targets == np.float32(0.93))).all()
    rows[0]["target"] = "1.7"
    write(rows)
    assert main(train_args(soft, tmp_path / "m", "epochs=1")) == 2
    assert "has target '1.7': a spoof probability in [0, 1] is needed" in capsys.readouterr().err


def test_preprocess_samples_videos_as_asked_and_refuses_a_bad_rate(tmp_path: Path, capsys):
    from tests.videos import write_face_video

    raw = tmp_path / "raw"
    (raw / "live").mkdir(parents=True)
    write_face_video(raw / "live" / "clip_0.mp4", n=20, fps=10.0)  # 2 s
    for fps, most, expected in ((2.0, 16, 4), (5.0, 16, 10), (5.0, 3, 3)):
        out = tmp_path / f"crops-{fps}-{most}"
        args = ["preprocess", "--raw", str(raw), "--out", str(out), "--video-fps", str(fps)]
        assert main([*args, "--max-video-frames", str(most)]) == 0
        assert len((out / "crops.csv").read_text().splitlines()) == 1 + expected
    capsys.readouterr()
    assert main(["preprocess", "--raw", str(raw), "--out", str(tmp_path / "bad"), "--video-fps", "0"]) == 2
    assert "--video-fps must be > 0" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_augmentation_comes_from_the_config_and_a_misspelt_setting_exits_2(processed: Path, tmp_path: Path, capsys):
    from dataclasses import replace

    from training.data.datasets import AUGMENT_DEFAULTS
    from training.fit.train import load_train_config

    config = load_train_config(None, ["augment.moire_p=0", "augment.rescale=[0.2, 1.0]"])
    assert config.augment == replace(AUGMENT_DEFAULTS, moire_p=0.0, rescale=(0.2, 1.0))
    assert load_train_config(None, []).augment == AUGMENT_DEFAULTS
    assert main(train_args(processed, tmp_path / "m", "augment.moire_q=0")) == 2
    assert "augment.moire_q" in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert main(train_args(processed, tmp_path / "m", "epochs.moire_p=0")) == 2
    assert "epochs is not a group of settings" in capsys.readouterr().err and not (tmp_path / "m").exists()
