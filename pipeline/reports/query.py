"""SQL over a scan's output: DuckDB views of every dataset (``session_history``, ``frames``,
``evidence``, ``identities``, ``fingerprints``, ``links``, ``verdict_history``), ``sessions``
(each session's latest attempt per model version: one row per session for counts, rates
and joins), ``verdicts`` (each session's latest verdict) and ``clusters`` (the groups the
links make, computed when the view is opened).

Each view reads its hive-partitioned dataset through a pyarrow dataset with today's
schema, so files written by older versions read fine (columns added later are null) and
an ``s3://`` output works the same as a local folder. A dataset with no file yet is an
empty view with the full schema.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from pipeline.errors import QueryError
from pipeline.links.archive import clusters
from pipeline.schema import DATASETS, HISTORY_VIEWS
from pipeline.storage import Store


def dataset_of(store: Store, name: str, schema: pa.Schema) -> ds.Dataset:
    """All committed files of one dataset, read with ``schema`` plus the ``scan_date`` partition."""
    files = [store.path(f) for f in store.committed(name)]
    partitioning = ds.partitioning(pa.schema([("scan_date", pa.date32())]), flavor="hive")
    full = schema.append(pa.field("scan_date", pa.date32()))
    if not files:
        return ds.dataset(full.empty_table())
    return ds.dataset(
        files,
        schema=full,
        filesystem=store.fs,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=store.path(name),
    )


LATEST_SESSIONS_SQL = (  # the `sessions` view: each session's latest attempt per model version
    "select * exclude (rank) from (select *, row_number() over (partition by session_id, model_version"
    " order by scanned_at desc, run_id desc) as rank from session_history) where rank = 1"
)
LATEST_VERDICTS_SQL = (  # the `verdicts` view: each session's latest verdict (history in `verdict_history`)
    "select * exclude (rank) from (select *, row_number() over (partition by session_id"
    " order by recorded_at desc, run_id desc, source_row desc) as rank from verdict_history) where rank = 1"
)
READ_ONLY_SETTINGS = (
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET enable_external_access = false",  # no file, network, extension, ATTACH or COPY TO
    "SET lock_configuration = true",  # and no query can switch it back
)


def connect(out: str, *, allow_external: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per dataset of the output ``out`` (local or s3://).

    Read-only by default: the views are read through pyarrow, and DuckDB itself may touch
    no file, network or extension, so an analyst's query cannot write anywhere or download
    anything. ``allow_external`` leaves DuckDB's defaults (``liveness query --allow-external``).
    """
    store = Store(out)
    con = duckdb.connect()
    for name, schema in DATASETS.items():
        con.register(HISTORY_VIEWS.get(name, name), dataset_of(store, name, schema))
    con.execute(f"create view sessions as {LATEST_SESSIONS_SQL}")
    con.execute(f"create view verdicts as {LATEST_VERDICTS_SQL}")
    links = dataset_of(store, "links", DATASETS["links"]).to_table(columns=["session_a", "session_b"])
    con.register("clusters", clusters(links))
    if not allow_external:
        for setting in READ_ONLY_SETTINGS:
            con.execute(setting)
    return con


def run_query(out: str, sql: str, *, allow_external: bool = False, params: dict | None = None) -> pa.Table:
    """The result of ``sql`` (with ``$name`` ``params``) over the output's views, as an Arrow
    table (read-only unless ``allow_external``)."""
    con = connect(out, allow_external=allow_external)
    try:
        relation = con.sql(sql, params=params)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
