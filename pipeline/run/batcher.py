"""Which session owns which score: crops of many sessions pooled into scoring batches.

Pure bookkeeping, without Ray, so the one place where a score could land on the wrong
session is unit-tested on its own. A session's faces come as crops per kind of crop (one
array per crop key, the same faces in the same order), and each scorer gives one score per
face. Sessions queue their faces whole; batches take faces in arrival order, a session's
faces split across batches where they do not fit; when every face of a session is scored,
the session is handed back with every scorer's scores in face order. A batch holds one set
of crop kinds: a session queued with fewer kinds (a refinement round, which brings the
deciding scorers' crops only) starts a batch of its own kinds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
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


Crops = Mapping[str, np.ndarray]  # crop key -> (N, S, S, 3): the same N faces in every array
Scores = Mapping[str, np.ndarray]  # scorer name -> (N,)


def _faces(crops: Crops) -> int:
    sizes = {len(v) for v in crops.values()}
    if len(sizes) != 1:
        raise ValueError(f"every kind of crop must hold the same faces, got sizes {sorted(sizes)}")
    return sizes.pop()


@dataclass(frozen=True)
class Batch:
    """Faces to score in one call (their crops by crop key), and the session segments they come from."""

    crops: dict[str, np.ndarray]
    segments: tuple[Segment, ...]

    def __len__(self) -> int:
        return _faces(self.crops)

    def session_ids(self) -> list[str]:
        return list(dict.fromkeys(s.session_id for s in self.segments))


class CropBatcher:
    """Pools the crops of sessions into batches of ``batch_size`` and gives each session its
    scores back.

    >>> batcher = CropBatcher(batch_size=3)
    >>> two = {"c": np.zeros((2, 1, 1, 3), np.uint8)}
    >>> batcher.add("a", two); batcher.add("b", two)
    >>> batch = batcher.next_batch()
    >>> [(s.session_id, s.start, s.stop) for s in batch.segments]
    [('a', 0, 2), ('b', 0, 1)]
    >>> [sid for sid, _ in batcher.scored(batch, {"m": np.array([0.1, 0.2, 0.3], np.float32)})]
    ['a']
    """

    def __init__(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._queue: deque[tuple[str, int, dict[str, np.ndarray]]] = deque()  # (session, offset, faces not yet batched)
        self._scores: dict[str, dict[str, np.ndarray]] = {}
        self._sizes: dict[str, int] = {}
        self._remaining: dict[str, int] = {}
        self.queued = 0  # crops waiting for a batch

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._remaining

    @property
    def pending(self) -> int:
        """Sessions waiting for some of their scores."""
        return len(self._remaining)

    def add(self, session_id: str, crops: Crops) -> None:
        """Queue all faces of one session (at least one), their crops by crop key."""
        n = _faces(crops)
        if n == 0:
            raise ValueError(f"session {session_id!r} has no crop to score")
        if session_id in self._remaining:
            raise ValueError(f"session {session_id!r} is already queued")
        self._queue.append((session_id, 0, dict(crops)))
        self._scores[session_id] = {}
        self._sizes[session_id] = n
        self._remaining[session_id] = n
        self.queued += n

    def next_batch(self, *, force: bool = False) -> Batch | None:
        """A full batch (shorter where the queued crop kinds change), or with ``force`` whatever
        is queued; None when there is not enough."""
        if not self.queued or (self.queued < self.batch_size and not force):
            return None
        parts: list[dict[str, np.ndarray]] = []
        segments, size = [], 0
        kinds = self._queue[0][2].keys()  # queued crops: the queue is not empty
        while self._queue and size < self.batch_size and self._queue[0][2].keys() == kinds:
            sid, start, crops = self._queue.popleft()
            n = _faces(crops)
            take = min(n, self.batch_size - size)
            segments.append(Segment(sid, start, start + take))
            parts.append({key: v[:take] for key, v in crops.items()})
            if take < n:
                self._queue.appendleft((sid, start + take, {key: v[take:] for key, v in crops.items()}))
            size += take
        self.queued -= size
        keys = parts[0].keys()
        return Batch({key: np.concatenate([part[key] for part in parts]) for key in keys}, tuple(segments))

    def scored(self, batch: Batch, scores: Scores) -> list[tuple[str, dict[str, np.ndarray]]]:
        """Hand a batch's scores (per scorer) to their sessions; returns the sessions now
        complete, with all their scores. Segments of sessions dropped meanwhile are ignored."""
        for name, values in scores.items():
            if len(values) != len(batch):
                raise ValueError(f"{len(values)} {name} scores for a batch of {len(batch)} crops")
        done = []
        offset = 0
        for segment in batch.segments:
            lo, offset = offset, offset + len(segment)
            sid = segment.session_id
            if sid not in self._remaining:
                continue
            for name, values in scores.items():
                mine = self._scores[sid].setdefault(name, np.full(self._sizes[sid], np.nan, np.float32))
                mine[segment.start : segment.stop] = values[lo:offset]
            self._remaining[sid] -= len(segment)
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
        self.queued -= sum(_faces(crops) for sid, _, crops in self._queue if sid in gone)
        self._queue = deque(kept)
        for sid in gone:
            self._pop(sid)

    def _pop(self, session_id: str) -> dict[str, np.ndarray]:
        del self._remaining[session_id]
        del self._sizes[session_id]
        return self._scores.pop(session_id)
