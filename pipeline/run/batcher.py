"""Which session owns which score: crops of many sessions pooled into scoring batches.

Pure bookkeeping, without Ray, so the one place where a score could land on the wrong
session is unit-tested on its own. Sessions queue their crops whole; batches take crops in
arrival order, a session's crops split across batches where they do not fit; when every
crop of a session is scored, the session is handed back with its scores in crop order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    """Crops ``start:stop`` of session ``session_id``, in the order they sit in a batch."""

    session_id: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Batch:
    """Crops to score in one call, and the session segments they come from."""

    crops: np.ndarray
    segments: tuple[Segment, ...]

    def session_ids(self) -> list[str]:
        return list(dict.fromkeys(s.session_id for s in self.segments))


class CropBatcher:
    """Pools the crops of sessions into batches of ``batch_size`` and gives each session its
    scores back.

    >>> batcher = CropBatcher(batch_size=3)
    >>> batcher.add("a", np.zeros((2, 1, 1, 3), np.uint8)); batcher.add("b", np.zeros((2, 1, 1, 3), np.uint8))
    >>> batch = batcher.next_batch()
    >>> [(s.session_id, s.start, s.stop) for s in batch.segments]
    [('a', 0, 2), ('b', 0, 1)]
    >>> [sid for sid, _ in batcher.scored(batch, np.array([0.1, 0.2, 0.3], np.float32))]
    ['a']
    """

    def __init__(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._queue: deque[tuple[str, int, np.ndarray]] = deque()  # (session, offset, crops not yet batched)
        self._scores: dict[str, np.ndarray] = {}
        self._remaining: dict[str, int] = {}
        self.queued = 0  # crops waiting for a batch

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._remaining

    @property
    def pending(self) -> int:
        """Sessions waiting for some of their scores."""
        return len(self._remaining)

    def add(self, session_id: str, crops: np.ndarray) -> None:
        """Queue all crops of one session (at least one)."""
        if len(crops) == 0:
            raise ValueError(f"session {session_id!r} has no crop to score")
        if session_id in self._remaining:
            raise ValueError(f"session {session_id!r} is already queued")
        self._queue.append((session_id, 0, crops))
        self._scores[session_id] = np.full(len(crops), np.nan, np.float32)
        self._remaining[session_id] = len(crops)
        self.queued += len(crops)

    def next_batch(self, *, force: bool = False) -> Batch | None:
        """A full batch, or with ``force`` whatever is queued; None when there is not enough."""
        if not self.queued or (self.queued < self.batch_size and not force):
            return None
        parts, segments, size = [], [], 0
        while self._queue and size < self.batch_size:
            sid, start, crops = self._queue.popleft()
            take = min(len(crops), self.batch_size - size)
            segments.append(Segment(sid, start, start + take))
            parts.append(crops[:take])
            if take < len(crops):
                self._queue.appendleft((sid, start + take, crops[take:]))
            size += take
        self.queued -= size
        return Batch(np.concatenate(parts), tuple(segments))

    def scored(self, batch: Batch, scores: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Hand a batch's scores to their sessions; returns the sessions now complete, with
        all their scores. Segments of sessions dropped meanwhile are ignored."""
        if len(scores) != len(batch.crops):
            raise ValueError(f"{len(scores)} scores for a batch of {len(batch.crops)} crops")
        done = []
        offset = 0
        for segment in batch.segments:
            part = scores[offset : offset + len(segment)]
            offset += len(segment)
            if segment.session_id not in self._remaining:
                continue
            self._scores[segment.session_id][segment.start : segment.stop] = part
            self._remaining[segment.session_id] -= len(segment)
            if self._remaining[segment.session_id] == 0:
                done.append((segment.session_id, self._pop(segment.session_id)))
        return done

    def drop(self, session_ids: list[str]) -> None:
        """Forget these sessions (their batch failed for good): queued crops go, and scores of
        their other batches will be ignored."""
        gone = set(session_ids) & set(self._remaining)
        if not gone:
            return
        kept = [(sid, start, crops) for sid, start, crops in self._queue if sid not in gone]
        self.queued -= sum(len(crops) for sid, _, crops in self._queue if sid in gone)
        self._queue = deque(kept)
        for sid in gone:
            self._pop(sid)

    def _pop(self, session_id: str) -> np.ndarray:
        del self._remaining[session_id]
        return self._scores.pop(session_id)
