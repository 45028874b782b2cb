"""Tests of archive.analysis.geometry against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archive.analysis.geometry import (
    dice,
    mask_distance_mm,
    nearest_mask_mm,
    needle_angle_deg,
    point_in_mask,
    tip_to_point_mm,
)
from archive.calibration import Calibration, UltrasoundRegion
from archive.errors import CalibrationError


def tissue_region(
    x0: int, y0: int, x1: int, y1: int, delta_x_cm: float, delta_y_cm: float
) -> UltrasoundRegion:
    return UltrasoundRegion(
        min_x0=x0,
        min_y0=y0,
        max_x1=x1,
        max_y1=y1,
        spatial_format=1,
        data_type=1,
        units_x=3,
        units_y=3,
        delta_x_cm=delta_x_cm,
        delta_y_cm=delta_y_cm,
    )


# rows 0..99, cols 0..199; 0.1 mm per column, 0.2 mm per row (anisotropic)
MAIN = tissue_region(0, 0, 199, 99, 0.01, 0.02)
# a second image beside it (dual view), cols 210..299
SIDE = tissue_region(210, 0, 299, 99, 0.01, 0.02)
CAL = Calibration((MAIN, SIDE))


def test_tip_to_point_in_mm() -> None:
    # d_row 15 * 0.2 = 3 mm, d_col 40 * 0.1 = 4 mm -> 5 mm
    assert tip_to_point_mm(CAL, (10, 10), (25, 50)) == pytest.approx(5.0)
    with pytest.raises(CalibrationError, match="different regions"):
        tip_to_point_mm(CAL, (10, 10), (10, 250))


def test_needle_angle_is_computed_in_mm_space() -> None:
    # needle (dy, dx) = (3 mm, 4 mm): atan(3 / 4) = 36.8699 deg (in pixels it would be atan(15 / 40) = 20.56)
    assert needle_angle_deg(CAL, (10, 10), (25, 50)) == pytest.approx(math.degrees(math.atan2(3, 4)))
    assert needle_angle_deg(CAL, (10, 10), (25, 50)) == pytest.approx(36.8699, abs=1e-4)
    # direction of travel does not matter: a line, not a ray
    assert needle_angle_deg(CAL, (25, 50), (10, 10)) == pytest.approx(36.8699, abs=1e-4)
    assert needle_angle_deg(CAL, (10, 10), (40, 10)) == pytest.approx(90.0)
    assert needle_angle_deg(CAL, (10, 10), (10, 60)) == pytest.approx(0.0)


def test_needle_angle_against_given_skin_line() -> None:
    # skin parallel to the needle: 0 deg
    assert needle_angle_deg(CAL, (10, 10), (25, 50), skin_line=((50, 10), (65, 50))) == pytest.approx(0.0)
    # skin (dy, dx) = (-20 * 0.2, 30 * 0.1) = (-4, 3) mm; needle (3, 4) mm; dot = -12 + 12 = 0 -> 90 deg
    assert needle_angle_deg(CAL, (10, 10), (25, 50), skin_line=((50, 10), (30, 40))) == pytest.approx(90.0)
    with pytest.raises(ValueError, match="skin_line"):
        needle_angle_deg(CAL, (10, 10), (25, 50), skin_line=((50, 10), (50, 10)))
    with pytest.raises(ValueError, match="needle"):
        needle_angle_deg(CAL, (10, 10), (10, 10))


def test_needle_angle_with_negative_delta() -> None:
    flipped = Calibration((tissue_region(0, 0, 199, 99, -0.01, 0.02),))
    # |dx| is still 4 mm: same 36.87 deg
    assert needle_angle_deg(flipped, (10, 10), (25, 50)) == pytest.approx(36.8699, abs=1e-4)


def test_point_in_mask_rounds_to_pixel_centres() -> None:
    mask = np.zeros((100, 200), dtype=bool)
    mask[40:50, 100:120] = True
    assert point_in_mask((44.6, 99.6), mask)  # pixel (45, 100)
    assert not point_in_mask((44.6, 99.4), mask)  # pixel (45, 99)
    assert not point_in_mask((-1, 105), mask)
    assert not point_in_mask((45, 400), mask)


def test_mask_distance_to_nearest_pixel_centre() -> None:
    mask = np.zeros((100, 300), dtype=bool)
    mask[40:50, 100:120] = True
    # straight above: nearest centre (40, 110), 20 rows * 0.2 = 4.0 mm
    assert mask_distance_mm(CAL, (20, 110), mask) == pytest.approx(4.0)
    # to the left: nearest centre (45, 100), 10 cols * 0.1 = 1.0 mm
    assert mask_distance_mm(CAL, (45, 90), mask) == pytest.approx(1.0)
    # diagonal: corner (40, 100), hypot(10 * 0.2, 10 * 0.1) = sqrt(5) = 2.2361 mm
    assert mask_distance_mm(CAL, (30, 90), mask) == pytest.approx(math.sqrt(5.0))
    assert mask_distance_mm(CAL, (45, 110), mask) == 0.0


def test_mask_distance_refuses_empty_mask_and_other_regions() -> None:
    mask = np.zeros((100, 300), dtype=bool)
    with pytest.raises(ValueError, match="non-empty"):
        mask_distance_mm(CAL, (10, 10), mask)
    mask[40:50, 100:120] = True
    with pytest.raises(CalibrationError, match="different regions"):
        mask_distance_mm(CAL, (45, 250), mask)
    mask[45, 250] = True
    with pytest.raises(CalibrationError, match="one 2D tissue region"):
        mask_distance_mm(CAL, (45, 150), mask)


def test_nearest_of_several_masks_and_the_ones_not_measurable() -> None:
    canal = np.zeros((100, 300), dtype=bool)
    canal[40:50, 100:120] = True  # 4.0 mm straight below (20, 110)
    root = np.zeros((100, 300), dtype=bool)
    root[20, 125:130] = True  # 15 columns to the right: 1.5 mm
    beside = np.zeros((100, 300), dtype=bool)
    beside[20, 250] = True  # in the other image of the dual view: not measurable from (20, 110)
    nearest = nearest_mask_mm(CAL, (20, 110), {"spinal canal": canal, "nerve root": root, "vessel": beside})
    assert nearest.name == "nerve root"
    assert nearest.distance_mm == pytest.approx(1.5)
    assert list(nearest.unmeasurable) == ["vessel"]
    assert "different regions" in nearest.unmeasurable["vessel"]
    # ties go to the first name
    twin = root.copy()
    assert nearest_mask_mm(CAL, (20, 110), {"b": twin, "a": root}).name == "a"
    only_beside = nearest_mask_mm(CAL, (20, 110), {"vessel": beside})
    assert (only_beside.distance_mm, only_beside.name) == (None, None)
    with pytest.raises(ValueError, match="non-empty"):
        nearest_mask_mm(CAL, (20, 110), {"empty": np.zeros((100, 300), dtype=bool)})


def test_dice() -> None:
    a = np.zeros((4, 4), dtype=bool)
    b = np.zeros((4, 4), dtype=bool)
    assert dice(a, b) == 1.0
    a[0, 0:4] = True
    assert dice(a, b) == 0.0
    b[0, 2:4] = True
    b[1, 2:4] = True
    # |A| = 4, |B| = 4, |A and B| = 2 -> 2 * 2 / 8 = 0.5
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0
    with pytest.raises(ValueError, match="one shape"):
        dice(a, np.zeros((4, 5), dtype=bool))
