"""Fixtures shared by the signal tests: the face photographs and the scanner's per-frame signal path."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def face_sources():
    from training.face_sources import load_face_sources

    return load_face_sources()


@pytest.fixture(scope="session")
def signal_path():
    from tests.signal_path import SignalPath

    return SignalPath()
