"""Inputs and outputs on s3:// against a real S3-compatible server (SeaweedFS) on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pipeline.cli.main import main
from pipeline.storage import Store
from tests.helpers import free_port, sessions_by_id
from tests.videos import write_empty, write_face_video, write_no_face_video

BUCKET = "kyc"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    data = tmp_path_factory.mktemp("seaweedfs")
    # each port's gRPC twin (port + 10000, SeaweedFS's rule) must be free too
    ports = {name: free_port(twin_offset=10000) for name in ("master", "volume", "filer", "s3")}
    proc = subprocess.Popen(
        [
            weed,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            "-volume.max=4",
            "-filer",
            f"-filer.port={ports['filer']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    admin = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{ports['s3']}",
        scheme="http",
        access_key="test",
        secret_key="test",
        region="us-east-1",
        allow_bucket_creation=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.create_dir(BUCKET)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("SeaweedFS did not start")
            time.sleep(0.5)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield admin
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.kill()  # its data is a temporary folder; a graceful stop takes SeaweedFS half a minute
    proc.wait(timeout=30)


def _upload(admin: pafs.S3FileSystem, local: Path, key: str) -> None:
    with admin.open_output_stream(f"{BUCKET}/{key}") as f:
        f.write(local.read_bytes())


def test_scan_reads_and_writes_object_storage(s3_server, tmp_path: Path, ray_session, shipped_model, capsys):
    admin = s3_server
    local = tmp_path / "videos"
    local.mkdir()
    write_face_video(local / "face.mp4", n=8)
    write_no_face_video(local / "none.mp4", n=6)
    write_empty(local / "empty.mp4")
    for name in ("face.mp4", "none.mp4", "empty.mp4"):
        _upload(admin, local / name, f"in/day1/{name}")
    _upload(admin, local / "face.mp4", "in/day2/face copy.mp4")
    (local / "manifest.csv").write_text(
        "session_id,uri,channel\nm-face,day2/face copy.mp4,app\nm-gone,day2/gone.mp4,web\n"
    )
    _upload(admin, local / "manifest.csv", "in/manifest.csv")

    assert (
        main(
            [
                "scan",
                f"s3://{BUCKET}/in/day1",
                f"s3://{BUCKET}/in/manifest.csv",
                "--out",
                f"s3://{BUCKET}/out",
                "--quiet",
            ]
        )
        == 0
    )
    rows = sessions_by_id(f"{BUCKET}/out", filesystem=admin)
    assert {k: v["status"] for k, v in rows.items()} == {
        "face": "ok",
        "none": "no_face",
        "empty": "failed",
        "m-face": "ok",
        "m-gone": "failed",
    }
    assert rows["face"]["source"] == f"s3://{BUCKET}/in/day1/face.mp4" and rows["face"]["frames_scored"] >= 1
    assert rows["m-gone"]["error"] == "file not found" and dict(rows["m-face"]["extra"])["channel"] == "app"
    assert abs(rows["face"]["spoof_score"] - rows["m-face"]["spoof_score"]) < 1e-6
    store = Store(f"s3://{BUCKET}/out")
    assert store.list("_runs", ".json") and store.list("_ledger/committed", ".parquet")

    # the same scan of the local copy gives the same scores
    assert main(["scan", str(local / "face.mp4"), "--out", str(tmp_path / "local-out"), "--quiet"]) == 0
    local_rows = sessions_by_id(tmp_path / "local-out")
    assert abs(local_rows["face"]["spoof_score"] - rows["face"]["spoof_score"]) < 1e-6

    capsys.readouterr()
    assert main(["scan", f"s3://{BUCKET}/in/day1", "--out", f"s3://{BUCKET}/out", "--dry-run"]) == 0
    assert "1 to scan, 2 skipped" in capsys.readouterr().out  # the failed (empty) file is tried again
    dry = [
        "scan",
        f"s3://{BUCKET}/in/day1",
        "--out",
        f"s3://{BUCKET}/out",
        "--dry-run",
        "--set",
        "input.retry_failed=0",
    ]
    assert main(dry) == 0
    assert "0 to scan, 3 skipped" in capsys.readouterr().out


def test_missing_bucket_prefix_is_a_clear_input_error(s3_server, tmp_path: Path, capsys):
    assert main(["scan", f"s3://{BUCKET}/nothing-here", "--out", str(tmp_path / "o")]) == 2
    assert "no such object or prefix" in capsys.readouterr().err
