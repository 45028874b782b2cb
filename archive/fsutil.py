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
