"""How good a checkpoint is: the seed's table plus ISO/IEC 30107-3, with the threshold chosen on validation.

The threshold is calibrated on the validation split and never on the split it is then
measured on (test, or validation when there are no test subjects, said in ``split``).
``liveness train`` ends with this step; ``liveness evaluate`` runs it alone on any
preprocessed folder, writes the JSON and the ROC/DET plot, and puts the threshold and
metrics into the model card.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.atomic import write_aside
from pipeline.checkpoint import write_card
from pipeline.scoring.model import ModelCard, load_checkpoint, preprocess
from training.data.datasets import CropSet, load_crop_sets
from training.measure.metrics import choose_threshold, evaluation_report
from training.measure.plots import plot_roc_det

log = logging.getLogger(__name__)

EVALUATION_JSON = "evaluation.json"
ROC_DET_PNG = "roc_det.png"


def predict_probs(model, images: np.ndarray, card: ModelCard, batch_size: int = 64) -> np.ndarray:
    """Spoof probabilities of uint8 crops with a torch model (eval mode, on the model's device)."""
    import torch

    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(preprocess(images[i : i + batch_size], card)).to(device)
            out.append(torch.softmax(model(x).float(), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def calibrate_and_measure(
    model, card: ModelCard, sets: dict[str, CropSet], method: str
) -> tuple[float, dict, np.ndarray, CropSet]:
    """``(threshold, metrics, scores, measured set)``: threshold by ``method`` on val, metrics on test."""
    val = sets["val"]
    threshold = choose_threshold(
        predict_probs(model, val.images, card), val.labels, method, attack_types=val.attack_types
    )
    measured = sets["test"] if len(sets["test"]) else val
    scores = predict_probs(model, measured.images, card)
    metrics = evaluation_report(scores, measured.labels, measured.attack_types, threshold)
    metrics["split"] = "test" if len(sets["test"]) else "val (no test subjects)"
    metrics["threshold_method"] = method
    return float(threshold), metrics, scores, measured


def write_evaluation(out: Path, metrics: dict, scores: np.ndarray, measured: CropSet, *, title: str) -> dict[str, Path]:
    """The evaluation JSON and the ROC/DET plot in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / EVALUATION_JSON, "plot": out / ROC_DET_PNG}
    text = json.dumps(metrics, indent=2) + "\n"
    write_aside(paths["json"], lambda tmp: tmp.write_text(text))
    plot_roc_det(scores, measured.labels, paths["plot"], threshold=metrics["threshold"], title=title)
    return paths


def evaluate(
    model_dir: Path,
    processed: Path,
    *,
    out: Path | None = None,
    method: str | None = None,
    seed: int = 0,
    update_card: bool = True,
) -> dict:
    """Evaluate the checkpoint in ``model_dir`` on the crops in ``processed``; returns the metrics.

    ``method`` defaults to the card's ``threshold_method`` (``eer`` when it has none).
    The JSON and plot go to ``out`` (default: ``model_dir``). With ``update_card`` the
    card's ``threshold``, ``metrics`` and ``evaluated_on`` are replaced (atomically).
    """
    model, card = load_checkpoint(model_dir, require_trained=False)
    method = method or card.threshold_method
    sets = load_crop_sets(processed, card.crop_spec, seed=seed)
    if len(sets["val"]) == 0 or len(set(sets["val"].labels.tolist())) < 2:
        raise ValueError(f"{processed} has no validation crops of both classes: the threshold cannot be calibrated")
    threshold, metrics, scores, measured = calibrate_and_measure(model, card, sets, method)
    paths = write_evaluation(
        out or model_dir,
        metrics,
        scores,
        measured,
        title=f"{card.version or model_dir.name} on {metrics['split']} of {processed.name}",
    )
    metrics_out = {**metrics, "files": {k: str(v) for k, v in paths.items()}}
    if update_card:
        card = card.model_validate(
            card.model_dump()
            | {
                "threshold": threshold,
                "threshold_method": method,
                "metrics": metrics,
                "evaluated_on": f"{processed} ({metrics['split']}), {datetime.now(UTC).isoformat(timespec='seconds')}",
            }
        )
        write_card(card, model_dir)
        log.info("threshold %.4f (%s on val) written into %s", threshold, method, model_dir)
    return metrics_out
