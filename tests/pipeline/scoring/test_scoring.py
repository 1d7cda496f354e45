"""The two CPU scorers of the shipped model agree on real face crops, and refuse crops of the wrong shape."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.scoring.scorers import OnnxScorer, TorchScorer
from training.fit.export import PARITY_TOLERANCE, parity_crops


def test_torch_and_onnx_scorers_agree_on_face_crops(shipped_model, tmp_path):
    torch_scorer = TorchScorer(shipped_model)
    onnx_scorer = OnnxScorer(shipped_model, cache_dir=tmp_path)
    crops = parity_crops(torch_scorer.card.crop_spec)
    torch_probs, onnx_probs = torch_scorer(crops), onnx_scorer(crops)
    assert torch_probs.shape == (len(crops),) and torch_probs.dtype == np.float32
    assert 0.0 < float(torch_probs.min()) < 0.99  # not a saturated output that any two scorers would share
    assert np.abs(torch_probs - onnx_probs).max() <= PARITY_TOLERANCE
    size = torch_scorer.card.input_size
    with pytest.raises(ValueError, match=f"crops must be {size}x{size}"):
        torch_scorer(np.zeros((2, size // 2, size // 2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"crops must be \(N, S, S, 3\)"):
        onnx_scorer(np.zeros((2, size, size), np.uint8))
