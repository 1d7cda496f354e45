"""The scan's per-frame path on rendered frames, for tests of the signal functions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from pipeline.config import DetectConfig, OcclusionSignalConfig, SignalsConfig
from pipeline.scoring.model import DEFAULT_MODEL_DIR, read_card
from pipeline.session.frame_path import FramePath
from pipeline.signals.collector import SessionSignals
from training.measure.eval_signals import session_frames


class SignalPath:
    """:class:`FramePath` with the shipped card's crop and default settings, occlusion off."""

    def __init__(self) -> None:
        signals = SignalsConfig(occlusion=OcclusionSignalConfig(enabled=False))
        self.path = FramePath(read_card(DEFAULT_MODEL_DIR).crop_spec, DetectConfig(), signals)

    def run(self, frames: Iterable[np.ndarray], times: Sequence[float]) -> SessionSignals:
        """One session's signal series (times, EARs, similarities, face shapes), as the scan collects them."""
        session_frames(self.path, frames, times)
        assert self.path.signals is not None
        return self.path.signals
