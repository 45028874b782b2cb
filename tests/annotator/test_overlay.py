from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clip_files import moving_bar_frames, write_clip

from annotator.overlay import attach_time_overlay, current_frame_index, frame_time_label, text_overlay


def test_frame_time_label() -> None:
    times = [i * 50.0 for i in range(60)]
    assert frame_time_label(25, 60, times) == "t = 1.250 s (frame 26/60)"
    assert frame_time_label(0, 60, times) == "t = 0.000 s (frame 1/60)"
    assert frame_time_label(99, 60, times) == "t = 2.950 s (frame 60/60)"
    assert frame_time_label(3, 60, None) == "frame 4/60 (no frame timing)"
    assert frame_time_label(3, 60, times, calibrated=False) == "t = 0.150 s (frame 4/60) · uncalibrated"


def test_frame_time_label_uses_irregular_times() -> None:
    assert frame_time_label(2, 3, [0.0, 33.0, 100.0]) == "t = 0.100 s (frame 3/3)"


def test_frame_time_label_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one time per frame"):
        frame_time_label(0, 3, [0.0, 1.0])
    with pytest.raises(ValueError, match="at least 1"):
        frame_time_label(0, 0, None)


@pytest.mark.gui
def test_overlay_follows_the_time_slider(make_napari_viewer: Callable[..., Any], tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.dcm", moving_bar_frames(60, 32, 40), frame_time_ms=50.0)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="usarchive")
    overlay = text_overlay(viewer)
    viewer.dims.set_current_step(0, 0)
    detach = attach_time_overlay(viewer, layer)
    assert overlay.visible
    assert overlay.text == "t = 0.000 s (frame 1/60)"
    viewer.dims.set_current_step(0, 25)
    assert current_frame_index(viewer, layer) == 25
    assert overlay.text == "t = 1.250 s (frame 26/60)"
    # napari's slider says the same frame number as the overlay: 26 of 60, not step 25 of 59
    slider = viewer.window._qt_viewer.dims.slider_widgets[0]
    assert (slider.curslice_label.text(), slider.totslice_label.text()) == ("26", "60")
    # a number typed into the slider is a frame number too
    slider.curslice_label.setText("40")
    slider.curslice_label.editingFinished.emit()
    assert viewer.dims.current_step[0] == 39
    assert overlay.text == "t = 1.950 s (frame 40/60)"
    assert slider.curslice_label.text() == "40"
    detach()
    viewer.dims.set_current_step(0, 30)
    assert overlay.text == "t = 1.950 s (frame 40/60)"
    # detached: napari's own 0-based labels again
    assert (slider.curslice_label.text(), slider.totslice_label.text()) == ("30", "59")


@pytest.mark.gui
def test_overlay_marks_uncalibrated_and_detaches_on_removal(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    path = write_clip(tmp_path / "clip.dcm", moving_bar_frames(10, 32, 40), calibrated=False)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="usarchive")
    attach_time_overlay(viewer, layer)
    viewer.dims.set_current_step(0, 4)
    overlay = text_overlay(viewer)
    assert overlay.text == "t = 0.200 s (frame 5/10) · uncalibrated"
    viewer.layers.remove(layer)
    viewer.add_image(moving_bar_frames(10, 32, 40))
    viewer.dims.set_current_step(0, 7)
    assert overlay.text == "t = 0.200 s (frame 5/10) · uncalibrated"
