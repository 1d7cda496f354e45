"""The scanner's per-frame signal path on rendered frames, for tests of the signal functions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from pipeline.config import SignalsConfig
from pipeline.faces import FaceDetector
from pipeline.landmarks import FaceMesh
from pipeline.signals import SessionSignals
from training.eval_signals import session_verdict


class SignalPath:
    """Detection, classifier crop and :class:`SessionSignals` (occlusion off) over a session's frames."""

    def __init__(self) -> None:
        self.detector = FaceDetector()
        self.mesh = FaceMesh(tracking=True)

    def run(self, frames: Iterable[np.ndarray], times: Sequence[float]) -> SessionSignals:
        """The filled signal collector of one session (its times, EARs, similarities and shapes)."""
        collector = SessionSignals(SignalsConfig(), self.mesh, None)
        session_verdict(iter(frames), times, self.detector, collector)
        return collector
