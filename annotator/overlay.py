"""The current frame's time, shown in the viewer's text overlay.

:func:`frame_time_label` is pure (also used by the review widget);
:func:`attach_time_overlay` keeps ``viewer.text_overlay`` in step with the
viewer's time slider for one clip layer made by :mod:`annotator.reader`; its
background box is rebuilt only when the label's width changes
(:mod:`annotator.overlay_box`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari.layers import Image
    from napari.viewer import ViewerModel

logger = logging.getLogger(__name__)


def frame_time_label(
    frame_index: int,
    number_of_frames: int,
    frame_times_ms: Sequence[float] | None,
    *,
    calibrated: bool = True,
) -> str:
    """Text naming the current frame and its time.

    Parameters
    ----------
    frame_index : int
        0-based frame index; clipped into ``0..number_of_frames - 1``.
    number_of_frames : int
        At least 1.
    frame_times_ms : sequence of float or None
        Start of each frame in ms from the first frame (``metadata["frame_times_ms"]``
        of the layer); ``None`` when the clip has no timing.
    calibrated : bool, optional
        False appends ``" · uncalibrated"``.

    Returns
    -------
    str
        e.g. ``"t = 1.250 s (frame 26/60)"``; frames are numbered from 1 as
        in DICOM. Without times: ``"frame 26/60 (no frame timing)"``.

    Raises
    ------
    ValueError
        If ``number_of_frames`` is below 1 or the times do not have one value
        per frame.
    """
    if number_of_frames < 1:
        raise ValueError(f"number_of_frames: expected at least 1, but got {number_of_frames}")
    if frame_times_ms is not None and len(frame_times_ms) != number_of_frames:
        raise ValueError(
            f"frame_times_ms: expected one time per frame ({number_of_frames}), but got {len(frame_times_ms)}"
        )
    index = min(max(int(frame_index), 0), number_of_frames - 1)
    position = f"frame {index + 1}/{number_of_frames}"
    if frame_times_ms is None:
        text = f"{position} (no frame timing)"
    else:
        text = f"t = {frame_times_ms[index] / 1000.0:.3f} s ({position})"
    return text if calibrated else f"{text} · uncalibrated"


def current_frame_index(viewer: ViewerModel, layer: Image) -> int:
    """The layer's frame index (its first data axis) at the viewer's current position.

    Parameters
    ----------
    viewer : napari.viewer.ViewerModel
        The viewer whose dims position is read.
    layer : napari.layers.Image
        A clip layer: its first data axis is time.

    Returns
    -------
    int
        0-based frame index, clipped into the clip.
    """
    data_position = layer.world_to_data(viewer.dims.point)
    n_frames = int(layer.data.shape[0])
    return min(max(round(float(data_position[0])), 0), n_frames - 1)


def text_overlay(viewer: ViewerModel) -> Any:
    """The viewer's text overlay.

    ``viewer.canvas.overlays["text"]`` in napari 0.9+, ``viewer.text_overlay`` before.
    """
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None and "text" in overlays:
        return overlays["text"]
    return viewer.text_overlay


def attach_time_overlay(
    viewer: ViewerModel, layer: Image, *, napari_patches: bool = True
) -> Callable[[], None]:
    """Show the layer's current frame time in ``viewer.text_overlay``, kept up to date.

    The time slider is numbered from 1 too while the overlay is attached
    (:func:`annotator.slider_numbers.number_frames_from_one`), so the slider,
    the overlay and the review widget give a frame the same number.

    Parameters
    ----------
    viewer : napari.viewer.ViewerModel
        Or a :class:`napari.Viewer`.
    layer : napari.layers.Image
        A layer from :func:`annotator.reader.read_clip` (uses its
        ``metadata["frame_times_ms"]`` and ``metadata["calibrated"]``).
    napari_patches : bool, optional
        ``False``: napari's own slider labels and overlay box drawing, no
        reach into napari's internals (:mod:`annotator._napari_compat`).

    Returns
    -------
    callable
        Call it to stop updating the overlay. It is called automatically when
        the layer is removed from the viewer.
    """
    from annotator.overlay_box import steady_box  # imports napari's vispy canvas: only with a viewer
    from annotator.slider_numbers import number_frames_from_one

    metadata = layer.metadata
    times = metadata.get("frame_times_ms")
    calibrated = bool(metadata.get("calibrated", False))
    n_frames = int(layer.data.shape[0])
    overlay = text_overlay(viewer)

    def update(event: Any = None) -> None:
        if layer not in viewer.layers:  # the dims change while the layer is being removed
            return
        index = current_frame_index(viewer, layer)
        overlay.text = frame_time_label(index, n_frames, times, calibrated=calibrated)

    def on_removed(event: Any) -> None:
        if event.value is layer:
            detach()

    def detach() -> None:
        if detached:
            return
        detached.append(True)
        viewer.dims.events.point.disconnect(update)
        viewer.layers.events.removed.disconnect(on_removed)
        restore_slider()
        box.restore()
        logger.debug("time overlay detached from %s", layer.name)

    detached: list[bool] = []
    viewer.dims.events.point.connect(update)
    viewer.layers.events.removed.connect(on_removed)
    overlay.visible = True
    box = steady_box(viewer, overlay, enabled=napari_patches)
    restore_slider = number_frames_from_one(viewer, enabled=napari_patches)
    update()
    return detach
