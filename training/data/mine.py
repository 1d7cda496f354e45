"""``liveness mine``: labelled face crops from committed scans, in the form ``liveness train`` reads.

What a KYC data team does with its archive (the seed's data cleaning): every session the
scans hold gets a label, or is left out with a reason.

- An analyst's verdict comes first (``verdicts`` view: spoof or live; unsure is left out).
- Otherwise a soft label from the trusted teacher scorer (``teacher``, default the reference
  scorer measured on real data): live only when its session spoof probability is under
  ``live_below`` and no signal fired (no swap, blocked region, several faces, link...);
  spoof only above ``spoof_above``. Everything in between is left out and counted.
- With ``soft_targets``, the teacher's sessions are distilled frame by frame: each crop's
  training target is the teacher's own spoof probability for that frame (``target`` in
  ``crops.csv``), kept only where the teacher is at least ``soft_floor`` sure of it; sessions
  whose session score is in between are then mined too, for their confident frames. A frame
  the teacher calls live in a session where a signal fired is still left out.

The crops are re-read from each session's source video at the times of the frames the scan
scored (``crops_per_session`` of them, spread over the session), at the face box the scan
stored, with :class:`~pipeline.faces.crop.CropSpec` (the one crop code). A session's subject
is its identity cluster when it has one (sessions sharing a face or a recording), else the
session itself; the split is a function of the subject, so no person is in two splits.

Incremental like the scan: ``DATA/mined_sessions.csv`` lists what was taken; a second run
re-reads only sessions not mined yet, relabels those whose label changed (a new verdict),
and drops those now left out. ``DATA/mine_report.json`` says what was taken, from where and why.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.atomic import write_aside
from pipeline.config import CONFIG_DIR, DetectConfig, load_flat_config
from pipeline.errors import DecodeError, InputError
from pipeline.faces.crop import CropSpec
from pipeline.reports.query import connect
from pipeline.schema import STATUS_OK
from pipeline.session.aggregate import REASON_SPOOF_SCORE
from pipeline.storage import Store
from pipeline.video.decode import VideoReader
from training.data.datasets import split_for_subject
from training.data.preprocess import CROP_COLUMNS, CROPS_MANIFEST, read_crop_spec, write_crop_spec, write_csv

log = logging.getLogger(__name__)

MINED_SESSIONS = "mined_sessions.csv"
MINE_REPORT = "mine_report.json"
SESSION_COLUMNS = ("session_id", "run_id", "label", "attack_type", "label_source", "teacher_score", "subject",
                   "split", "per_frame", "crops")  # fmt: skip
MINED_CROP_COLUMNS = (*CROP_COLUMNS, "session_id", "pts_s", "label_source", "target")
SOURCE_VERDICT = "verdict"
SOURCE_TEACHER = "teacher"
LABEL_SOFT = "soft"  # a session whose crops take their labels frame by frame from the teacher
UNKNOWN_ATTACK = "unknown"  # a spoof whose attack type nobody gave
TIME_TOLERANCE_S = 1e-3

CANDIDATES_SQL = """
with latest as (
    select session_id, run_id, source, status, reasons, scores from sessions
    qualify row_number() over (partition by session_id order by scanned_at desc) = 1
)
select l.*, v.verdict, v.attack, c.cluster_id from latest l
left join verdicts v using (session_id) left join clusters c using (session_id)
order by l.session_id
"""


class MineConfig(BaseModel):
    """Every setting of ``liveness mine`` (``configs/mine.yaml``); unknown keys fail."""

    model_config = ConfigDict(extra="forbid")

    teacher: str = Field("reference", min_length=1, description="scorer whose confident session scores label")
    live_below: float = Field(0.2, ge=0, le=1)
    spoof_above: float = Field(0.95, ge=0, le=1)
    crops_per_session: int = Field(8, ge=1, le=1000)
    soft_targets: bool = Field(False, description="teacher sessions distilled frame by frame (per-frame targets)")
    soft_floor: float = Field(0.9, ge=0.5, le=1, description="a soft target is kept where the teacher is this sure")
    val_share: float = Field(0.15, gt=0, lt=1, description="share of subjects in the validation split")
    test_share: float = Field(0.15, gt=0, lt=1, description="share of subjects held out for test and promotion")
    size: int = Field(128, ge=32, le=640, description="crop side: the input size of the model to train")
    scale: float = Field(1.6, gt=0, le=10)
    seed: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> MineConfig:
        if self.live_below >= self.spoof_above:
            raise ValueError(f"live_below ({self.live_below}) must be below spoof_above ({self.spoof_above})")
        if self.val_share + self.test_share >= 0.9:
            raise ValueError(f"val_share + test_share ({self.val_share + self.test_share:g}) must leave 10% to train")
        return self

    @property
    def fractions(self) -> tuple[float, float, float]:
        """The train, val and test shares of subjects."""
        return 1 - self.val_share - self.test_share, self.val_share, self.test_share


def load_mine_config(path: Path | None, overrides: list[str]) -> MineConfig:
    """``configs/mine.yaml`` (or ``path``) with ``key=value`` overrides, validated."""
    return load_flat_config(MineConfig, path or CONFIG_DIR / "mine.yaml", overrides, "mining")


@dataclass(frozen=True)
class Labelled:
    """A session that gets a label: where its crops come from and what they are."""

    session_id: str
    run_id: str
    source: str
    label: str
    attack_type: str
    label_source: str
    teacher_score: float | None
    subject: str
    split: str
    signal_fired: bool = False
    per_frame: bool = False  # a teacher's session under soft_targets: its frames set their own targets

    @property
    def label_target(self) -> float:
        """The training target its session label gives every crop: 1 spoof, 0 live."""
        return 1.0 if self.label == "spoof" else 0.0

    def target(self, teacher_p: float | None, floor: float) -> float | None:
        """A crop's training target (its spoof probability): its session label's; for a
        per-frame session the teacher's own probability for the frame (:func:`soft_target`)."""
        return soft_target(teacher_p, floor, self.signal_fired) if self.per_frame else self.label_target


