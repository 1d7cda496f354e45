"""``liveness report``: one self-contained HTML file that answers "which sessions should I
look at first, and why?".

It holds the run summary and decision counts, a score histogram, a sortable ranked table
of the day's sessions, and for each flagged session (up to ``--top``) its timelines (spoof
score with the threshold, eye aspect ratio with the blinks marked, crop similarity with
the swap point), its blocked regions and the evidence thumbnails, then the sessions linked
that day to others (same face, same recording) side by side. Charts are PNGs and
thumbnails JPEGs, both inlined as data URIs: the file opens offline, anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.atomic import write_aside
from pipeline.errors import ReportError
from pipeline.reports.diff import ModelDiff, model_diff, versions
from pipeline.reports.query import connect
from pipeline.schema import (
    ATTACK_TYPES,
    CONTRACT_SCORERS,
    DECISION_LIVE,
    DECISION_REVIEW,
    DECISION_SPOOF,
    REGIONS,
    RUNS_DIR,
    VERDICTS,
)
from pipeline.storage import Store
from pipeline.text import is_control, printable, utf8_text

SEVERITY_SQL = (
    f"case decision when '{DECISION_SPOOF}' then 0 when '{DECISION_REVIEW}' then 1"
    f" when '{DECISION_LIVE}' then 2 else 3 end"
)
MAX_TABLE_ROWS = 5000
MAX_LINKS = 200
LINKS_SQL = """
with latest as (
    select session_id, decision, status from sessions
    qualify row_number() over (partition by session_id order by scanned_at desc) = 1
), thumbs as (select session_id, first(jpeg order by pts_s) as jpeg from evidence group by session_id)
select l.session_a, l.session_b, l.kind, l.distance, a.decision as decision_a, a.status as status_a,
    b.decision as decision_b, b.status as status_b, ta.jpeg as thumb_a, tb.jpeg as thumb_b, c.size as cluster_size
from links l
left join latest a on a.session_id = l.session_a left join latest b on b.session_id = l.session_b
left join thumbs ta on ta.session_id = l.session_a left join thumbs tb on tb.session_id = l.session_b
left join clusters c on c.session_id = l.session_a
where l.scan_date = $day
order by c.size desc, l.kind, l.distance, l.session_a, l.session_b
"""


@dataclass
class ReportData:
    """What the report shows, read from the output's datasets."""

    day: date
    sessions: list[dict]
    frames: dict[tuple[str, str], list[dict]]
    evidence: dict[tuple[str, str], list[dict]]
    runs: list[dict]
    flagged: list[dict]
    links: list[dict] = field(default_factory=list)
    verdicts: dict[str, dict] = field(default_factory=dict)  # session id -> its latest committed verdict
    diff: ModelDiff | None = None  # the two latest model versions, when the output holds two


