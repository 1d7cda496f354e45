"""The data dictionary: what every output column means, its unit, and what null means.

Kept beside :mod:`pipeline.schema` (a test fails when a column has no entry here or an
entry names no column) and rendered to ``DATA_DICTIONARY.md`` with
``uv run python -m pipeline.reports.dictionary > DATA_DICTIONARY.md`` (a test checks the file is
current). ``liveness query --dictionary`` prints it.
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa

from pipeline.schema import DATASETS, REGIONS, VIEWS


class Column(NamedTuple):
    meaning: str
    unit: str = ""
    null: str = "never null"


_SIGNAL_NULL = "no face or no face-mesh landmarks in the frame, or signals switched off"

_VERDICT_COLUMNS = {
    "session_id": Column("the session the verdict is on (a session of this output)"),
    "verdict": Column("the analyst's verdict: `spoof`, `live` or `unsure`"),
    "attack": Column(
        "attack type: `print`, `replay`, `mask`, `deepfake`, `injection` or `other`",
        null="not given, or the verdict is not spoof",
    ),
    "note": Column("the analyst's note, as written", null="no note"),
    "analyst": Column("who gave the verdict (the CSV's analyst column or `--analyst`)", null="not given"),
    "recorded_at": Column("when `liveness verdicts add` committed it", "UTC timestamp"),
    "source_file": Column("name of the CSV file it came from"),
    "source_row": Column("its row number in that file (the header is row 1)", "row"),
    "run_id": Column("the `verdicts-...` commit that wrote it; the latest commit wins in `verdicts`"),
    "scan_date": Column("hive partition: the date it was committed", "date (UTC)"),
}

_SESSION_COLUMNS = {
    "session_id": Column(
        "id of the session: the manifest's session_id, or the path relative to the input folder without extension"
    ),
    "source": Column("the video's local path or s3:// URI"),
    "status": Column(
        "`ok`; `no_face` (no sampled frame has a face); `failed` (could not be read or analysed, see `error`)"
    ),
    "error": Column(
        "why a failed session failed, in words (e.g. `empty file (0 bytes)`, `timed out after 300 s`)",
        null="the session did not fail",
    ),
    "duration_s": Column(
        "duration of the video from its header, else the last decoded timestamp",
        "seconds",
        "failed before the header was read",
    ),
    "width": Column(
        "displayed frame width (after the display rotation)", "pixels", "failed before the header was read"
    ),
    "height": Column(
        "displayed frame height (after the display rotation)", "pixels", "failed before the header was read"
    ),
    "rotation": Column(
        "display rotation stored in the file, applied before detection",
        "degrees counter-clockwise",
        "failed before decoding",
    ),
    "frames_decoded": Column(
        "frames decoded (decoding stops at the sampling cap `decode.max_frames`)",
        "frames",
        "failed before decoding",
    ),
    "frames_sampled": Column("frames sampled by presentation time at `decode.sample_fps`", "frames"),
    "examined_until_s": Column(
        "how far into the video the sampled frames reach (the last one's sampling slot): a video longer than"
        " `decode.max_frames` / `decode.sample_fps` is examined up to here only",
        "seconds",
        "no frame was sampled (the session failed first)",
    ),
    "coverage": Column(
        "`examined_until_s` as a share of `duration_s`: under 1 when the frame cap cut the video short, or"
        " decoding ended early (`decode_end`)",
        "0..1",
        "no frame was sampled, or the duration is unknown",
    ),
    "decode_end": Column(
        "how decoding ended: `end` (the stream was read to its end), `frame_cap` (`decode.max_frames` frames"
        " were sampled; the rest was not read), `read_error` (the container could not be read further: a"
        " damaged or truncated file; what was read is examined and the `partial_decode` reason fires)",
        null="the session failed",
    ),
    "bad_packets": Column(
        "packets the decoder rejected, skipped and counted (the frames that depend on them are lost);"
        " any fires the `partial_decode` reason",
        "packets",
        "the session failed",
    ),
    "timestamp_resets": Column(
        "times the frame timestamps jumped back (clips joined end to end): each later clip continues the one"
        " timeline of `pts_s`, so every clip is sampled",
        "count",
        "the session failed",
    ),
    "size_changes": Column(
        "times the frame size changed mid-stream (`width` and `height` are the header's); a frame over"
        " `decode.max_pixels` fails the session",
        "count",
        "the session failed",
    ),
    "decoded_until_s": Column(
        "how far the decoded frames reach on the timeline; under 95% of `duration_s` (or under 95% of the"
        " header's frame count decoded) with `decode_end` = `end`, the file is shorter than its header says"
        " and the `partial_decode` reason fires",
        "seconds",
        "the session failed",
    ),
    "other_faces_scored": Column(
        "faces beside the main one that the scorers scored (a photo or a phone held up beside the applicant,"
        " a bystander): up to `detect.max_others` per frame, at least `detect.other_min_px` wide,"
        " on `scoring.other_rate_hz` frames a second where detection ran",
        "faces",
        "the session was not scored (failed, or no face)",
    ),
    "other_spoof_score": Column(
        "the deciding scorer's score of the other faces: the mean of their `aggregate.other_topk` highest scores;"
        " at or over its spoof edge (threshold + band) the `other_face` reason fires",
        "0 = real .. 1 = spoof",
        "no other face was scored, or no scorer decides",
    ),
    "other_scores": Column(
        "every scorer's score of the other faces (the mean of their `aggregate.other_topk` highest), by scorer name",
        "map name -> 0..1",
        "no other face was scored",
    ),
    "frames_scored": Column(
        "sampled frames whose face the scorers scored: scoring.rate_hz a second, every face after an event"
        " (a cut, a face change, eyes closing), every face of a session near a threshold"
        " (scoring.refine_band; by the deciding scorers)",
        "frames",
    ),
    "face_ratio": Column("share of sampled frames with at least one face", "0..1", "the session failed"),
    "multi_face_ratio": Column("share of sampled frames with two or more faces", "0..1", "the session failed"),
    "spoof_score": Column(
        "the score the decision rests on: the deciding scorer's frame scores pooled by `aggregate.method`"
        " (mean, median or top-k mean); by default only scorers measured on real data decide (the `reference`)",
        "0 = real .. 1 = spoof",
        "no frame was scored (no face, or failed), or no scorer decides",
    ),
    "spoof_score_max": Column("highest frame `spoof_score` of the session", "0..1", "as `spoof_score`"),
    "b2_score": Column(
        "the `b2` scorer's (EfficientNet-B2, synthetic data only) pooled score; shown, decides only if configured",
        "0 = real .. 1 = spoof",
        "no frame was scored",
    ),
    "b2_score_max": Column("highest frame `b2_score`", "0..1", "no frame was scored"),
    "reference_score": Column(
        "the `reference` scorer's (Silent-Face MiniFASNet, trained on real attacks) pooled score",
        "0 = real .. 1 = spoof",
        "no frame was scored",
    ),
    "reference_score_max": Column("highest frame `reference_score`", "0..1", "no frame was scored"),
    "scores": Column("every scorer's pooled score, by scorer name", "map name -> 0..1", "no frame was scored"),
    "thresholds": Column(
        "every scorer's threshold (its card's, or the session threshold `decision.thresholds` gives: what"
        " `liveness calibrate` writes), by scorer name",
        "map name -> 0..1",
        "no frame was scored",
    ),
    "decision": Column(
        "`live`, `spoof` or `review`: the most severe of the score's decision (threshold ± `aggregate.review_band`)"
        " and the actions of the signals that fired (`decision` in configs/scan.yaml)",
        null="the session failed",
    ),
    "reasons": Column(
        "every rule that fired: `spoof_score:<scorer>`, `no_face`, `swap`, `static`, `no_blink`,"
        " `too_short` (a face seen under `static.min_static_s`: a photo, a 1-frame video), `occluded:<region>`,"
        " `multi_face`, `other_face` (a face beside the main one scores as a spoof: see `other_spoof_score`),"
        " `linked:<kind>`, `partial_decode` (part of the video could not be decoded: see"
        " `decode_end`, `bad_packets`, `decoded_until_s`); a rule whose action is `inform` (by default"
        " `linked:reapplied`) is named without moving the decision",
        "list of strings",
        "the session failed (empty list)",
    ),
    "swap_detected": Column(
        "the main face changed identity mid-session: the mean identity embedding of the second before a cut"
        " and of the second after it lie at least the identity threshold apart, or the face shape changed"
        " there (an abrupt drop of crop similarity with a lasting change of face shape) where identity is"
        " not sure it is one person",
        "bool",
        "no face, or too few frames to tell",
    ),
    "swap_at_s": Column(
        "when the (first) swap happened: the first frame after the cut",
        "seconds from the first frame",
        "no swap detected",
    ),
    "swap_times_s": Column(
        "every change of the main face's identity (several cuts between people)", "seconds", "no face"
    ),
    "swap_distance": Column(
        "the largest identity distance across a swap (over the card's threshold, 0.6 for dlib)",
        "Euclidean, 128-d",
        "no swap, or found by face shape",
    ),
    "identity_frames": Column(
        "embeddings in the session's identity template (0: the face was too small, turned or covered for one)",
        "frames",
        "identity switched off, no face, or the session failed",
    ),
    "static": Column(
        "frames nearly identical for a long stretch: a still photo or a frozen injected feed",
        "bool",
        "no face, or too few frames to tell",
    ),
    "blink_count": Column(
        "eye blinks counted from the eye aspect ratio of face mesh landmarks", "blinks", "no face with landmarks"
    ),
    "eyes_watched_s": Column(
        "how long eyes that could show a blink were watched: read by face mesh, not covered, at least"
        " `signals.blinks.min_eye_px` wide, frontal, in readings at most `signals.blinks.max_gap_s` apart; a session"
        " watched for `signals.blinks.min_session_s` with no blink gets `no_blink`",
        "s",
        "no face with landmarks, or written before it was stored",
    ),
    "blinks": Column(
        "each counted blink as {start_s, end_s}: its first shut and first reopened sample (what the report draws)",
        "s",
        "no face with landmarks, or written before blinks were stored",
    ),
    "occluded_regions": Column(
        f"face regions blocked in a large share of the frames: any of {', '.join(REGIONS)}"
        " (the person's own left/right)",
        "list of strings",
        "no face with landmarks, or occlusion switched off",
    ),
    "model_version": Column("the scorers' versions (from their cards), joined by `+`, the b2's first"),
    "threshold": Column(
        "the threshold `spoof_score` was judged against (the deciding scorer's)", null="no scorer decided"
    ),
    "run_id": Column("the run that wrote the row (`<UTC time>-<random>`); one run per command"),
    "scanned_at": Column("when the run started", "timestamp, UTC"),
    "input_key": Column(
        "the ledger key: hash of the input's identity, the model and the result-changing settings",
        null="written by a version without the ledger",
    ),
    "extra": Column("the manifest's other columns, as text", "map<string,string>", "no manifest, or no other columns"),
    "container": Column(
        "the container format as the demuxer names it (e.g. `mov,mp4,m4a,3gp,3g2,mj2`)",
        null="failed before decoding",
    ),
    "encoder": Column("the file's encoder tag (e.g. `Lavf58.29.100`: re-muxed by FFmpeg)", null="no such tag"),
    "creation_time": Column("the file's creation_time tag, as written", "text", "no such tag"),
    "device": Column("make and model tags of the recording device (Apple, Android)", null="no such tags"),
    "handler": Column("the video stream's handler name (e.g. `Core Media Video`)", null="no such tag"),
    "frame_interval_cv": Column(
        "spread of the intervals between decoded frames (std / mean): 0 for a steady clock, high for"
        " edited, variable-rate or injected streams",
        "ratio",
        "fewer than three frames decoded",
    ),
    "repeated_frame_ratio": Column(
        "share of decoded frames identical to the one before (compared on a sparse pixel grid)",
        "0..1",
        "fewer than two frames decoded",
    ),
    "scan_date": Column("hive partition: the date of the run", "date (UTC)"),
}

COLUMNS: dict[str, dict[str, Column]] = {
    "session_history": _SESSION_COLUMNS,
    "sessions": _SESSION_COLUMNS,
    "frames": {
        "session_id": Column("the session the frame belongs to"),
        "frame_index": Column("index of the sample within its session, from 0", "samples"),
        "pts_s": Column("presentation time from the first frame", "seconds"),
        "n_faces": Column(
            "faces MediaPipe found at least detect.min_face_share as wide as the main face (someone far behind is"
            " not counted): in this frame where detection ran, else at the last detection (it re-checks"
            " detect.recheck_hz a second while the face mesh tracks the face)",
            "faces",
        ),
        "face_score": Column(
            "detector confidence of the main face (at the last detection on a tracked frame)", "0..1", "no face"
        ),
        "bbox_x": Column("left edge of the main face box in the upright frame", "pixels", "no face"),
        "bbox_y": Column("top edge of the main face box", "pixels", "no face"),
        "bbox_w": Column("width of the main face box", "pixels", "no face"),
        "bbox_h": Column("height of the main face box", "pixels", "no face"),
        "spoof_score": Column(
            "the deciding scorer's probability for this frame's face",
            "0 = real .. 1 = spoof",
            "no face, the face not scored (see sessions.frames_scored), or no scorer decides",
        ),
        "b2_score": Column(
            "the `b2` scorer's probability for this frame's face", "0 = real .. 1 = spoof", "no face, or not scored"
        ),
        "reference_score": Column(
            "the `reference` scorer's probability for this frame's face (its own 2.7x and 4.0x crops)",
            "0 = real .. 1 = spoof",
            "no face, or not scored",
        ),
        "scores": Column(
            "every scorer's probability for this frame's face, by scorer name",
            "map name -> 0..1",
            "no face, or not scored",
        ),
        "similarity_prev": Column(
            "similarity of this frame's aligned face crop to the previous face frame's (lighting-normalised structure)",
            "0..1",
            "no face, or the first face of the session",
        ),
        "ear_left": Column(
            "eye aspect ratio of the person's left eye (lid opening / eye width);"
            " about 0.25-0.35 open, under ~0.15 shut",
            "ratio",
            _SIGNAL_NULL + ", or the eye is covered",
        ),
        "ear_right": Column(
            "eye aspect ratio of the person's right eye", "ratio", _SIGNAL_NULL + ", or the eye is covered"
        ),
        **{
            f"occlusion_{r}": Column(
                f"probability that the {r.replace('_', ' ')} is blocked (region model on a landmark-placed crop;"
                " signals.occlusion.rate_hz a second, and on every frame where the eyes close)",
                "0..1",
                _SIGNAL_NULL + ", or not checked on this frame",
            )
            for r in REGIONS
        },
        "model_version": Column("as in sessions"),
        "run_id": Column("as in sessions"),
        "other_faces_scored": Column(
            "faces beside the main one scored on this frame (see the sessions column)",
            "faces",
            "the session was not scored",
        ),
        "other_spoof_score": Column(
            "the highest deciding score among them", "0 = real .. 1 = spoof", "none scored, or no scorer decides"
        ),
        "scan_date": Column("hive partition: the date of the run", "date (UTC)"),
    },
    "evidence": {
        "session_id": Column("the session the thumbnail belongs to"),
        "frame_index": Column(
            "the frame it was taken from (joins `frames` on session_id, run_id, frame_index)", "samples"
        ),
        "pts_s": Column("time of that frame", "seconds"),
        "kind": Column(
            "why it was kept: `top_spoof` (among the session's highest spoof scores),"
            " `before_swap` / `after_swap` (the face frames either side of a detected swap),"
            " `other_face` (the face beside the main one that scored highest, when it fired `other_face`)"
        ),
        "spoof_score": Column("the frame's spoof score", "0..1", "the frame was kept around a swap but not scored"),
        "jpeg": Column(
            "the face crop (scale 1.6 around the face) as JPEG bytes;"
            " biometric data: switch off with `--set evidence.enabled=false`",
            "bytes",
        ),
        "model_version": Column("as in sessions"),
        "run_id": Column("as in sessions"),
        "scan_date": Column("hive partition: the date of the run", "date (UTC)"),
    },
    "identities": {
        "session_id": Column("the session whose main face this is"),
        "template": Column(
            "the main face's identity template: the mean dlib embedding of its frames that agree on one person;"
            " biometric data: switch off with `--set identity.store=false` (or `identity.enabled=false`)",
            "128 floats",
        ),
        "frames": Column("embeddings averaged into the template", "frames"),
        "identity_version": Column("the identity model's version (from models/identity/model.json)"),
        "run_id": Column("as in sessions"),
        "scan_date": Column("hive partition: the date of the run", "date (UTC)"),
    },
    "fingerprints": {
        "session_id": Column("the session whose video this is"),
        "times_s": Column("times of the fingerprinted frames (`links.hash_hz` per second)", "seconds"),
        "hashes": Column("64-bit perceptual (DCT) hashes of those whole frames, for same_video links", "bits"),
        "run_id": Column("as in sessions"),
        "scan_date": Column("hive partition: the date of the run", "date (UTC)"),
    },
    "links": {
        "session_a": Column("the earlier of the two linked sessions"),
        "session_b": Column("the session whose scan (or `liveness links` pass) found the link"),
        "kind": Column(
            "`same_face` (their main faces' templates are closer than the identity threshold), `reapplied`"
            " (the same, where both sessions name one applicant in the `input.applicant_column` manifest column)"
            " or `same_video` (the same recording, even re-encoded, resized or trimmed)"
        ),
        "distance": Column(
            "same_face, reapplied: the templates' Euclidean distance; same_video: 1 - the share of frames matched",
            "0..2",
        ),
        "found_at": Column("when the link was found", "timestamp, UTC"),
        "run_id": Column("the scan (or `links-...` pass) that found it"),
        "scan_date": Column("hive partition: the date it was found", "date (UTC)"),
    },
    "verdict_history": _VERDICT_COLUMNS,
    "verdicts": _VERDICT_COLUMNS,
    "clusters": {
        "session_id": Column("a session with at least one link"),
        "cluster_id": Column(
            "its group of sessions linked directly or through others (`c-` + a hash of the group's smallest session id)"
        ),
        "size": Column("sessions in the group", "sessions"),
    },
}

EXAMPLE_QUERIES: list[tuple[str, str]] = [
    (
        "Today's most suspicious sessions",
        "select session_id, decision, round(spoof_score, 3) as score, reasons, source\n"
        "from sessions where scan_date = current_date and decision <> 'live'\n"
        "order by decision = 'spoof' desc, spoof_score desc limit 20",
    ),
    (
        "All swaps with their time",
        "select scan_date, session_id, swap_at_s, round(spoof_score, 3) as score, source\n"
        "from sessions where swap_detected order by scan_date desc, session_id",
    ),
    (
        "Score distribution per day",
        "select scan_date, count(*) as sessions, round(avg(spoof_score), 3) as mean,\n"
        "  round(quantile_cont(spoof_score, 0.5), 3) as median, round(quantile_cont(spoof_score, 0.95), 3) as p95,\n"
        "  count(*) filter (where decision = 'spoof') as spoof, count(*) filter (where decision = 'review') as review\n"
        "from sessions where status = 'ok' group by 1 order by 1",
    ),
    (
        "Failure reasons",
        "select error, count(*) as sessions, any_value(source) as example\n"
        "from sessions where status = 'failed' group by 1 order by 2 desc",
    ),
    (
        "Blocked regions, most common first",
        "select region, count(*) as sessions from (select unnest(occluded_regions) as region from sessions)"
        " group by 1 order by 2 desc",
    ),
    (
        "Groups of sessions that share a face or a recording, largest first",
        "select c.cluster_id, c.size, s.session_id, s.decision, s.source\n"
        "from clusters c join sessions s using (session_id) order by c.size desc, c.cluster_id, s.session_id",
    ),
    (
        "Where the model and the analysts disagree",
        "select s.session_id, s.decision, v.verdict, v.attack, v.analyst, round(s.spoof_score, 3) as score\n"
        "from sessions s join verdicts v using (session_id)\n"
        "where (v.verdict = 'spoof' and s.decision = 'live') or (v.verdict = 'live' and s.decision = 'spoof')\n"
        "qualify row_number() over (partition by s.session_id order by s.scanned_at desc) = 1",
    ),
    (
        "The frames around a session's swap",
        "select f.pts_s, f.similarity_prev, f.spoof_score from frames f join sessions s using (session_id, run_id)\n"
        "where s.swap_detected and abs(f.pts_s - s.swap_at_s) < 1 order by f.session_id, f.pts_s",
    ),
]


def _type(field: pa.Field) -> str:
    return (
        str(field.type).replace("list<element: string>", "list<string>").replace("list<item: string>", "list<string>")
    )


def partitioned(view: str) -> bool:
    """Whether a view reads a dataset's files, hence has its ``scan_date`` partition column."""
    return any(VIEWS[view] is schema for schema in DATASETS.values())


