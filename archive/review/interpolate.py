"""Linear interpolation of annotation geometry between two keyframes.

Pure functions on ``(row, col)`` pixel points (floats, sub-pixel allowed). A
reviewer marks the needle and the target on a few keyframes; the frames in
between are filled by these functions.

Conventions
-----------
* Interpolation is linear in the frame index: at frame ``f`` between keyframes
  ``frame_a < frame_b`` the weight of ``b`` is ``(f - frame_a) / (frame_b - frame_a)``.
* Frames outside ``[frame_a, frame_b]`` are refused (no extrapolation).
* Polylines with the same number of points are interpolated vertex by vertex.
  Polylines with different numbers of points are first both resampled by arc
  length to ``max(len(a), len(b))`` points, evenly spaced from the first point
  to the last, then interpolated vertex by vertex. First and last points (skin
  entry and tip of a needle) are therefore always paired with each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

#: A ``(row, col)`` pixel point.
Point = tuple[float, float]


def _weight(frame_a: int, frame_b: int, frame: int) -> float:
    if frame_b <= frame_a:
        raise ValueError(
            f"frame_b: expected a frame after frame_a={frame_a}, but got {frame_b}; "
            "pass the keyframes in frame order"
        )
    if not frame_a <= frame <= frame_b:
        raise ValueError(
            f"frame: expected a frame in [{frame_a}, {frame_b}], but got {frame}; "
            "interpolation does not extrapolate beyond its keyframes"
        )
    return (frame - frame_a) / (frame_b - frame_a)


def _as_points(points: Sequence[Point] | NDArray[np.float64], name: str) -> NDArray[np.float64]:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise ValueError(
            f"{name}: expected a sequence of (row, col) points, shape (N, 2) with N >= 1, "
            f"but got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite coordinates, but got {array.tolist()}")
    return array


def _to_tuples(array: NDArray[np.float64]) -> tuple[Point, ...]:
    return tuple((float(row), float(col)) for row, col in array)


def interpolate_point(a: Point, b: Point, frame_a: int, frame_b: int, frame: int) -> Point:
    """Linearly interpolate a point between two keyframes.

    Parameters
    ----------
    a, b : tuple of float
        ``(row, col)`` pixel points on keyframes ``frame_a`` and ``frame_b``.
    frame_a, frame_b : int
        Keyframe indices, ``frame_a < frame_b``.
    frame : int
        Frame to interpolate, ``frame_a <= frame <= frame_b``.

    Returns
    -------
    tuple of float
        The ``(row, col)`` point at ``frame``; exactly ``a`` at ``frame_a`` and
        ``b`` at ``frame_b``.

    Raises
    ------
    ValueError
        If the keyframes are not in order, ``frame`` lies outside them, or a
        coordinate is not finite.
    """
    t = _weight(frame_a, frame_b, frame)
    pa = _as_points([a], "a")[0]
    pb = _as_points([b], "b")[0]
    if frame == frame_a:
        return (float(pa[0]), float(pa[1]))
    if frame == frame_b:
        return (float(pb[0]), float(pb[1]))
    result = pa + t * (pb - pa)
    return (float(result[0]), float(result[1]))


def polyline_length(points: Sequence[Point] | NDArray[np.float64]) -> float:
    """Length of a polyline in pixels.

    Parameters
    ----------
    points : sequence of (row, col) or ndarray of shape (N, 2), float
        Vertices in order.

    Returns
    -------
    float
        Sum of the Euclidean lengths of the segments; 0 for a single point.
    """
    array = _as_points(points, "points")
    return float(np.sum(np.hypot(*np.diff(array, axis=0).T)))


def resample_polyline(points: Sequence[Point] | NDArray[np.float64], n_points: int) -> tuple[Point, ...]:
    """Resample a polyline to ``n_points`` points evenly spaced along its length.

    The first and last points are kept exactly; the others lie on the polyline
    at equal arc-length steps.

    Parameters
    ----------
    points : sequence of (row, col) or ndarray of shape (N, 2), float
        Vertices in order, N >= 2, with a positive total length.
    n_points : int
        Number of points wanted, >= 2.

    Returns
    -------
    tuple of (row, col) float points, length ``n_points``

    Raises
    ------
    ValueError
        If there are fewer than two points, the polyline has zero length, or
        ``n_points < 2``.
    """
    array = _as_points(points, "points")
    if array.shape[0] < 2:
        raise ValueError(f"points: expected at least 2 points to resample, but got {array.shape[0]}")
    if n_points < 2:
        raise ValueError(f"n_points: expected at least 2, but got {n_points}")
    segment_lengths = np.hypot(*np.diff(array, axis=0).T)
    cumulative = np.concatenate([[0.0], np.cumsum(segment_lengths)])
    total = cumulative[-1]
    if total <= 0.0:
        raise ValueError(
            f"points: expected a polyline of positive length, but all points are equal: {array.tolist()}"
        )
    targets = np.linspace(0.0, total, n_points)
    rows = np.interp(targets, cumulative, array[:, 0])
    cols = np.interp(targets, cumulative, array[:, 1])
    result = np.column_stack([rows, cols])
    result[0] = array[0]
    result[-1] = array[-1]
    return _to_tuples(result)


def interpolate_polyline(
    a: Sequence[Point],
    b: Sequence[Point],
    frame_a: int,
    frame_b: int,
    frame: int,
) -> tuple[Point, ...]:
    """Linearly interpolate a polyline (e.g. a needle shaft) between two keyframes.

    Parameters
    ----------
    a, b : sequence of (row, col) float points
        Polylines on keyframes ``frame_a`` and ``frame_b``, ordered the same
        way (for a needle: skin entry first, tip last).
    frame_a, frame_b : int
        Keyframe indices, ``frame_a < frame_b``.
    frame : int
        Frame to interpolate, ``frame_a <= frame <= frame_b``.

    Returns
    -------
    tuple of (row, col) float points
        ``a`` unchanged at ``frame_a`` and ``b`` unchanged at ``frame_b``. In
        between: vertex-wise interpolation when ``len(a) == len(b)``; otherwise
        both are resampled by arc length to ``max(len(a), len(b))`` points first
        (see the module notes).

    Raises
    ------
    ValueError
        If the frames are out of order or range, or the point counts differ and
        a polyline cannot be resampled (one point, or zero length).
    """
    t = _weight(frame_a, frame_b, frame)
    pa = _as_points(a, "a")
    pb = _as_points(b, "b")
    if frame == frame_a:
        return _to_tuples(pa)
    if frame == frame_b:
        return _to_tuples(pb)
    if pa.shape[0] != pb.shape[0]:
        n_points = max(pa.shape[0], pb.shape[0])
        pa = np.asarray(resample_polyline(pa, n_points), dtype=np.float64)
        pb = np.asarray(resample_polyline(pb, n_points), dtype=np.float64)
    return _to_tuples(pa + t * (pb - pa))


def signed_distance(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Signed Euclidean distance map of a 2D boolean mask, in pixels.

    Negative inside the mask (minus the distance to the nearest pixel outside),
    positive outside (the distance to the nearest pixel inside), computed with
    :func:`scipy.ndimage.distance_transform_edt`; so ``signed_distance(m) < 0``
    is ``m`` again. An empty mask is ``+D`` everywhere and a full one ``-D``,
    with ``D = rows + cols`` (further than any pixel of the frame).

    Parameters
    ----------
    mask : ndarray of shape (rows, cols), bool
        The mask.

    Returns
    -------
    ndarray of shape (rows, cols), float64
    """
    from scipy.ndimage import distance_transform_edt

    array = np.asarray(mask, dtype=np.bool_)
    if array.ndim != 2:
        raise ValueError(f"mask: expected a 2D (rows, cols) mask, but got shape {array.shape}")
    far = float(array.shape[0] + array.shape[1])
    if not array.any():
        return np.full(array.shape, far)
    if array.all():
        return np.full(array.shape, -far)
    outside: NDArray[np.float64] = distance_transform_edt(~array)
    inside: NDArray[np.float64] = distance_transform_edt(array)
    return outside - inside


