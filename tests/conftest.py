"""Shared, expensive fixtures: one Ray per test session, the shipped model, the face photographs,
the scan's per-frame signal path, and the real material beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.scoring.model import DEFAULT_MODEL_DIR, read_card


@pytest.fixture(scope="session")
def ray_session():
    """Ray started once for every test that scans (the CLI reuses it), the way the product
    starts a local Ray: listening on loopback only, with the scan's malloc arenas."""
    import ray

    from pipeline.config import ScanConfig
    from pipeline.run.ray_env import ensure_ray

    ensure_ray(ScanConfig.model_validate({"ray": {"num_cpus": 2}}))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """The shipped default checkpoint; the scan never runs with untrained weights."""
    card = read_card(DEFAULT_MODEL_DIR)
    assert card.trained, "models/default must hold a trained model"
    return DEFAULT_MODEL_DIR


REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "real"


@pytest.fixture(scope="session")
def real_material() -> Path:
    """The real, licensed material beside the project (``../shared/real``); tests that need
    it skip with the reason when it is not there."""
    if not (REAL / "images").is_dir():
        pytest.skip(f"the real material is not at {REAL} (it ships beside the project, not in it)")
    return REAL


@pytest.fixture(scope="session")
def face_sources():
    """The face photographs the renderer draws its subjects from (shipped by matplotlib and scikit-image)."""
    from training.data.face_sources import load_face_sources

    return load_face_sources()


@pytest.fixture(scope="session")
def signal_path():
    """The scan's per-frame path for tests of the signal functions."""
    from tests.signal_path import SignalPath

    return SignalPath()


@pytest.fixture(scope="session")
def labelled_scan(tmp_path_factory, ray_session, shipped_model, face_sources) -> Path:
    """A scan's output of three live face videos and a rendered print attack (live0-2, print0).
    Read-only: a test that adds to it (verdicts) works on a copy."""
    from pipeline.cli.main import main
    from tests.videos import write_face_video, write_rendered_session

    inputs = tmp_path_factory.mktemp("labelled")
    for i in range(3):
        write_face_video(inputs / f"live{i}.mp4", n=8)
    write_rendered_session(inputs / "print0.mp4", face_sources, kind="print", seconds=1.5)
    out = inputs.parent / "labelled-out"
    assert main(["scan", str(inputs), "--out", str(out), "--quiet"]) == 0
    return out
