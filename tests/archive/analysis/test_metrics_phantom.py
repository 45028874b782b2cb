"""Audit metrics against the numbers the phantom generator put in.

Each clip is written as DICOM + JSON ground truth; the calibration and frame
times are read back from the DICOM header, the annotation is the truth marked
by a perfect reviewer, and every metric must match the generator's number
within 0.2 mm, 0.5 degrees or one frame time. The maximum spread area (mm²)
is compared within 0.2 mm times the perimeter of a circle of that area, the
smallest perimeter the spread can have: the pixel mask's edge may lie 0.2 mm
off the generator's pool (its ellipse clipped to soft tissue).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from archive.analysis.metrics import BreachAgreement, ClipMetrics, agreement, clip_metrics
from archive.calibration import Calibration
from archive.model import NeedleView, Side, SpinalLevel, Technique
from archive.phantom import ClipSpec, GroundTruth, write_clip
from archive.phantom.to_annotation import annotation_from_truth
from archive.timing import FrameTimes, frame_times

DISTANCE_TOLERANCE_MM = 0.2
ANGLE_TOLERANCE_DEG = 0.5

SMALL = ClipSpec(rows=220, cols=300, frames=16, frame_time_ms=50.0)
SPECS = {
    "in_plane": replace(SMALL, level=SpinalLevel.L4, side=Side.RIGHT, needle_angle_deg=35.0),
    "in_plane_steep": replace(SMALL, level=SpinalLevel.L3, side=Side.LEFT, needle_angle_deg=52.0),
    "out_of_plane": replace(
        SMALL,
        level=SpinalLevel.L5,
        side=Side.LEFT,
        technique=Technique.UNKNOWN,
        needle_view=NeedleView.OUT_OF_PLANE,
    ),
    "cervical_danger": replace(
        SMALL,
        level=SpinalLevel.C4,
        danger=True,
        depth_mm=45.0,
        technique=Technique.UNKNOWN,
        tip_to_target_mm=1.0,
    ),
}


@dataclass(frozen=True)
class Measured:
    truth: GroundTruth
    calibration: Calibration
    times: FrameTimes
    metrics: ClipMetrics


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Measured]:
    out: Path = tmp_path_factory.mktemp("metrics_phantom")
    result = {}
    for seed, (name, spec) in enumerate(SPECS.items(), start=101):
        dcm_path, json_path = write_clip(spec, out, seed, stem=name)
        header = dcmread(dcm_path, stop_before_pixels=True)
        calibration = Calibration.from_dataset(header)
        times = frame_times(header)
        truth = GroundTruth.read(json_path)
        metrics = clip_metrics(annotation_from_truth(truth, "truth"), calibration, times)
        result[name] = Measured(truth, calibration, times, metrics)
    return result


@pytest.mark.parametrize("name", list(SPECS))
def test_tip_to_target_and_time_match_the_generator(measured: dict[str, Measured], name: str) -> None:
    m = measured[name]
    expected = m.truth.metrics
    assert expected.tip_to_target_at_injection_start_mm is not None
    assert m.metrics.tip_to_target_at_injection_start_mm == pytest.approx(
        expected.tip_to_target_at_injection_start_mm, abs=DISTANCE_TOLERANCE_MM
    )
    assert expected.needle_visible_to_injection_end_s is not None
    assert m.metrics.needle_visible_to_injection_end_s == pytest.approx(
        expected.needle_visible_to_injection_end_s, abs=expected.frame_time_ms / 1000.0
    )
    # the truth shows the needle on every frame from visible to injection end
    assert m.metrics.needle_marked_fraction == 1.0
    assert m.metrics.needle_keyframe_fraction == 1.0


@pytest.mark.parametrize("name", ["in_plane", "in_plane_steep", "cervical_danger"])
def test_in_plane_needle_angle_matches_the_generator(measured: dict[str, Measured], name: str) -> None:
    m = measured[name]
    assert m.truth.metrics.needle_angle_to_skin_deg is not None
    assert m.metrics.needle_angle_deg == pytest.approx(
        m.truth.metrics.needle_angle_to_skin_deg, abs=ANGLE_TOLERANCE_DEG
    )
    assert m.metrics.needle_angle_frame == m.metrics.injection_start_frame


def test_out_of_plane_needle_has_no_angle(measured: dict[str, Measured]) -> None:
    m = measured["out_of_plane"]
    assert m.truth.metrics.needle_angle_to_skin_deg is None
    assert m.metrics.needle_angle_deg is None
    assert any("out-of-plane" in note for note in m.metrics.notes)


@pytest.mark.parametrize("name", list(SPECS))
def test_max_spread_area_matches_the_generator(measured: dict[str, Measured], name: str) -> None:
    m = measured[name]
    expected = m.truth.metrics.max_spread_area_mm2
    assert expected is not None
    smallest_perimeter_mm = 2.0 * math.sqrt(math.pi * expected)
    assert m.metrics.max_spread_area_mm2 == pytest.approx(
        expected, abs=DISTANCE_TOLERANCE_MM * smallest_perimeter_mm
    )
    # the pool grows until injection end and then stays: its maximum is reached by then
    assert m.metrics.max_spread_frame is not None
    assert m.metrics.injection_end_frame is not None
    assert m.metrics.max_spread_frame <= m.metrics.injection_end_frame


def test_min_tip_to_danger_matches_the_generator(measured: dict[str, Measured]) -> None:
    m = measured["cervical_danger"]
    expected = m.truth.metrics.min_tip_to_danger_mm
    assert expected is not None
    assert m.metrics.min_tip_to_danger_mm == pytest.approx(expected, abs=DISTANCE_TOLERANCE_MM)
    assert m.metrics.min_tip_to_danger_class == m.truth.danger_name.strip().lower()
    # the generator keeps the tip out of the canal; the spread must stay out too
    assert expected > 0.0
    spread_in_danger = m.truth.danger is not None and bool(
        np.logical_and(m.truth.spread, m.truth.danger).any()
    )
    assert m.metrics.breach is spread_in_danger
    assert m.metrics.breach is False


@pytest.mark.parametrize("name", ["in_plane", "in_plane_steep", "out_of_plane"])
def test_lumbar_clips_have_no_danger_assessed(measured: dict[str, Measured], name: str) -> None:
    m = measured[name]
    assert m.truth.metrics.min_tip_to_danger_mm is None
    assert m.metrics.min_tip_to_danger_mm is None
    assert m.metrics.breach is None


def test_spread_covers_a_target_one_mm_from_the_tip(measured: dict[str, Measured]) -> None:
    # the pool is centred 1.5 mm above the resting tip with semi-axes >= 3.2 mm:
    # a target 1 mm from the tip lies inside it from some frame after injection start
    m = measured["cervical_danger"].metrics
    assert m.spread_covers_target is True
    assert m.spread_covers_target_frame is not None
    assert m.injection_start_frame is not None
    assert m.spread_covers_target_frame >= m.injection_start_frame


def test_a_reviewer_agrees_perfectly_with_the_same_truth(measured: dict[str, Measured]) -> None:
    m = measured["cervical_danger"]
    a = annotation_from_truth(m.truth, "alice")
    b = annotation_from_truth(m.truth, "bob")
    result = agreement(a, b, m.calibration)
    visible = sum(line is not None for line in m.truth.needle)
    assert result.tip_frames == visible
    assert result.tip_distance_max_mm == 0.0
    assert result.spread_dice_pooled == 1.0
    assert result.breach_agreement is BreachAgreement.NEITHER
