from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError
from pipeline.video.sources import list_sessions

EXT = ["mp4", "mov", "mkv"]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_directory_is_recursive_and_ids_are_relative_paths_without_extension(tmp_path: Path):
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "day 1" / "sélfie ü.MOV")
    touch(tmp_path / "day 1" / "notes.txt")
    touch(tmp_path / ".hidden" / "x.mp4")
    sessions = list_sessions([str(tmp_path)], EXT)
    assert [s.session_id for s in sessions] == ["a", "day 1/sélfie ü"]


def test_single_file_and_glob(tmp_path: Path):
    touch(tmp_path / "x" / "one.mp4")
    touch(tmp_path / "x" / "two.mkv")
    assert [s.session_id for s in list_sessions([str(tmp_path / "x" / "one.mp4")], EXT)] == ["one"]
    got = list_sessions([str(tmp_path / "x" / "*.m*")], EXT)
    assert sorted(s.session_id for s in got) == ["one", "two"]


def test_same_file_twice_is_scanned_once(tmp_path: Path):
    f = touch(tmp_path / "a.mp4")
    assert len(list_sessions([str(f), str(tmp_path)], EXT)) == 1


def test_colliding_ids_keep_their_extension(tmp_path: Path):
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "a.mov")
    assert sorted(s.session_id for s in list_sessions([str(tmp_path)], EXT)) == ["a.mov", "a.mp4"]


def test_csv_manifest_carries_extra_columns_and_resolves_relative_uris(tmp_path: Path):
    touch(tmp_path / "v" / "1.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text("session_id,uri,customer,channel\ns-1,v/1.mp4,42,app\ns-2,/abs/2.mp4,43,\n")
    sessions = list_sessions([str(manifest)], EXT)
    assert [s.session_id for s in sessions] == ["s-1", "s-2"]
    assert sessions[0].uri == str(tmp_path / "v" / "1.mp4")
    assert sessions[1].uri == "/abs/2.mp4"
    assert sessions[0].extra == {"customer": "42", "channel": "app"}


def test_parquet_manifest(tmp_path: Path):
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"session_id": ["a"], "uri": ["a.mp4"], "n": [1]}), path)
    (s,) = list_sessions([str(path)], EXT)
    assert s.session_id == "a" and s.extra == {"n": "1"}


@pytest.mark.parametrize(
    "content, match",
    [("id,uri\n1,a.mp4\n", "lacks column"), ("session_id,uri\n,a.mp4\n", "must not be empty")],
)
def test_bad_manifests(tmp_path: Path, content, match):
    manifest = tmp_path / "m.csv"
    manifest.write_text(content)
    with pytest.raises(InputError, match=match):
        list_sessions([str(manifest)], EXT)


def test_missing_input_and_empty_glob(tmp_path: Path):
    with pytest.raises(InputError, match="no such file"):
        list_sessions([str(tmp_path / "nope")], EXT)
    with pytest.raises(InputError, match="matches no file"):
        list_sessions([str(tmp_path / "*.mp4")], EXT)


def test_relative_inputs_become_absolute_uris(tmp_path: Path, monkeypatch):
    touch(tmp_path / "in" / "a.mp4")
    (tmp_path / "in" / "m.csv").write_text("session_id,uri\nm-1,a.mp4\n")
    monkeypatch.chdir(tmp_path)
    for arg in ("in", "in/a.mp4", "in/*.mp4", "in/m.csv"):
        (s,) = list_sessions([arg], EXT)
        assert s.uri == str(tmp_path / "in" / "a.mp4"), arg


def test_symlink_loops_end_the_listing_and_each_file_is_listed_once(tmp_path: Path):
    import os

    touch(tmp_path / "in" / "day" / "a.mp4")
    os.symlink(tmp_path / "in", tmp_path / "in" / "day" / "loop")  # in/day/loop -> in: endless if followed
    for text in (str(tmp_path / "in"), str(tmp_path / "in" / "**" / "*.mp4")):
        assert [s.session_id for s in list_sessions([text], EXT)] == ["day/a"], text


def test_fifos_are_refused_at_listing_with_a_reason(tmp_path: Path, caplog):
    import os

    touch(tmp_path / "in" / "ok.mp4")
    os.mkfifo(tmp_path / "in" / "pipe.mp4")  # reading it would block a worker until the timeout
    with caplog.at_level("WARNING"):
        for text in ("in", "in/*.mp4", "in/pipe.mp4"):
            problems = {s.session_id: s.problem for s in list_sessions([str(tmp_path / text)], EXT)}
            assert problems["pipe"] == "not a regular file (fifo): not read", text
            assert problems.get("ok", None) is None
    assert "not regular files" in caplog.text and "pipe.mp4 (fifo)" in caplog.text