def soft_target(p: float | None, floor: float, signal_fired: bool) -> float | None:
    """The teacher's per-frame probability as a target where it is at least ``floor`` sure,
    and not a live call in a session where a signal fired; else None."""
    if p is None or max(p, 1 - p) < floor or (p < 0.5 and signal_fired):
        return None
    return round(float(p), 4)


def label_session(row: dict, config: MineConfig) -> tuple[str, str, str] | str:
    """``(label, attack_type, label_source)`` of one session row, or why it is left out."""
    verdict = row.get("verdict")
    if verdict == "unsure":
        return "verdict unsure"
    if verdict in ("spoof", "live"):
        attack = (row.get("attack") or UNKNOWN_ATTACK) if verdict == "spoof" else "none"
        return verdict, attack, SOURCE_VERDICT
    if row["status"] != STATUS_OK:
        return f"status {row['status']}"
    score = dict(row.get("scores") or {}).get(config.teacher)
    if score is None:
        return f"no {config.teacher} score"
    if score > config.spoof_above:
        return "spoof", UNKNOWN_ATTACK, SOURCE_TEACHER
    if score >= config.live_below:
        return (LABEL_SOFT, UNKNOWN_ATTACK, SOURCE_TEACHER) if config.soft_targets else "teacher not confident"
    if any(not r.startswith(REASON_SPOOF_SCORE) for r in row.get("reasons") or []):
        return "signal fired"
    return "live", "none", SOURCE_TEACHER


