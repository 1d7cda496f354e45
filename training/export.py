"""ONNX export of a checkpoint with a parity check against torch on real crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.scoring import OnnxScorer, TorchScorer, export_onnx

PARITY_TOLERANCE = 1e-4


def parity_crops(size: int) -> np.ndarray:
    """Real face crops (public-domain photos shipped by matplotlib and scikit-image) plus a flipped copy."""
    import matplotlib.cbook as cbook
    import skimage.data
    from PIL import Image

    from pipeline.faces import FaceDetector, crop_main_face

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    crops = []
    with FaceDetector() as detector:
        for image in (hopper, skimage.data.astronaut()):
            _, crop = crop_main_face(image, detector.detect(image), size=size)
            crops.append(crop)
    crops += [c[:, ::-1] for c in crops]
    return np.ascontiguousarray(np.stack(crops))


def export_and_check(model: Path, out: Path) -> dict:
    """Export ``model`` to ``out`` and compare probabilities with torch; returns the report."""
    export_onnx(model, out)
    torch_scorer = TorchScorer(model)
    onnx_scorer = OnnxScorer(model, cache_dir=out.parent, onnx_path=out)
    crops = parity_crops(torch_scorer.card.input_size)
    diff = float(np.abs(torch_scorer(crops) - onnx_scorer(crops)).max())
    return {"onnx": str(out), "crops": len(crops), "max_abs_diff": diff, "tolerance": PARITY_TOLERANCE, "parity_ok": diff <= PARITY_TOLERANCE}