def render_markdown() -> str:
    """The data dictionary as Markdown: one table per dataset, then example queries."""
    lines = [
        "# Data dictionary",
        "",
        "Generated from `pipeline/reports/dictionary.py`"
        " (`uv run python -m pipeline.reports.dictionary > DATA_DICTIONARY.md`).",
        'Query it with `liveness query "SQL" --out DIR`: the views are the datasets below; `clusters` is'
        " computed from `links` when the query starts, `verdicts` is each session's latest row of"
        " `verdict_history`, and `sessions` is each session's latest attempt per model version in"
        " `session_history` (which keeps every attempt: a failed input retried by later runs, a"
        " `--rescan`). Count, rate and join over `sessions`; read `session_history` for what happened"
        " to a session run by run.",
        "",
    ]
    for dataset, schema in VIEWS.items():
        lines += [f"## `{dataset}`", "", "| column | type | meaning | unit | null means |", "|---|---|---|---|---|"]
        for field in [*schema, *([pa.field("scan_date", pa.date32())] if partitioned(dataset) else [])]:
            doc = COLUMNS[dataset][field.name]
            lines.append(f"| `{field.name}` | {_type(field)} | {doc.meaning} | {doc.unit} | {doc.null} |")
        lines.append("")
    lines += ["## Example queries", ""]
    for title, sql in EXAMPLE_QUERIES:
        lines += [f"{title}:", "", "```sql", sql + ";", "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_markdown(), end="")
