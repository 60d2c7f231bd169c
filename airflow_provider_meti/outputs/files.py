"""Open an extract's target so that it appears only complete, locally or on object storage."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from airflow_provider_meti._compat import ObjectStoragePath
from airflow_provider_meti.exceptions import MetiConfigError


@contextmanager
def open_output(
    output_path: str | os.PathLike[str] | ObjectStoragePath, *, binary: bool = False
) -> Iterator[tuple[IO[Any], str]]:
    """Open ``output_path`` for writing (text, or bytes with ``binary``); yield the handle
    and the path to report.

    Files appear only complete: written to a temporary sibling, then moved into place (a
    rename locally, a move on object storage). When the block raises, the previous file is
    untouched and the temporary one is removed.
    """
    local = local_path(output_path)
    if local is not None:
        with _atomic_local_file(local, binary=binary) as handle:
            yield handle, str(local)
        return
    target = (
        output_path
        if isinstance(output_path, ObjectStoragePath)
        else ObjectStoragePath(os.fspath(output_path))
    )
    with _object_storage_file(target, binary=binary) as handle:
        yield handle, str(target)


def local_path(output_path: str | os.PathLike[str] | ObjectStoragePath) -> Path | None:
    """The absolute local path ``output_path`` names, or None for object storage."""
    if isinstance(output_path, ObjectStoragePath):
        if output_path.protocol not in ("", "file", "local"):
            return None
        return Path(output_path.path).expanduser().absolute()
    text = os.fspath(output_path)
    if "://" not in text:
        return Path(text).expanduser().absolute()
    parts = urlsplit(text)
    if parts.scheme not in ("file", "local"):
        return None
    if parts.netloc not in ("", "localhost"):
        raise MetiConfigError(f"output_path {text!r} names a file on another host.")
    return Path(url2pathname(parts.path)).absolute()


def suffix(output_path: str | os.PathLike[str] | ObjectStoragePath) -> str:
    """The file name's extension (``.ndjson``), whatever form the path takes."""
    if isinstance(output_path, ObjectStoragePath):
        return Path(output_path.path).suffix
    text = os.fspath(output_path)
    return Path(urlsplit(text).path if "://" in text else text).suffix


@contextmanager
def _atomic_local_file(path: Path, *, binary: bool) -> Iterator[IO[Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        opened = partial.open("xb") if binary else partial.open("x", encoding="utf-8", newline="\n")
        with opened as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # the rename must never expose unwritten data
        os.replace(partial, path)
    finally:
        with suppress(FileNotFoundError):
            partial.unlink()


@contextmanager
def _object_storage_file(target: ObjectStoragePath, *, binary: bool) -> Iterator[IO[Any]]:
    # fsspec uploads whatever was buffered when a file is closed, even on error: so the
    # object written is a temporary sibling, and only a complete one is moved onto target.
    partial = target.parent / f".{target.name}.{secrets.token_hex(4)}.part"
    fs = target.fs
    try:
        opened = partial.open("wb") if binary else partial.open("w", encoding="utf-8")
        with opened as handle:
            yield handle
        fs.mv(_fs_path(partial), _fs_path(target))
    finally:
        with suppress(FileNotFoundError):  # moved into place, or never created
            fs.rm_file(_fs_path(partial))


def _fs_path(path: ObjectStoragePath) -> str:
    """The path as the filesystem's own methods take it (e.g. ``bucket/key`` on S3)."""
    return str(path.path)
