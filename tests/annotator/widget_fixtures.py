"""Helpers of the review widget tests: a temporary archive holding sample clips, and widget opening."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.uid import generate_uid
from qtpy.QtCore import Qt

from annotator.widget import ProcedureReviewWidget
from archive.archive import Archive
from archive.ingest import IngestOutcome, Origin

FILE = Origin("file", path="widget test")
ViewerFactory = Callable[..., Any]


def ingest(archive: Archive, path: Path) -> str:
    """Ingest one file; return its SOP Instance UID."""
    result = archive.ingest(path, origin=FILE)
    assert result.outcome is IngestOutcome.STORED, result.reason
    assert result.sop_instance_uid is not None
    return result.sop_instance_uid


def uncalibrated_copy(source: Path, target: Path) -> Path:
    """A copy of a sample clip without its Sequence of Ultrasound Regions, under new UIDs."""
    ds = dcmread(source)
    del ds.SequenceOfUltrasoundRegions
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(target)
    return target


def open_widget(viewer: Any, archive: Archive) -> ProcedureReviewWidget:
    """A review widget docked in ``viewer``."""
    widget = ProcedureReviewWidget(viewer, archive=archive)
    viewer.window.add_dock_widget(widget, name="Procedure review", area="right")
    return widget


def open_clip_from_list(qtbot: Any, widget: ProcedureReviewWidget, uid: str) -> None:
    """Select the clip's row in the clip table and press Open, as a reviewer would."""
    widget.clip_list.refresh()
    row = widget.clip_list.uids().index(uid)
    widget.clip_list.table.selectRow(row)
    qtbot.mouseClick(widget.clip_list.open_button, Qt.MouseButton.LeftButton)
    assert widget.session is not None and widget.session.sop_instance_uid == uid


def open_archived(viewer: Any, qtbot: Any, archive: Archive, path: Path) -> ProcedureReviewWidget:
    """Archive ``path``, dock a review widget in ``viewer`` and open the clip from its list."""
    uid = ingest(archive, path)
    widget = open_widget(viewer, archive)
    open_clip_from_list(qtbot, widget, uid)
    return widget


def click(qtbot: Any, widget: ProcedureReviewWidget, name: str) -> None:
    """Click the widget's button with object name ``name``."""
    from qtpy.QtWidgets import QPushButton

    button = widget.findChild(QPushButton, name)
    assert button is not None, f"no button {name!r}"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def disc(shape: tuple[int, int], centre: tuple[float, float], radius_px: float) -> NDArray[np.bool_]:
    """A filled disc mask of ``shape``."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    inside: NDArray[np.bool_] = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius_px**2
    return inside
