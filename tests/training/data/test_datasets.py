"""Training augmentation: shape and dtype kept, deterministic per seed, every transform does
something, and moiré (a spoof cue) goes on spoof crops only."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
from skimage import data

from training.data.datasets import AugmentSettings, augment

PROBABILITIES = [f.name for f in fields(AugmentSettings) if f.name.endswith("_p")]
ALL_OFF = AugmentSettings(**{p: 0.0 for p in PROBABILITIES})
ALL_ON = AugmentSettings(**{p: 1.0 for p in PROBABILITIES})
LABELS = np.array([0, 1] * 4)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Eight 64x64 crops of a real face photograph, each a little different."""
    photo = data.astronaut()[20:220, 130:330]
    crops = [photo[i : i + 192 : 3, i : i + 192 : 3] for i in range(8)]
    return np.ascontiguousarray(np.stack(crops))


def _grey(n: int = 4, size: int = 64) -> np.ndarray:
    return np.full((n, size, size, 3), 128, np.uint8)


def _only(name: str, **ranges) -> AugmentSettings:
    return replace(ALL_OFF, **{name: 1.0}, **ranges)


@pytest.mark.parametrize("settings", [AugmentSettings(), ALL_ON, ALL_OFF], ids=["defaults", "all on", "all off"])
def test_shape_and_dtype_are_kept(faces, settings):
    for labels in (None, LABELS):
        out = augment(faces, np.random.default_rng(0), labels=labels, settings=settings)
        assert out.shape == faces.shape and out.dtype == np.uint8
    assert augment(faces[:0], np.random.default_rng(0)).shape == (0, *faces.shape[1:])


def test_the_old_call_still_works_and_leaves_its_input_alone(faces):
    before = faces.copy()
    out = augment(faces, np.random.default_rng(0))
    assert np.array_equal(faces, before) and not np.array_equal(out, faces)


@pytest.mark.parametrize("settings", [AugmentSettings(), ALL_ON], ids=["defaults", "all on"])
def test_same_seed_same_output_other_seed_other_output(faces, settings):
    a = augment(faces, np.random.default_rng(7), labels=LABELS, settings=settings)
    b = augment(faces, np.random.default_rng(7), labels=LABELS, settings=settings)
    c = augment(faces, np.random.default_rng(8), labels=LABELS, settings=settings)
    assert np.array_equal(a, b)
    assert all(not np.array_equal(a[i], c[i]) for i in range(len(faces)))


def test_all_off_is_the_identity(faces):
    assert np.array_equal(augment(faces, np.random.default_rng(0), labels=LABELS, settings=ALL_OFF), faces)


@pytest.mark.parametrize("name", [p for p in PROBABILITIES if p != "moire_p"])
def test_each_transform_alone_changes_the_crops(faces, name):
    out = augment(faces, np.random.default_rng(3), settings=_only(name))
    changed = sum(not np.array_equal(out[i], faces[i]) for i in range(len(faces)))
    # A strength may be drawn next to "no change" (a saturation of 1.00), so not every crop.
    assert changed >= len(faces) - 1, f"{name} left {len(faces) - changed} of {len(faces)} crops unchanged"
    if name == "flip_p":
        assert np.array_equal(out, faces[:, :, ::-1])
    elif name != "affine_p":  # pixel-aligned, small strengths: still the same picture
        assert np.abs(out.astype(int) - faces).mean() < 20


@pytest.mark.parametrize("settings", [AugmentSettings(), replace(ALL_ON, moire_p=1.0)], ids=["defaults", "all on"])
def test_labels_all_live_is_the_same_as_no_labels(faces, settings):
    with_live = augment(faces, np.random.default_rng(5), labels=np.zeros(len(faces), int), settings=settings)
    without = augment(faces, np.random.default_rng(5), settings=settings)
    assert np.array_equal(with_live, without)


def test_live_crops_among_spoofs_get_no_moire(faces):
    """Labels only decide where moiré goes: the live crops of a mixed batch come out exactly as
    with no labels, and every spoof crop (moiré always on here) comes out different."""
    settings = replace(ALL_ON, moire_p=1.0)
    mixed = augment(faces, np.random.default_rng(11), labels=LABELS, settings=settings)
    without = augment(faces, np.random.default_rng(11), settings=settings)
    live, spoof = LABELS == 0, LABELS == 1
    assert np.array_equal(mixed[live], without[live])
    assert all(not np.array_equal(mixed[i], without[i]) for i in np.flatnonzero(spoof))


def _peak_share(channel: np.ndarray) -> float:
    """The share of a channel's (mean-free) energy in its 8 strongest 2-D frequencies: near 1 for
    a single grating (its two conjugate peaks, leakage included), small for noise."""
    power = np.abs(np.fft.fft2(channel - channel.mean())) ** 2
    return float(np.sort(power.ravel())[-8:].sum() / max(power.sum(), 1e-9))


def test_moire_on_flat_grey_spoofs_is_a_faint_periodic_pattern():
    grey = _grey(6)
    settings = _only("moire_p")
    spoofs = augment(grey, np.random.default_rng(2), labels=np.ones(6), settings=settings)
    lives = augment(grey, np.random.default_rng(2), labels=np.zeros(6), settings=settings)
    assert np.array_equal(lives, grey)
    peaks = set()
    for crop in spoofs.astype(float):
        for c in range(3):
            assert _peak_share(crop[..., c]) > 0.5
            assert 3 <= np.ptp(crop[..., c]) <= 13  # 2-6 grey levels each side of 128, rounded
        power = np.abs(np.fft.fft2(crop[..., 1] - crop[..., 1].mean()))
        peaks.add(frozenset(map(tuple, np.argwhere(power >= power.max() * 0.999))))
    assert len(peaks) > 1, "every crop got the same moiré frequency"
    # The control: sensor noise on the same grey has no such peak.
    noisy = augment(grey, np.random.default_rng(2), settings=_only("noise_p"))
    assert all(_peak_share(crop[..., 1].astype(float)) < 0.1 for crop in noisy)


def test_wrong_labels_or_images_are_refused(faces):
    with pytest.raises(ValueError, match="labels"):
        augment(faces, np.random.default_rng(0), labels=np.zeros(3))
    with pytest.raises(ValueError, match="uint8"):
        augment(faces.astype(np.float32), np.random.default_rng(0))
