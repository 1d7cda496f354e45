"""Links over a whole output: every committed session's template and fingerprint, matched
against new sessions, and the links and clusters that come out.

A scan matches each session against the archive as it is assembled
(:meth:`Linker.match`), so its row can carry a ``linked`` reason and the link rows are
committed with it; a nightly scan compares its new sessions with everything before and
never recomputes old pairs. ``liveness links`` (:func:`link_pending`) catches up the
sessions of runs that did not link (``links.enabled`` off, or a crash), in one batched
search. A run that linked leaves a marker in ``OUT/_links/matched/``.

With ``input.applicant_column``, the face of one applicant in two sessions is not the fraud
signal a face under two applicants is: it is linked as ``reapplied`` (information), not
``same_face``.

Only rows of committed sessions count: an identity, fingerprint or link row written by a
chunk whose ``sessions`` file never landed is ignored. Two sessions are linked at most
once per kind; a session is never linked to itself (a rescan of it has the same id).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import LinksConfig
from pipeline.links.faces import TemplateIndex
from pipeline.links.video import FingerprintIndex
from pipeline.schema import (
    CLUSTER_SCHEMA,
    LINK_REAPPLIED,
    LINK_SAME_FACE,
    LINK_SAME_VIDEO,
    LINK_SCHEMA,
    new_run_id,
    partition,
)
from pipeline.storage import Store
from pipeline.video.fingerprint import Fingerprint

log = logging.getLogger(__name__)

MATCHED_DIR = "_links/matched"  # OUT/_links/matched/<run_id>.json: the runs whose sessions were linked
LINKS_RUN_PREFIX = "links-"  # run ids of `liveness links` passes (a scan's run id starts with its date)


def _files(store: Store, dataset: str, columns: list[str]) -> Iterator[pa.Table]:
    for relative in store.committed(dataset):
        yield pq.read_table(store.path(relative), filesystem=store.fs, columns=columns)


def committed_sessions(
    store: Store, applicant_column: str | None = None
) -> tuple[set[tuple[str, str]], dict[str, str]]:
    """``(session_id, run_id)`` of every committed session row and, with ``applicant_column``,
    each session's applicant: that manifest column of its latest row (sessions without one,
    or with it empty, are left out). One read of the sessions files."""
    columns = ["session_id", "run_id", *(["extra"] if applicant_column else [])]
    rows = _concat(list(_files(store, "sessions", columns)))
    if rows is None:
        return set(), {}
    sids = rows.column("session_id").to_pylist()
    keys = set(zip(sids, rows.column("run_id").to_pylist(), strict=True))
    found: dict[str, str] = {}
    if applicant_column:
        for i in _latest(rows, keys):
            extra = dict(rows.column("extra")[i].as_py() or [])
            if extra.get(applicant_column):
                found[sids[i]] = extra[applicant_column]
    return keys, found


def matched_runs(store: Store) -> set[str]:
    """The runs whose sessions have been linked."""
    return {p.rsplit("/", 1)[-1].removesuffix(".json") for p in store.list(MATCHED_DIR, ".json")}


def mark_matched(store: Store, run_ids: Sequence[str], by: str) -> None:
    """Record that these runs' sessions have been linked (by the run ``by``)."""
    for run_id in run_ids:
        relative = f"{MATCHED_DIR}/{run_id}.json"
        if not store.exists(relative):
            store.write_bytes(relative, json.dumps({"run_id": run_id, "linked_by": by}).encode())


@dataclass
class _Rows:
    """Archive rows of one kind: their session ids and runs, newest per session last."""

    session_ids: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)


def _latest(table: pa.Table, committed: set[tuple[str, str]]) -> list[int]:
    """Rows of ``table`` whose session is committed, the latest run's per session."""
    best: dict[str, tuple[str, int]] = {}
    sids, runs = table.column("session_id").to_pylist(), table.column("run_id").to_pylist()
    for i, (sid, run) in enumerate(zip(sids, runs, strict=True)):
        if (sid, run) in committed and (sid not in best or run > best[sid][0]):
            best[sid] = (run, i)
    return sorted(i for _, i in best.values())


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    return pa.concat_tables(tables) if tables else None