def spread(n: int, k: int) -> list[int]:
    """``k`` indices out of ``n`` spread evenly from first to last (all of them when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _crop_name(session_id: str, run_id: str, k: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", session_id)[-60:]
    digest = hashlib.sha256(f"{session_id}\0{run_id}".encode()).hexdigest()[:10]
    return f"{safe}-{digest}-{k:03d}.png"


Box = tuple[float, float, float, float]


def scored_frames(
    con, sessions: list[tuple[str, str]], teacher: str | None = None
) -> dict[str, list[tuple[float, Box, float | None]]]:
    """Each ``(session_id, run_id)``'s frames with a face: ``(pts_s, box, the teacher's
    probability, None without a teacher or its score)`` in time order."""
    con.execute("create or replace temp table wanted (session_id varchar, run_id varchar)")
    con.executemany("insert into wanted values (?, ?)", sessions)
    rows = con.execute(
        "select f.session_id, f.pts_s, f.bbox_x, f.bbox_y, f.bbox_w, f.bbox_h, f.scores[?] from frames f"
        " join wanted using (session_id, run_id) where f.bbox_w > 0 and f.bbox_h > 0"
        " order by f.session_id, f.pts_s",
        [teacher or ""],
    ).fetchall()
    found: dict[str, list[tuple[float, Box, float | None]]] = {}
    for sid, t, x, y, w, h, p in rows:
        found.setdefault(sid, []).append(
            (float(t), (float(x), float(y), float(w), float(h)), None if p is None else float(p))
        )
    return found


def read_crops(
    source: str, wanted: list[tuple[float, Box]], specs: Sequence[CropSpec], max_pixels: int
) -> list[tuple[float, dict[str, np.ndarray], tuple[int, int]]]:
    """The crops at ``wanted`` (time, face box) re-read from ``source``, cut with each of
    ``specs`` (``{spec.key: crop}``), each with its frame's width and height: streamed,
    stopping after the last wanted time. A time no decoded frame has is skipped."""
    out: list[tuple[float, dict[str, np.ndarray], tuple[int, int]]] = []
    j = 0
    with VideoReader(source, sample_fps=1000.0, max_frames=10**9, max_pixels=max_pixels) as video:
        for frame in video.sampled():
            while j < len(wanted) and wanted[j][0] < frame.pts_s - TIME_TOLERANCE_S:
                j += 1  # no frame at that time (the file changed since the scan)
            if j == len(wanted):
                break
            if abs(wanted[j][0] - frame.pts_s) <= TIME_TOLERANCE_S:
                height, width = frame.image.shape[:2]
                crops = {spec.key: spec.crop(frame.image, wanted[j][1]) for spec in specs}
                out.append((wanted[j][0], crops, (width, height)))
                j += 1
    return out


@dataclass
class MineReport:
    """What one ``liveness mine`` run took, from where and why (``mine_report.json``)."""

    scan: str
    data: str
    mined_at: str
    config: dict
    sessions_seen: int
    new_sessions: int
    relabelled: int
    dropped: int
    sessions: dict[str, int]  # label source/label -> sessions in the data set
    crops: dict[str, int]  # split/label source/label -> crops in the data set
    left_out: dict[str, int]  # reason -> sessions
    unreadable: list[str]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def mine(scan: str, data: Path, config: MineConfig, *, max_pixels: int = 4096 * 4096) -> MineReport:
    """Mine the output ``scan`` into the crop folder ``data`` (created or extended)."""
    store = Store(scan)
    if not store.committed("sessions"):
        raise InputError(f"{store.display()} holds no committed scan: nothing to mine")
    crop = CropSpec(size=config.size, scale=config.scale)
    spec_path = data / "crop_spec.json"
    if spec_path.is_file():
        made = read_crop_spec(data)
        if made != crop:
            raise InputError(
                f"{data} holds crops cut at {made.size} px, scale {made.scale:g}; this run asks for "
                f"{crop.size} px, scale {crop.scale:g}: mine into another folder"
            )
    con = connect(scan)
    rel = con.sql(CANDIDATES_SQL)
    rows = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
    left_out: Counter[str] = Counter()
    labelled: dict[str, Labelled] = {}
    for row in rows:
        outcome = label_session(row, config)
        if isinstance(outcome, str):
            left_out[outcome] += 1
            continue
        label, attack, label_source = outcome
        subject = row["cluster_id"] or f"session:{row['session_id']}"
        score = dict(row.get("scores") or {}).get(config.teacher)
        fired = any(not r.startswith(REASON_SPOOF_SCORE) for r in row.get("reasons") or [])
        labelled[row["session_id"]] = Labelled(
            row["session_id"], row["run_id"], row["source"], label, attack, label_source, score, subject,
            split_for_subject(subject, config.seed, config.fractions), fired,
            label_source == SOURCE_TEACHER and config.soft_targets,
        )  # fmt: skip
    known = {r["session_id"]: r for r in _read_csv(data / MINED_SESSIONS)}
    old_crops = _read_csv(data / CROPS_MANIFEST)

    def reusable(sid: str, s: Labelled) -> bool:  # its crops can be kept (relabelled in place)
        return known[sid]["run_id"] == s.run_id and known[sid].get("per_frame") == str(s.per_frame)

    new = [s for sid, s in labelled.items() if sid not in known or not reusable(sid, s)]
    keep = {sid: s for sid, s in labelled.items() if sid in known and reusable(sid, s)}
    classes = {s.label for s in labelled.values()}
    if len(classes) < 2 and LABEL_SOFT not in classes:
        raise InputError(
            f"the label set of {store.display()} would hold {' and '.join(sorted(classes)) or 'no'} sessions only"
            f" ({len(labelled)} labelled; left out: {dict(left_out) or 'none'}): a model needs live and spoof;"
            " add verdicts or widen live_below/spoof_above"
        )
    data.mkdir(parents=True, exist_ok=True)
    write_crop_spec(data, crop, DetectConfig())
    crop_rows = []
    for row in old_crops:  # a kept session is relabelled in place; the rest of the old crops go
        s = keep.get(row.get("session_id", ""))
        if s is None:
            (data / row["path"]).unlink(missing_ok=True)
            continue
        crop_rows.append(row if s.per_frame else row | _label_columns(s) | {"target": s.label_target})
    frames = scored_frames(con, [(s.session_id, s.run_id) for s in new], config.teacher) if new else {}
    unreadable: list[str] = []
    crops_of = {sid: int(known[sid]["crops"]) for sid in keep}
    for s in new:
        scored = frames.get(s.session_id, [])
        targets = {t: s.target(p, config.soft_floor) for t, _, p in scored}
        usable = [(t, box) for t, box, _ in scored if targets[t] is not None]
        wanted = [usable[i] for i in spread(len(usable), config.crops_per_session)]
        if not wanted:
            left_out["no face frame" if not scored else "teacher not confident on any frame"] += 1
            continue
        try:
            got = read_crops(s.source, wanted, [crop], max_pixels)
        except (DecodeError, OSError, ValueError) as exc:
            log.warning("mine: cannot re-read session %s: %s", s.session_id, exc)
            unreadable.append(s.session_id)
            left_out["source unreadable"] += 1
            continue
        if not got:
            left_out["frames not found in source"] += 1
            continue
        for k, (t, images, (width, height)) in enumerate(got):
            image, target = images[crop.key], targets[t]
            columns = _label_columns(s, target)
            folder = Path(columns["label"] if columns["label"] == "live" else f"spoof/{columns['attack_type']}")
            (data / folder).mkdir(parents=True, exist_ok=True)
            relative = folder / _crop_name(s.session_id, s.run_id, k)
            ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            if not ok:
                raise OSError(f"could not encode a crop of {s.session_id}")
            png.tofile(str(data / relative))
            crop_rows.append(
                {"path": relative.as_posix(), "source": s.source, "width": width, "height": height,
                 "session_id": s.session_id, "pts_s": f"{t:.6f}", "target": target} | columns
            )  # fmt: skip
        crops_of[s.session_id] = len(got)
    mined = [s for sid, s in labelled.items() if crops_of.get(sid)]
    dropped = sum(1 for sid in known if sid not in crops_of)
    write_csv(data / CROPS_MANIFEST, MINED_CROP_COLUMNS, crop_rows, extra="ignore")
    write_csv(data / MINED_SESSIONS, SESSION_COLUMNS, [asdict(s) | {"crops": crops_of[s.session_id]} for s in mined],
              extra="ignore")  # fmt: skip
    report = MineReport(
        scan=store.display(),
        data=str(data),
        mined_at=datetime.now(UTC).isoformat(timespec="seconds"),
        config=config.model_dump(),
        sessions_seen=len(rows),
        new_sessions=sum(1 for s in new if crops_of.get(s.session_id)),
        relabelled=sum(1 for sid, s in keep.items() if known[sid]["label"] != s.label),
        dropped=dropped,
        sessions=dict(sorted(Counter(f"{s.label_source}/{s.label}" for s in mined).items())),
        crops=dict(sorted(Counter(f"{r['split']}/{r['label_source']}/{r['label']}" for r in crop_rows).items())),
        left_out=dict(sorted(left_out.items())),
        unreadable=unreadable[:50],
    )
    write_aside(data / MINE_REPORT, lambda tmp: tmp.write_text(report.to_json()))
    log.info(
        "mine: %d sessions seen, %d new, %d relabelled, %d dropped; %d crops; left out %s",
        report.sessions_seen, report.new_sessions, report.relabelled, report.dropped, len(crop_rows), report.left_out,
    )  # fmt: skip
    return report


def _label_columns(s: Labelled, target: float | None = None) -> dict[str, str]:
    """A crop's label columns: its session's, or for a per-frame session its own target's class
    (a spoof frame of a session labelled live is an attack of unknown type)."""
    label = ("spoof" if (target or 0.0) >= 0.5 else "live") if s.per_frame else s.label
    attack = "none" if label == "live" else UNKNOWN_ATTACK if s.attack_type == "none" else s.attack_type
    return {"label": label, "attack_type": attack, "subject": s.subject, "split": s.split,
            "label_source": s.label_source}  # fmt: skip
