"""Geometry in millimetres for the annotator readout and the audit.

Pure functions: ``(row, col)`` pixel points and boolean masks in, numbers in
mm, degrees or plain ratios out. Every physical quantity goes through a
:class:`~archive.calibration.Calibration`, so anisotropic pixels and negative
deltas are handled in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from archive.calibration import Calibration, Point
from archive.errors import CalibrationError


def tip_to_point_mm(cal: Calibration, tip: Point, point: Point) -> float:
    """Distance in mm from the needle tip to a point (e.g. the target).

    Parameters
    ----------
    cal : Calibration
        Calibration of the image.
    tip, point : tuple of float
        ``(row, col)`` pixel points in one 2D tissue region.

    Raises
    ------
    CalibrationError
        If the points are not in one 2D tissue region in cm.
    """
    return cal.distance_mm(tip, point)


def needle_angle_deg(
    cal: Calibration,
    shaft_start: Point,
    tip: Point,
    skin_line: tuple[Point, Point] | None = None,
) -> float:
    """Angle in degrees between the needle and the skin line.

    Computed in mm space, so anisotropic pixels give the true angle.

    Parameters
    ----------
    cal : Calibration
        Calibration of the image.
    shaft_start, tip : tuple of float
        Two ``(row, col)`` points on the needle, in one 2D tissue region.
    skin_line : pair of (row, col) points, optional
        Two points on the skin line. By default the skin line is the image row
        direction (the transducer face at the top of the image).

    Returns
    -------
    float
        Angle between the two lines, in [0, 90].

    Raises
    ------
    ValueError
        If the needle or skin points coincide.
    CalibrationError
        If a pair of points is not in one 2D tissue region in cm.
    """
    needle = cal.vector_mm(shaft_start, tip)
    skin = cal.vector_mm(*skin_line) if skin_line is not None else (0.0, 1.0)
    for name, (dy, dx) in (("needle", needle), ("skin_line", skin)):
        if math.hypot(dy, dx) == 0.0:
            raise ValueError(f"{name}: expected two distinct points, but they coincide")
    dot = abs(needle[0] * skin[0] + needle[1] * skin[1])
    cosine = dot / (math.hypot(*needle) * math.hypot(*skin))
    return math.degrees(math.acos(min(1.0, cosine)))


def point_in_mask(point: Point, mask: NDArray[np.bool_]) -> bool:
    """Whether the pixel under ``point`` is True in ``mask``.

    Pixel ``k`` covers ``[k - 0.5, k + 0.5)``; points outside the array are not
    in the mask.

    Parameters
    ----------
    point : tuple of float
        ``(row, col)`` in pixels.
    mask : ndarray of shape (H, W), bool
        The mask.
    """
    array = np.asarray(mask)
    row, col = (math.floor(v + 0.5) for v in point)
    return 0 <= row < array.shape[0] and 0 <= col < array.shape[1] and bool(array[row, col])


def mask_distance_mm(cal: Calibration, point: Point, mask: NDArray[np.bool_]) -> float:
    """Distance in mm from a point to the nearest True pixel of a mask.

    Exact Euclidean distance, in mm, from the point to the **centres** of the
    mask's boundary pixels (so up to half a pixel more than the distance to
    the mask's outer edge); 0.0 when the point is inside the mask.

    Parameters
    ----------
    cal : Calibration
        Calibration of the image.
    point : tuple of float
        ``(row, col)`` in pixels, e.g. the needle tip.
    mask : ndarray of shape (H, W), bool
        E.g. a danger structure; must have a True pixel.

    Raises
    ------
    ValueError
        If the mask is not 2-D or is empty.
    CalibrationError
        If the point and the mask are not in one 2D tissue region in cm.
    """
    nearest = _nearest_boundary_pixel(cal, point, mask)
    return 0.0 if nearest is None else nearest[1]


@dataclass(frozen=True)
class NearestMask:
    """The nearest of several named masks to a point (see :func:`nearest_mask_mm`).

    Attributes
    ----------
    distance_mm : float or None
        Distance to the nearest measurable mask; ``None`` when none was measurable.
    name : str or None
        That mask's name (e.g. a danger class).
    unmeasurable : dict of str to str
        Masks that could not be measured, with the reason.
    """

    distance_mm: float | None
    name: str | None
    unmeasurable: dict[str, str]


def nearest_mask_mm(cal: Calibration, point: Point, masks: Mapping[str, NDArray[np.bool_]]) -> NearestMask:
    """Distance in mm from a point to the nearest of several named masks, and which one.

    The live readout (nearest danger structure on a frame) and the clip audit
    (closest approach to danger over a clip) both measure with this, so they
    agree. Masks are taken in name order; of two at the same distance the
    first name wins.

    Parameters
    ----------
    cal, point
        As in :func:`mask_distance_mm`.
    masks : mapping of str to ndarray of shape (H, W), bool
        Non-empty masks by name, e.g. danger structures by class.

    Returns
    -------
    NearestMask
        Distance (see :func:`mask_distance_mm`) and name of the nearest mask,
        and the masks that could not be measured (calibration errors) with why.

    Raises
    ------
    ValueError
        If a mask is not 2-D or is empty.
    """
    best: tuple[float, str] | None = None
    unmeasurable: dict[str, str] = {}
    for name in sorted(masks):
        try:
            distance_mm = mask_distance_mm(cal, point, masks[name])
        except CalibrationError as exc:
            unmeasurable[name] = str(exc)
            continue
        if best is None or distance_mm < best[0]:
            best = (distance_mm, name)
    if best is None:
        return NearestMask(None, None, unmeasurable)
    return NearestMask(best[0], best[1], unmeasurable)


def dice(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """Dice coefficient ``2 |A ∩ B| / (|A| + |B|)`` of two boolean masks.

    Parameters
    ----------
    a, b : ndarray of shape (H, W), bool
        Masks of the same shape.

    Returns
    -------
    float
        In [0, 1]; 1.0 when both masks are empty (two reviewers agreeing that
        there is nothing).

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    first, second = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if first.shape != second.shape:
        raise ValueError(f"dice: expected masks of one shape, but got {first.shape} and {second.shape}")
    total = int(first.sum()) + int(second.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(first, second).sum()) / total


