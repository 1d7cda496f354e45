"""The output contract: the layout of ``--out`` and the column names and types of its datasets.

Every writer and reader takes column names from here. Columns of signals a scan did not
compute are present and null, so readers never depend on which features were on.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import pyarrow as pa

STATUS_OK = "ok"
STATUS_NO_FACE = "no_face"
STATUS_FAILED = "failed"
STATUSES = (STATUS_OK, STATUS_NO_FACE, STATUS_FAILED)

DECISION_LIVE = "live"
DECISION_SPOOF = "spoof"
DECISION_REVIEW = "review"
DECISIONS = (DECISION_LIVE, DECISION_SPOOF, DECISION_REVIEW)

REGIONS = ("left_eye", "right_eye", "nose", "mouth")
CONTRACT_SCORERS = ("b2", "reference")  # scorers with columns of their own; every scorer is in `scores`

SESSION_FIELDS: list[pa.Field] = [
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("duration_s", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("rotation", pa.int32()),
    pa.field("frames_decoded", pa.int32()),
    pa.field("frames_sampled", pa.int32()),
    pa.field("frames_scored", pa.int32()),
    pa.field("face_ratio", pa.float64()),
    pa.field("multi_face_ratio", pa.float64()),
    pa.field("spoof_score", pa.float64()),
    pa.field("spoof_score_max", pa.float64()),
    *[pa.field(f"{name}_score{suffix}", pa.float64()) for name in CONTRACT_SCORERS for suffix in ("", "_max")],
    pa.field("scores", pa.map_(pa.string(), pa.float64())),
    pa.field("thresholds", pa.map_(pa.string(), pa.float64())),
    pa.field("decision", pa.string()),
    pa.field("reasons", pa.list_(pa.string())),
    pa.field("swap_detected", pa.bool_()),
    pa.field("swap_at_s", pa.float64()),
    pa.field("swap_times_s", pa.list_(pa.float64())),
    pa.field("swap_distance", pa.float64()),
    pa.field("identity_frames", pa.int32()),
    pa.field("static", pa.bool_()),
    pa.field("blink_count", pa.int32()),
    pa.field("blinks", pa.list_(pa.struct([("start_s", pa.float64()), ("end_s", pa.float64())]))),
    pa.field("eyes_watched_s", pa.float64()),
    pa.field("occluded_regions", pa.list_(pa.string())),
    pa.field("model_version", pa.string()),
    pa.field("threshold", pa.float64()),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("scanned_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("input_key", pa.string()),
    pa.field("extra", pa.map_(pa.string(), pa.string())),
    *[pa.field(name, pa.string()) for name in ("container", "encoder", "creation_time", "device", "handler")],
    pa.field("frame_interval_cv", pa.float64()),
    pa.field("repeated_frame_ratio", pa.float64()),
    pa.field("examined_until_s", pa.float64()),
    pa.field("coverage", pa.float64()),
    pa.field("decode_end", pa.string()),
    *[pa.field(name, pa.int32()) for name in ("bad_packets", "timestamp_resets", "size_changes")],
    pa.field("decoded_until_s", pa.float64()),
    pa.field("other_faces_scored", pa.int32()),
    pa.field("other_spoof_score", pa.float64()),
    pa.field("other_scores", pa.map_(pa.string(), pa.float64())),
]

FRAME_FIELDS: list[pa.Field] = [
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("frame_index", pa.int32(), nullable=False),
    pa.field("pts_s", pa.float64(), nullable=False),
    pa.field("n_faces", pa.int32(), nullable=False),
    pa.field("face_score", pa.float32()),
    pa.field("bbox_x", pa.float32()),
    pa.field("bbox_y", pa.float32()),
    pa.field("bbox_w", pa.float32()),
    pa.field("bbox_h", pa.float32()),
    pa.field("spoof_score", pa.float32()),
    pa.field("similarity_prev", pa.float32()),
    pa.field("ear_left", pa.float32()),
    pa.field("ear_right", pa.float32()),
    *[pa.field(f"occlusion_{region}", pa.float32()) for region in REGIONS],
    *[pa.field(f"{name}_score", pa.float32()) for name in CONTRACT_SCORERS],
    pa.field("scores", pa.map_(pa.string(), pa.float32())),
    pa.field("model_version", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("other_faces_scored", pa.int32()),
    pa.field("other_spoof_score", pa.float32()),
]

EVIDENCE_TOP_SPOOF = "top_spoof"
EVIDENCE_BEFORE_SWAP = "before_swap"
EVIDENCE_AFTER_SWAP = "after_swap"
EVIDENCE_OTHER_FACE = "other_face"  # the other face that scored highest, when it fired other_face
EVIDENCE_KINDS = (EVIDENCE_TOP_SPOOF, EVIDENCE_BEFORE_SWAP, EVIDENCE_AFTER_SWAP, EVIDENCE_OTHER_FACE)

EVIDENCE_FIELDS: list[pa.Field] = [
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("frame_index", pa.int32(), nullable=False),
    pa.field("pts_s", pa.float64(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("spoof_score", pa.float32()),
    pa.field("jpeg", pa.binary(), nullable=False),
    pa.field("model_version", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
]

EMBEDDING_DIM = 128
IDENTITY_FIELDS: list[pa.Field] = [  # biometric data: written only with identity.store on
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("template", pa.list_(pa.float32(), EMBEDDING_DIM), nullable=False),
    pa.field("frames", pa.int32(), nullable=False),
    pa.field("identity_version", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
]

FINGERPRINT_FIELDS: list[pa.Field] = [
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("times_s", pa.list_(pa.float64()), nullable=False),
    pa.field("hashes", pa.list_(pa.uint64()), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
]

LINK_SAME_FACE = "same_face"
LINK_SAME_VIDEO = "same_video"
LINK_REAPPLIED = "reapplied"  # the same face under the same applicant (input.applicant_column)
LINK_KINDS = (LINK_SAME_FACE, LINK_SAME_VIDEO, LINK_REAPPLIED)
LINK_FIELDS: list[pa.Field] = [
    pa.field("session_a", pa.string(), nullable=False),  # the one scanned earlier
    pa.field("session_b", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("distance", pa.float64(), nullable=False),
    pa.field("found_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
]

VERDICTS = ("spoof", "live", "unsure")
ATTACK_TYPES = ("print", "replay", "mask", "deepfake", "injection", "other")
VERDICT_FIELDS: list[pa.Field] = [  # append-only: `liveness verdicts add` writes, nothing rewrites
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("verdict", pa.string(), nullable=False),
    pa.field("attack", pa.string()),
    pa.field("note", pa.string()),
    pa.field("analyst", pa.string()),
    pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("source_row", pa.int32(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
]

CLUSTER_SCHEMA = pa.schema(  # a view computed from links when opened, not a dataset
    [("session_id", pa.string()), ("cluster_id", pa.string()), ("size", pa.int64())]
)

SESSION_SCHEMA = pa.schema(SESSION_FIELDS)
FRAME_SCHEMA = pa.schema(FRAME_FIELDS)
EVIDENCE_SCHEMA = pa.schema(EVIDENCE_FIELDS)
IDENTITY_SCHEMA = pa.schema(IDENTITY_FIELDS)
FINGERPRINT_SCHEMA = pa.schema(FINGERPRINT_FIELDS)
LINK_SCHEMA = pa.schema(LINK_FIELDS)
VERDICT_SCHEMA = pa.schema(VERDICT_FIELDS)
SESSION_COLUMNS = tuple(SESSION_SCHEMA.names)
FRAME_COLUMNS = tuple(FRAME_SCHEMA.names)

DATASETS = {
    "sessions": SESSION_SCHEMA,  # read as `session_history`; the `sessions` view is the latest per model version
    "frames": FRAME_SCHEMA,
    "evidence": EVIDENCE_SCHEMA,
    "identities": IDENTITY_SCHEMA,
    "fingerprints": FINGERPRINT_SCHEMA,
    "links": LINK_SCHEMA,
    "verdicts": VERDICT_SCHEMA,  # read as `verdict_history`; the `verdicts` view is the latest per session
}
HISTORY_VIEWS = {  # datasets whose every row is a view of its own name
    "sessions": "session_history",
    "verdicts": "verdict_history",
}
VIEWS = (  # what `liveness query` can read
    {"sessions": SESSION_SCHEMA}
    | {HISTORY_VIEWS.get(name, name): schema for name, schema in DATASETS.items()}
    | {"verdicts": VERDICT_SCHEMA, "clusters": CLUSTER_SCHEMA}
)
RUNS_DIR = "_runs"  # OUT/_runs/<run_id>.json: each run's summary


def new_run_id(now: datetime, prefix: str = "") -> str:
    """A run's id: ``prefix`` + its UTC start time + a random suffix, so ids sort by time."""
    return prefix + now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def partition(dataset: str, scan_date: str) -> str:
    """The relative folder of one dataset's partition for a scan date."""
    return f"{dataset}/scan_date={scan_date}"


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) to a table of exactly ``schema``; missing keys become null, unknown keys are an error."""
    unknown = {k for row in rows for k in row} - set(schema.names)
    if unknown:
        raise KeyError(f"columns not in the schema: {sorted(unknown)}")
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)
