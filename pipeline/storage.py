"""Where files live: a folder on the local disk or in object storage (``s3://bucket/prefix``).

Every writer of the scan goes through :class:`Store`, so an output directory works the
same on a laptop and on S3. Writes are all-or-nothing for readers: locally a file is
written under a hidden temporary name and renamed into place (rename is atomic on a
POSIX file system); on S3 an object becomes visible only when its upload completes, so it
is written directly under its final key.

S3 endpoint and credentials come from the usual environment variables:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION`` and ``AWS_ENDPOINT_URL``
(or ``AWS_ENDPOINT_URL_S3``) for S3-compatible servers such as MinIO or SeaweedFS. The
scan passes these variables on to its Ray workers.
"""

from __future__ import annotations

import builtins
import os
import posixpath
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.atomic import write_aside

STORAGE_ENV_PREFIXES = ("AWS_",)
STORAGE_SECRETS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"})


def storage_env() -> dict[str, str]:
    """The object-storage settings of this process's environment, for workers started elsewhere."""
    return {k: v for k, v in os.environ.items() if k.startswith(STORAGE_ENV_PREFIXES)}


def is_remote(uri: str) -> bool:
    """True for ``scheme://`` URIs other than ``file://``."""
    return "://" in uri and not uri.startswith("file://")


def s3_filesystem() -> pafs.S3FileSystem:
    """An S3 file system configured from the standard AWS environment variables."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict = {"region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    if endpoint:
        parsed = urlparse(endpoint)
        options["endpoint_override"] = parsed.netloc or parsed.path
        options["scheme"] = parsed.scheme or "https"
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        options["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
        options["secret_key"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    return pafs.S3FileSystem(**options)


def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """``(file system, path within it)`` of a local path, ``file://`` or ``s3://`` URI."""
    if uri.startswith("s3://"):
        return s3_filesystem(), uri[len("s3://") :].rstrip("/")
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif is_remote(uri):
        raise ValueError(f"{uri}: only local paths, file:// and s3:// are supported")
    return pafs.LocalFileSystem(), os.path.abspath(uri)


class Store:
    """A directory that the scan writes into; paths given to its methods are relative to it."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.uri = str(root)
        self.fs, self.root = filesystem_for(self.uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, relative: str) -> str:
        """The full path of ``relative`` inside the store's file system."""
        return posixpath.join(self.root, relative) if relative else self.root

    def display(self, relative: str = "") -> str:
        """``relative`` as a user would write it (local path or s3:// URI)."""
        full = self.path(relative)
        return full if self.local else f"s3://{full}"

    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self.path(relative)).type != pafs.FileType.NotFound

    def list(self, relative: str, suffix: str = "") -> builtins.list[str]:
        """Relative paths of the files under ``relative`` (recursively) ending with ``suffix``, sorted."""
        selector = pafs.FileSelector(self.path(relative), recursive=True, allow_not_found=True)
        base = len(self.root) + 1
        return sorted(
            i.path[base:]
            for i in self.fs.get_file_info(selector)
            if i.type == pafs.FileType.File and i.path.endswith(suffix)
        )

    def committed(self, relative: str) -> builtins.list[str]:
        """The Parquet files under ``relative`` that readers see: temporaries are hidden (``.name``)."""
        return [p for p in self.list(relative, ".parquet") if not posixpath.basename(p).startswith(".")]

    def write_bytes(self, relative: str, data: bytes, *, overwrite: bool = False) -> str:
        """Write a whole file so that readers see all of it or nothing; returns its full path."""
        return self._write(relative, lambda target: self._put(target, data), overwrite=overwrite)

    def write_parquet(self, relative: str, table: pa.Table) -> str:
        """Write a Parquet file (zstd) all-or-nothing; refuses to overwrite; returns its full path."""
        return self._write(
            relative,
            lambda target: pq.write_table(table, target, filesystem=self.fs, compression="zstd"),
            overwrite=False,
        )

    def _put(self, target: str, data: bytes) -> None:
        with self.fs.open_output_stream(target) as f:
            f.write(data)

    def _write(self, relative: str, write, *, overwrite: bool) -> str:
        final = self.path(relative)
        if not overwrite and self.exists(relative):
            raise FileExistsError(f"refusing to overwrite {self.display(relative)}")
        parent = posixpath.dirname(final)
        self.fs.create_dir(parent, recursive=True)
        if not self.local:
            write(final)
            return final
        write_aside(final, lambda tmp: write(str(tmp)))
        return final

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_stream(self.path(relative)) as f:
            return f.read()

    def read_parquet(self, relative: str, columns: builtins.list[str] | None = None) -> pa.Table:
        return pq.read_table(self.path(relative), filesystem=self.fs, columns=columns)

    def move(self, relative: str, to: str) -> None:
        self.fs.create_dir(posixpath.dirname(self.path(to)), recursive=True)
        self.fs.move(self.path(relative), self.path(to))

    def delete(self, relative: str) -> None:
        self.fs.delete_file(self.path(relative))
