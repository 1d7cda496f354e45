"""The shipped identity network is reproducible from dlib's own weights file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.faces.identity import DEFAULT_IDENTITY_DIR, ONNX_FILE
from training.cards.dlib_format import DlibFormatError, read_dlib_network
from training.cards.identity_export import export_onnx


def test_the_shipped_onnx_network_is_what_the_export_makes_of_dlibs_file(tmp_path: Path):
    made = export_onnx(tmp_path / ONNX_FILE, fp16=True)
    assert made.read_bytes() == (DEFAULT_IDENTITY_DIR / ONNX_FILE).read_bytes()


def test_a_file_that_is_not_dlibs_network_is_refused(tmp_path: Path):
    bad = tmp_path / "net.dat"
    bad.write_bytes(b"\x01\x05not a dlib network at all")
    with pytest.raises(DlibFormatError):
        read_dlib_network(bad)
