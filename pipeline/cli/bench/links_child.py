"""The 1:N same-face search at archive scale, as the benchmark's child process runs it.

Kept apart from the rest of :mod:`pipeline.cli.bench` so that the measured process imports only numpy
and the index (its peak memory is the search's, not MediaPipe's or torch's).
"""

from __future__ import annotations

import time

import numpy as np

from pipeline.faces.identity import IdentityCard
from pipeline.links.faces import TemplateIndex


def link_search_child(new: int, stored: int, planted: int = 100, seed: int = 0) -> dict:
    """In this process: an index of ``stored`` random unit templates, then ``new`` queries
    (``planted`` of them a stored template moved by 0.3, the rest random) searched within
    the identity threshold. Prints nothing; returns the timings and what was found."""
    rng = np.random.default_rng(seed)

    def unit(n: int) -> np.ndarray:
        out = np.empty((n, 128), np.float32)
        for i in range(0, n, 100_000):  # in chunks: no float64 copy of the whole archive
            block = rng.standard_normal((min(100_000, n - i), 128), dtype=np.float32)
            out[i : i + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out

    started = time.perf_counter()
    index = TemplateIndex(unit(stored))
    built = time.perf_counter() - started
    queries = unit(new)
    targets = rng.choice(stored, size=min(planted, new, stored), replace=False)
    for k, row in enumerate(targets):
        step = rng.standard_normal(128).astype(np.float32)
        queries[k] = index.vector(int(row)) + 0.3 * step / np.linalg.norm(step)
    threshold = IdentityCard.load().threshold
    started = time.perf_counter()
    found = index.within(queries, threshold)
    search = time.perf_counter() - started
    hit = {(int(q), int(s)) for q, s in zip(found.query, found.stored, strict=True)}
    return {
        "new": new,
        "stored": stored,
        "threshold": threshold,
        "index_build_s": round(built, 2),
        "search_s": round(search, 2),
        "matches": len(found),
        "planted_found": sum((k, int(row)) in hit for k, row in enumerate(targets)),
        "planted": len(targets),
    }
