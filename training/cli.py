"""The training side's sub-commands of ``liveness``: synth, preprocess, train, evaluate, predict, export-onnx."""

from __future__ import annotations

import argparse
from collections.abc import Callable

TRAINING_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def add_training_commands(sub: argparse._SubParsersAction) -> None:
    """Register the training sub-commands on the ``liveness`` parser."""
