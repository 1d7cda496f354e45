"""ONNX export of a checkpoint with a parity check against torch on real crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.atomic import write_aside
from pipeline.faces.crop import CropSpec
from pipeline.scoring.scorers import OnnxScorer, TorchScorer, export_onnx

PARITY_TOLERANCE = 1e-4


def parity_crops(spec: CropSpec) -> np.ndarray:
    """Real face crops (public-domain photos shipped by matplotlib and scikit-image) plus a flipped copy."""
    import matplotlib.cbook as cbook
    import skimage.data
    from PIL import Image

    from pipeline.faces.detect import FaceDetector, crop_main_face

    with open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    crops = []
    with FaceDetector() as detector:
        for image in (hopper, skimage.data.astronaut()):
            _, crop = crop_main_face(image, detector.detect(image), spec)
            if crop is None:  # no face: fail as the flip below would (TypeError), but say why
                raise TypeError("parity_crops: no face found in a sample photo")
            crops.append(crop)
    crops += [c[:, ::-1] for c in crops]
    return np.ascontiguousarray(np.stack(crops))


def export_and_check(model: Path, out: Path) -> dict:
    """Export ``model`` to ``out`` and compare probabilities with torch; returns the report."""
    write_aside(out, lambda tmp: export_onnx(model, tmp))
    torch_scorer = TorchScorer(model)
    onnx_scorer = OnnxScorer(model, onnx_path=out)
    crops = parity_crops(torch_scorer.card.crop_spec)
    diff = float(np.abs(torch_scorer(crops) - onnx_scorer(crops)).max())
    return {
        "onnx": str(out),
        "crops": len(crops),
        "max_abs_diff": diff,
        "tolerance": PARITY_TOLERANCE,
        "parity_ok": diff <= PARITY_TOLERANCE,
    }
