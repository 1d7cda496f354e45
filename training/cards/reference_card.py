"""How the reference scorer's threshold and real-data measurement in its card were made.

Reproducible from the real material (``../shared/real``): its images are labelled and split
by person (:mod:`training.data.real_data`); the threshold is chosen on the ``tune`` split alone
(the lowest threshold that rejects at most 5% of the real people there: attacks are too
few to calibrate on); every figure written into the card is measured on the ``test``
split, which chose nothing.

    uv run python -m training.cards.reference_card --real ../shared/real     # rewrites models/reference/model.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.atomic import write_aside
from pipeline.checkpoint import CARD_FILE
from pipeline.config import load_scan_config
from pipeline.scoring.model import RealEvaluation
from pipeline.scoring.onnx_model import DEFAULT_REFERENCE_DIR, read_onnx_card
from pipeline.scoring.registry import ScorerEntry, resolve_scorers
from training.data.real_data import REAL, real_labels, write_labels
from training.measure.evaluate_images import evaluate_images, read_labels
from training.measure.metrics import threshold_at_bpcer
from training.measure.predict import predict_images

TUNE_BPCER = 0.05


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, default=REAL)
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_REFERENCE_DIR, help="the reference checkpoint whose card is rewritten"
    )
    args = parser.parse_args(argv)
    review_band = load_scan_config().aggregate.review_band
    with tempfile.TemporaryDirectory() as tmp:
        labels = write_labels(real_labels(args.real), Path(tmp) / "real_labels.csv")
        [entry] = resolve_scorers({"reference": args.model})
        tune = read_labels(labels, "tune")
        predictions = list(predict_images([i.path for i in tune], [entry], review_band=review_band))
        kept = [
            (p.scores["reference"], image.label == "spoof")
            for p, image in zip(predictions, tune, strict=True)
            if p.face_found
        ]
        scores, y = np.array([s for s, _ in kept]), np.array([int(a) for _, a in kept])
        threshold = threshold_at_bpcer(scores, y, TUNE_BPCER)
        card = read_onnx_card(args.model).model_copy(update={"threshold": threshold})
        test = evaluate_images(
            labels, [ScorerEntry("reference", args.model, card)], review_band=review_band, split="test"
        )
    measured = test["scorers"]["reference"]
    tune_live, tune_attacks = int((y == 0).sum()), int(y.sum())
    evaluation = RealEvaluation(
        data=f"shared/real, test split by person: {test['live']} live and {test['spoof']} attack photos of "
        f"{test['subjects']} subjects (press photos of real people, a print attack); training/data/real_data.py",
        threshold_data=f"shared/real, tune split (other people): {tune_live} live and {tune_attacks} attack photos",
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        metrics={k: v for k, v in measured.items() if k not in ("version", "card_has_real_evaluation")}
        | {"failure_to_acquire": test["failure_to_acquire"]["rate"]},
    )
    data = card.model_dump(mode="json") | {
        "threshold_method": f"lowest threshold with BPCER <= {TUNE_BPCER:g} on the tune split's live faces "
        "(training/cards/reference_card.py)",
        "real_evaluation": evaluation.model_dump(mode="json"),
    }
    text = json.dumps(data, indent=2) + "\n"
    write_aside(args.model / CARD_FILE, lambda tmp: tmp.write_text(text))
    print(json.dumps({"threshold": threshold, "test": measured}, indent=2))


if __name__ == "__main__":
    main()
