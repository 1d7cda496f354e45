"""liveness bench on a tiny workload: it runs every measurement and its last line is the JSON the
issue asks for. Figures are never asserted against times: this only checks they are there and sane."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.cli.main import main

POSITIVE = (
    "cost_vs_decode",
    "decode_cpu_s_per_video_s",
    "scan_cpu_s_per_video_s",
    "scorer_crops_per_s",
    "scan_sessions_per_s",
    "sessions_per_s_per_core",
    "bound_sessions_per_s",
    "pipeline_efficiency",
    "speedup_vs_naive",
    "peak_rss_mb",
    "peak_pss_mb",
)
REQUIRED = (
    *POSITIVE,
    "machine",
    "backend",
    "settings",
    "bottleneck",
    "cpu_ms_per_video_s",
    "stage_counts_per_video_s",
    "scan_stage_counts",
    "steady_efficiency",
    "first_session_s",
)


def test_bench_measures_every_stage_and_ends_with_json(tmp_path: Path, ray_session, shipped_model, capsys):
    argv = [
        "bench",
        "--sessions",
        "2",
        "--seconds",
        "1.5",
        "--fps",
        "12",
        "--size",
        "320x240",
        "--work-dir",
        str(tmp_path),
        "--json",
        "--memory",
        "1,3",
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    for key in REQUIRED:
        assert key in result, key
    assert result["faces"] > 0 and result["sessions"] == 2 and result["settings"]["naive_sessions"] == 2
    for key in POSITIVE:
        assert result[key] > 0, key
    assert set(result["cpu_ms_per_video_s"]) == {"decode", "detect", "signals", "identity", "score"}
    assert result["identity_ms_per_embedding"] > 0
    counts = result["stage_counts_per_video_s"]
    # the scan's schedules: the mesh on every sampled frame, detection and scoring on fewer
    assert counts["meshes"] > 0 and 0 < counts["detections"] < counts["frames"]
    assert 0 < counts["scheduled"] <= counts["frames"]
    assert result["scan_stage_counts"]["frames"] == round(counts["frames"] * result["video_s"])
    by_input = result["b2_cpu_ms_per_crop_by_input"]
    assert set(by_input) == {"128", "260"} and min(by_input.values()) > 0 and result["b2_260_vs_128_cost"] > 0
    assert result["settings"]["sample_fps"] == 12.0 and result["machine"]["cores"] >= 1
    assert set(result["memory_by_sessions"]) == {"1", "3"}
    assert (
        result["memory_by_sessions"]["3"]["crops"] > result["memory_by_sessions"]["1"]["crops"]
    )  # three files really scanned
    assert (
        len(list(tmp_path.glob("*/bench*.mp4"))) == 2 + 3
    )  # the bench sessions, and the files the memory runs link to
    assert main(["bench", "--sessions", "0"]) == 2
    assert main(["bench", "--naive-sessions", "0"]) == 2
    assert main(["bench", "--b2-input", "8"]) == 2
