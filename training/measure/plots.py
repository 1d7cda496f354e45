"""Evaluation plots: ROC and DET curves side by side in one PNG.

Drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas, without pyplot:
it works headless and leaves the process-wide matplotlib backend alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from statistics import NormalDist

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.measure.metrics import ArrayLike, _validate, bpcer, det_curve, eer, roc_auc, roc_curve

_NORMAL = NormalDist()
_DET_TICKS = (0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99)


def _probit(p: np.ndarray) -> np.ndarray:
    """Normal deviate of each probability (the DET axis scale of ISO/IEC 30107-3)."""
    flat = np.asarray(p, dtype=np.float64).ravel()
    out = np.array([_NORMAL.inv_cdf(float(v)) for v in flat])
    return out.reshape(np.shape(p))


def _format_pct(p: float) -> str:
    pct = 100.0 * p
    return f"{pct:g}%"


def plot_roc_det(
    scores: ArrayLike,
    labels: ArrayLike,
    path: str | Path,
    *,
    threshold: float | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG with the ROC curve (left) and the DET curve (right); return its path.

    ROC: BPCER (false positive rate) against 1 - APCER (true positive rate), linear
    axes, with the AUC in the legend. DET: APCER (all attacks pooled) against BPCER on
    normal-deviate (probit) axes as in ISO/IEC 30107-3, with the EER point marked; rates
    of exactly 0 or 1 are drawn at the edge of the axes. ``threshold``, if given, marks
    that operating point on both curves. Parent directories are created. Raises
    ValueError for invalid input or when either class is missing.
    """
    return plot_roc_det_curves({"": (scores, labels, threshold)}, path, title=title)


def plot_roc_det_curves(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike, float | None]],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """:func:`plot_roc_det` for several scorers side by side: ``{name: (scores, labels,
    threshold or None)}``, one curve and one operating point per name, in one PNG."""
    measured = {name: (*_validate(s, y), t) for name, (s, y, t) in curves.items()}
    n_min = min(min(int(np.sum(y == 1)), int(np.sum(y == 0))) for _, y, _ in measured.values())
    lo = min(1e-3, 0.5 / max(n_min, 1))
    hi = 1.0 - lo

    fig = Figure(figsize=(11, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax_roc, ax_det = fig.subplots(1, 2)
    ax_roc.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
    diag = _probit(np.array([lo, hi]))
    ax_det.plot(diag, diag, ls=":", lw=1, color="grey")
    for k, (name, (s, y, threshold)) in enumerate(measured.items()):
        color = f"C{k}"
        fpr, tpr, _ = roc_curve(s, y)  # raises if a class is missing
        apcer_all, bpcer_all, _ = det_curve(s, y)
        eer_rate, _eer_thr = eer(s, y)
        prefix = f"{name}: " if name else ""
        ax_roc.plot(fpr, tpr, lw=2, color=color, label=f"{prefix}ROC (AUC = {roc_auc(s, y):.4f})")
        ax_det.plot(_probit(np.clip(apcer_all, lo, hi)), _probit(np.clip(bpcer_all, lo, hi)), lw=2, color=color,
                    label=f"{prefix}DET")  # fmt: skip
        if not math.isnan(eer_rate):
            e = _probit(np.clip(np.array([eer_rate]), lo, hi))[0]
            ax_det.plot([e], [e], "o", color="red" if not name else color, label=f"{prefix}EER = {100 * eer_rate:.2f}%")
        if threshold is not None:
            t = float(threshold)
            b = bpcer(s, y, t)
            a = float(np.mean(s[y == 1] < t))
            mark = "black" if not name else color
            ax_roc.plot([b], [1.0 - a], "s", color=mark, label=f"{prefix}threshold {t:.4g}")
            ax_det.plot(_probit(np.clip(np.array([a]), lo, hi)), _probit(np.clip(np.array([b]), lo, hi)), "s",
                        color=mark, label=f"{prefix}threshold {t:.4g}")  # fmt: skip
    ax_roc.set_xlim(0, 1)
    ax_roc.set_ylim(0, 1.01)
    ax_roc.set_xlabel("BPCER (bona fide classified as attack)")
    ax_roc.set_ylabel("1 - APCER (attacks detected)")
    ax_roc.set_title("ROC")
    ax_roc.grid(alpha=0.3)
    ticks = [p for p in _DET_TICKS if lo <= p <= hi]
    tick_pos = _probit(np.array(ticks))
    for set_ticks, set_labels, set_lim in (
        (ax_det.set_xticks, ax_det.set_xticklabels, ax_det.set_xlim),
        (ax_det.set_yticks, ax_det.set_yticklabels, ax_det.set_ylim),
    ):
        set_ticks(tick_pos)
        set_labels([_format_pct(p) for p in ticks], fontsize=8)
        set_lim(diag[0], diag[1])
    ax_det.set_xlabel("APCER (attacks classified bona fide)")
    ax_det.set_ylabel("BPCER (bona fide classified as attack)")
    ax_det.set_title("DET (normal deviate scale)")
    ax_det.grid(alpha=0.3)
    ax_roc.legend(loc="lower right", fontsize=8)
    ax_det.legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
