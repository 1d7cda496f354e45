"""``liveness calibrate``: session operating points from an output's verdicts, refusals where the
verdicts cannot support the target, and a config a scan takes and names."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli.main import main
from pipeline.config import load_scan_config
from pipeline.reports.query import run_query
from pipeline.run.ledger import Ledger
from pipeline.run.output import RunWriter
from pipeline.storage import Store
from tests.helpers import add_rows
from tests.videos import write_face_video
from training.measure.calibrate import Target


def _output(
    out: Path, live: list[float], spoof: list[float], reasons: dict[int, list[str]] | None = None, *, judge: bool = True
) -> Path:
    """Sessions with these reference session scores (live first), each with its verdict when ``judge``."""
    store = Store(out)
    writer = RunWriter(store, Ledger(store), run_id="r1", scan_date=datetime.now(UTC).date().isoformat())
    verdicts = ["session_id,verdict"]
    for i, score in enumerate([*live, *spoof]):
        sid = f"s{i:03d}"
        row = {"session_id": sid, "source": f"/v/{sid}.mp4", "status": "ok", "run_id": "r1",
               "scanned_at": datetime.now(UTC), "scores": {"reference": score, "b2": 0.5},
               "reasons": (reasons or {}).get(i, [])}  # fmt: skip
        add_rows(writer, row, [])
        verdicts.append(f"{sid},{'live' if i < len(live) else 'spoof'}")
    writer.flush()
    if judge:
        (out / "verdicts.csv").write_text("\n".join(verdicts) + "\n")
        assert main(["verdicts", "add", str(out / "verdicts.csv"), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """80 live and 40 spoof verdicts; glasses-like false `occluded` on 30% of the live sessions,
    a rare `swap` on 2 of them."""
    rng = np.random.default_rng(26)
    live, spoof = rng.uniform(0.0, 0.6, 80), rng.uniform(0.3, 1.0, 40)
    reasons = {i: ["occluded:left_eye"] for i in range(0, 80, 3)} | {5: ["swap"], 50: ["swap", "occluded:mouth"]}
    out = _output(tmp_path_factory.mktemp("judged"), live.tolist(), spoof.tolist(), reasons)
    return out, live, spoof


def test_a_bpcer_target_sets_the_session_threshold_and_stops_a_rule_that_rejects_too_many_live(judged, capsys):
    out, live, spoof = judged
    assert main(["calibrate", "--out", str(out), "--target", "bpcer=0.05", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    [point] = result["points"]  # the reference decides alone by default
    t = point["threshold"]
    rejected = int((live >= t).sum())
    assert rejected <= 4 and int((live >= np.max(live[live < t])).sum()) > 4  # the lowest such threshold
    assert point["bpcer"] == pytest.approx(rejected / 80, abs=1e-4)
    assert point["apcer"] == pytest.approx(float((spoof < t).mean()), abs=1e-4)
    assert point["apcer_ci95"][0] <= point["apcer"] <= point["apcer_ci95"][1]
    assert (point["live"], point["spoof"]) == (80, 40)
    rules = {r["rule"]: r for r in result["signals"]}
    assert rules["occluded"]["fired_live"] == pytest.approx(28 / 80, abs=1e-4)
    assert (rules["occluded"]["action_before"], rules["occluded"]["action"]) == ("review", "inform")
    assert rules["swap"]["action"] == "spoof"  # 2 of 80: its false fires do not prove it over the budget
    config = load_scan_config(result["config"])
    assert config.decision.thresholds == {"reference": t} and config.decision.occluded == "inform"
    assert config.decision.calibration == result["label"] and "bpcer=0.05 from 80 live and 40 spoof" in result["label"]
    assert config.decision.swap == "spoof" and config.links == load_scan_config(None).links  # the rest as it was


def test_targets_the_verdicts_cannot_support_are_refused_naming_what_is_missing(judged, tmp_path, capsys):
    out, _, _ = judged
    capsys.readouterr()
    written = tmp_path / "never.yaml"
    assert main(["calibrate", "--out", str(out), "--target", "apcer=0.01", "--write", str(written)]) == 2
    err = capsys.readouterr().err
    assert "apcer=0.01 needs at least 300 spoof verdicts" in err and "has 40" in err and not written.exists()
    for bad in ("bpcer=0", "bpcer=1.5", "frr=0.1", "bpcer"):
        assert main(["calibrate", "--out", str(out), "--target", bad]) == 2
        assert "--target" in capsys.readouterr().err

    none = _output(tmp_path / "none", [0.1] * 3, [0.9] * 2, judge=False)
    assert main(["calibrate", "--out", str(none), "--target", "bpcer=0.05"]) == 2
    assert "holds no spoof or live verdict" in capsys.readouterr().err
    one = _output(tmp_path / "one", [0.1] * 70, [])
    assert main(["calibrate", "--out", str(one), "--target", "bpcer=0.05"]) == 2
    err = capsys.readouterr().err
    assert "needs verdicts of both classes" in err and "70 live and 0 spoof" in err

    stuck = _output(tmp_path / "stuck", [0.1] * 75 + [1.0] * 5, [0.9] * 10)  # 5 of 80 live at the very top
    assert main(["calibrate", "--out", str(stuck), "--target", "bpcer=0.05"]) == 2
    assert "the best reachable is bpcer=0.0625" in capsys.readouterr().err
    for output in (none, one, stuck):
        assert not (output / "_calibrations").exists()


def test_a_scan_takes_the_calibrated_config_and_names_it(judged, tmp_path, ray_session, shipped_model, capsys):
    out, _, _ = judged
    written = tmp_path / "calibrated.yaml"
    assert main(["calibrate", "--out", str(out), "--target", "bpcer=0.1", "--write", str(written)]) == 0
    assert main(["calibrate", "--out", str(out), "--target", "bpcer=0.1", "--write", str(written)]) == 2
    assert "exists" in capsys.readouterr().err  # never over a user's file
    threshold = load_scan_config(written).decision.thresholds["reference"]
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_face_video(inputs / "a.mp4", n=12)
    scan = tmp_path / "scan"
    assert main(["scan", str(inputs), "--out", str(scan), "--config", str(written)]) == 0
    printed = capsys.readouterr().out
    assert "calibration in force: bpcer=0.1 from 80 live" in printed
    [summary] = (scan / "_runs").glob("*.json")
    assert json.loads(summary.read_text())["calibration"].startswith("bpcer=0.1 from 80 live")
    row = run_query(str(scan), "select threshold, thresholds from sessions").to_pylist()[0]
    assert row["threshold"] == pytest.approx(threshold) and dict(row["thresholds"])["reference"] == pytest.approx(
        threshold
    )
    assert main(["report", "--out", str(scan)]) == 0
    [page] = scan.glob("report-*.html")
    assert "calibration in force: <span id='calibration'>bpcer=0.1 from 80 live" in page.read_text()


def test_the_rule_of_three_sets_how_many_verdicts_a_target_needs():
    assert Target.parse("bpcer=0.05").verdicts_needed == 60 and Target.parse("apcer=0.01").verdicts_needed == 300
    assert Target.parse("bpcer=0.1").counted == "live" and Target.parse("apcer=0.2").counted == "spoof"
