"""Out-of-plane needle: a bright dot with its reverberation tail below it.

The cross-section of a needle crossing the image plane is a small bright
blob; the sound ringing inside the cannula repeats it at regular depths
below (a "comet tail"). Blobs of the brightening image are found with
:func:`skimage.feature.blob_log` at the dot scales; each is scored by its own
brightness plus the brightening in a narrow column just below it against the
columns beside it, and the best is the tip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from skimage.feature import blob_log

from archive.analysis.proposals.params import PixelParameters

F32 = npt.NDArray[np.float32]

#: Smallest brightening of a needle dot, in noise units.
MIN_DOT_SIGMA = 6.0
#: Most blobs scored per frame.
MAX_BLOBS = 12


@dataclass(frozen=True)
class DotMeasurement:
    """An out-of-plane needle dot in region pixels: centre, and contrast in noise units."""

    tip: tuple[float, float]
    contrast: float


def measure_dot(
    smoothed: F32,
    params: PixelParameters,
    *,
    noise: tuple[float, float],
    near: tuple[float, float] | None = None,
) -> DotMeasurement | None:
    """Find the needle dot in one frame.

    Parameters
    ----------
    smoothed : ndarray of shape (rows, cols), float32
        Smoothed brightening (:func:`archive.analysis.proposals.inplane.smooth`).
    params : PixelParameters
        ``dot_sigma`` gives the blob scales.
    noise : tuple of float
        ``(median, sigma)`` of ``smoothed``.
    near : tuple of float, optional
        The previous frame's dot: if there are blobs within
        ``params.search_radius`` of it, only they are considered (the needle
        moves little between frames).

    Returns
    -------
    DotMeasurement or None
    """
    median, sigma = noise
    peak = float(smoothed.max())
    if peak - median < 4.0 * sigma:
        return None
    scaled = (smoothed - median) / (peak - median)
    low, high = params.dot_sigma
    blobs = blob_log(  # type: ignore[no-untyped-call]
        scaled,
        min_sigma=low,
        max_sigma=high,
        num_sigma=4,
        threshold=float(3.0 * sigma / (peak - median)),
        exclude_border=False,
    )
    if len(blobs) == 0:
        return None
    best: DotMeasurement | None = None
    best_score = -math.inf
    rows = smoothed.shape[0]
    if near is not None:
        close = np.hypot(blobs[:, 0] - near[0], blobs[:, 1] - near[1]) <= params.search_radius
        if close.any():
            blobs = blobs[close]
    strength = smoothed[blobs[:, 0].astype(np.intp), blobs[:, 1].astype(np.intp)]
    blobs = blobs[np.argsort(strength)[::-1][:MAX_BLOBS]]
    for row, col, blob_sigma in blobs:
        r, c = int(row), int(col)
        own = float(smoothed[r, c]) - median
        width = max(1, round(blob_sigma))
        depth = round(6 * high)
        below = smoothed[
            min(rows - 1, r + 2 * width) : min(rows, r + depth), max(0, c - width) : c + width + 1
        ]
        side_l = smoothed[
            min(rows - 1, r + 2 * width) : min(rows, r + depth), max(0, c - 4 * width) : max(0, c - 2 * width)
        ]
        side_r = smoothed[min(rows - 1, r + 2 * width) : min(rows, r + depth), c + 2 * width : c + 4 * width]
        tail = 0.0
        if below.size and (side_l.size or side_r.size):
            sides = np.concatenate([side_l.ravel(), side_r.ravel()])
            tail = max(0.0, float(np.mean(below)) - float(np.mean(sides)))
        if own < MIN_DOT_SIGMA * sigma:
            continue  # the largest of many speckle or noise maxima reaches about 5 noise units
        score = own + 2.0 * tail
        if score > best_score:
            best_score = score
            best = DotMeasurement(tip=(float(row), float(col)), contrast=score / sigma)
    return best