def _as_distance(mask: NDArray[np.bool_] | NDArray[np.float64]) -> NDArray[np.float64]:
    array = np.asarray(mask)
    if array.dtype == np.bool_:
        return signed_distance(array.astype(np.bool_))
    return np.asarray(array, dtype=np.float64)


def interpolate_mask(
    a: NDArray[np.bool_] | NDArray[np.float64],
    b: NDArray[np.bool_] | NDArray[np.float64],
    frame_a: int,
    frame_b: int,
    frame: int,
) -> NDArray[np.bool_]:
    """Shape interpolation of a mask between two keyframes, by signed distance maps.

    The signed distance maps of the two keyframe masks (:func:`signed_distance`)
    are interpolated linearly in the frame index and thresholded at zero, so a
    blob that grows, shrinks or moves between keyframes does so smoothly. A
    mask that is empty on one keyframe grows out of (or shrinks into) the
    deepest part of the other.

    Parameters
    ----------
    a, b : ndarray of shape (rows, cols)
        The keyframe masks (bool), or their signed distance maps (float) when
        the caller keeps them to reuse.
    frame_a, frame_b : int
        Keyframe indices, ``frame_a < frame_b``.
    frame : int
        Frame to interpolate, ``frame_a <= frame <= frame_b``.

    Returns
    -------
    ndarray of shape (rows, cols), bool
        Exactly ``a`` at ``frame_a`` and ``b`` at ``frame_b``.

    Raises
    ------
    ValueError
        If the frames are out of order or range, or the shapes differ.
    """
    t = _weight(frame_a, frame_b, frame)
    da = _as_distance(a)
    db = _as_distance(b)
    if da.shape != db.shape:
        raise ValueError(f"b: expected a mask of the shape of a, {da.shape}, but got {db.shape}")
    if frame == frame_a:
        return np.asarray(da < 0)
    if frame == frame_b:
        return np.asarray(db < 0)
    return np.asarray((1.0 - t) * da + t * db < 0)
