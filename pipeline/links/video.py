"""Whether two videos are the same recording, from their frame fingerprints.

Two sessions are one recording when at least ``min_matched`` of the shorter one's frame
hashes find a hash of the other within ``max_hash_bits`` bits *at one time offset* (the
offset that the most of them agree on, give or take one sampling step). A re-encoded, resized
or trimmed copy keeps both; two recordings of one room, or of one person, do not: their
close frames, if any, fall at scattered offsets.

Candidates come from an exact index of 16-bit bands of the hashes: a copy's hashes
share at least one band with the original's when they differ in at most 3 bits (and in
practice far more often), so only sessions sharing a band value are compared.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from pipeline.config import LinksConfig
from pipeline.video.fingerprint import Fingerprint, hamming

_BANDS = 4  # 64-bit hashes in four 16-bit bands


def same_recording(a: Fingerprint, b: Fingerprint, config: LinksConfig) -> float | None:
    """The share of the shorter fingerprint's hashes matched at one consistent offset, when
    it reaches ``config.min_matched`` (None otherwise, or when either is too short).

    Symmetric: two fingerprints of one length are measured from both sides and the larger
    share counts, so whether a pair is linked never depends on which was stored first.
    """
    if min(len(a), len(b)) < config.min_frames:
        return None
    sides = [(a, b)] if len(a) < len(b) else [(b, a)] if len(b) < len(a) else [(a, b), (b, a)]
    share = max(_share_in_step(short, long, config.max_hash_bits) for short, long in sides)
    return share if share >= config.min_matched else None


def _share_in_step(short: Fingerprint, long: Fingerprint, max_bits: int) -> float:
    """The largest share of ``short``'s hashes that find a close hash in ``long`` at one time
    offset, give or take one sampling step: the most hashes with a close pair whose offsets
    fall in one window two steps wide. Taking only each hash's single closest match, wherever it
    lies, would let a look-alike frame elsewhere in a slowly changing video (a face held
    still) outvote the right one: the copy's share then moved with encoder noise.
    """
    qi, oj = np.nonzero(hamming(short.hashes, long.hashes) <= max_bits)
    if not len(qi):
        return 0.0
    offsets = long.times[oj] - short.times[qi]
    width = 2 * (float(np.median(np.diff(short.times))) if len(short) > 1 else 0.5)
    starts = np.unique(offsets)  # the best window starts at some pair's offset
    hits = np.zeros(len(starts), np.int64)
    for i in np.unique(qi):
        own = np.sort(offsets[qi == i])
        first = np.searchsorted(own, starts)  # each window's first offset of this hash, if any
        inside = first < len(own)
        inside[inside] = own[first[inside]] <= starts[inside] + width + 1e-9
        hits += inside
    return float(hits.max()) / len(short)


def bands(hashes: np.ndarray) -> np.ndarray:
    """The 16-bit bands of 64-bit hashes, tagged by band number: int64 (K * 4,), unique."""
    h = hashes.astype(np.uint64)
    values = [((h >> np.uint64(16 * k)) & np.uint64(0xFFFF)).astype(np.int64) + (k << 16) for k in range(_BANDS)]
    return np.unique(np.concatenate(values))


class FingerprintIndex:
    """Stored fingerprints, found by shared hash bands and checked by :func:`same_recording`."""

    def __init__(self) -> None:
        self.fingerprints: list[Fingerprint] = []
        self._by_band: defaultdict[int, list[int]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self.fingerprints)

    def add(self, fingerprint: Fingerprint) -> int:
        """Store a copy of one fingerprint; returns its row.

        A copy, because a fingerprint that came back from a Ray worker is a view into that
        worker's result in the object store: kept, it would keep the session's crops there
        alive for the whole run (measured: 2 MB a session, 3.4 GB of PSS at 1000 sessions).
        """
        row = len(self.fingerprints)
        self.fingerprints.append(Fingerprint(fingerprint.times.copy(), fingerprint.hashes.copy()))
        for band in bands(fingerprint.hashes).tolist():
            self._by_band[band].append(row)
        return row

    def matches(self, fingerprint: Fingerprint, config: LinksConfig) -> list[tuple[int, float]]:
        """``(row, share)`` of every stored fingerprint that is the same recording."""
        if len(fingerprint) < config.min_frames:
            return []
        candidates = {row for band in bands(fingerprint.hashes).tolist() for row in self._by_band.get(band, ())}
        out = []
        for row in sorted(candidates):
            share = same_recording(fingerprint, self.fingerprints[row], config)
            if share is not None:
                out.append((row, share))
        return out
