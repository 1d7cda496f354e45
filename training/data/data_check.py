"""The data check before training (the classifier seed's EDA, as a command).

Reads a preprocessed folder (``crops.csv``, ``skipped.csv``) and reports class balance
per split, counts per attack type, source image sizes, files where no face was found, and
leakage: the split is by subject (and so by session and source file), never by frame,
and the check lists every subject or source file found in more than one split. Writes
``data_check.md``, ``data_check.png`` and ``data_check.json``.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.data.datasets import SPLITS, split_of
from training.data.preprocess import CROPS_MANIFEST, SKIPPED_MANIFEST

MARKDOWN = "data_check.md"
CHART = "data_check.png"
SUMMARY = "data_check.json"


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _class(row: dict) -> str:
    return "live" if row["label"] == "live" else f"spoof/{row['attack_type']}"


def _overlaps(rows: list[dict], key: str) -> dict[str, list[str]]:
    """Values of ``key`` found in more than one split, with those splits."""
    splits: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        splits[row[key]].add(row["split"])
    return {value: sorted(found) for value, found in sorted(splits.items()) if len(found) > 1}


def summarise(crops: list[dict], skipped: list[dict], seed: int) -> dict:
    """Every figure of the data check as one JSON-serialisable dict."""
    for row in crops:
        row["split"] = split_of(row, seed)
    sizes = np.array([(int(r["width"]), int(r["height"])) for r in crops if r.get("width")], dtype=np.int64).reshape(
        -1, 2
    )
    sources = Counter(_class(r) for r in {r["source"]: r for r in crops}.values())
    no_face = Counter(_class(r) for r in skipped)
    return {
        "crops": len(crops),
        "subjects": len({r["subject"] for r in crops}),
        "by_split": {s: dict(sorted(Counter(_class(r) for r in crops if r["split"] == s).items())) for s in SPLITS},
        "subjects_by_split": {s: len({r["subject"] for r in crops if r["split"] == s}) for s in SPLITS},
        "by_attack_type": dict(sorted(Counter(r["attack_type"] for r in crops if r["label"] == "spoof").items())),
        "spoof_fraction": round(sum(r["label"] == "spoof" for r in crops) / len(crops), 4) if crops else None,
        "source_sizes": {
            "files": len(sizes),
            "width": {
                "min": int(sizes[:, 0].min()),
                "median": float(np.median(sizes[:, 0])),
                "max": int(sizes[:, 0].max()),
            }
            if len(sizes)
            else None,
            "height": {
                "min": int(sizes[:, 1].min()),
                "median": float(np.median(sizes[:, 1])),
                "max": int(sizes[:, 1].max()),
            }
            if len(sizes)
            else None,
        },
        "no_face": {
            "files": len(skipped),
            "by_class": dict(sorted(no_face.items())),
            "rate_by_class": {
                k: round(no_face[k] / (no_face[k] + sources[k]), 4) for k in sorted(set(no_face) | set(sources))
            },
            "examples": [r["source"] for r in skipped[:20]],
        },
        "leakage": {"subjects": _overlaps(crops, "subject"), "sources": _overlaps(crops, "source")},
    }


def _markdown(summary: dict, folder: Path) -> str:
    classes = sorted({c for counts in summary["by_split"].values() for c in counts})
    lines = [
        f"# Data check: `{folder}`",
        "",
        f"{summary['crops']} crops of {summary['subjects']} subjects; spoof fraction {summary['spoof_fraction']}.",
        "",
        "## Class balance per split",
        "",
        "| split | subjects | " + " | ".join(classes) + " |",
        "|---|---|" + "---|" * len(classes),
    ]
    for split in SPLITS:
        counts = summary["by_split"][split]
        lines.append(
            f"| {split} | {summary['subjects_by_split'][split]} | "
            + " | ".join(str(counts.get(c, 0)) for c in classes)
            + " |"
        )
    lines += ["", "## Attack types", "", "| attack type | crops |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary["by_attack_type"].items()]
    sizes = summary["source_sizes"]
    lines += ["", "## Source image sizes", ""]
    if sizes["width"]:
        lines.append(
            f"{sizes['files']} crops; width {sizes['width']['min']}-{sizes['width']['max']} px"
            f" (median {sizes['width']['median']:g}), "
            f"height {sizes['height']['min']}-{sizes['height']['max']} px (median {sizes['height']['median']:g})."
        )
    else:
        lines.append("Not recorded (preprocessed by an older version).")
    nf = summary["no_face"]
    lines += [
        "",
        "## Faces not found",
        "",
        f"{nf['files']} files gave no crop.",
        "",
        "| class | files without a face | rate |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {nf['by_class'].get(k, 0)} | {v:.1%} |" for k, v in nf["rate_by_class"].items()]
    leak = summary["leakage"]
    lines += ["", "## Leakage", ""]
    if not leak["subjects"] and not leak["sources"]:
        lines.append(
            f"PASS: each of the {summary['subjects']} subjects and every source file is in exactly one split "
            "(the split is by subject, never by frame)."
        )
    else:
        lines.append(
            f"FAIL: {len(leak['subjects'])} subjects and {len(leak['sources'])} source files"
            " are in more than one split:"
        )
        lines += [f"- subject `{k}`: {', '.join(v)}" for k, v in list(leak["subjects"].items())[:50]]
        lines += [f"- source `{k}`: {', '.join(v)}" for k, v in list(leak["sources"].items())[:50]]
    lines += ["", f"![data check]({CHART})", ""]
    return "\n".join(lines)


def _chart(summary: dict, crops: list[dict], path: Path) -> None:
    fig = Figure(figsize=(12, 8), dpi=90)
    FigureCanvasAgg(fig)
    (ax_split, ax_attack), (ax_size, ax_noface) = fig.subplots(2, 2)
    classes = sorted({c for counts in summary["by_split"].values() for c in counts})
    x = np.arange(len(SPLITS))
    for i, cls in enumerate(classes):
        ax_split.bar(
            x + i * 0.8 / max(len(classes), 1),
            [summary["by_split"][s].get(cls, 0) for s in SPLITS],
            0.8 / max(len(classes), 1),
            label=cls,
        )
    ax_split.set_xticks(x + 0.4 - 0.4 / max(len(classes), 1), SPLITS)
    ax_split.set_title("crops per split and class")
    ax_split.legend(fontsize=8)
    ax_attack.bar(list(summary["by_attack_type"]), list(summary["by_attack_type"].values()), color="tab:red")
    ax_attack.set_title("spoof crops per attack type")
    sizes = [(int(r["width"]), int(r["height"])) for r in crops if r.get("width")]
    if sizes:
        w, h = zip(*sizes, strict=False)
        ax_size.scatter(w, h, s=6, alpha=0.4)
    ax_size.set_xlabel("width (px)")
    ax_size.set_ylabel("height (px)")
    ax_size.set_title("source image sizes")
    rates = summary["no_face"]["rate_by_class"]
    ax_noface.bar(list(rates), [100 * v for v in rates.values()], color="tab:grey")
    ax_noface.set_ylabel("% of files")
    ax_noface.set_title("files where no face was found")
    for ax in (ax_attack, ax_noface):
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")


def check_data(processed: Path, out: Path, *, seed: int = 0) -> dict:
    """Write the data check of ``processed`` into ``out``; returns the summary plus file paths."""
    crops = _read_csv(processed / CROPS_MANIFEST)
    summary = summarise(crops, _read_csv(processed / SKIPPED_MANIFEST), seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    (out / MARKDOWN).write_text(_markdown(summary, processed))
    _chart(summary, crops, out / CHART)
    leaks = sorted(set(summary["leakage"]["subjects"]) | {f"source:{k}" for k in summary["leakage"]["sources"]})
    return {**summary, "leakage": leaks, "markdown_path": str(out / MARKDOWN)}
