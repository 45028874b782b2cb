"""Empty mark layers are left out of the canvas draw, without changing what the canvas or layer list shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from widget_fixtures import ViewerFactory, open_archived

from annotator.widget import ProcedureReviewWidget
from annotator.widget.draw_skip import EmptyMarkSkip
from archive.archive import Archive

pytestmark = pytest.mark.gui

LUMBAR = "l4_tt_inplane_mono"


def drawn(widget: ProcedureReviewWidget) -> dict[str, bool]:
    """Whether each mark layer's vispy node takes part in the canvas draw, by layer name."""
    assert widget.marks is not None
    visuals = widget.viewer.window._qt_viewer.canvas.layer_to_visual
    return {layer.name: bool(visuals[layer].node.visible) for layer in widget.marks.all}


@pytest.fixture
def opened(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> ProcedureReviewWidget:
    widget = open_archived(make_napari_viewer(show=True), qtbot, archive, sample_dir / f"{LUMBAR}.dcm")
    assert widget.marks is not None
    return widget


def test_empty_layers_are_not_drawn_and_keep_their_eye(opened: ProcedureReviewWidget) -> None:
    assert opened.marks is not None
    assert not any(drawn(opened).values())
    assert all(layer.visible for layer in opened.marks.all)  # the layer list's eye toggles are untouched


def test_a_layer_is_drawn_once_it_holds_a_mark(opened: ProcedureReviewWidget) -> None:
    marks = opened.marks
    assert marks is not None
    marks.target.add([(20.0, 30.0)])
    assert drawn(opened)[marks.target.name]
    opened.go_to_frame(opened.current_frame() + 1)  # the keyframe's target is interpolated or gone there
    assert drawn(opened)[marks.target.name] == (len(marks.target.data) > 0)
    spread = np.zeros(marks.frame_shape, dtype=np.uint8)
    spread[10:20, 10:20] = 1
    marks.spread.data = spread
    assert drawn(opened)[marks.spread.name]
    marks.spread.data = np.zeros(marks.frame_shape, dtype=np.uint8)
    assert not drawn(opened)[marks.spread.name]


def test_the_layer_being_edited_is_drawn_while_empty(opened: ProcedureReviewWidget) -> None:
    marks = opened.marks
    assert marks is not None
    opened.tool_spread()
    assert drawn(opened)[marks.spread.name]
    opened.tool_target()
    assert drawn(opened)[marks.target.name] and not drawn(opened)[marks.spread.name]
    marks.target.mode = "pan_zoom"
    assert not drawn(opened)[marks.target.name]


def test_a_layer_the_reviewer_hides_stays_hidden(opened: ProcedureReviewWidget) -> None:
    marks = opened.marks
    assert marks is not None
    marks.target.add([(20.0, 30.0)])
    marks.target.visible = False
    assert not drawn(opened)[marks.target.name]
    marks.target.visible = True
    assert drawn(opened)[marks.target.name]


def test_the_canvas_shows_the_same_with_and_without_the_skip(opened: ProcedureReviewWidget) -> None:
    viewer, marks = opened.viewer, opened.marks
    assert marks is not None and opened._mark_skip is not None
    marks.target.add([(20.0, 30.0)])  # one layer with a mark, four empty
    skipped = viewer.screenshot(canvas_only=True, flash=False)
    assert sum(drawn(opened).values()) == 1
    opened._mark_skip.disconnect()
    assert all(drawn(opened).values())
    everything = viewer.screenshot(canvas_only=True, flash=False)
    np.testing.assert_array_equal(skipped, everything)


def test_closing_the_clip_ends_the_skip(opened: ProcedureReviewWidget) -> None:
    marks = opened.marks
    assert marks is not None
    skip = opened._mark_skip
    assert isinstance(skip, EmptyMarkSkip)

    def follows(emitter: Any) -> bool:
        return any(isinstance(ref, tuple) and ref[0]() is skip for ref in emitter.callbacks)

    assert follows(marks.target.events.data) and follows(opened.viewer.layers.selection.events.active)
    opened.close_clip()
    assert opened._mark_skip is None
    assert not any(layer in opened.viewer.layers for layer in marks.all)
    assert not any(follows(layer.events.data) for layer in marks.all)
    assert not follows(opened.viewer.layers.selection.events.active)
