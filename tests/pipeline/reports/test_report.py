"""liveness report: one self-contained HTML file, checked in a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli.main import main
from pipeline.reports.report import blink_spans
from pipeline.run.ledger import Ledger
from pipeline.run.output import RunWriter
from pipeline.session.evidence import encode_jpeg
from pipeline.storage import Store
from tests.helpers import ROOT, add_rows
from tests.videos import face_scene

ARTIFACTS = ROOT / ".artifacts"
TODAY = datetime.now(UTC).date().isoformat()


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    """A day of 12 sessions: spoof with a swap, occluded mouth, several live, one failed."""
    out = tmp_path_factory.mktemp("report-out")
    store = Store(out)
    writer = RunWriter(store, Ledger(store), run_id="r1", scan_date=TODAY)
    now = datetime.now(UTC)
    rng = np.random.default_rng(0)
    thumb = encode_jpeg(face_scene()[90:390, 170:470], 112, 80)
    for i in range(12):
        sid = f"session-{i:02d}"
        swap = i == 0
        score = [0.93, 0.6, 0.35][i] if i < 3 else 0.05 + 0.01 * i
        decision = "spoof" if i in (0, 1) else "review" if i == 2 else "live"
        t = np.arange(36) / 12
        ear = 0.3 + 0.01 * rng.standard_normal(36)
        ear[[10, 25]] = 0.08
        frames = [
            {
                "session_id": sid,
                "frame_index": j,
                "pts_s": float(t[j]),
                "n_faces": 1,
                "spoof_score": float(score + 0.02 * rng.standard_normal()),
                "similarity_prev": None if j == 0 else (0.2 if swap and j == 18 else 0.9),
                "ear_left": float(ear[j]),
                "ear_right": float(ear[j]),
                "occlusion_mouth": 0.9 if i == 2 else 0.05,
                "run_id": "r1",
            }
            for j in range(36)
        ]
        evidence = (
            [
                {
                    "session_id": sid,
                    "frame_index": j,
                    "pts_s": float(t[j]),
                    "kind": k,
                    "spoof_score": score,
                    "jpeg": thumb,
                    "run_id": "r1",
                }
                for j, k in ((5, "top_spoof"), (17, "before_swap"), (18, "after_swap"))
            ]
            if decision != "live"
            else []
        )
        add_rows(
            writer,
            {
                "session_id": sid,
                "source": f"/archive/{sid}.mp4",
                "status": "ok",
                "decision": decision,
                "spoof_score": score,
                "spoof_score_max": score + 0.05,
                "reasons": (
                    ["spoof_score", "swap"]
                    if swap
                    else ["spoof_score"]
                    if decision == "spoof"
                    else ["occluded:mouth"]
                    if i == 2
                    else []
                ),
                "swap_detected": swap,
                "swap_at_s": 1.5 if swap else None,
                "blink_count": 2,
                "blinks": [(float(t[10]), float(t[11])), (float(t[25]), float(t[26]))],
                "occluded_regions": ["mouth"] if i == 2 else [],
                "face_ratio": 1.0,
                "multi_face_ratio": 0.0,
                "other_faces_scored": 4 if i == 1 else 0,
                "other_spoof_score": 0.987 if i == 1 else None,
                "threshold": 0.5,
                "model_version": "test",
                "run_id": "r1",
                "scanned_at": now,
            },
            frames,
            evidence,
        )
    add_rows(
        writer,
        {
            "session_id": "broken",
            "source": "/archive/broken.mp4",
            "status": "failed",
            "error": "empty file (0 bytes)",
            "run_id": "r1",
            "scanned_at": now,
        },
        [],
    )
    writer.flush()
    return out


def test_report_ranks_sessions_and_is_self_contained(output: Path, capsys):
    assert main(["report", "--out", str(output), "--top", "5"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == output / f"report-{TODAY}.html"
    page = path.read_text()
    assert not re.search(r"(src|href)=['\"]https?://", page)  # nothing to fetch: it opens offline
    ranked = re.findall(r"<tr><td>(\d+)</td><td>([^<]+)</td>", page)
    assert [sid for _, sid in ranked[:3]] == ["session-00", "session-01", "session-02"] and len(ranked) == 13
    assert "swap at 1.50 s" in page and "blocked regions: <b>mouth</b>" in page
    assert page.count("other faces scored") == 1 and "4 other faces scored (0.987)" in page
    assert page.count("data:image/jpeg;base64,") == 9  # three flagged sessions, three thumbnails each


def test_report_errors_are_usage_errors(output: Path, tmp_path: Path, capsys):
    assert main(["report", "--out", str(output), "--date", "1999-01-01"]) == 2
    assert "no session was scanned on 1999-01-01" in capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path / "empty")]) == 2


def _chromium() -> str:
    """The system's Chromium; the test skips without one (CI must have it: .ci/run installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (.ci/run does)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def test_report_renders_in_headless_chromium(output: Path, tmp_path: Path):
    browser = _chromium()
    page = tmp_path / "report.html"
    assert main(["report", "--out", str(output), "--output", str(page)]) == 0
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [browser, *flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    loaded = int(re.search(r'data-images-loaded="(\d+)"', dom).group(1))
    total = int(re.search(r'data-images-total="(\d+)"', dom).group(1))
    rows = int(re.search(r'data-table-rows="(\d+)"', dom).group(1))
    assert rows == 13 and total == 1 + 3 + 9 and loaded == total  # histogram, 3 timelines, 9 thumbnails: all decoded
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-screenshot.png"
    subprocess.run(
        [browser, *flags, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 50_000


def test_the_report_draws_the_blinks_the_scan_stored_never_a_recount():
    """With non-default blink settings the scan's count differs from what default thresholds
    would find in the EAR series: the report must show the scan's blinks, and all of them."""
    stored = {"blink_count": 1, "blinks": [{"start_s": 1.0, "end_s": 1.25}]}
    assert blink_spans(stored) == [(1.0, 1.25)] and len(blink_spans(stored)) == stored["blink_count"]
    assert blink_spans({"blink_count": None, "blinks": None}) == []  # written before blinks were stored


def test_hostile_names_are_escaped_and_no_secret_is_written_anywhere(tmp_path: Path, shipped_model):
    """Session ids, file names and manifest columns carrying HTML and script reach the report
    escaped; the storage credentials in the environment appear in no output, log or report."""
    import sys

    from tests.videos import write_face_video, write_text_as_video

    inputs = tmp_path / "in"
    inputs.mkdir()
    write_face_video(inputs / 'it\'s "a" <b>video.mp4', n=6)
    write_text_as_video(inputs / "broken.mp4")
    hostile = ["<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "javascript:alert(3)"]
    (inputs / "manifest.csv").write_text(
        "session_id,uri,note\n"
        f'"{hostile[0]}","it\'s ""a"" <b>video.mp4",{hostile[2]}\n'
        + '"'
        + hostile[1].replace('"', '""')
        + '",broken.mp4,x\n'
    )
    secret = "s3cr3t-Value-9f8e7d"
    env = os.environ | {"AWS_SECRET_ACCESS_KEY": secret, "AWS_ACCESS_KEY_ID": "AKIA-" + secret}
    out = tmp_path / "out"
    scan = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "scan", str(inputs / "manifest.csv"), "--out", str(out)],
        capture_output=True, env=env, timeout=600,
    )  # fmt: skip
    assert scan.returncode == 0, scan.stderr.decode()[-2000:]
    report = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "report", "--out", str(out)], capture_output=True, env=env, timeout=300
    )
    assert report.returncode == 0, report.stderr.decode()[-2000:]
    page = next(out.glob("report-*.html")).read_text()
    for text in hostile[:2]:
        assert text not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<b>video" not in page and "&lt;b&gt;video" in page
    assert not re.search(r"""(src|href)\s*=\s*['"]?\s*(https?:|//|javascript:)""", page, re.I)  # loads nothing
    assert "<link" not in page and "@import" not in page
    for path in [p for p in out.rglob("*") if p.is_file()]:
        assert secret.encode() not in path.read_bytes(), path
    for stream in (scan.stdout, scan.stderr, report.stdout, report.stderr):
        assert secret.encode() not in stream


