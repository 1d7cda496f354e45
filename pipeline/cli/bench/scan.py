"""The scan end to end in a child process: its sessions/s, the CPU of its whole process tree and
its peak memory (RSS summed, and PSS), and peak memory over growing numbers of sessions."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import psutil

from pipeline.cli.bench.sessions import make_sessions
from pipeline.config import ScanConfig
from pipeline.video.sources import Session


class TreeUsage:
    """Samples, in a thread, a process and all its descendants (Ray's processes, workers and
    actors): the summed RSS every ``interval_s``, the summed PSS (shared pages split between
    the processes that map them: what the tree really holds) every ``pss_interval_s``, and
    each process's CPU time (user + system) as last seen, summed in :attr:`cpu_s`. PSS costs
    the kernel a walk of every page table (67 ms of CPU per sample of a scan's processes,
    measured): sampled as often as RSS it would take a sixth of a 2-core machine from the
    scan being measured. A process that ends between two samples loses its last interval's
    CPU (at most ``interval_s`` each)."""

    def __init__(self, pid: int, interval_s: float = 0.2, pss_interval_s: float = 3.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.pss_interval_s = pss_interval_s
        self.peak_rss = self.peak_pss = 0
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> CPU seconds last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu_s(self) -> float:
        """CPU seconds of every process of the tree, as last sampled."""
        return sum(self._cpu.values())

    def _sample(self, with_pss: bool) -> None:
        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        rss = pss = 0
        for p in tree:
            try:
                rss += p.memory_info().rss
                times = p.cpu_times()
                self._cpu[(p.pid, p.create_time())] = times.user + times.system
                pss += _pss(p.pid) if with_pss else 0
            except (psutil.Error, OSError):
                continue
        self.peak_rss = max(self.peak_rss, rss)
        if with_pss:
            self.peak_pss = max(self.peak_pss, pss)

    def _run(self) -> None:
        next_pss = time.monotonic() + 1.0  # the first PSS once the processes are up
        while not self._stop.is_set():
            with_pss = time.monotonic() >= next_pss
            self._sample(with_pss)
            if with_pss:
                next_pss = time.monotonic() + self.pss_interval_s
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeUsage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _pss(pid: int) -> int:
    """A process's proportional set size in bytes (Linux; its RSS elsewhere)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return psutil.Process(pid).memory_info().rss


def measure_scan(sessions: list[Session], config: ScanConfig, checkpoint: Path) -> dict:
    """``liveness scan`` as a user runs it, in a child process with this config, into a
    temporary output: throughput and stage counts from its run summary (Ray's start-up
    apart), the CPU and peak memory of the whole process tree. On a terminal the child's
    own progress bar shows."""
    import subprocess
    import sys

    import yaml

    tty = sys.stderr.isatty()
    with tempfile.TemporaryDirectory(prefix="liveness-bench-") as tmp:
        manifest = Path(tmp) / "sessions.csv"
        manifest.write_text("session_id,uri\n" + "".join(f"{s.session_id},{s.uri}\n" for s in sessions))
        config_file = Path(tmp) / "scan.yaml"
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json") | {"model": str(checkpoint)}))
        out = Path(tmp) / "out"
        command = [sys.executable, "-m", "pipeline.cli", "scan", str(manifest), "--out", str(out)]
        command += ["--config", str(config_file), *([] if tty else ["--quiet"])]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=None if tty else subprocess.PIPE)
        with TreeUsage(proc.pid) as usage:
            _, err = proc.communicate()
        if proc.returncode != 0:
            detail = err.decode()[-2000:] if err else "its messages are above"
            raise RuntimeError(f"the benchmark scan failed (exit {proc.returncode}): {detail}")
        [run] = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    return {
        "wall_s": run["wall_s"],
        "startup_s": run["startup_s"],
        "sessions": run["sessions"],
        "crops": run["crops"],
        "backend": run["backend"],
        "first_session_s": run["first_session_s"],
        "last_session_s": run["last_session_s"],
        "by_status": run["by_status"],
        "stages": run["stages"],
        "refined": run["refined"],
        "cpu_s": usage.cpu_s,
        "peak_rss_mb": usage.peak_rss / 2**20,
        "peak_pss_mb": usage.peak_pss / 2**20,
    }


def memory_profile(
    config: ScanConfig,
    checkpoint: Path,
    counts: list[int],
    *,
    seconds: float,
    fps: float,
    size: tuple[int, int],
    work_dir: Path,
) -> dict:
    """Peak memory of scans over ``counts`` sessions each (the same session files, repeated)."""
    folder = work_dir / f"mem-{seconds:g}s-{size[0]}x{size[1]}"
    base = make_sessions(folder, min(max(counts), 10), seconds=seconds, fps=fps, size=size)
    links = folder / "links"
    links.mkdir(exist_ok=True)
    uris = []
    for i in range(max(counts)):  # a file per session (a scan lists each file once): hard links to the few made
        link = links / f"m{i:05d}.mp4"
        if not link.exists():
            os.link(base[i % len(base)].uri, link)
        uris.append(str(link))
    out = {}
    for n in counts:
        logging.getLogger(__name__).info("peak memory: a scan of %d sessions", n)
        sessions = [Session(session_id=f"m{i:05d}", uri=uris[i]) for i in range(n)]
        result = measure_scan(sessions, config, checkpoint)
        out[str(n)] = {
            "peak_rss_mb": round(result["peak_rss_mb"], 1),
            "peak_pss_mb": round(result["peak_pss_mb"], 1),
            "wall_s": round(result["wall_s"], 1),
            "crops": result["crops"],
        }
    return out
