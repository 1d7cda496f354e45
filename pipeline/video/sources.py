"""Which sessions a scan covers: video files, directories, globs and manifests to ``Session`` rows."""

from __future__ import annotations

import csv
import fnmatch
import io
import logging
import os
import posixpath
import stat
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.errors import InputError
from pipeline.storage import filesystem_for, is_remote
from pipeline.text import utf8_text

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
        kind = None if "://" in session.uri or session.problem else _special(Path(session.uri))
        if kind:
            refused.append(f"{session.uri} ({kind})")
            session = replace(session, problem=f"not a regular file ({kind}): not read")
        out.append(session)
    if refused:
        log.warning("%d input(s) are not regular files, not read: %s", len(refused), ", ".join(refused[:5]))
    return out


def _utf8_named(sessions: list[Session]) -> list[Session]:
    """``sessions`` with a ``problem`` on those whose file name is not valid UTF-8: a name the
    output cannot hold as text. Each keeps a row, its id and source shown with the bad bytes
    escaped (``bad\\xff.mp4``), and the run goes on."""
    out: list[Session] = []
    for session in sessions:
        shown = utf8_text(session.uri)
        if shown != session.uri:
            log.warning("file name is not valid UTF-8, not read: %s", shown)
            session = replace(
                session,
                session_id=utf8_text(session.session_id),
                uri=shown,
                problem="the file name is not valid UTF-8 (shown with its bytes escaped): rename the file to scan it",
            )
        out.append(session)
    return out


def _videos_under(root: Path, extensions: set[str]) -> list[Session]:
    """Sessions of the video files under ``root``, recursively (links to directories are not
    followed: no loops), and a failed one for each folder that could not be read."""
    found: list[Path] = []
    unreadable: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=unreadable.append):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            Path(dirpath) / f
            for f in sorted(filenames)
            if not f.startswith(".") and f.rsplit(".", 1)[-1].lower() in extensions and "." in f
        )
    sessions = _from_files(found, root)
    for error in unreadable:
        folder = Path(error.filename)
        log.warning("folder %s could not be read (%s): its videos are not listed", folder, error.strerror)
        sessions.append(
            Session(
                session_id=folder.relative_to(root).as_posix() + "/",
                uri=os.path.abspath(folder),
                problem=f"folder could not be read ({error.strerror or error}): the videos in it are not listed",
            )
        )
    return sessions


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


def _csv_rows(data: bytes, name: str) -> tuple[list[str], list[dict]]:
    """A CSV manifest's columns and rows, every value the text the user wrote (``00123``
    stays ``00123``). UTF-8 (a BOM is dropped); a file that is not is read as Latin-1, with
    a warning, so that ``caf\xe9`` is ``café``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.warning("manifest %s is not UTF-8: read as Latin-1", name)
        text = data.decode("latin-1")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = [{k: v for k, v in row.items() if k is not None} for row in reader]
    return list(reader.fieldnames or []), rows


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
            columns, rows = table.column_names, table.to_pylist()
        else:
            with fs.open_input_stream(fs_path) as f:
                columns, rows = _csv_rows(f.read(), text)
    except (pa.ArrowInvalid, OSError, csv.Error) as exc:
        raise InputError(f"manifest {path} cannot be read: {exc}") from exc
    missing = [c for c in MANIFEST_REQUIRED if c not in columns]
    if missing:
        raise InputError(f"manifest {path} lacks column(s) {missing}; it needs {list(MANIFEST_REQUIRED)}")
    sessions = []
    for i, row in enumerate(rows):
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
        return _videos_under(path, exts)
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
    """All sessions of all inputs with unique session ids: each listed file once, and every
    manifest row (rows may share a file: each is a session of its own).

    Where listed files would get the same id, their ids become their paths from the folder
    the colliding files share (``day1/cust42``, ``day2/cust42``), then keep the extension
    (``a.mp4``, ``a.mov``), so that none is lost. Ids a manifest gives twice are an
    :class:`InputError` naming them and where they come from.
    """
    seen_uris: set[str] = set()
    sessions: list[Session] = []
    from_manifest: set[int] = set()
    for text in inputs:
        manifest = not _is_listing(text)
        for s in expand_input(text, extensions):
            key = os.path.realpath(s.uri) if "://" not in s.uri else s.uri
            if manifest:
                from_manifest.add(len(sessions))
            elif key in seen_uris:
                continue
            seen_uris.add(key)
            sessions.append(s)
    sessions = _utf8_named(_regular(sessions))
    for rename in (_from_shared_folder, _with_extension):
        counts = Counter(s.session_id for s in sessions)
        if all(n == 1 for n in counts.values()):
            return sessions
        sessions = [
            rename(s, sessions) if counts[s.session_id] > 1 and i not in from_manifest else s
            for i, s in enumerate(sessions)
        ]
    counts = Counter(s.session_id for s in sessions)
    twice = [sid for sid, n in counts.items() if n > 1]
    if twice:
        sources = [f"{s.session_id!r} ({s.uri})" for s in sessions if counts[s.session_id] > 1]
        raise InputError(
            f"{len(twice)} session id(s) are given to more than one input: {', '.join(sources[:6])}; "
            "a manifest's session_id values must be distinct, and from those of the files listed beside it"
        )
    return sessions


def _is_listing(text: str) -> bool:
    """Whether an INPUT lists files (a folder, glob, file or prefix) rather than being a manifest."""
    return not (text.lower().endswith(MANIFEST_SUFFIXES) and (is_remote(text) or Path(text).is_file()))


def _from_shared_folder(session: Session, sessions: list[Session]) -> Session:
    """``session`` with the id its path has from the folder shared by the files of the same id."""
    same = [s.uri for s in sessions if s.session_id == session.session_id]
    if any("://" in uri for uri in same):
        return session
    common = os.path.commonpath([os.path.dirname(uri) for uri in same])
    return replace(session, session_id=_strip_extension(os.path.relpath(session.uri, common)))


def _with_extension(session: Session, sessions: list[Session]) -> Session:
    """``session`` with its file's extension kept in its id (``sessions`` is unused: the
    signature is the renaming rules')."""
    del sessions
    return replace(session, session_id=session.session_id + os.path.splitext(session.uri)[1])
