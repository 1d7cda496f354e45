"""``liveness diff``: what a new model changes, on the sessions both versions scanned.

The ledger keeps every scan's rows, so a session re-scanned with a new model has a row of
each version. For every session with a row of both (each version's latest), the diff lists
those whose decision changed or whose deciding score moved by at least ``min_change``, and
counts every session by transition (``live -> spoof``, ``review -> live``...; a row without
a decision counts as its status). A version matches a row's ``model_version`` exactly or
as one of its ``+``-joined parts (``b2-x+silent-face-y`` matches ``b2-x``).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pipeline.errors import InputError


def version_match(param: str) -> str:
    """SQL that is true where a row's ``model_version`` is the version in ``$param``, or
    has it as one of its ``+``-joined parts."""
    return f"(model_version = ${param} or list_contains(string_split(model_version, '+'), ${param}))"


DIFF_SQL = f"""
with a as (
    select * from sessions where {version_match("from")}
    qualify row_number() over (partition by session_id order by scanned_at desc) = 1
), b as (
    select * from sessions where {version_match("to")}
    qualify row_number() over (partition by session_id order by scanned_at desc) = 1
)
select a.session_id, coalesce(a.decision, a.status) as from_decision, coalesce(b.decision, b.status) as to_decision,
    a.spoof_score as from_score, b.spoof_score as to_score, b.spoof_score - a.spoof_score as score_change,
    a.reasons as from_reasons, b.reasons as to_reasons, a.model_version as from_version,
    b.model_version as to_version, b.source
from a join b using (session_id)
order by from_decision = to_decision, abs(score_change) desc nulls last, a.session_id
"""


@dataclass(frozen=True)
class ModelDiff:
    """Two versions' verdicts on the same sessions."""

    from_version: str
    to_version: str
    transitions: pa.Table  # from_decision, to_decision, sessions
    changed: pa.Table  # one row per session whose decision changed or score moved enough
    common: int  # sessions both versions scanned
    only_from: int
    only_to: int

    def to_json(self) -> dict:
        return {
            "from": self.from_version,
            "to": self.to_version,
            "sessions_in_both": self.common,
            "only_in_from": self.only_from,
            "only_in_to": self.only_to,
            "transitions": self.transitions.to_pylist(),
            "changed": self.changed.to_pylist(),
        }


def versions(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The model versions in the output, the most recently used first."""
    rows = con.sql(
        "select model_version from sessions where model_version is not null group by 1 order by max(scanned_at) desc, 1"
    ).fetchall()
    return [r[0] for r in rows]


def _matches(version: str, known: list[str]) -> bool:
    return any(version == k or version in k.split("+") for k in known)


def model_diff(
    con: duckdb.DuckDBPyConnection, from_version: str, to_version: str, *, min_change: float = 0.1
) -> ModelDiff:
    """The diff between two versions over a connection to an output's views."""
    known = versions(con)
    for flag, version in (("--from", from_version), ("--to", to_version)):
        if not _matches(version, known):
            raise InputError(f"{flag} {version!r}: no session was scanned with it (versions: {', '.join(known)})")
    if from_version == to_version:
        raise InputError(f"--from and --to are the same version ({from_version})")
    params = {"from": from_version, "to": to_version}
    compared = con.sql(DIFF_SQL, params=params)
    con.register("compared", compared.to_arrow_table())
    transitions = con.sql(
        "select from_decision, to_decision, count(*) as sessions from compared group by 1, 2"
        " order by from_decision = to_decision, sessions desc, 1, 2"
    ).to_arrow_table()
    changed = con.sql(
        "select * from compared where from_decision is distinct from to_decision or abs(score_change) >= $min",
        params={"min": min_change},
    ).to_arrow_table()
    counts = con.sql(
        f"select count(distinct session_id) filter (where {version_match('from')}),"
        f" count(distinct session_id) filter (where {version_match('to')}) from sessions",
        params=params,
    ).fetchall()[0]
    common = con.sql("select count(*) from compared").fetchall()[0][0]
    con.unregister("compared")
    return ModelDiff(from_version, to_version, transitions, changed, common, counts[0] - common, counts[1] - common)