class Linker:
    """The archive's templates and fingerprints, and the links already found between its sessions.

    ``threshold`` is the same-face distance (the identity card's, unless configured);
    ``applicant_column`` the manifest column naming each session's applicant, if any.
    """

    def __init__(
        self, store: Store, config: LinksConfig, threshold: float, run_id: str, applicant_column: str | None = None
    ) -> None:
        self.config, self.threshold, self.run_id = config, threshold, run_id
        committed, self.applicants = committed_sessions(store, applicant_column)
        self.faces, self.face_rows = TemplateIndex(), _Rows()
        self.videos, self.video_rows = FingerprintIndex(), _Rows()
        identities = _concat(list(_files(store, "identities", ["session_id", "template", "run_id"])))
        if identities is not None:
            keep = identities.take(_latest(identities, committed))
            vectors = keep.column("template").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            self.faces.add(vectors.reshape(len(keep), -1))
            self.face_rows = _Rows(keep.column("session_id").to_pylist(), keep.column("run_id").to_pylist())
        prints = _concat(list(_files(store, "fingerprints", ["session_id", "times_s", "hashes", "run_id"])))
        if prints is not None:
            keep = prints.take(_latest(prints, committed))
            for times, hashes in zip(
                keep.column("times_s").to_pylist(), keep.column("hashes").to_pylist(), strict=True
            ):
                self.videos.add(Fingerprint(np.asarray(times, np.float64), np.asarray(hashes, np.uint64)))
            self.video_rows = _Rows(keep.column("session_id").to_pylist(), keep.column("run_id").to_pylist())
        self.known: set[tuple[str, str, str]] = set()
        for table in _files(store, "links", ["session_a", "session_b", "kind", "run_id"]):
            for a, b, kind, run in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
                if run.startswith(LINKS_RUN_PREFIX) or (b, run) in committed:
                    self.known.add((min(a, b), max(a, b), kind))
        log.info(
            "links: %d stored templates, %d stored fingerprints, %d known links",
            len(self.faces), len(self.videos), len(self.known),
        )  # fmt: skip

    def _links(self, session_id: str, found: list[tuple[str, str, float]]) -> pa.Table | None:
        """Link rows for ``(other session, kind, distance)`` not yet known, closest per pair and kind."""
        best: dict[tuple[str, str], float] = {}
        for other, kind, d in found:
            if other != session_id and ((other, kind) not in best or d < best[(other, kind)]):
                best[(other, kind)] = d
        rows = []
        now = datetime.now(UTC)
        for (other, kind), d in sorted(best.items()):
            pair = (min(other, session_id), max(other, session_id), kind)
            if pair in self.known:
                continue
            self.known.add(pair)
            rows.append({"session_a": other, "session_b": session_id, "kind": kind, "distance": float(d),
                         "found_at": now, "run_id": self.run_id})  # fmt: skip
        return pa.Table.from_pylist(rows, schema=LINK_SCHEMA) if rows else None

    def _face_kind(self, a: str, b: str) -> str:
        """``reapplied`` where both sessions name one applicant, else ``same_face``."""
        applicant = self.applicants.get(a)
        return LINK_REAPPLIED if applicant is not None and applicant == self.applicants.get(b) else LINK_SAME_FACE

    def match(
        self,
        session_id: str,
        template: np.ndarray | None,
        fingerprint: Fingerprint | None,
        applicant: str | None = None,
    ) -> pa.Table | None:
        """Links of one new session (of ``applicant``, when known) to the archive (and to the
        sessions matched before it); then it joins the archive."""
        if applicant:
            self.applicants[session_id] = applicant
        found: list[tuple[str, str, float]] = []
        if template is not None:
            m = self.faces.within(template[None, :], self.threshold)
            hits = [
                (self.face_rows.session_ids[s], d) for s, d in zip(m.stored.tolist(), m.distance.tolist(), strict=True)
            ]
            found += [(other, self._face_kind(session_id, other), d) for other, d in hits]
            self.faces.add(template[None, :])
            self.face_rows.session_ids.append(session_id)
            self.face_rows.run_ids.append(self.run_id)
        if fingerprint is not None and len(fingerprint):
            for row, share in self.videos.matches(fingerprint, self.config):
                found.append((self.video_rows.session_ids[row], LINK_SAME_VIDEO, 1.0 - share))
            self.videos.add(fingerprint)
            self.video_rows.session_ids.append(session_id)
            self.video_rows.run_ids.append(self.run_id)
        return self._links(session_id, found)

    def pending(self, matched: set[str]) -> tuple[list[int], list[int]]:
        """Rows (templates, fingerprints) of runs not yet linked."""
        return (
            [i for i, run in enumerate(self.face_rows.run_ids) if run not in matched],
            [i for i, run in enumerate(self.video_rows.run_ids) if run not in matched],
        )

    def link_rows(self, face_rows: list[int], video_rows: list[int]) -> pa.Table | None:
        """Links of the given archive rows to every other session, in one batched search."""
        found: dict[str, list[tuple[str, str, float]]] = {}
        if face_rows:
            queries = np.stack([self.faces.vector(i) for i in face_rows])
            m = self.faces.within(queries, self.threshold)
            for q, s, d in zip(m.query.tolist(), m.stored.tolist(), m.distance.tolist(), strict=True):
                sid, other = self.face_rows.session_ids[face_rows[q]], self.face_rows.session_ids[s]
                found.setdefault(sid, []).append((other, self._face_kind(sid, other), d))
        for i in video_rows:
            sid = self.video_rows.session_ids[i]
            for row, share in self.videos.matches(self.videos.fingerprints[i], self.config):
                found.setdefault(sid, []).append((self.video_rows.session_ids[row], LINK_SAME_VIDEO, 1.0 - share))
        tables = [t for sid, hits in sorted(found.items()) if (t := self._links(sid, hits)) is not None]
        return pa.concat_tables(tables) if tables else None