def load(out: str, day: date | None, top: int) -> ReportData:
    """The latest row of every session scanned on ``day`` (default: the latest scan date), ranked."""
    con = connect(out)
    if day is None:
        day = con.sql("select max(scan_date) from sessions").fetchall()[0][0]
        if day is None:
            raise ReportError(f"{out} holds no scanned session yet")
    rel = con.sql(
        f"""
        select * from sessions where scan_date = $day
        qualify row_number() over (partition by session_id order by scanned_at desc) = 1
        order by {SEVERITY_SQL}, spoof_score desc nulls last, session_id
    """,
        params={"day": day},
    )
    sessions = [dict(zip(rel.columns, r, strict=False)) for r in rel.fetchall()]
    if not sessions:
        raise ReportError(f"no session was scanned on {day}")
    flagged = [s for s in sessions if s["decision"] in (DECISION_SPOOF, DECISION_REVIEW)][:top]
    keys = [(s["session_id"], s["run_id"]) for s in flagged]
    frames: dict[tuple[str, str], list[dict]] = {k: [] for k in keys}
    evidence: dict[tuple[str, str], list[dict]] = {k: [] for k in keys}
    if keys:
        con.execute("create temp table wanted (session_id varchar, run_id varchar)")
        con.executemany("insert into wanted values (?, ?)", keys)
        for table, target, order in (("frames", frames, "frame_index"), ("evidence", evidence, "pts_s")):
            rel = con.sql(
                f"select t.* from {table} t join wanted using (session_id, run_id) order by t.session_id, t.{order}"
            )
            for row in (dict(zip(rel.columns, r, strict=False)) for r in rel.fetchall()):
                target[(row["session_id"], row["run_id"])].append(row)
    store = Store(out)
    runs = []
    for path in store.list(RUNS_DIR, ".json"):
        run = json.loads(store.read_bytes(path))
        if run.get("scan_date") == day.isoformat():
            runs.append(run)
    rel = con.sql(LINKS_SQL, params={"day": day})
    links = [dict(zip(rel.columns, r, strict=False)) for r in rel.fetchall()]
    rel = con.sql(
        "select session_id, verdict, attack, note, analyst from verdicts"
        " where session_id in (select session_id from sessions where scan_date = $day)",
        params={"day": day},
    )
    verdicts = {r[0]: dict(zip(rel.columns, r, strict=False)) for r in rel.fetchall()}
    known = versions(con)
    diff = model_diff(con, known[1], known[0]) if len(known) >= 2 else None
    return ReportData(
        day=day,
        sessions=sessions,
        frames=frames,
        evidence=evidence,
        runs=runs,
        flagged=flagged,
        links=links,
        verdicts=verdicts,
        diff=diff,
    )


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def histogram_png(sessions: list[dict], threshold: float | None) -> str:
    """Histogram of the session spoof scores, with the threshold."""
    fig = Figure(figsize=(7, 2.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    scores = [s["spoof_score"] for s in sessions if s["spoof_score"] is not None]
    ax.hist(scores, bins=np.linspace(0, 1, 41).tolist(), color="#4a78b5")
    if threshold is not None:
        ax.axvline(threshold, color="#c0392b", ls="--", label=f"threshold {threshold:.3f}")
        ax.legend(loc="upper center")
    ax.set_xlabel("session spoof score (0 = real, 1 = spoof)")
    ax.set_ylabel("sessions")
    fig.tight_layout()
    return _png(fig)


def _series(frames: list[dict], column: str) -> tuple[np.ndarray, np.ndarray]:
    t = np.array([f["pts_s"] for f in frames], dtype=np.float64)
    v = np.array([np.nan if f.get(column) is None else f[column] for f in frames], dtype=np.float64)
    return t, v


def blink_spans(session: dict) -> list[tuple[float, float]]:
    """The blinks the scan counted, as it stored them (``start_s``, ``end_s``): the report
    draws these and never counts again, so what it shows is the session's ``blink_count``."""
    return [(b["start_s"], b["end_s"]) for b in session.get("blinks") or []]


def scorer_thresholds(session: dict) -> dict[str, float]:
    """Each scorer's threshold as the session row stored it (a map; empty for older rows)."""
    stored = session.get("thresholds") or {}
    return dict(stored.items() if isinstance(stored, dict) else stored)


def timeline_png(session: dict, frames: list[dict]) -> str:
    """Each scorer's score with its threshold, side by side (the deciding score drawn thick),
    eye aspect ratio with blinks, similarity with the swap point."""
    fig = Figure(figsize=(9, 4.6))
    FigureCanvasAgg(fig)
    ax_score, ax_ear, ax_sim = fig.subplots(3, 1, sharex=True)
    t, score = _series(frames, "spoof_score")
    thresholds = scorer_thresholds(session)
    for k, name in enumerate(CONTRACT_SCORERS):
        _, values = _series(frames, f"{name}_score")
        if np.isfinite(values).any():
            color = ("#2c7fb8", "#c0392b")[k % 2]
            ax_score.plot(t, values, ".-", color=color, lw=1, ms=2, alpha=0.8, label=name)
            if name in thresholds:
                ax_score.axhline(
                    thresholds[name], color=color, ls="--", lw=1, label=f"{name} threshold {thresholds[name]:.3f}"
                )
    if np.isfinite(score).any():
        ax_score.plot(t, score, color="black", lw=2, alpha=0.35, label="deciding score")
    if session.get("threshold") is not None and not thresholds:  # written before scorers had columns
        ax_score.axhline(session["threshold"], color="black", ls="--", lw=1, label="threshold")
    if ax_score.get_legend_handles_labels()[0]:
        ax_score.legend(loc="upper right", fontsize=6, ncol=3)
    ax_score.set_ylim(-0.02, 1.02)
    ax_score.set_ylabel("spoof score", fontsize=8)
    _, ear_l = _series(frames, "ear_left")
    _, ear_r = _series(frames, "ear_right")
    ax_ear.plot(t, ear_l, lw=1, label="left eye")
    ax_ear.plot(t, ear_r, lw=1, label="right eye")
    for k, (start, end) in enumerate(blink_spans(session)):
        ax_ear.axvspan(start, end, color="#f1c40f", alpha=0.4, label="blink" if k == 0 else None)
    ax_ear.set_ylabel("EAR", fontsize=8)
    ax_ear.legend(loc="upper right", fontsize=7, ncol=3)
    _, sim = _series(frames, "similarity_prev")
    ax_sim.plot(t, sim, lw=1, color="#27ae60")
    if session.get("swap_at_s") is not None:
        for ax in (ax_score, ax_ear, ax_sim):
            ax.axvline(session["swap_at_s"], color="#8e44ad", lw=2, alpha=0.7)
        ax_sim.text(session["swap_at_s"], 0.05, f" swap at {session['swap_at_s']:.2f} s", color="#8e44ad", fontsize=8)
    ax_sim.set_ylim(-0.02, 1.02)
    ax_sim.set_ylabel("similarity", fontsize=8)
    ax_sim.set_xlabel("time (s)")
    for ax in (ax_score, ax_ear, ax_sim):
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _other_faces(session: dict) -> str:
    """The faces beside the main one that were scored, and their score (empty when none was)."""
    if not session.get("other_faces_scored"):
        return ""
    score = session.get("other_spoof_score")
    return f" · {session['other_faces_scored']} other faces scored" + (f" ({_fmt(score)})" if score is not None else "")


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _e(value: object) -> str:
    return _h(_fmt(value))


def _attr(text: str) -> str:
    """Exact text for an attribute the page's script reads back (a session id): HTML-escaped,
    control and bidi characters as character references, so none is in the file raw."""
    return "".join(f"&#{ord(c)};" if is_control(c) else c for c in html.escape(utf8_text(text)))


def _h(text: str) -> str:
    """Untrusted text for the page: control and bidi characters shown as escapes, then HTML-escaped."""
    return html.escape(printable(text))


_CSS = (
    "\n"
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}\n"
    "h1{font-size:22px}h2{font-size:18px;margin-top:32px}h3{font-size:15px;margin:4px 0}\n"
    "table{border-collapse:collapse;font-size:12px}"
    "th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}\n"
    "th{cursor:pointer;background:#f4f4f4;position:sticky;top:0}th:hover{background:#e8e8e8}\n"
    ".spoof{color:#fff;background:#c0392b;border-radius:3px;padding:1px 6px}"
    ".review{background:#f39c12;color:#fff;border-radius:3px;padding:1px 6px}\n"
    ".live{background:#27ae60;color:#fff;border-radius:3px;padding:1px 6px}.failed{color:#888}\n"
    ".cards{display:flex;gap:12px;flex-wrap:wrap}"
    ".card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:90px}\n"
    ".card b{display:block;font-size:20px}"
    ".session{border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:14px 0}\n"
    ".thumbs{display:flex;gap:8px;flex-wrap:wrap}.thumbs figure{margin:0;font-size:11px;text-align:center}\n"
    ".thumbs img,#links img{width:112px;height:112px;border-radius:4px;border:1px solid #ccc}"
    ".muted{color:#777;font-size:12px}\n"
    ".mark select,.mark input{font-size:11px;margin-right:2px}.mark input.n{width:9em}"
    ".mark[data-dirty='1']{outline:2px solid #f39c12;border-radius:3px}\n"
    "#verdict-bar{margin-top:14px;padding:6px 10px;background:#f7f7f7;border-radius:6px;font-size:13px}\n"
)

_JS = (
    "\n"
    "function sortTable(th){const table=th.closest('table');const i=[...th.parentNode.children].indexOf(th);\n"
    "const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';const body=table.tBodies[0];\n"
    "const rows=[...body.rows];rows.sort((a,b)=>{const x=a.cells[i].dataset.v??a.cells[i].textContent,"
    "y=b.cells[i].dataset.v??b.cells[i].textContent;\n"
    "const nx=parseFloat(x),ny=parseFloat(y);const c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);"
    "return asc?c:-c});\n"
    "rows.forEach(r=>body.appendChild(r));}\n"
    "window.addEventListener('load',()=>{const imgs=[...document.images];\n"
    "document.body.dataset.imagesLoaded=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;\n"
    "document.body.dataset.imagesTotal=imgs.length;"
    "document.body.dataset.tableRows=document.querySelectorAll('#ranked tbody tr').length;restoreMarks();});\n"
    # Analysts' marks: every control of one session is kept in step; marks survive a reload
    # (localStorage) and leave the page only as the CSV that `liveness verdicts add` reads.
    "const MARK_FIELDS=['v','a','n'];function storeKey(){return 'liveness-verdicts-'+document.body.dataset.day}\n"
    "function marksOf(sid){return [...document.querySelectorAll('.mark')].filter(m=>m.dataset.session===sid)}\n"
    "function setMark(sid,values,dirty){marksOf(sid).forEach(m=>{MARK_FIELDS.forEach(f=>{"
    "m.querySelector('.'+f).value=values[f]});m.dataset.dirty=dirty?'1':'0'});}\n"
    "function valuesOf(m){const values={};MARK_FIELDS.forEach(f=>values[f]=m.querySelector('.'+f).value);"
    "return values}\n"
    "function markChanged(el){const m=el.closest('.mark');const values=valuesOf(m);\n"
    "if(values.v!=='spoof'){values.a=''};setMark(m.dataset.session,values,true);saveMarks();}\n"
    "function dirtyMarks(){const seen=new Map();document.querySelectorAll(\".mark[data-dirty='1']\").forEach(m=>"
    "{if(m.querySelector('.v').value)seen.set(m.dataset.session,m)});return [...seen.values()]}\n"
    "function saveMarks(){const saved={};document.querySelectorAll(\".mark[data-dirty='1']\").forEach(m=>{"
    "saved[m.dataset.session]=valuesOf(m)});\n"
    "document.getElementById('marked').textContent=dirtyMarks().length;"
    "try{localStorage.setItem(storeKey(),JSON.stringify(saved))}catch(e){}}\n"
    "function restoreMarks(){let saved={};try{saved=JSON.parse(localStorage.getItem(storeKey())||'{}')}catch(e){}\n"
    "const known=new Set([...document.querySelectorAll('.mark')].map(m=>m.dataset.session));"
    "Object.entries(saved).forEach(([sid,v])=>{if(known.has(sid))setMark(sid,v,true)});"
    "document.getElementById('marked').textContent=dirtyMarks().length;}\n"
    "function csvCell(s){s=String(s??'');return /[\",\\r\\n]/.test(s)?'\"'+s.replace(/\"/g,'\"\"')+'\"':s}\n"
    "function verdictsCsv(){const who=document.getElementById('analyst').value.trim();"
    "const lines=['session_id,verdict,attack,note,analyst'];\n"
    "dirtyMarks().forEach(m=>{const v=valuesOf(m);"
    "lines.push([m.dataset.session,v.v,v.a,v.n,who].map(csvCell).join(','))});return lines.join('\\r\\n')+'\\r\\n'}\n"
    "function downloadVerdicts(){const a=document.createElement('a');"
    "a.href=URL.createObjectURL(new Blob([verdictsCsv()],{type:'text/csv'}));\n"
    "a.download='verdicts-'+document.body.dataset.day+'.csv';document.body.appendChild(a);a.click();a.remove();}\n"
)


def _options(values: tuple[str, ...], chosen: str | None, blank: str) -> str:
    return f"<option value=''>{blank}</option>" + "".join(
        f"<option value='{v}'{' selected' if v == chosen else ''}>{v}</option>" for v in values
    )


def _mark(session_id: str, committed: dict | None) -> str:
    """An analyst's controls for one session (verdict, attack, note), showing its committed verdict."""
    committed = committed or {}
    was = (
        f"<span class='muted' title='committed verdict'>now {html.escape(committed['verdict'])}"
        f"{' (' + html.escape(committed['attack']) + ')' if committed.get('attack') else ''}</span> "
        if committed
        else ""
    )
    return (
        f"<span class='mark' data-session='{_attr(session_id)}' data-dirty='0'>{was}"
        f"<select class='v' aria-label='verdict' onchange='markChanged(this)'>"
        f"{_options(VERDICTS, committed.get('verdict'), 'verdict')}</select>"
        f"<select class='a' aria-label='attack type' onchange='markChanged(this)'>"
        f"{_options(ATTACK_TYPES, committed.get('attack'), 'attack')}</select>"
        f"<input class='n' aria-label='note' placeholder='note' value='{_e(committed.get('note'))}'"
        " onchange='markChanged(this)'></span>"
    )


def _verdict_bar() -> str:
    return (
        "<div id='verdict-bar'>Mark sessions below (verdict, attack type, note), then "
        "<input id='analyst' placeholder='your name' aria-label='analyst'> "
        "<button id='download-verdicts' onclick='downloadVerdicts()'>Download verdicts CSV</button> "
        "(<span id='marked'>0</span> marked). Commit the file with "
        "<code>liveness verdicts add FILE --out DIR</code>; marks stay in this browser until then.</div>"
    )


def _decision(value: str | None, status: str) -> str:
    if value is None:
        return f'<span class="failed">{_h(status)}</span>'
    return f'<span class="{_h(value)}">{_h(value)}</span>'


def render(data: ReportData) -> str:
    """The report as one HTML document."""
    sessions = data.sessions
    counts = {
        d: sum(1 for s in sessions if s["decision"] == d) for d in (DECISION_SPOOF, DECISION_REVIEW, DECISION_LIVE)
    }
    failed = sum(1 for s in sessions if s["status"] == "failed")
    thresholds = sorted({s["threshold"] for s in sessions if s["threshold"] is not None})
    versions = sorted({s["model_version"] for s in sessions if s["model_version"]})
    wall = sum(r.get("wall_s", 0.0) for r in data.runs)
    calibrations = sorted({r.get("calibration") or "none (the cards' thresholds)" for r in data.runs})
    points = sorted({f"{n}: {p}" for r in data.runs for n, p in (r.get("operating_points") or {}).items()})
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>liveness report {data.day}</title>"
        f"<style>{_CSS}</style><script>{_JS}</script></head><body data-day='{data.day}'>"
    ]
    out.append(f"<h1>Liveness report, sessions scanned on {data.day}</h1>")
    out.append(
        f"<p class='muted'>{len(sessions)} sessions; model {_h(', '.join(versions))}; "
        f"{len(data.runs)} run(s), {wall:.0f} s of scanning; calibration in force:"
        f" <span id='calibration'>{_h('; '.join(calibrations) or 'none')}</span>; deciding operating points"
        f" (threshold +- review band): <span id='operating-points'>{_h('; '.join(points) or 'not recorded')}</span>. "
        "Start with the flagged sessions below: they are ranked spoof first, then review, by score.</p>"
    )
    out.append(
        "<div class='cards'>"
        + "".join(
            f"<div class='card'><b>{n}</b>{label}</div>"
            for label, n in (
                ("spoof", counts[DECISION_SPOOF]),
                ("review", counts[DECISION_REVIEW]),
                ("live", counts[DECISION_LIVE]),
                ("failed", failed),
                ("sessions", len(sessions)),
            )
        )
        + "</div>"
    )
    out.append(_verdict_bar())
    histogram = histogram_png(sessions, thresholds[0] if len(thresholds) == 1 else None)
    out.append(f"<h2>Score distribution</h2><img alt='score histogram' src='{histogram}'>")
    out.append(f"<h2>Flagged sessions ({len(data.flagged)} shown)</h2>")
    if not data.flagged:
        out.append("<p>No session was flagged on this date.</p>")
    for rank, s in enumerate(data.flagged, 1):
        key = (s["session_id"], s["run_id"])
        frames = data.frames.get(key, [])
        regions = s.get("occluded_regions") or []
        region_scores = ", ".join(
            f"{r} "
            f"{np.nanmean([np.nan if f.get(f'occlusion_{r}') is None else f[f'occlusion_{r}'] for f in frames]):.2f}"
            for r in REGIONS
            if any(f.get(f"occlusion_{r}") is not None for f in frames)
        )
        out.append(
            f"<div class='session' id='s{rank}'><h3>#{rank} {_h(s['session_id'])} "
            f"{_decision(s['decision'], s['status'])} "
            f"score {_e(s['spoof_score'])} (max {_e(s['spoof_score_max'])})"
            + "".join(
                f" · {name} {_e(s.get(f'{name}_score'))}"
                for name in CONTRACT_SCORERS
                if s.get(f"{name}_score") is not None
            )
            + "</h3>"
        )
        out.append(f"<div>{_mark(s['session_id'], data.verdicts.get(s['session_id']))}</div>")
        out.append(
            f"<div class='muted'>reasons: <b>{_e(s['reasons']) or 'none'}</b> · blinks {_e(s['blink_count'])}"
            f" · swap {'at ' + _fmt(s['swap_at_s'], 2) + ' s' if s['swap_detected'] else 'no'}"
            f" · static {'yes' if s.get('static') else 'no'}"
            f" · blocked regions: <b>{_h(', '.join(regions)) or 'none'}</b>"
            f"{' (mean scores ' + region_scores + ')' if region_scores else ''}"
            f" · faces in {_fmt(s['face_ratio'], 2)} of frames, several in {_fmt(s['multi_face_ratio'], 2)}"
            f"{_other_faces(s)} · {_h(s['source'])}</div>"
        )
        if any(f["spoof_score"] is not None for f in frames):
            out.append(f"<img alt='timelines of {_h(s['session_id'])}' src='{timeline_png(s, frames)}'>")
        thumbs = data.evidence.get(key, [])
        if thumbs:
            out.append(
                "<div class='thumbs'>"
                + "".join(
                    f"<figure><img alt='{_h(e['kind'])}'"
                    f" src='{_jpeg_src(e['jpeg'])}'>"
                    f"<figcaption>{_h(e['kind'].replace('_', ' '))}<br>"
                    f"{e['pts_s']:.2f} s · {_fmt(e['spoof_score'])}</figcaption></figure>"
                    for e in thumbs
                )
                + "</div>"
            )
        out.append("</div>")
    out.extend(_links_section(data.links))
    if data.diff is not None:
        out.extend(_diff_section(data.diff))
    shown = sessions[:MAX_TABLE_ROWS]
    out.append(
        f"<h2>All sessions, ranked ({len(shown)} of {len(sessions)})</h2><p class='muted'>Click a column to sort.</p>"
    )
    headers = (
        "rank",
        "session",
        "decision",
        "score",
        "max",
        *CONTRACT_SCORERS,
        "reasons",
        "swap at (s)",
        "blinks",
        "blocked",
        "faces",
        "status / error",
        "source",
        "analyst's verdict",
    )
    out.append(
        "<table id='ranked'><thead><tr>"
        + "".join(f"<th onclick='sortTable(this)'>{h}</th>" for h in headers)
        + "</tr></thead><tbody>"
    )
    for rank, s in enumerate(shown, 1):
        cells = (
            str(rank),
            _h(s["session_id"]),
            _decision(s["decision"], s["status"]),
            _e(s["spoof_score"]),
            _e(s["spoof_score_max"]),
            *(_e(s.get(f"{name}_score")) for name in CONTRACT_SCORERS),
            _e(s["reasons"]),
            _e(s["swap_at_s"]),
            _e(s["blink_count"]),
            _e(s.get("occluded_regions")),
            _e(s["face_ratio"]),
            _h(s["error"] or s["status"]),
            _h(s["source"]),
            _mark(s["session_id"], data.verdicts.get(s["session_id"])),
        )
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(out)


