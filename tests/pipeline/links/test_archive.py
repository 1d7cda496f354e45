import pyarrow as pa

from pipeline.links.archive import clusters


def test_clusters_join_sessions_linked_directly_or_through_others():
    links = pa.table({"session_a": ["a", "b", "x", "a"], "session_b": ["b", "c", "y", "c"]})
    got = {r["session_id"]: (r["cluster_id"], r["size"]) for r in clusters(links).to_pylist()}
    assert got["a"][0] == got["b"][0] == got["c"][0] != got["x"][0] == got["y"][0]
    assert (got["a"][1], got["x"][1]) == (3, 2)
    assert (
        clusters(pa.table({"session_a": pa.array([], pa.string()), "session_b": pa.array([], pa.string())})).num_rows
        == 0
    )
