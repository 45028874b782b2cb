"""napari's time slider numbered from 1, like the overlay, the widget and DICOM.

napari labels its dims slider with the 0-based step (``0 … T-1``). Everywhere
usarchive shows a frame number it is 1-based (the overlay, the review widget,
exports, the audit), so :func:`number_frames_from_one` relabels the slider of
the time axis ``1 … T`` and makes a number typed into it a 1-based frame too.
The steps themselves (``viewer.dims.current_step``) stay 0-based indices.

This reaches into napari's Qt widgets (``QtDims.slider_widgets``, the slider's
``curslice_label`` / ``totslice_label`` and its ``_set_slice_from_label``
handler), so it is here alone and gated on the napari versions it was checked
against (:data:`CHECKED_NAPARI`); on others, or a viewer without a window, it
leaves napari's labels alone and logs why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: napari versions (major, minor), inclusive, whose slider widget this was checked against.
CHECKED_NAPARI = ((0, 5), (0, 9))


def _napari_checked() -> bool:
    import napari

    found = re.match(r"(\d+)\.(\d+)", napari.__version__)
    if found is None:
        return False
    version = (int(found.group(1)), int(found.group(2)))
    return CHECKED_NAPARI[0] <= version <= CHECKED_NAPARI[1]


def _slider_widget(viewer: Any, axis: int) -> Any | None:
    window = getattr(viewer, "window", None)
    qt_viewer = getattr(window, "_qt_viewer", None)
    widgets = getattr(getattr(qt_viewer, "dims", None), "slider_widgets", None)
    if widgets is None or axis >= len(widgets):
        return None
    widget = widgets[axis]
    needed = ("curslice_label", "totslice_label", "_set_slice_from_label")
    return widget if all(hasattr(widget, name) for name in needed) else None


def number_frames_from_one(viewer: Any, axis: int = 0) -> Callable[[], None]:
    """Label the slider of ``axis`` with 1-based frame numbers.

    Parameters
    ----------
    viewer : napari.Viewer
        A viewer with a window (a bare ``ViewerModel`` has no slider: nothing happens).
    axis : int, optional
        The time axis (0 for usarchive clips).

    Returns
    -------
    callable
        Restores napari's own 0-based labels.
    """
    widget = _slider_widget(viewer, axis) if _napari_checked() else None
    if widget is None:
        logger.info("napari slider left 0-based: napari version not checked or no slider widget")
        return lambda: None
    dims = viewer.dims

    def relabel(_event: Any = None) -> None:
        if axis >= dims.ndim:
            return
        try:
            widget.curslice_label.setText(str(int(dims.current_step[axis]) + 1))
            widget.totslice_label.setText(str(int(dims.nsteps[axis])))
        except RuntimeError:  # the Qt widget went with its window before the dims
            dims.events.current_step.disconnect(relabel)
            dims.events.range.disconnect(relabel)

    def from_label() -> None:
        text = widget.curslice_label.text()
        try:
            number = int(text)
        except ValueError:
            relabel()
            return
        index = min(max(number, 1), int(dims.nsteps[axis])) - 1
        widget.curslice_label.clearFocus()
        dims.set_current_step(axis, index)
        relabel()

    label = widget.curslice_label
    label.editingFinished.disconnect(widget._set_slice_from_label)
    label.editingFinished.connect(from_label)
    # after napari's own handlers, which write the 0-based step
    dims.events.current_step.connect(relabel, position="last")
    dims.events.range.connect(relabel, position="last")
    relabel()

    def restore() -> None:
        dims.events.current_step.disconnect(relabel)
        dims.events.range.disconnect(relabel)
        try:
            label.editingFinished.disconnect(from_label)
            label.editingFinished.connect(widget._set_slice_from_label)
            widget._update_slice_labels()
            widget._update_range()
        except (RuntimeError, TypeError):  # the widget is gone with its viewer
            pass

    return restore