def _jpeg_src(jpeg: bytes) -> str:
    """A thumbnail as an inline data URI: the report loads nothing from anywhere."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def _thumb(jpeg: bytes | None, alt: str) -> str:
    if jpeg is None:
        return "<span class='muted'>no thumbnail</span>"
    return f"<img alt='{_h(alt)}' src='{_jpeg_src(jpeg)}'>"


def _links_section(links: list[dict]) -> list[str]:
    """Sessions linked on the report's day: both sides' thumbnails and decisions, the kind and distance."""
    out = [f"<h2>Linked sessions ({min(len(links), MAX_LINKS)} of {len(links)} links found this day)</h2>"]
    if not links:
        return [*out, "<p>No session was linked to another on this date.</p>"]
    out.append(
        "<p class='muted'>A link is a fact, not a verdict: the same face (identity templates closer than the"
        " threshold) or the same recording (frame fingerprints). Thumbnails exist for flagged sessions only.</p>"
        "<table id='links'><thead><tr><th>session a</th><th></th><th>kind</th><th>distance</th>"
        "<th></th><th>session b</th><th>cluster size</th></tr></thead><tbody>"
    )
    for link in links[:MAX_LINKS]:
        out.append(
            "<tr>"
            f"<td>{_h(link['session_a'])}<br>{_decision(link['decision_a'], link['status_a'] or '?')}</td>"
            f"<td>{_thumb(link['thumb_a'], link['session_a'])}</td>"
            f"<td>{_h(link['kind'])}</td><td>{_e(link['distance'])}</td>"
            f"<td>{_thumb(link['thumb_b'], link['session_b'])}</td>"
            f"<td>{_h(link['session_b'])}<br>{_decision(link['decision_b'], link['status_b'] or '?')}</td>"
            f"<td>{_e(link['cluster_size'])}</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def _diff_section(diff: ModelDiff) -> list[str]:
    """What the latest model changed against the one before, on the sessions both scanned."""
    out = [
        f"<h2 id='diff'>What {_h(diff.to_version)} changed</h2>"
        f"<p class='muted'>Against {_h(diff.from_version)}, on the {diff.common} session(s) both scanned"
        f" ({diff.only_from} only by the old version, {diff.only_to} only by the new);"
        " <code>liveness diff</code> gives the whole list as CSV or JSON.</p>"
        "<table id='transitions'><thead><tr><th>from</th><th>to</th><th>sessions</th></tr></thead><tbody>"
    ]
    for t in diff.transitions.to_pylist():
        out.append(
            f"<tr><td>{_decision(t['from_decision'], '')}</td><td>{_decision(t['to_decision'], '')}</td>"
            f"<td>{t['sessions']}</td></tr>"
        )
    out.append("</tbody></table>")
    changed = diff.changed.to_pylist()
    out.append(
        f"<h3>Sessions whose decision or score changed ({min(len(changed), MAX_LINKS)} of {len(changed)})</h3>"
        "<table id='changed'><thead><tr><th>session</th><th>from</th><th>to</th><th>old score</th>"
        "<th>new score</th><th>change</th></tr></thead><tbody>"
    )
    for c in changed[:MAX_LINKS]:
        out.append(
            f"<tr><td>{_h(c['session_id'])}</td><td>{_decision(c['from_decision'], '')}</td>"
            f"<td>{_decision(c['to_decision'], '')}</td><td>{_e(c['from_score'])}</td><td>{_e(c['to_score'])}</td>"
            f"<td>{_e(c['score_change'])}</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def write_report(out: str, *, day: date | None = None, top: int = 20, output: str | None = None) -> str:
    """Render the report of ``day`` and write it (default ``OUT/report-<day>.html``); returns where."""
    data = load(out, day, top)
    page = render(data).encode()
    if output:
        write_aside(output, lambda tmp: tmp.write_bytes(page))  # all of it or, on failure, nothing
        return output
    return Store(out).write_bytes(f"report-{data.day}.html", page, overwrite=True)
