"""The DICOM clips in a folder or a DICOMDIR, for the npe2 reader (:mod:`annotator.reader`).

A folder with a ``DICOMDIR`` at its top, or a ``DICOMDIR`` file itself, is read
through :class:`pydicom.fileset.FileSet`: the clips are the instances it
references, in its order. Any other folder is searched recursively for DICOM
files (:func:`annotator.reader.is_dicom_file`), in sorted path order, at most
:data:`MAX_FILES` of them. Each clip becomes one napari layer; instances
without an image (a structured report, a presentation state) are skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from annotator.errors import ClipOpenError

logger = logging.getLogger(__name__)

#: File name of a DICOM media directory (PS3.10), compared in upper case.
DICOMDIR = "DICOMDIR"
#: Most files a folder may hold for the reader (each clip opens lazily, but a layer per file).
MAX_FILES = 2000


def is_dicomdir(path: str | Path) -> bool:
    """Whether ``path`` is a file named ``DICOMDIR`` (any case)."""
    candidate = Path(path)
    return candidate.name.upper() == DICOMDIR and candidate.is_file()


def _dicomdir_in(folder: Path) -> Path | None:
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.upper() == DICOMDIR and entry.is_file():
                return Path(entry.path)
    return None


def dicomdir_files(dicomdir: Path) -> list[Path]:
    """The files a DICOMDIR references, in its order.

    Raises
    ------
    ClipOpenError
        If the DICOMDIR cannot be read.
    """
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError
    from pydicom.fileset import FileSet

    try:
        fileset = FileSet(dcmread(dicomdir))
    except (InvalidDicomError, OSError, ValueError, AttributeError, KeyError) as exc:
        raise ClipOpenError(
            f"{dicomdir}: expected a DICOM media directory (DICOMDIR), but it cannot be read ({exc}); "
            "open the folder's files instead"
        ) from exc
    return [Path(instance.path) for instance in fileset]


def folder_files(folder: Path, is_dicom: Callable[[Path], bool]) -> list[Path]:
    """The DICOM files of ``folder``: its DICOMDIR's, else every DICOM file below it, sorted.

    Parameters
    ----------
    folder : Path
        A directory.
    is_dicom : callable
        Tells a DICOM file from others (:func:`annotator.reader.is_dicom_file`).

    Raises
    ------
    ClipOpenError
        If the folder holds more than :data:`MAX_FILES` files to look at.
    """
    dicomdir = _dicomdir_in(folder)
    if dicomdir is not None:
        return dicomdir_files(dicomdir)
    found: list[Path] = []
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            seen += 1
            if seen > MAX_FILES:
                raise ClipOpenError(
                    f"{folder}: expected at most {MAX_FILES} files to look through, but there are more; "
                    "open a smaller folder (one study or series)"
                )
            path = Path(root) / name
            if name.upper() != DICOMDIR and is_dicom(path):
                found.append(path)
    return found


def has_dicom(folder: Path, is_dicom: Callable[[Path], bool]) -> bool:
    """Whether ``folder`` has a DICOMDIR or a DICOM file below it (stops at the first found)."""
    if _dicomdir_in(folder) is not None:
        return True
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            seen += 1
            if seen > MAX_FILES:
                return False
            if is_dicom(Path(root) / name):
                return True
    return False
