"""The time overlay's box is rebuilt only when the label's size changes, and placed on whole pixels."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clip_files import moving_bar_frames, write_clip
from napari.components import ViewerModel
from vispy.gloo import glir

from annotator.overlay import attach_time_overlay, text_overlay
from annotator.overlay_box import SteadyBoxTextOverlay, steady_box

pytestmark = pytest.mark.gui


@pytest.fixture
def program_links(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the shader programs vispy links (one element, incremented per link)."""
    links = [0]
    link_program = glir.GlirProgram.link_program

    def counting(self: Any) -> None:
        links[0] += 1
        link_program(self)

    monkeypatch.setattr(glir.GlirProgram, "link_program", counting)
    yield links


def open_with_time_overlay(make_napari_viewer: Callable[..., Any], tmp_path: Path) -> tuple[Any, Any]:
    path = write_clip(tmp_path / "clip.dcm", moving_bar_frames(60, 32, 40), frame_time_ms=50.0)
    viewer = make_napari_viewer(show=True)
    [layer] = viewer.open(path, plugin="usarchive")
    viewer.dims.set_current_step(0, 10)
    attach_time_overlay(viewer, layer)
    viewer.screenshot(canvas_only=True, flash=False)
    [visual] = viewer.window._qt_viewer.canvas._viewer_overlay_to_visual[text_overlay(viewer)]
    return viewer, visual


def test_frame_steps_do_not_relink_a_program(
    make_napari_viewer: Callable[..., Any], tmp_path: Path, program_links: list[int]
) -> None:
    viewer, visual = open_with_time_overlay(make_napari_viewer, tmp_path)
    assert isinstance(visual, SteadyBoxTextOverlay)
    program_links[0] = 0
    for frame in range(11, 20):  # "t = 0.550 s (frame 12/60)": the label keeps its width
        viewer.dims.set_current_step(0, frame)
        shot = viewer.screenshot(canvas_only=True, flash=False)
    assert text_overlay(viewer).text == "t = 0.950 s (frame 20/60)"
    assert program_links[0] == 0
    assert visual.box.parent is visual.node.parent  # the box is still drawn behind the text
    # The label, light on the dark box, in the canvas's bottom right corner inside the padding.
    height, width = int(visual.y_size), int(visual.x_size)
    label = shot[-10 - height : -10, -10 - width : -10, :3]
    assert label.max() > 200


def test_the_box_follows_a_wider_label_and_the_box_switch(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    viewer, visual = open_with_time_overlay(make_napari_viewer, tmp_path)
    overlay = text_overlay(viewer)
    width = visual.box.width
    viewer.dims.set_current_step(0, 0)  # frame 1/60: narrower
    viewer.dims.set_current_step(0, 10)
    assert visual.box.width == width
    overlay.text = "t = 0.500 s (frame 11/60) · uncalibrated"
    assert visual.box.width > width
    overlay.box = False
    assert visual.box.parent is None
    overlay.box = True
    assert visual.box.parent is visual.node.parent


def test_the_overlay_sits_on_whole_pixels(make_napari_viewer: Callable[..., Any], tmp_path: Path) -> None:
    viewer, visual = open_with_time_overlay(make_napari_viewer, tmp_path)
    viewer.dims.set_current_step(0, 33)
    viewer.screenshot(canvas_only=True, flash=False)
    assert visual.x_size == int(visual.x_size) and visual.y_size == int(visual.y_size)
    translate = visual.node.transform.translate[:2]
    assert np.array_equal(translate, np.round(translate))


def test_a_viewer_without_a_window_is_left_alone() -> None:
    viewer = ViewerModel()
    overlay = text_overlay(viewer)
    overlay.visible = True
    assert steady_box(viewer, overlay).steady == 0