def nearest_mask_point(cal: Calibration, point: Point, mask: NDArray[np.bool_]) -> Point:
    """The mask pixel nearest to a point, measured in mm.

    The pixel whose distance :func:`mask_distance_mm` reports: the centre of
    the mask's boundary pixel nearest to ``point`` in mm (anisotropic pixels
    weigh rows and columns by their size), or ``point`` itself when it lies in
    the mask (distance 0). Ties go to the first pixel in row-major order.

    Parameters
    ----------
    cal : Calibration
        Calibration of the image.
    point : tuple of float
        ``(row, col)`` in pixels, e.g. the needle tip.
    mask : ndarray of shape (H, W), bool
        E.g. a danger structure; must have a True pixel.

    Returns
    -------
    tuple of float
        ``(row, col)`` of the nearest pixel centre, in pixels.

    Raises
    ------
    ValueError
        If the mask is not 2-D or is empty.
    CalibrationError
        If the point and the mask are not in one 2D tissue region in cm.
    """
    nearest = _nearest_boundary_pixel(cal, point, mask)
    return (float(point[0]), float(point[1])) if nearest is None else nearest[0]


def _nearest_boundary_pixel(
    cal: Calibration, point: Point, mask: NDArray[np.bool_]
) -> tuple[Point, float] | None:
    """The mask's boundary pixel nearest to ``point`` in mm, and that distance.

    ``None`` when the point lies in the mask. Shared by :func:`mask_distance_mm`
    and :func:`nearest_mask_point`, so both always name the same pixel. Ties go
    to the first pixel in row-major order.
    """
    array = np.asarray(mask, dtype=bool)
    if array.ndim != 2 or not array.any():
        raise ValueError(f"mask: expected a non-empty 2-D boolean array, but got shape {array.shape}")
    cal.region_for_mask(array)  # says clearly when the mask itself spans regions
    rows, cols = np.nonzero(array)
    corners = (float(rows.min()), float(cols.min())), (float(rows.max()), float(cols.max()))
    region = cal.region_for_points(point, *corners)
    if point_in_mask(point, array):
        return None
    boundary = array & ~ndimage.binary_erosion(array)
    b_rows, b_cols = np.nonzero(boundary)
    row_mm, col_mm = region.pixel_size_mm
    squared_mm2 = ((b_rows - point[0]) * row_mm) ** 2 + ((b_cols - point[1]) * col_mm) ** 2
    nearest = int(np.argmin(squared_mm2))
    return (float(b_rows[nearest]), float(b_cols[nearest])), float(np.sqrt(squared_mm2[nearest]))
