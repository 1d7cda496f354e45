"""Which sessions a scan covers: video files, directories, globs and manifests to ``Session`` rows."""

from __future__ import annotations

import fnmatch
import logging
import os
import posixpath
import stat
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.errors import InputError
from pipeline.storage import filesystem_for, is_remote

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".csv", ".parquet")
MANIFEST_REQUIRED = ("session_id", "uri")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Session:
    """One video to scan: its id in the output, where it is, and manifest columns to carry along.
    ``problem`` says why it cannot be read at all, found at listing (it becomes a failed row
    without reaching a worker)."""

    session_id: str
    uri: str
    extra: dict[str, str] = field(default_factory=dict)
    problem: str | None = None


def _strip_extension(relative: str) -> str:
    stem, _ = os.path.splitext(relative)
    return stem


def _special(path: Path) -> str | None:
    """What ``path`` is when it exists but is not a regular file (a FIFO would block a reader), else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or unreadable: a failed row says so
    if stat.S_ISREG(mode):
        return None
    return "directory" if stat.S_ISDIR(mode) else "fifo" if stat.S_ISFIFO(mode) else "special file"


def _regular(sessions: list[Session]) -> list[Session]:
    """``sessions`` with a ``problem`` on the local ones that are not regular files (FIFOs,
    devices, directories): reading a FIFO would block a worker until the timeout. Each is
    logged, and becomes a failed row with that reason."""
    out: list[Session] = []
    refused: list[str] = []
    for session in sessions:
        kind = None if "://" in session.uri else _special(Path(session.uri))
        if kind:
            refused.append(f"{session.uri} ({kind})")
            session = replace(session, problem=f"not a regular file ({kind}): not read")
        out.append(session)
    if refused:
        log.warning("%d input(s) are not regular files, not read: %s", len(refused), ", ".join(refused[:5]))
    return out


def _videos_under(root: Path, extensions: set[str]) -> list[Path]:
    """Video files under ``root``, recursively; links to directories are not followed (no loops)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            Path(dirpath) / f
            for f in sorted(filenames)
            if not f.startswith(".") and f.rsplit(".", 1)[-1].lower() in extensions and "." in f
        )
    return found


def _glob_files(pattern: str, root: Path) -> list[Path]:
    """Files matching ``pattern`` under its fixed ``root``; ``**`` does not follow links to
    directories (pathlib's rule), so a symlink loop cannot make the listing endless."""
    relative = (
        Path(pattern).relative_to(root).as_posix() if Path(pattern).is_absolute() or root != Path(".") else pattern
    )
    return sorted(p for p in root.glob(relative) if p.is_file() or p.is_fifo())


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def read_manifest(path: Path | str) -> list[Session]:
    """Sessions of a CSV or Parquet manifest (local or ``s3://``) with ``session_id`` and ``uri`` columns.

    Relative URIs are taken relative to the manifest's folder; every other column is
    carried into the output's ``extra`` map as text.
    """
    text = str(path)
    fs, fs_path = filesystem_for(text)
    try:
        if text.lower().endswith(".parquet"):
            table = pq.read_table(fs_path, filesystem=fs)
        else:
            with fs.open_input_stream(fs_path) as f:
                table = pacsv.read_csv(
                    f,
                    convert_options=pacsv.ConvertOptions(
                        strings_can_be_null=False, column_types={"session_id": pa.string(), "uri": pa.string()}
                    ),
                )
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"manifest {path} cannot be read: {exc}") from exc
    missing = [c for c in MANIFEST_REQUIRED if c not in table.column_names]
    if missing:
        raise InputError(f"manifest {path} lacks column(s) {missing}; it needs {list(MANIFEST_REQUIRED)}")
    sessions = []
    for i, row in enumerate(table.to_pylist()):
        sid, uri = row.pop("session_id"), row.pop("uri")
        if sid in (None, "") or uri in (None, ""):
            raise InputError(f"manifest {path} row {i + 1}: session_id and uri must not be empty")
        if "://" not in uri:
            uri = (
                posixpath.join(text.rsplit("/", 1)[0], uri)
                if is_remote(text)
                else os.path.abspath(Path(text).parent / uri)
            )
        extra = {k: ("" if v is None else str(v)) for k, v in row.items()}
        sessions.append(Session(session_id=str(sid), uri=uri, extra=extra))
    return sessions


