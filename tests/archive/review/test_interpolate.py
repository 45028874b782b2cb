from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from archive.review.interpolate import (
    interpolate_mask,
    interpolate_point,
    interpolate_polyline,
    polyline_length,
    resample_polyline,
    signed_distance,
)


def test_interpolate_point_hand_values() -> None:
    # a quarter of the way from frame 10 to frame 14
    assert interpolate_point((0.0, 0.0), (8.0, -4.0), 10, 14, 11) == (2.0, -1.0)
    assert interpolate_point((0.0, 0.0), (8.0, -4.0), 10, 14, 12) == (4.0, -2.0)
    assert interpolate_point((1.5, 2.5), (8.0, -4.0), 10, 14, 10) == (1.5, 2.5)
    assert interpolate_point((1.5, 2.5), (8.0, -4.0), 10, 14, 14) == (8.0, -4.0)


@pytest.mark.parametrize("frame", [9, 15])
def test_interpolate_point_refuses_extrapolation(frame: int) -> None:
    with pytest.raises(ValueError, match="does not extrapolate"):
        interpolate_point((0.0, 0.0), (1.0, 1.0), 10, 14, frame)


def test_interpolate_point_refuses_reversed_keyframes() -> None:
    with pytest.raises(ValueError, match="frame_b"):
        interpolate_point((0.0, 0.0), (1.0, 1.0), 14, 10, 12)
    with pytest.raises(ValueError, match="frame_b"):
        interpolate_point((0.0, 0.0), (1.0, 1.0), 10, 10, 10)


def test_interpolate_point_refuses_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        interpolate_point((math.nan, 0.0), (1.0, 1.0), 0, 2, 1)


def test_polyline_length() -> None:
    assert polyline_length([(0.0, 0.0), (3.0, 4.0), (3.0, 10.0)]) == pytest.approx(11.0)
    assert polyline_length([(2.0, 2.0)]) == 0.0


def test_resample_polyline_even_arc_length() -> None:
    # an L of length 4 + 4; 5 points at arc lengths 0, 2, 4, 6, 8
    points = resample_polyline([(0.0, 0.0), (4.0, 0.0), (4.0, 4.0)], 5)
    assert points == ((0.0, 0.0), (2.0, 0.0), (4.0, 0.0), (4.0, 2.0), (4.0, 4.0))


def test_resample_polyline_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 points"):
        resample_polyline([(0.0, 0.0)], 3)
    with pytest.raises(ValueError, match="positive length"):
        resample_polyline([(1.0, 1.0), (1.0, 1.0)], 3)
    with pytest.raises(ValueError, match="n_points"):
        resample_polyline([(0.0, 0.0), (1.0, 1.0)], 1)


def test_interpolate_polyline_same_count_vertexwise() -> None:
    a = [(0.0, 0.0), (10.0, 10.0)]
    b = [(0.0, 4.0), (20.0, 30.0)]
    assert interpolate_polyline(a, b, 0, 4, 1) == ((0.0, 1.0), (12.5, 15.0))
    assert interpolate_polyline(a, b, 0, 4, 0) == ((0.0, 0.0), (10.0, 10.0))
    assert interpolate_polyline(a, b, 0, 4, 4) == ((0.0, 4.0), (20.0, 30.0))


def test_interpolate_polyline_different_counts_resamples_by_arc_length() -> None:
    # a: straight line of 3 points (resampled: unchanged); b: 2 points, midpoint added
    a = [(0.0, 0.0), (5.0, 0.0), (10.0, 0.0)]
    b = [(0.0, 10.0), (20.0, 10.0)]
    mid = interpolate_polyline(a, b, 0, 2, 1)
    assert mid == ((0.0, 5.0), (7.5, 5.0), (15.0, 5.0))
    # the keyframes themselves come back unchanged, whatever their counts
    assert interpolate_polyline(a, b, 0, 2, 2) == ((0.0, 10.0), (20.0, 10.0))


def test_interpolate_polyline_keeps_end_points_paired() -> None:
    # entry and tip stay paired even with an uneven vertex distribution
    a = [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (12.0, 0.0)]
    b = [(0.0, 0.0), (24.0, 0.0)]
    mid = interpolate_polyline(a, b, 0, 2, 1)
    assert len(mid) == 4
    assert mid[0] == (0.0, 0.0)
    assert mid[-1] == (18.0, 0.0)
    # resampled a: 0, 4, 8, 12; resampled b: 0, 8, 16, 24
    assert mid[1] == pytest.approx((6.0, 0.0))
    assert mid[2] == pytest.approx((12.0, 0.0))


coord = st.floats(min_value=-1000, max_value=1000, allow_nan=False)


@given(
    a=st.tuples(coord, coord),
    b=st.tuples(coord, coord),
    frame_a=st.integers(0, 100),
    gap=st.integers(1, 50),
    data=st.data(),
)
def test_interpolated_point_lies_on_segment(
    a: tuple[float, float], b: tuple[float, float], frame_a: int, gap: int, data: st.DataObject
) -> None:
    frame = data.draw(st.integers(frame_a, frame_a + gap))
    p = interpolate_point(a, b, frame_a, frame_a + gap, frame)
    t = (frame - frame_a) / gap
    assert p[0] == pytest.approx(a[0] + t * (b[0] - a[0]), abs=1e-9)
    assert p[1] == pytest.approx(a[1] + t * (b[1] - a[1]), abs=1e-9)


def test_signed_distance_sign_and_extremes() -> None:
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:4, 2:5] = True
    distance = signed_distance(mask)
    np.testing.assert_array_equal(distance < 0, mask)
    assert distance[2, 3] == -2.0  # centre: two pixels from the nearest outside one
    assert distance[2, 0] == 2.0
    assert (signed_distance(np.zeros((3, 4), dtype=bool)) == 7.0).all()
    assert (signed_distance(np.ones((3, 4), dtype=bool)) == -7.0).all()


def test_interpolate_mask_ends_exact_and_growth_monotone() -> None:
    rr, cc = np.mgrid[:30, :30]
    small = (rr - 15) ** 2 + (cc - 15) ** 2 <= 9
    large = (rr - 15) ** 2 + (cc - 15) ** 2 <= 100
    np.testing.assert_array_equal(interpolate_mask(small, large, 0, 4, 0), small)
    np.testing.assert_array_equal(interpolate_mask(small, large, 0, 4, 4), large)
    areas = [int(interpolate_mask(small, large, 0, 4, f).sum()) for f in range(5)]
    assert areas == sorted(areas) and len(set(areas)) == 5
    # precomputed distance maps give the same as the masks
    np.testing.assert_array_equal(
        interpolate_mask(signed_distance(small), signed_distance(large), 0, 4, 2),
        interpolate_mask(small, large, 0, 4, 2),
    )
    with pytest.raises(ValueError, match="does not extrapolate"):
        interpolate_mask(small, large, 0, 4, 5)
    with pytest.raises(ValueError, match="shape of a"):
        interpolate_mask(small, large[:10], 0, 4, 2)
