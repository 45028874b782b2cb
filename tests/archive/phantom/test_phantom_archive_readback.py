"""The archive's own calibration and timing read back the truth the phantom put in."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from archive.calibration import Calibration
from archive.phantom import GroundTruth
from archive.phantom.samples import SAMPLES
from archive.timing import frame_times

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "sample_dicom"


@pytest.mark.parametrize("stem", [s.stem for s in SAMPLES])
def test_calibration_reads_back_model_millimetres(stem: str) -> None:
    ds = pydicom.dcmread(SAMPLE_DIR / f"{stem}.dcm", stop_before_pixels=True)
    truth = GroundTruth.read(SAMPLE_DIR / f"{stem}.json")
    calibration = Calibration.from_dataset(ds)
    target_x, target_y = truth.target_mm
    for (row, col), (d_row, d_col) in zip(truth.targets, truth.shifts_px, strict=True):
        y_mm, x_mm = calibration.point_mm(row - d_row, col - d_col)
        assert (x_mm, y_mm) == pytest.approx((target_x, target_y), abs=1e-6)
    start = truth.events["injection start"]
    if start is not None:
        tip = truth.tips[start]
        assert tip is not None
        distance = calibration.distance_mm(tuple(tip), tuple(truth.targets[start]))
        assert distance == pytest.approx(truth.metrics.tip_to_target_at_injection_start_mm, abs=1e-6)


@pytest.mark.parametrize("stem", [s.stem for s in SAMPLES if s.spec.frames > 1])
def test_timing_reads_back_frame_time_and_duration(stem: str) -> None:
    ds = pydicom.dcmread(SAMPLE_DIR / f"{stem}.dcm", stop_before_pixels=True)
    truth = GroundTruth.read(SAMPLE_DIR / f"{stem}.json")
    times = frame_times(ds)
    assert times.source == "FrameTime"
    assert times.nominal_frame_time_ms == truth.metrics.frame_time_ms
    visible, end = truth.events["needle visible"], truth.events["injection end"]
    assert visible is not None and end is not None
    elapsed = times.offset_s(end) - times.offset_s(visible)
    assert elapsed == pytest.approx(truth.metrics.needle_visible_to_injection_end_s, abs=1e-9)
    assert times.absolute(0).strftime("%H%M%S") == ds.ContentTime