def _from_files(files: Iterable[Path], root: Path) -> list[Session]:
    # Absolute URIs: Ray workers do not share the driver's working directory.
    return [Session(session_id=_strip_extension(p.relative_to(root).as_posix()), uri=os.path.abspath(p)) for p in files]


def _expand_remote(text: str, exts: set[str]) -> list[Session]:
    """Sessions of an object-storage INPUT: one object, a manifest, a prefix (recursive) or a glob."""
    try:
        fs, path = filesystem_for(text)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            if text.lower().endswith(MANIFEST_SUFFIXES):
                return read_manifest(text)
            return [Session(session_id=_strip_extension(posixpath.basename(path)), uri=text)]
        pattern = None
        if info.type == pafs.FileType.NotFound:
            if not _GLOB_CHARS & set(path):
                raise InputError(f"{text}: no such object or prefix")
            pattern, path = path, _glob_root(path).as_posix()
        listing = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise InputError(f"{text}: cannot list it: {exc}") from exc
    scheme = text.split("://", 1)[0]
    found = sorted(
        i.path
        for i in listing
        if i.type == pafs.FileType.File
        and i.base_name.rsplit(".", 1)[-1].lower() in exts
        and not i.base_name.startswith(".")
        and (pattern is None or fnmatch.fnmatchcase(i.path, pattern))
    )
    if pattern is not None and not found:
        raise InputError(f"{text}: the pattern matches no object")
    return [Session(session_id=_strip_extension(p[len(path) + 1 :]), uri=f"{scheme}://{p}") for p in found]


def expand_input(text: str, extensions: Iterable[str]) -> list[Session]:
    """Sessions named by one INPUT argument: a video, a directory, a glob or a manifest (local or s3://)."""
    exts = {e.lower().lstrip(".") for e in extensions}
    if is_remote(text):
        try:
            return _expand_remote(text, exts)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
    path = Path(text)
    if path.is_dir():
        return _from_files(_videos_under(path, exts), path)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return read_manifest(path)
    if path.is_file() or _special(path):  # a FIFO or device named directly is refused by _regular
        return [Session(session_id=_strip_extension(path.name), uri=os.path.abspath(path))]
    if _GLOB_CHARS & set(text):
        root = _glob_root(text)
        matches = _glob_files(text, root)
        if not matches:
            raise InputError(f"{text}: the pattern matches no file")
        return _from_files(matches, root)
    raise InputError(f"{text}: no such file or directory")


def list_sessions(inputs: Iterable[str], extensions: Iterable[str]) -> list[Session]:
    """All sessions of all inputs, each file once, with unique session ids.

    Where two files would get the same id (``a.mp4`` and ``a.mov``), their ids keep the
    extension so that neither is lost.
    """
    seen_uris: set[str] = set()
    sessions: list[Session] = []
    for text in inputs:
        for s in expand_input(text, extensions):
            key = os.path.realpath(s.uri) if "://" not in s.uri else s.uri
            if key not in seen_uris:
                seen_uris.add(key)
                sessions.append(s)
    sessions = _regular(sessions)
    counts = Counter(s.session_id for s in sessions)
    if any(n > 1 for n in counts.values()):
        sessions = [
            replace(s, session_id=s.session_id + os.path.splitext(s.uri)[1]) if counts[s.session_id] > 1 else s
            for s in sessions
        ]
        still = [sid for sid, n in Counter(s.session_id for s in sessions).items() if n > 1]
        if still:
            raise InputError(f"session ids are not unique: {still[:5]}; give the manifest distinct session_id values")
    return sessions
