"""Durable file-system steps shared by the store and the exporters.

A write is durable once the file's data and the directory entry that names it
are on disk: fsync the file (:func:`fsync_file`), rename it into place, then
fsync the directory (:func:`fsync_directory`).
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk.

    Parameters
    ----------
    path : Path
        The file; it is opened read-only just to fsync it.
    """
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_directory(path: Path) -> None:
    """Flush a directory's entries (new, renamed or removed names) to disk.

    Parameters
    ----------
    path : Path
        The directory.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably and atomically: a temporary file, fsync, rename, fsync.

    Parameters
    ----------
    path : Path
        The file; readers see either its old content or all of ``data``.
    data : bytes
        The new content.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