def test_analysts_mark_sessions_in_the_page_and_commit_the_downloaded_csv(output: Path, tmp_path: Path, capsys):
    """In headless Chromium: mark two sessions (one in its flagged card, one in the table),
    reload (the marks stay), download the CSV from the page itself, commit it with
    `liveness verdicts add`; the next report shows the committed verdicts."""
    from playwright.sync_api import sync_playwright

    browser_path = _chromium()
    out = tmp_path / "out"
    shutil.copytree(output, out)
    page_file = tmp_path / "report.html"
    assert main(["report", "--out", str(out), "--output", str(page_file)]) == 0
    note = 'bezel visible, "tablet" at 1.2 s'
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(page_file.as_uri())
        card = page.locator("#s1 .mark")  # session-00's flagged card
        card.locator("select.v").select_option("spoof")
        card.locator("select.a").select_option("replay")
        card.locator("input.n").fill(note)
        card.locator("input.n").dispatch_event("change")
        row = page.locator("#ranked .mark[data-session='session-07']")
        row.locator("select.v").select_option("live")
        assert page.locator("#ranked .mark[data-session='session-00'] select.a").input_value() == "replay"
        page.reload()
        assert page.locator("#marked").text_content() == "2"  # kept in the browser across a reload
        page.fill("#analyst", "Ana Lyst")
        with page.expect_download() as download:
            page.click("#download-verdicts")
        csv_file = tmp_path / download.value.suggested_filename
        download.value.save_as(csv_file)
        browser.close()
    assert csv_file.name == f"verdicts-{TODAY}.csv"
    assert main(["verdicts", "add", str(csv_file), "--out", str(out)]) == 0
    assert "committed 2 verdict(s) (1 spoof, 1 live)" in capsys.readouterr().out
    rows = Store(out).committed("verdicts")
    assert len(rows) == 1
    from pipeline.reports.query import run_query

    got = run_query(str(out), "select session_id, verdict, attack, note, analyst from verdicts order by 1").to_pylist()
    assert got == [
        {"session_id": "session-00", "verdict": "spoof", "attack": "replay", "note": note, "analyst": "Ana Lyst"},
        {"session_id": "session-07", "verdict": "live", "attack": None, "note": None, "analyst": "Ana Lyst"},
    ]
    assert main(["report", "--out", str(out), "--output", str(page_file)]) == 0
    assert page_file.read_text().count("committed verdict'>now spoof (replay)") == 2  # card and table


def test_control_and_bidi_characters_in_ids_reach_the_page_as_visible_escapes(tmp_path: Path):
    """Issue 18 item 8: NUL, ESC and U+202E in ids reached the HTML raw."""
    out = tmp_path / "out"
    store = Store(out)
    writer = RunWriter(store, Ledger(store), run_id="r1", scan_date=TODAY)
    hostile = "cust\x1b[2J\u202egpj.exe"
    row = {"session_id": hostile, "source": f"/x/{hostile}.mp4", "status": "failed", "error": f"cannot open {hostile}"}
    add_rows(writer, row | {"run_id": "r1", "scanned_at": datetime.now(UTC)}, [])
    writer.flush()
    page = tmp_path / "r.html"
    assert main(["report", "--out", str(out), "--output", str(page)]) == 0
    text = page.read_text()
    assert "\x1b" not in text and "\u202e" not in text
    assert "cust\\x1b[2J\\u202egpj.exe" in text
