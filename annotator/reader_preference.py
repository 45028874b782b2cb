"""Make napari prefer the usarchive reader for DICOM files, DICOMDIRs and folders.

When more than one reader can read a path (napari's own reader also accepts
``*.dcm`` and every folder), ``viewer.open`` refuses to choose and the GUI asks.
napari's answer is its reader preference, ``settings.plugins.extension2reader``:
a mapping from a file name pattern (``fnmatch``, matched against the full
path; a folder's path ends in ``/``) to a plugin name, which napari keeps in
its settings file. :func:`prefer_usarchive_reader` adds this plugin's entries
(:data:`DICOM_PATTERNS`, and :data:`FOLDER_PATTERN` for folders) and keeps
every other entry. ``usarchive annotate --prefer-reader`` calls it; the same
entries can be made by hand in napari's Preferences > Plugins > File extension
readers.

With the folder entry napari hands every folder to this plugin, which opens
the DICOM clips in it and declines a folder without any (napari then reports
that the reader failed): leave it out (``folders=False``) if napari opens other
folders (e.g. image stacks) on this machine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

#: npe2 plugin name (``annotator/napari.yaml``).
PLUGIN = "usarchive"
#: File name patterns of DICOM files (``fnmatch`` is case-sensitive on POSIX).
DICOM_PATTERNS: tuple[str, ...] = ("*.dcm", "*.DCM", "*.dicom", "*.DICOM", "*DICOMDIR", "*dicomdir")
#: napari's pattern of every folder.
FOLDER_PATTERN = "*/"


def prefer_usarchive_reader(settings: Any = None, *, folders: bool = True) -> Mapping[str, str]:
    """Set napari's reader preference to this plugin for DICOM files (and folders).

    Parameters
    ----------
    settings : napari.settings.NapariSettings, optional
        By default napari's own (``napari.settings.get_settings()``), which
        saves the change to its settings file.
    folders : bool, optional
        Also prefer this reader for every folder (:data:`FOLDER_PATTERN`).

    Returns
    -------
    mapping of str to str
        The whole preference after the change.
    """
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    wanted = DICOM_PATTERNS + ((FOLDER_PATTERN,) if folders else ())
    preference = dict(settings.plugins.extension2reader)
    preference.update(dict.fromkeys(wanted, PLUGIN))
    settings.plugins.extension2reader = preference
    logger.info("napari now prefers the %s reader for %s", PLUGIN, ", ".join(wanted))
    return dict(settings.plugins.extension2reader)