def test_a_manifest_row_naming_a_fifo_is_refused_too(tmp_path: Path, caplog):
    import os

    touch(tmp_path / "ok.mp4")
    os.mkfifo(tmp_path / "pipe.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text("session_id,uri\na,ok.mp4\nb,pipe.mp4\n")
    with caplog.at_level("WARNING"):
        assert [(s.session_id, s.problem) for s in list_sessions([str(manifest)], EXT)] == [
            ("a", None),
            ("b", "not a regular file (fifo): not read"),
        ]
    assert "(fifo)" in caplog.text


def test_a_file_name_that_is_not_utf8_gets_a_failed_row_and_never_stops_the_listing(tmp_path: Path, capsys):
    """Issue 18 item 1: ``bad\\xff\\xfe.mp4`` made planning and --dry-run exit 1 (UnicodeEncodeError)."""
    import os

    from pipeline.cli.main import main

    (tmp_path / "good.mp4").write_bytes(b"x")
    with open(os.path.join(os.fsencode(tmp_path), b"bad\xff\xfe.mp4"), "wb") as f:
        f.write(b"x")
    sessions = {s.session_id: s for s in list_sessions([str(tmp_path)], ["mp4"])}
    assert set(sessions) == {"good", "bad\\xff\\xfe"}
    bad = sessions["bad\\xff\\xfe"]
    assert bad.uri == str(tmp_path / "bad\\xff\\xfe.mp4") and "not valid UTF-8" in (bad.problem or "")
    assert sessions["good"].problem is None
    assert main(["scan", str(tmp_path), "--out", str(tmp_path / "out"), "--dry-run", "--quiet"]) == 0
    assert "bad\\xff\\xfe" in capsys.readouterr().out


def test_manifest_extra_columns_are_the_text_the_user_wrote(tmp_path: Path, caplog):
    """Issue 18 item 6: ``00123`` became ``123``, ``1e5`` ``100000.0``, Latin-1 ``b'caf\\xe9'``."""
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("session_id,uri,customer,amount,city\n00123,/a.mp4,00042,1e5,café\n".encode("latin-1"))
    [session] = list_sessions([str(manifest)], EXT)
    assert session.session_id == "00123"
    assert session.extra == {"customer": "00042", "amount": "1e5", "city": "café"}
    assert "not UTF-8: read as Latin-1" in caplog.text
    manifest.write_bytes('\ufeffsession_id,uri,note\nx,/b.mp4,"a, b"\n'.encode())
    [session] = list_sessions([str(manifest)], EXT)
    assert (session.session_id, session.extra) == ("x", {"note": "a, b"})


def test_manifest_rows_sharing_a_file_are_each_a_session(tmp_path: Path):
    """Issue 18 item 2: three session ids pointing at one video gave one row."""
    touch(tmp_path / "v.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text("session_id,uri\na,v.mp4\nb,v.mp4\nc,v.mp4\n")
    assert [s.session_id for s in list_sessions([str(manifest)], EXT)] == ["a", "b", "c"]
    manifest.write_text("session_id,uri\na,v.mp4\na,w.mp4\n")
    with pytest.raises(InputError, match=r"given to more than one input: 'a' \(.*v.mp4\), 'a' \(.*w.mp4\)"):
        list_sessions([str(manifest)], EXT)


def test_two_folders_with_the_same_file_name_give_distinct_ids(tmp_path: Path):
    """Issue 18 item 2: ``day1/cust42.mp4`` and ``day2/cust42.mp4`` refused the run, naming a manifest."""
    touch(tmp_path / "day1" / "cust42.mp4")
    touch(tmp_path / "day2" / "cust42.mp4")
    touch(tmp_path / "day2" / "other.mp4")
    ids = [s.session_id for s in list_sessions([str(tmp_path / "day1"), str(tmp_path / "day2")], EXT)]
    assert ids == ["day1/cust42", "day2/cust42", "other"]


def test_an_unreadable_sub_folder_is_a_failed_row_naming_it(tmp_path: Path, caplog):
    """Issue 18 item 5: an unreadable sub-folder was skipped silently (2 rows instead of 3).
    Root reads every folder, so there the listing runs in a child that gave up root."""
    import json
    import os
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="liveness-perm-"))
    try:
        for name in ("a/1.mp4", "b/2.mp4", "locked/3.mp4"):
            touch(root / name)
        for folder in (root, root / "a", root / "b"):
            folder.chmod(0o755)
        (root / "locked").chmod(0)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: list as an unprivileged user, send the result, leave at once
            try:
                if os.geteuid() == 0:
                    os.setuid(65534)
                found = [[s.session_id, s.problem] for s in list_sessions([str(root)], ["mp4"])]
                os.write(write, json.dumps(found).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            sessions = dict(json.loads(pipe.read()))
        os.waitpid(pid, 0)
        assert set(sessions) == {"a/1", "b/2", "locked/"}
        assert "folder could not be read (Permission denied)" in sessions["locked/"]
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(root)
