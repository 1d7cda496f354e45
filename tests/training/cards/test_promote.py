"""``liveness promote``: a trained B2 measured against the reference and their fusion on an
archive's held-out verdicts; the written config lets the chosen scorer decide, and a scan
takes it (the fusion scored per face like any scorer)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli.main import main
from pipeline.reports.query import run_query
from pipeline.scoring.model import DEFAULT_MODEL_DIR, read_card
from pipeline.scoring.registry import read_scorer_card
from tests.videos import write_rendered_session
from training.cards.promote import needed
from training.fit.fusion import fit_fusion

LIVE, SPOOF = 10, 5


@pytest.fixture(scope="module")
def archive(tmp_path_factory, ray_session, shipped_model, face_sources) -> tuple[Path, Path]:
    """A scanned archive of 10 live and 5 attack sessions of 15 people with every verdict, and
    its mined crops (most subjects held out in test). Read-only: tests work on copies."""
    root = tmp_path_factory.mktemp("archive")
    inputs, verdicts = root / "in", ["session_id,verdict,attack"]
    inputs.mkdir()
    subjects = [s.subject_id for s in face_sources][: LIVE + SPOOF]
    for i, subject in enumerate(subjects):
        kind = "live" if i < LIVE else ("print", "replay")[i % 2]
        write_rendered_session(inputs / f"{kind}{i:02d}.mp4", face_sources, kind=kind, seconds=1.0, subject=subject,
                               seed=i)  # fmt: skip
        verdicts.append(f"{kind}{i:02d},{'live' if kind == 'live' else 'spoof'},{'' if kind == 'live' else kind}")
    out = root / "out"
    assert main(["scan", str(inputs), "--out", str(out), "--quiet"]) == 0
    (root / "verdicts.csv").write_text("\n".join(verdicts) + "\n")
    assert main(["verdicts", "add", str(root / "verdicts.csv"), "--out", str(out)]) == 0
    mined = root / "mined"
    settings = ["--set", "val_share=0.05", "--set", "test_share=0.8", "--set", "crops_per_session=2"]
    assert main(["mine", "--out", str(out), "--to", str(mined), *settings]) == 0
    return out, mined


def _copy(archive: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    """The archive's output, and a B2 to promote (the shipped weights, in a folder of the user's)."""
    out = tmp_path / "out"
    shutil.copytree(archive[0], out)
    model = tmp_path / "b2-new"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    return out, archive[1], model


def _trained_sessions(mined: Path) -> set[str]:
    with open(mined / "mined_sessions.csv", newline="") as f:
        return {r["session_id"] for r in csv.DictReader(f) if r["split"] in ("train", "val")}


def test_promotion_measures_on_held_out_verdicts_and_writes_cards_and_a_config(archive, tmp_path, capsys):
    out, mined, model = _copy(archive, tmp_path)
    args = ["promote", "--out", str(out), "--model", str(model), "--data", str(mined), "--bpcer", "0.5"]
    assert main([*args, "--frames-per-session", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    trained = _trained_sessions(mined)
    assert result["live"] + result["spoof"] == LIVE + SPOOF - len(trained)  # only sessions the training never held
    assert result["live"] >= needed(0.5)[0] and result["spoof"] >= needed(0.5)[1]
    assert set(result["measured"]) == {"b2", "reference", "fusion"}
    for figures in result["measured"].values():
        assert 0 <= figures["roc_auc"] <= 1 and 0 <= figures["apcer_at_bpcer0.5"] <= 1
        assert len(figures["apcer_at_bpcer_ci95"]) == 2
    # Whichever scorer was chosen, the cards, the report and the config say the same.
    fusion = read_scorer_card(Path(result["fusion_out"]))
    assert fusion.kind == "fusion" and set(fusion.members) == {"b2", "reference"}
    card = read_card(model)
    assert card.notes["promotion"]["why"] == result["why"]
    promoted_alone = card.real_evaluation != read_card(DEFAULT_MODEL_DIR).real_evaluation  # it took the figures
    assert promoted_alone == (result["decides"] == "b2")
    assert (fusion.real_evaluation is not None) == (result["decides"] == "fusion")
    config = Path(result["config"]).read_text()
    assert f"- {result['decides']}" in config and "promotion at bpcer=0.5" in config
    assert json.loads((model / "promotion.json").read_text())["decides"] == result["decides"]

    # A scan with the written config scores every face with the fusion too, and names the promotion.
    session = next((archive[0].parent / "in").glob("print*.mp4"))
    again = tmp_path / "again"
    assert main(["scan", str(session), "--out", str(again), "--config", result["config"], "--quiet"]) == 0
    [row] = run_query(str(again), "select scores, thresholds from sessions").to_pylist()
    assert {"b2", "reference", "fusion"} <= dict(row["scores"]).keys()
    assert dict(row["thresholds"])[result["decides"]] == pytest.approx(
        max(result["measured"][result["decides"]]["threshold"], 1e-6)
    )


def test_promotion_with_too_few_held_out_verdicts_or_a_bad_model_is_refused(archive, tmp_path, capsys):
    out, mined, model = _copy(archive, tmp_path)
    args = ["promote", "--out", str(out), "--data", str(mined)]
    assert main([*args, "--model", str(model)]) == 2  # bpcer 0.05: 60 live and 20 spoof needed
    err = capsys.readouterr().err
    assert "needs at least 60 live and 20 spoof held-out verdicts" in err
    assert main([*args, "--model", str(DEFAULT_MODEL_DIR), "--bpcer", "0.5"]) == 2
    assert "refusing to rewrite a shipped card" in capsys.readouterr().err
    (tmp_path / "b2-new-fusion").mkdir()
    assert main([*args, "--model", str(model), "--bpcer", "0.5"]) == 2
    assert "b2-new-fusion exists" in capsys.readouterr().err
    assert not (model / "promotion.json").exists() and read_card(model) == read_card(DEFAULT_MODEL_DIR)


def test_a_fusion_fitted_on_other_weights_is_refused_before_a_scan(archive, tmp_path, capsys):
    out, mined, model = _copy(archive, tmp_path)
    fusion = tmp_path / "fusion"
    fusion.mkdir()
    card = {"kind": "fusion", "version": "fusion-test", "bias": 0.0,
            "members": {"b2": {"weight": 1.0, "digest": "0123456789abcdef"}}}  # fmt: skip
    (fusion / "model.json").write_text(json.dumps(card))
    session = next((archive[0].parent / "in").glob("live*.mp4"))
    args = ["scan", str(session), "--out", str(tmp_path / "o"), "--set", f"scorers.fusion.model={fusion}"]
    assert main(args) == 2
    assert "was fitted on b2 weights 0123456789abcdef" in capsys.readouterr().err


def test_the_fusion_fit_finds_the_informative_member_and_weighs_sessions_alike():
    rng = np.random.default_rng(0)
    sessions = np.repeat(np.arange(200), 1 + rng.integers(0, 20, 200))  # sessions of 1 to 20 faces
    labels = (sessions % 2).astype(np.int64)
    informative = 1 / (1 + np.exp(-(2.0 * (labels - 0.5) * 2 + rng.normal(0, 1, len(labels)))))
    noise = rng.uniform(0.01, 0.99, len(labels))
    fit = fit_fusion({"good": informative, "noise": noise}, labels, sessions.astype(str).tolist())
    assert fit.weights["good"] > 0.5 and abs(fit.weights["noise"]) < 0.2 * fit.weights["good"]
    fused = fit({"good": informative, "noise": noise})
    assert np.mean((fused > 0.5) == labels) > 0.9
