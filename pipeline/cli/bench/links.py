"""The 1:N same-face search at archive scale, measured in a child process that imports only numpy
and the index (:mod:`pipeline.cli.bench.links_child`)."""

from __future__ import annotations

import json

from pipeline.cli.bench.scan import TreeUsage


def faiss_version() -> str:
    import faiss

    return str(faiss.__version__)


def measure_link_search(new: int = 10_000, stored: int = 1_000_000) -> dict:
    """The 1:N same-face search at archive scale, in a child process: its time and peak memory."""
    import subprocess
    import sys

    code = (
        "import json; from pipeline.cli.bench.links_child import link_search_child; "
        f"print(json.dumps(link_search_child({int(new)}, {int(stored)})))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with TreeUsage(proc.pid, interval_s=0.05, pss_interval_s=1e9) as memory:
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the link search benchmark failed: {err.decode()[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1]) | {
        "peak_rss_mb": round(memory.peak_rss / 2**20, 1),
        "backend": f"faiss {faiss_version()} IndexFlatL2 range search (exact)",
    }
