"""The review widget driven on a real napari viewer (under Xvfb) through a whole review.

Open a sample clip from a temporary archive, mark the needle on two
keyframes, check the interpolated frame between them, mark the target, copy
marks forward, paint spread and a danger structure, mark events, check the
readout against the phantom's ground truth, save, close, reopen in a new
viewer and find everything identical. The screenshot kept in
``docs/images/review-widget.png`` is made here (``USARCHIVE_UPDATE_DOCS=1``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from widget_fixtures import ViewerFactory, click, disc, ingest, open_clip_from_list, open_widget

from annotator.widget.layers import INTERPOLATED_COLOUR, KEYFRAME_COLOUR
from archive.analysis.geometry import mask_distance_mm
from archive.analysis.metrics import clip_metrics
from archive.archive import Archive
from archive.calibration import calibration_or_none
from archive.model import ClipEvent
from archive.phantom.truth import GroundTruth
from archive.review import MarkKind
from archive.timing import frame_times

pytestmark = pytest.mark.gui

SAMPLE = "l4_tt_inplane_mono"
FIRST_KEY, SECOND_KEY, BETWEEN, LATER = 8, 18, 13, 22
ADVERSE_NOTE = "patient reports leg paraesthesia"


def _colour(rgba: Any) -> str:
    r, g, b = (round(float(v) * 255) for v in np.asarray(rgba).ravel()[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _layer_state(widget: Any) -> dict[str, Any]:
    marks = widget.marks
    return {
        "needle": [np.asarray(d).tolist() for d in marks.needle.data],
        "needle_dot": np.asarray(marks.needle_dot.data).tolist(),
        "target": np.asarray(marks.target.data).tolist(),
        "spread": np.asarray(marks.spread.data).copy(),
        "danger": np.asarray(marks.danger.data).copy(),
    }


def _same_layers(a: dict[str, Any], b: dict[str, Any]) -> bool:
    plain = all(a[k] == b[k] for k in ("needle", "needle_dot", "target"))
    return plain and all(np.array_equal(a[k], b[k]) for k in ("spread", "danger"))


def test_review_flow_round_trip(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path, tmp_path: Path
) -> None:
    source = sample_dir / f"{SAMPLE}.dcm"
    truth = GroundTruth.read(source.with_suffix(".json"))
    uid = ingest(archive, source)
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    widget = open_widget(viewer, archive)
    open_clip_from_list(qtbot, widget, uid)

    # The image is in mm and the clip is calibrated.
    assert widget.image is not None and widget.marks is not None
    row_mm, col_mm = (
        float(truth.calibration["PhysicalDeltaY"]) * 10,
        float(truth.calibration["PhysicalDeltaX"]) * 10,
    )
    np.testing.assert_allclose(widget.image.scale, (1.0, row_mm, col_mm))
    for layer in widget.marks.all:
        np.testing.assert_allclose(layer.scale, (row_mm, col_mm))
    assert widget.panel.calibration_label.text().startswith("calibrated")

    # Needle on two keyframes, drawn with the needle tool.
    click(qtbot, widget, "tool_needle")
    assert viewer.layers.selection.active is widget.marks.needle
    assert widget.marks.needle.mode == "add_path"
    for frame in (FIRST_KEY, SECOND_KEY):
        widget.go_to_frame(frame)
        assert widget.current_frame() == frame
        widget.marks.needle.add_paths([np.asarray(truth.needle[frame])])
    annotation = widget.annotation
    assert annotation is not None
    assert annotation.keyframes(MarkKind.NEEDLE) == (FIRST_KEY, SECOND_KEY)
    np.testing.assert_allclose(annotation.needle[SECOND_KEY].points, truth.needle[SECOND_KEY], atol=1e-4)

    # The frame between shows the linear interpolation, styled and labelled as interpolated.
    widget.go_to_frame(BETWEEN)
    qtbot.waitUntil(lambda: len(widget.marks.needle.data) == 1)
    weight = (BETWEEN - FIRST_KEY) / (SECOND_KEY - FIRST_KEY)
    first = np.asarray(annotation.needle[FIRST_KEY].points)
    second = np.asarray(annotation.needle[SECOND_KEY].points)
    np.testing.assert_allclose(widget.marks.needle.data[0], first + weight * (second - first), atol=1e-4)
    assert _colour(widget.marks.needle.edge_color[0]) == INTERPOLATED_COLOUR
    assert "needle: interpolated" in widget.panel.mark_state_label.text()
    widget.go_to_frame(SECOND_KEY)
    qtbot.waitUntil(lambda: "needle: keyframe" in widget.panel.mark_state_label.text())
    assert _colour(widget.marks.needle.edge_color[0]) == KEYFRAME_COLOUR

    # Target on the injection-start frame, injection start marked with its button.
    click(qtbot, widget, "tool_target")
    widget.panel.target_name.setCurrentText(truth.target_name)
    widget.marks.target.add([truth.targets[SECOND_KEY]])
    click(qtbot, widget, "event_injection_start")
    annotation = widget.annotation
    assert annotation is not None
    assert annotation.events == {ClipEvent.INJECTION_START: SECOND_KEY}
    assert annotation.target[SECOND_KEY].name == truth.target_name

    # Live readout against the ground truth and against the audit's own computation.
    reading = widget.readout()
    assert reading is not None and reading.tip_to_target_mm.value is not None
    expected_mm = truth.metrics.tip_to_target_at_injection_start_mm
    assert expected_mm is not None
    assert abs(reading.tip_to_target_mm.value - expected_mm) < 0.5
    assert (
        widget.panel.readout_labels["tip_to_target_mm"].text() == f"{reading.tip_to_target_mm.value:.1f} mm"
    )
    assert reading.needle_angle_deg.value is not None
    assert truth.metrics.needle_angle_to_skin_deg is not None
    assert abs(reading.needle_angle_deg.value - truth.metrics.needle_angle_to_skin_deg) < 1.0
    calibration = calibration_or_none(widget.image.data.header)
    assert calibration is not None
    audit = clip_metrics(annotation, calibration, frame_times(widget.image.data.header))
    assert audit.tip_to_target_at_injection_start_mm == reading.tip_to_target_mm.value
    assert audit.needle_angle_deg == reading.needle_angle_deg.value

    # A later frame: copy needle and target forward, paint spread and a danger structure.
    widget.go_to_frame(LATER)
    qtbot.waitUntil(lambda: widget.current_frame() == LATER)
    assert widget.annotation is not None and widget.annotation.needle_at(LATER) is None
    click(qtbot, widget, "tool_needle")
    click(qtbot, widget, "copy_from_previous")
    click(qtbot, widget, "tool_target")
    click(qtbot, widget, "copy_from_previous")
    annotation = widget.annotation
    assert annotation is not None
    assert annotation.needle[LATER] == annotation.needle[SECOND_KEY]
    assert annotation.target[LATER] == annotation.target[SECOND_KEY]
    qtbot.waitUntil(lambda: len(widget.marks.needle.data) == 1 and len(widget.marks.target.data) == 1)

    click(qtbot, widget, "tool_spread")
    spread_layer = widget.marks.spread
    assert viewer.layers.selection.active is spread_layer and spread_layer.mode == "paint"
    rows, cols = np.nonzero(truth.spread[LATER])
    centre = (float(rows.mean()), float(cols.mean()))
    spread_layer.brush_size = 21
    spread_layer.paint(centre, 1)
    qtbot.waitUntil(lambda: widget.annotation is not None and LATER in widget.annotation.spread)
    painted = np.asarray(spread_layer.data) == 1
    expected_disc = disc(painted.shape, (round(centre[0]), round(centre[1])), 10.5)
    assert painted.sum() > 250 and (painted & expected_disc).sum() / painted.sum() > 0.95
    annotation = widget.annotation
    assert annotation is not None
    np.testing.assert_array_equal(annotation.spread[LATER], painted)
    reading = widget.readout()
    assert reading is not None and reading.spread_area_mm2.value is not None
    assert reading.spread_area_mm2.value == pytest.approx(painted.sum() * row_mm * col_mm, rel=1e-9)
    # The disc covers most of the true spread: areas agree to within the brush's rounding.
    true_area_mm2 = truth.spread[LATER].sum() * row_mm * col_mm
    assert abs(reading.spread_area_mm2.value - true_area_mm2) / true_area_mm2 < 0.25

    widget.panel.danger_class.setCurrentText("nerve root")
    click(qtbot, widget, "tool_danger")
    danger_layer = widget.marks.danger
    danger_layer.brush_size = 15
    danger_layer.paint((230.0, 150.0), danger_layer.selected_label)
    qtbot.waitUntil(lambda: widget.annotation is not None and LATER in widget.annotation.danger)
    annotation = widget.annotation
    assert annotation is not None
    nerve = annotation.danger[LATER]["nerve root"]
    np.testing.assert_array_equal(nerve, np.asarray(danger_layer.data) == danger_layer.selected_label)
    tip = annotation.tip_at(LATER)
    assert tip is not None
    reading = widget.readout()
    assert reading is not None
    assert reading.nearest_danger_mm.value == mask_distance_mm(calibration, tip, nerve)
    assert reading.nearest_danger_class == "nerve root"

    widget.panel.adverse_note.setText(ADVERSE_NOTE)
    click(qtbot, widget, "event_adverse")
    annotation = widget.annotation
    assert annotation is not None and [(a.frame, a.note) for a in annotation.adverse_events] == [
        (LATER, ADVERSE_NOTE)
    ]

    # Save with the button.
    click(qtbot, widget, "save")
    assert widget.panel.message.text() == "saved version 1"
    assert widget.session is not None and not widget.session.dirty
    saved = widget.annotation
    assert saved is not None
    assert archive.annotations.load(uid, "alice").annotation == saved

    qtbot.waitUntil(lambda: len(widget.marks.target.data) == 1)
    shots = Path("docs/images") if os.environ.get("USARCHIVE_UPDATE_DOCS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    viewer.reset_view()
    widget.viewer.window._qt_window.grab().save(str(shots / "review-widget.png"))
    with Image.open(shots / "review-widget.png") as shot:
        assert shot.width >= 1000 and shot.height >= 600
    frames_state = {}
    for frame in (BETWEEN, SECOND_KEY, LATER):
        widget.go_to_frame(frame)
        widget.refresh()
        frames_state[frame] = _layer_state(widget)
    viewer.close()

    # Reopen in a new viewer: the same annotation and the same layers on every frame.
    second_viewer = make_napari_viewer()
    reopened = open_widget(second_viewer, archive)
    open_clip_from_list(qtbot, reopened, uid)
    assert reopened.annotation == saved
    assert reopened.session is not None and reopened.session.base_version == 1
    for frame, state in frames_state.items():
        reopened.go_to_frame(frame)
        reopened.refresh()
        assert _same_layers(_layer_state(reopened), state), f"layers differ on frame {frame}"
    assert reopened.panel.status_label.text() == "alice: draft, version 1"
