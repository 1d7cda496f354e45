from pathlib import Path

import pytest

from pipeline.atomic import write_aside


def test_a_file_appears_whole_and_its_directory_is_made(tmp_path: Path):
    target = tmp_path / "new" / "card.json"
    assert write_aside(target, lambda tmp: tmp.write_text("{}\n")) == target
    assert target.read_text() == "{}\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["card.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_aside(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_writers_of_the_same_file_get_temporaries_of_their_own(tmp_path: Path):
    target = tmp_path / "model.onnx"
    seen: list[Path] = []

    def outer(tmp: Path) -> None:
        seen.append(tmp)
        write_aside(target, lambda inner: (seen.append(inner), inner.write_bytes(b"inner")))
        tmp.write_bytes(b"outer")

    write_aside(target, outer)
    assert seen[0] != seen[1] and all(p.parent == tmp_path for p in seen)
    assert target.read_bytes() == b"outer"
