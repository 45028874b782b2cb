"""nearest_mask_point: the mask pixel that mask_distance_mm measures to, found in mm."""

from __future__ import annotations

import numpy as np
import pytest

from archive.analysis.geometry import mask_distance_mm, nearest_mask_point
from archive.calibration import Calibration, UltrasoundRegion
from archive.errors import CalibrationError

# rows 0..99, cols 0..199; 0.1 mm per column, 0.4 mm per row (anisotropic)
MAIN = UltrasoundRegion(0, 0, 199, 99, 1, 1, 3, 3, 0.01, 0.04)
SIDE = UltrasoundRegion(210, 0, 299, 99, 1, 1, 3, 3, 0.01, 0.04)
CAL = Calibration((MAIN, SIDE))


def test_nearest_point_is_nearest_in_mm_not_in_pixels() -> None:
    mask = np.zeros((100, 300), dtype=bool)
    mask[54, 50] = True  # 4 px below: 1.6 mm
    mask[50, 60] = True  # 10 px right: 1.0 mm
    assert nearest_mask_point(CAL, (50.0, 50.0), mask) == (50.0, 60.0)
    assert mask_distance_mm(CAL, (50.0, 50.0), mask) == pytest.approx(1.0)


def test_nearest_point_is_on_the_boundary_and_matches_the_distance() -> None:
    mask = np.zeros((100, 300), dtype=bool)
    mask[20:40, 100:150] = True
    point = (30.2, 80.7)
    nearest = nearest_mask_point(CAL, point, mask)
    assert nearest == (30.0, 100.0)
    assert CAL.distance_mm(point, nearest) == pytest.approx(mask_distance_mm(CAL, point, mask))


def test_point_inside_the_mask_is_its_own_nearest_point() -> None:
    mask = np.zeros((100, 300), dtype=bool)
    mask[20:40, 100:150] = True
    assert nearest_mask_point(CAL, (25.3, 120.1), mask) == (25.3, 120.1)


def test_nearest_point_refuses_empty_masks_and_other_regions() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        nearest_mask_point(CAL, (1.0, 1.0), np.zeros((100, 300), dtype=bool))
    mask = np.zeros((100, 300), dtype=bool)
    mask[10, 250] = True
    with pytest.raises(CalibrationError):
        nearest_mask_point(CAL, (10.0, 10.0), mask)
