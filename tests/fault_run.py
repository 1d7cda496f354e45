"""The hardening fault run (issue 17), as a script: not collected by pytest (minutes, needs root).

200 mutated videos from 5 real H.264 files (intact, truncated, bit flips, zeroed blocks,
random headers, duplicated chunks, empty, trailing garbage) are scanned into a 96 MB tmpfs;
the scan's whole process group is SIGKILLed three times mid-run, then the disk is filled
for one run, then space is freed and the same command finishes. Every input must end up
exactly once in the analyst's view (``sessions``: each session's latest attempt), every
attempt must be kept in ``session_history`` (a failed input is retried by each later run;
an input answered ``ok`` or ``no_face`` is never scanned again), and no console may show
a traceback.

    sudo uv run python -m tests.fault_run [WORK_DIR]     # prints a JSON summary; exit 1 when a check fails
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import duckdb

from pipeline.reports.query import run_query
from tests.helpers import ROOT
from tests.videos import write_face_video

KINDS = ("intact", "truncate", "flip", "zero_block", "header", "duplicate_chunk", "empty", "tail_garbage")


def mutate(data: bytearray, kind: str, rng: random.Random) -> bytearray:
    """One kind of damage done to a video's bytes."""
    if kind == "truncate":
        return data[: rng.randint(1, len(data) - 1)]
    if kind == "flip":
        for _ in range(rng.randint(1, 300)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "zero_block":
        start = rng.randrange(len(data))
        data[start : start + 1024] = bytes(min(1024, len(data) - start))
    elif kind == "header":
        data[:64] = bytes(rng.randrange(256) for _ in range(64))
    elif kind == "duplicate_chunk":
        start = rng.randrange(len(data) // 2)
        data[start:start] = data[start : start + 4096]
    elif kind == "empty":
        return bytearray()
    elif kind == "tail_garbage":
        data += bytes(rng.randrange(256) for _ in range(5000))
    return data


def main(work: Path) -> int:
    rng = random.Random(17)
    inputs, out = work / "in", work / "out"
    inputs.mkdir(parents=True)
    blobs = [write_face_video(work / f"base{i}.mp4", n=10 + 2 * i).read_bytes() for i in range(5)]
    for i in range(200):
        kind = KINDS[i % len(KINDS)]
        (inputs / f"m{i:03d}_{kind}.mp4").write_bytes(bytes(mutate(bytearray(rng.choice(blobs)), kind, rng)))
    out.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(out)], check=True)
    scan = [sys.executable, "-m", "pipeline.cli", "scan", str(inputs), "--out", str(out), "--quiet",
            "--set", "output.sessions_per_file=5"]  # fmt: skip

    def committed() -> int:
        if not list(out.glob("sessions/*/*.parquet")):
            return 0
        return duckdb.sql(f"select count(*) from '{out}/sessions/*/*.parquet'").fetchall()[0][0]

    log: list[dict] = []
    consoles: list[str] = []
    try:
        for target in (20, 60, 110):
            proc = subprocess.Popen(
                scan, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
            while committed() < target and proc.poll() is None:
                time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            log.append({"run": f"SIGKILL at {target}", "rows": committed()})
            time.sleep(2)
        stats = os.statvfs(out)
        filler = out / "filler.bin"
        filler.write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - 300 * 1024))
        full = subprocess.run(scan, cwd=ROOT, capture_output=True)
        consoles.append(full.stderr.decode())
        log.append({"run": "full disk", "exit": full.returncode, "rows": committed(),
                    "last_line": full.stderr.decode().strip().splitlines()[-1:]})  # fmt: skip
        filler.unlink()
        final = subprocess.run(scan, cwd=ROOT, capture_output=True)
        consoles.append(final.stderr.decode() + final.stdout.decode())
        log.append({"run": "final", "exit": final.returncode, "rows": committed()})
        view = run_query(str(out), "select session_id, status from sessions").to_pylist()
        history = run_query(
            str(out), "select session_id, count(*) as attempts, count(*) filter (where status <> 'failed') as answered"
            " from session_history group by 1"
        ).to_pylist()  # fmt: skip
        ids = [r["session_id"] for r in view]
        result = {
            "log": log,
            "inputs": 200,
            "sessions": len(set(ids)),
            "duplicated": sorted({sid for sid in ids if ids.count(sid) > 1}),
            "status": dict(Counter(r["status"] for r in view)),
            "history_rows": sum(r["attempts"] for r in history),
            "retried": sum(r["attempts"] > 1 for r in history),
            "answered_twice": sorted(r["session_id"] for r in history if r["answered"] > 1),
            "history_without_view_row": sorted({r["session_id"] for r in history} - set(ids)),
            "tracebacks": sum("Traceback" in text for text in consoles),
        }
    finally:
        subprocess.run(["umount", "-l", str(out)], capture_output=True)
    print(json.dumps(result, indent=1, default=str))
    ok = (
        result["sessions"] == 200
        and not result["duplicated"]
        and not result["answered_twice"]
        and not result["history_without_view_row"]
        and not result["tracebacks"]
        and final.returncode == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="liveness-fault-"))))
