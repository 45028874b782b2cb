"""Baseline for comparison: a straight Hough transform on the raw frame.

What a reader would try first, and what :func:`~archive.analysis.proposals.propose_clip`
is measured against: per frame (no temporal information, no background),
the brightest pixels of the imaging region (top :data:`BRIGHT_PERCENTILE` %)
vote in :func:`skimage.transform.hough_line` over the same plausible shaft
angles as the method; the strongest line is the shaft, and its deepest
connected run of bright pixels ends at the tip. It is claimed on every
frame where that run is at least the minimum shaft length.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from skimage.transform import hough_line, hough_line_peaks

from archive.analysis.proposals.api import Region, _check_frames, _check_region
from archive.analysis.proposals.inplane import ANGLE_RANGE_DEG
from archive.analysis.proposals.params import DEFAULTS, MethodParameters, to_pixels
from archive.analysis.proposals.results import ClipProposal, FrameProposal

#: Name and version of the baseline.
BASELINE_METHOD = "hough-raw/1"
#: Percentile of the region's grey levels above which pixels vote.
BRIGHT_PERCENTILE = 98.0
#: Tolerance (pixels) of bright pixels counted on the Hough line.
LINE_WIDTH_PX = 1.5


def _angles() -> npt.NDArray[np.float64]:
    """Hough normal angles (radians) of lines at plausible shaft angles, both descending directions."""
    low, high = ANGLE_RANGE_DEG
    shaft = np.deg2rad(np.arange(low, high + 0.5, 0.5))
    # a line at angle a to the rows has its normal at a - 90° (skimage convention, theta in [-90°, 90°))
    normals = np.concatenate([shaft - np.pi / 2, np.pi / 2 - shaft])
    out: npt.NDArray[np.float64] = np.sort(normals)
    return out


def propose_baseline(
    frames: npt.NDArray[np.generic],
    *,
    spacing_mm: tuple[float, float] | None,
    region: Region | None = None,
    params: MethodParameters = DEFAULTS,
) -> ClipProposal:
    """Straight Hough transform on each raw frame (the baseline).

    Parameters
    ----------
    frames : ndarray of shape (T, rows, cols), uint8
        Greyscale frames.
    spacing_mm : tuple of float or None
        ``(row, col)`` mm per pixel; sets the minimum shaft length.
    region : tuple of int, optional
        ``(row0, col0, row1, col1)`` inclusive; None = whole frame.
    params : MethodParameters, optional
        Only ``min_shaft_mm`` is used.

    Returns
    -------
    ClipProposal
        Needle proposals only (``spread`` empty), method :data:`BASELINE_METHOD`.
    """
    stack = _check_frames(frames)
    row0, col0, row1, col1 = _check_region(region, stack.shape[1:])
    pixels = to_pixels(params, spacing_mm, None)
    angles = _angles()
    proposals = []
    for index in range(stack.shape[0]):
        crop = stack[index, row0 : row1 + 1, col0 : col1 + 1]
        found = _frame_line(crop, angles, pixels.min_shaft)
        if found is None:
            proposals.append(FrameProposal(index + 1, None, None, 0.0))
            continue
        (entry, tip), score = found
        entry_img = (entry[0] + row0, entry[1] + col0)
        tip_img = (tip[0] + row0, tip[1] + col0)
        proposals.append(FrameProposal(index + 1, tip_img, (entry_img, tip_img), score))
    return ClipProposal(
        frames=tuple(proposals),
        spread=(),
        approach="in-plane",
        units="mm" if spacing_mm is not None else "px",
        method=BASELINE_METHOD,
    )


def _frame_line(
    crop: npt.NDArray[np.uint8], angles: npt.NDArray[np.float64], min_shaft: float
) -> tuple[tuple[tuple[float, float], tuple[float, float]], float] | None:
    level = float(np.percentile(crop, BRIGHT_PERCENTILE))
    bright = crop > level
    if np.count_nonzero(bright) < min_shaft:
        return None
    accumulator, thetas, distances = hough_line(bright, theta=angles)  # type: ignore[no-untyped-call]
    votes, peak_thetas, peak_distances = hough_line_peaks(  # type: ignore[no-untyped-call]
        accumulator, thetas, distances, num_peaks=1
    )
    if len(votes) == 0:
        return None
    theta, rho = float(peak_thetas[0]), float(peak_distances[0])
    # points on the line: x cos(theta) + y sin(theta) = rho, x = col, y = row
    direction = np.array([math.cos(theta), -math.sin(theta)])  # (row, col) along the line
    if direction[0] < 0:
        direction = -direction
    foot = np.array([rho * math.sin(theta), rho * math.cos(theta)])
    rows_b, cols_b = np.nonzero(bright)
    offsets = (cols_b - foot[1]) * math.cos(theta) + (rows_b - foot[0]) * math.sin(theta)
    on_line = np.abs(offsets) <= LINE_WIDTH_PX
    if np.count_nonzero(on_line) < 2:
        return None
    along = (rows_b[on_line] - foot[0]) * direction[0] + (cols_b[on_line] - foot[1]) * direction[1]
    along = np.sort(along)
    # the deepest run of bright pixels with gaps under the minimum shaft length
    breaks = np.nonzero(np.diff(along) > min_shaft)[0]
    start = along[breaks[-1] + 1] if breaks.size else along[0]
    end = along[-1]
    if end - start < min_shaft:
        return None
    entry = foot + start * direction
    tip = foot + end * direction
    score = min(1.0, float(votes[0]) / max(1.0, end - start))
    return ((float(entry[0]), float(entry[1])), (float(tip[0]), float(tip[1]))), score
