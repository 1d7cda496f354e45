"""The model card: every field declared, values in range, and a bad card refused before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.errors import ModelError
from pipeline.scoring.model import ARCHITECTURES, DEFAULT_MODEL_DIR, read_card
from tests.videos import write_face_video


def card_with(tmp_path: Path, **changes) -> Path:
    """A copy of the shipped checkpoint whose card has ``changes`` applied (None removes a key)."""
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    card = json.loads((model / "model.json").read_text())
    card.update(changes)
    (model / "model.json").write_text(json.dumps(card))
    return model


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"crop_scael": 2.0}, "crop_scael"),  # a misspelt key is an error, never a silent default
        ({"architecture": "resnet_nonexistent"}, "allowed: " + ", ".join(ARCHITECTURES)),
        ({"threshold": float("nan")}, "threshold"),
        ({"std": [0.2, 0.0, 0.2]}, "std must be > 0"),
        ({"input_size": 100000}, "input_size"),
        ({"version": "../../escape"}, "version"),
    ],
)
def test_a_bad_card_is_a_model_error_naming_the_field(tmp_path: Path, changes: dict, message: str):
    with pytest.raises(ModelError, match=message.replace("(", r"\(")):
        read_card(card_with(tmp_path, **changes))


def test_a_scan_with_a_bad_card_exits_2_before_any_work(tmp_path: Path, capsys):
    video = write_face_video(tmp_path / "v.mp4", n=4)
    model = card_with(tmp_path, architecture="resnet_nonexistent")
    assert main(["scan", str(video), "--out", str(tmp_path / "out"), "--model", str(model), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown architecture 'resnet_nonexistent'" in err and "efficientnet_b2" in err
    assert not (tmp_path / "out").exists()


def test_free_form_facts_go_into_notes(tmp_path: Path):
    assert read_card(card_with(tmp_path, notes={"reviewed_by": "fraud team"})).notes == {"reviewed_by": "fraud team"}
