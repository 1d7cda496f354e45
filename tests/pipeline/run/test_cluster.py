"""``--ray-address`` against a real two-node Ray cluster started on this machine (loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import psutil
import pytest

from pipeline.cli.main import main
from tests.helpers import free_port, sessions_by_id
from tests.videos import write_face_video, write_no_face_video, write_sideways_face_video, write_text_as_video


def _ray(*args: str, env: dict) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", *args], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def two_node_cluster():
    """A head node (1 CPU) and a second node (2 CPUs) joined over loopback, and Ray's temp dir
    (its logs); torn down by their temp dir."""
    temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths must stay short
    port = free_port()
    env = os.environ | {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    try:
        _ray(
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--num-gpus=0",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            env=env,
        )
        _ray(
            "start",
            f"--address=127.0.0.1:{port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--num-gpus=0",
            "--disable-usage-stats",
            env=env,
        )
        yield f"127.0.0.1:{port}", Path(temp_dir)
    finally:
        for p in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(p.info["cmdline"] or [])
            if temp_dir in cmdline or f"127.0.0.1:{port}" in cmdline:
                try:
                    p.kill()
                except psutil.Error:
                    pass


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cluster-in")
    for i in range(3):
        write_face_video(root / f"face{i}.mp4", n=8 + 2 * i)
    write_sideways_face_video(root / "phone.mp4", n=8)
    write_no_face_video(root / "none.mp4", n=6)
    write_text_as_video(root / "broken.mp4")
    return root


def _rows(out: Path) -> dict[str, tuple]:
    return {
        sid: (
            r["status"],
            r["error"],
            r["frames_sampled"],
            r["frames_scored"],
            None if r["spoof_score"] is None else round(r["spoof_score"], 5),
            r["decision"],
        )
        for sid, r in sessions_by_id(out).items()
    }


def _frames(out: Path) -> list[tuple]:
    return duckdb.sql(
        f"select session_id, frame_index, n_faces, round(spoof_score, 5) from read_parquet('{out}/frames/*/*.parquet')"
        " order by 1, 2"
    ).fetchall()


# Of two sessions linked within one run, the one that finishes second gets the linked reason:
# the order sessions finish in differs between a cluster and one machine; the links do not.
NO_LINKED_REASON = ("--set", "decision.linked=ignore")


def _links(out: Path) -> set[tuple[frozenset, str]]:
    rows = duckdb.sql(f"select session_a, session_b, kind from '{out}/links/*/*.parquet'").fetchall()
    return {(frozenset((a, b)), kind) for a, b, kind in rows}


SECRET = "liveness-test-secret-3f9c1a"  # must reach no file of the cluster


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # a socket, or a file Ray removed meanwhile
        return b""


def test_cluster_scan_equals_a_local_scan(
    two_node_cluster: tuple[str, Path], archive: Path, tmp_path: Path, ray_session, shipped_model
):
    """The same rows, links and frames; and the driver's AWS credentials reach none of the
    cluster's files (issue 18 item 7: they were in the head's runtime_env_agent.log)."""
    address, ray_temp = two_node_cluster
    cluster_out, local_out = tmp_path / "cluster", tmp_path / "local"
    credentials = {"AWS_ACCESS_KEY_ID": "AKIDLIVENESSTEST", "AWS_SECRET_ACCESS_KEY": SECRET}
    scan = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "scan",
            str(archive),
            "--out",
            str(cluster_out),
            "--quiet",
            "--ray-address",
            address,
            *NO_LINKED_REASON,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | credentials,
    )
    assert scan.returncode == 0, scan.stderr[-3000:]
    assert "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY not sent to the Ray cluster" in scan.stderr
    leaked = [p for p in ray_temp.rglob("*") if p.is_file() and not p.is_symlink() and SECRET.encode() in _bytes(p)]
    assert leaked == []
    assert main(["scan", str(archive), "--out", str(local_out), "--quiet", *NO_LINKED_REASON]) == 0
    assert _rows(cluster_out) == _rows(local_out)
    assert _links(cluster_out) == _links(local_out) != set()
    assert _frames(cluster_out) == _frames(local_out)
    [summary] = [json.loads(p.read_text()) for p in (cluster_out / "_runs").glob("*.json")]
    assert summary["nodes"] == 2 and summary["sessions"] == 6