@dataclass(frozen=True)
class LinksPass:
    """What one ``liveness links`` pass did."""

    run_id: str
    runs: tuple[str, ...]  # the runs whose sessions it linked
    templates: int
    fingerprints: int
    links: int
    file: str | None


def link_pending(store: Store, config: LinksConfig, threshold: float, applicant_column: str | None = None) -> LinksPass:
    """Link the sessions of every run not yet linked against the whole output; writes their
    links (``links/scan_date=<today>/<run id>.parquet``) and marks those runs linked."""
    now = datetime.now(UTC)
    run_id = new_run_id(now, LINKS_RUN_PREFIX)
    linker = Linker(store, config, threshold, run_id, applicant_column)
    matched = matched_runs(store)
    face_rows, video_rows = linker.pending(matched)
    runs = sorted({linker.face_rows.run_ids[i] for i in face_rows} | {linker.video_rows.run_ids[i] for i in video_rows})
    table = linker.link_rows(face_rows, video_rows)
    written = None
    if table is not None:
        written = store.write_parquet(f"{partition('links', now.date().isoformat())}/{run_id}.parquet", table)
    mark_matched(store, runs, by=run_id)
    return LinksPass(
        run_id, tuple(runs), len(face_rows), len(video_rows), 0 if table is None else table.num_rows, written
    )


def clusters(links: pa.Table) -> pa.Table:
    """Connected groups of linked sessions (any kind): ``session_id``, ``cluster_id`` (named
    after its smallest session id: it changes only when a smaller one joins), ``size``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    schema = CLUSTER_SCHEMA
    a, b = links.column("session_a").to_pylist(), links.column("session_b").to_pylist()
    names = sorted(set(a) | set(b))
    if not names:
        return schema.empty_table()
    index = {n: i for i, n in enumerate(names)}
    rows, cols = [index[x] for x in a], [index[x] for x in b]
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(names), len(names)))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    first: dict[int, str] = {}
    for name, label in zip(names, labels.tolist(), strict=True):
        first.setdefault(label, name)
    ids = {label: "c-" + hashlib.sha1(name.encode()).hexdigest()[:12] for label, name in first.items()}
    return pa.table(
        {
            "session_id": names,
            "cluster_id": [ids[int(label)] for label in labels],
            "size": sizes[labels].astype(np.int64),
        },
        schema=schema,
    )
