"""napari's time slider numbered from 1, like the overlay, the widget and DICOM.

napari labels its dims slider with the 0-based step (``0 … T-1``). Everywhere
usarchive shows a frame number it is 1-based (the overlay, the review widget,
exports, the audit), so :func:`number_frames_from_one` relabels the slider of
the time axis ``1 … T`` and makes a number typed into it a 1-based frame too.
The steps themselves (``viewer.dims.current_step``) stay 0-based indices.

This reaches into napari's Qt widgets (``QtDims.slider_widgets``, the slider's
``curslice_label`` / ``totslice_label`` and its ``_set_slice_from_label``
handler) through :mod:`annotator._napari_compat` alone, gated on the tested
napari version; on another, with ``enabled=False``, or for a viewer without a
window it leaves napari's labels alone (and the compat module logs why).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from annotator import _napari_compat

logger = logging.getLogger(__name__)


def number_frames_from_one(viewer: Any, axis: int = 0, *, enabled: bool = True) -> Callable[[], None]:
    """Label the slider of ``axis`` with 1-based frame numbers.

    Parameters
    ----------
    viewer : napari.Viewer
        A viewer with a window (a bare ``ViewerModel`` has no slider: nothing happens).
    axis : int, optional
        The time axis (0 for usarchive clips).
    enabled : bool, optional
        ``False``: leave napari's 0-based labels (``napari_patches=False``).

    Returns
    -------
    callable
        Restores napari's own 0-based labels.
    """
    widget = _napari_compat.dims_slider(viewer, axis) if _napari_compat.patches_enabled(enabled) else None
    if widget is None:
        logger.info("napari slider left 0-based: napari's internals are not reached into here")
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
    napari_handler = _napari_compat.slider_label_handler(widget)
    label.editingFinished.disconnect(napari_handler)
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
            label.editingFinished.connect(napari_handler)
            _napari_compat.refresh_slider(widget)
        except (RuntimeError, TypeError):  # the widget is gone with its viewer
            pass

    return restore
