"""The live readout against hand-computed values, and the mark layers' danger-mask read-back."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from annotator.widget.layers import CARRIED_MASK_OPACITY, MarkLayers
from annotator.widget.readout import UNCALIBRATED_TEXT, frame_readout
from archive.calibration import Calibration, UltrasoundRegion
from archive.model import NeedleView
from archive.review import ClipAnnotation, NeedleMark, TargetMark

ROWS, COLS = 40, 60
# 0.1 mm per column, 0.2 mm per row (anisotropic), region covering cols 0..49 only
REGION = UltrasoundRegion(
    min_x0=0,
    min_y0=0,
    max_x1=49,
    max_y1=ROWS - 1,
    spatial_format=1,
    data_type=1,
    units_x=3,
    units_y=3,
    delta_x_cm=0.01,
    delta_y_cm=0.02,
)
CAL = Calibration((REGION,))


def _annotation() -> ClipAnnotation:
    empty = ClipAnnotation.new("1.2.3", "alice", 5, (ROWS, COLS))
    spread = np.zeros((ROWS, COLS), bool)
    spread[10:14, 20:25] = True  # 20 pixels of 0.02 mm²
    nerve = np.zeros((ROWS, COLS), bool)
    nerve[30, 10] = True
    vessel = np.zeros((ROWS, COLS), bool)
    vessel[20, 40] = True
    return (
        empty.with_needle(0, NeedleMark(((0.0, 0.0), (10.0, 10.0)), NeedleView.IN_PLANE))
        .with_needle(4, NeedleMark(((0.0, 0.0), (20.0, 30.0)), NeedleView.IN_PLANE))
        .with_target(2, TargetMark((15.0, 20.0), "L5 SAP–TP junction"))
        .with_spread(2, spread)
        .with_danger(2, "nerve root", nerve)
        .with_danger(2, "vessel", vessel)
    )


def test_readout_in_mm_on_an_interpolated_frame() -> None:
    reading = frame_readout(_annotation(), CAL, 2)
    # interpolated tip at frame 2: (15, 20); target (15, 20) -> 0 mm
    assert reading.tip_to_target_mm.value == pytest.approx(0.0)
    assert reading.tip_to_target_mm.text == "0.0 mm"
    # shaft from (0, 0) to (15, 20): 3 mm deep over 2 mm across -> atan(3 / 2) from the skin line
    assert reading.needle_angle_deg.value == pytest.approx(np.degrees(np.arctan2(3.0, 2.0)))
    assert reading.spread_area_mm2.value == pytest.approx(20 * 0.2 * 0.1)
    assert reading.spread_area_mm2.text == "0.4 mm²"
    # nerve (30, 10): 15 rows * 0.2 = 3 mm, 10 cols * 0.1 = 1 mm; vessel (20, 40): 1 mm, 2 mm
    assert reading.nearest_danger_mm.value == pytest.approx(np.hypot(1.0, 2.0))
    assert reading.nearest_danger_class == "vessel"
    assert reading.nearest_danger_mm.text.endswith("(vessel)")


def test_readout_says_why_a_value_is_missing() -> None:
    annotation = _annotation()
    reading = frame_readout(annotation, CAL, 0)
    assert reading.tip_to_target_mm.value is None and "no target" in reading.tip_to_target_mm.text
    assert reading.spread_area_mm2.value is None and "no spread" in reading.spread_area_mm2.text
    dot = annotation.with_needle(1, NeedleMark(((5.0, 5.0),), NeedleView.OUT_OF_PLANE))
    assert "out-of-plane" in frame_readout(dot, CAL, 1).needle_angle_deg.text
    # A spread outside the calibrated region is not measured in mm.
    outside = np.zeros((ROWS, COLS), bool)
    outside[5, 55] = True
    reading = frame_readout(annotation.with_spread(3, outside), CAL, 3)
    assert reading.spread_area_mm2.value is None and reading.spread_area_mm2.text.startswith("unavailable")


def test_uncalibrated_readout_shows_no_number() -> None:
    reading = frame_readout(_annotation(), None, 2)
    for measurement in (
        reading.tip_to_target_mm,
        reading.needle_angle_deg,
        reading.spread_area_mm2,
        reading.nearest_danger_mm,
    ):
        assert measurement.value is None
        assert measurement.text == UNCALIBRATED_TEXT


def test_danger_read_back_keeps_overlaps_outside_the_painted_pixels() -> None:
    viewer = ViewerModel()
    marks = MarkLayers(viewer, (ROWS, COLS), (0.2, 0.1), ["spinal canal", "nerve root"])
    canal = np.zeros((ROWS, COLS), bool)
    canal[5:15, 5:15] = True
    root = np.zeros((ROWS, COLS), bool)
    root[10:20, 10:20] = True  # overlaps the canal on [10:15, 10:15]
    annotation = ClipAnnotation.new("1.2.3", "alice", 3, (ROWS, COLS)).with_danger(1, "spinal canal", canal)
    annotation = annotation.with_danger(1, "nerve root", root)
    marks.show(annotation, 1)
    # The layer shows one class per pixel; the reviewer erases one pixel of the root outside the overlap
    # and paints a new vessel class elsewhere.
    data = np.asarray(marks.danger.data)
    data[18, 18] = 0
    vessel_label = marks.danger_label("Vessel")
    data[30:32, 40:42] = vessel_label
    masks = marks.read_danger(annotation.danger_at(1))
    assert sorted(masks) == ["nerve root", "spinal canal", "vessel"]
    np.testing.assert_array_equal(masks["spinal canal"], canal)
    expected_root = root.copy()
    expected_root[18, 18] = False
    np.testing.assert_array_equal(masks["nerve root"], expected_root)
    assert masks["vessel"].sum() == 4 and masks["vessel"][30:32, 40:42].all()
    # Showing a frame fills the layers from the annotation: needle keyframe, no target.
    shown = annotation.with_needle(2, NeedleMark(((1.0, 1.0), (9.0, 4.0)), NeedleView.IN_PLANE))
    marks.show(shown, 2)
    np.testing.assert_allclose(marks.needle.data[0], [[1.0, 1.0], [9.0, 4.0]])
    # the danger masks of frame 1 are held on frame 2, drawn fainter
    assert len(marks.target.data) == 0
    held = np.asarray(marks.danger.data)
    assert held[canal].all() and marks.danger.opacity == CARRIED_MASK_OPACITY
