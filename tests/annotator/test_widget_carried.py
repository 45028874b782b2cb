"""The review widget shows carried (held or interpolated) marks apart from keyframes, and Alt-K keys them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from app_model.types import KeyBinding
from widget_fixtures import ViewerFactory, disc, open_archived

from annotator.widget.layers import CARRIED_MASK_OPACITY, INTERPOLATED_COLOUR, KEYFRAME_MASK_OPACITY
from archive.archive import Archive
from archive.phantom.truth import GroundTruth
from archive.review import MarkKind

LUMBAR = "l4_tt_inplane_mono"


def test_held_and_interpolated_marks_shown_as_carried_and_keyed_by_alt_k(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    source = sample_dir / f"{LUMBAR}.dcm"
    truth = GroundTruth.read(source.with_suffix(".json"))
    viewer = make_napari_viewer()
    widget = open_archived(viewer, qtbot, archive, source)
    assert widget.marks is not None and widget.session is not None
    shape = widget.session.frame_shape
    # The target clicked once on frame index 6 (frame 7), the needle on 6 and 20.
    widget.go_to_frame(6)
    widget.tool_target()
    widget.marks.target.add([truth.targets[6]])
    for frame in (6, 20):
        widget.go_to_frame(frame)
        widget.tool_needle()
        widget.marks.needle.add_paths([np.asarray(truth.needle[frame])])
    # Spread keyframes on frames 7 and 21 (indices 6, 20), growing.
    centre = (float(truth.targets[6][0]), float(truth.targets[6][1]))
    small, large = disc(shape, centre, 4.0), disc(shape, centre, 12.0)
    widget.session.annotation = widget.session.annotation.with_spread(6, small).with_spread(20, large)

    # Between the keyframes: target held, needle and spread interpolated, all drawn as carried.
    widget.go_to_frame(12)
    qtbot.waitUntil(lambda: len(widget.marks.target.data) == 1)
    state = widget.panel.mark_state_label.text()
    assert "needle: interpolated from 7, 21" in state
    assert "target: held from 7" in state
    assert "spread: interpolated from 7, 21" in state
    assert "target keyframes: 7" in state and "needle keyframes: 7, 21" in state
    np.testing.assert_allclose(widget.marks.target.face_color[0][:3], _rgb(INTERPOLATED_COLOUR), atol=1e-6)
    assert widget.marks.spread.opacity == CARRIED_MASK_OPACITY
    shown = np.asarray(widget.marks.spread.data) != 0
    assert small.sum() < shown.sum() < large.sum()
    # Tip-to-target is measured on a frame after the target keyframe.
    reading = widget.readout()
    assert reading is not None and reading.tip_to_target_mm.value is not None
    assert "no target" not in widget.panel.readout_labels["tip_to_target_mm"].text()

    # Events are shown with the frame number the overlay shows: index 12 is frame 13.
    widget.mark_event("injection start")
    assert "injection start 13" in widget.panel.events_label.text()
    assert "frame 13/" in widget.panel.frame_label.text()

    # After the last keyframe: target and spread held, the needle gone (no extrapolation).
    widget.go_to_frame(25)
    state = widget.panel.mark_state_label.text()
    assert "target: held from 7" in state and "spread: held from 21" in state and "needle: —" in state
    np.testing.assert_array_equal(np.asarray(widget.marks.spread.data) != 0, large)

    # Alt-K on frame 26 with the target tool: the held target becomes a keyframe.
    widget.tool_target()
    viewer.keymap[KeyBinding.from_str("Alt-K")](viewer)
    annotation = widget.annotation
    assert annotation is not None and annotation.keyframes(MarkKind.TARGET) == (6, 25)
    assert annotation.target[25] == annotation.target[6]
    qtbot.waitUntil(lambda: "target: keyframe" in widget.panel.mark_state_label.text())
    assert "target keyframes: 7, 26" in widget.panel.mark_state_label.text()
    # With another tool active and nothing of it carried, Alt-K keys every carried kind here (the spread).
    widget.tool_needle()
    viewer.keymap[KeyBinding.from_str("Alt-K")](viewer)
    annotation = widget.annotation
    assert annotation is not None and annotation.keyframes(MarkKind.SPREAD) == (6, 20, 25)
    qtbot.waitUntil(lambda: widget.marks is not None and widget.marks.spread.opacity == KEYFRAME_MASK_OPACITY)
    # Nothing carried left on this frame: Alt-K says so, in 1-based frame numbers.
    viewer.keymap[KeyBinding.from_str("Alt-K")](viewer)
    assert "make frame 26 a needle keyframe" in widget.panel.message.text()


def _rgb(hex_colour: str) -> list[float]:
    return [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
