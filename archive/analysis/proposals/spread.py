"""Injectate spread: a hypoechoic pool growing at the needle tip after injection starts.

The pool is what got *darker* than the frames just before the injection
(:func:`~archive.analysis.proposals.background.darkening`, probe motion
removed). In a box of ``spread_radius`` around the tip the smoothed
darkening is split into pool and tissue by
:func:`skimage.segmentation.morphological_chan_vese`, started from the pool of
the previous frame (or a small disk at the tip). The pool is constrained to
grow: the result is the component touching the tip region, united with every
earlier frame's pool (kept in the reference frame's coordinates, so probe
motion does not smear it), holes filled.

Onset (when the injection start event is not given): once the tip has been
at rest for ``rest_frames`` frames, those frames become the reference, and the
first later frame whose darkened area next to the tip exceeds
``spread_min_area`` is the injection start.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.segmentation import morphological_chan_vese

from archive.analysis.proposals.params import PixelParameters

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]

#: Chan-Vese iterations per frame (the level set starts from the previous pool).
CHAN_VESE_ITERATIONS = 12
#: Darkening threshold of the onset test, in robust standard deviations.
ONSET_K = 4.0


def shift_mask(mask: Mask, d_row: int, d_col: int) -> Mask:
    """A mask moved by ``(d_row, d_col)``; pixels moved in from outside are False."""
    if d_row == 0 and d_col == 0:
        return mask
    out = np.zeros_like(mask)
    rows, cols = mask.shape
    r0, r1 = max(0, d_row), min(rows, rows + d_row)
    c0, c1 = max(0, d_col), min(cols, cols + d_col)
    out[r0:r1, c0:c1] = mask[r0 - d_row : r1 - d_row, c0 - d_col : c1 - d_col]
    return out


def tip_box(shape: tuple[int, int], tip: tuple[float, float], radius: float) -> tuple[slice, slice]:
    """Box of half size ``radius`` around ``tip``, clipped to ``shape``."""
    r, c = round(tip[0]), round(tip[1])
    h = round(radius)
    return (
        slice(max(0, r - h), min(shape[0], r + h + 1)),
        slice(max(0, c - h), min(shape[1], c + h + 1)),
    )


def smooth_darkening(darkening: F32, params: PixelParameters) -> F32:
    """Darkening smoothed at twice the shaft scale (a pool is broad, speckle is fine)."""
    out: F32 = ndimage.gaussian_filter(darkening, 2.0 * params.shaft_sigma)
    return out


def onset_area(smoothed: F32, tip: tuple[float, float], params: PixelParameters) -> float:
    """Darkened area (pixels) connected to the tip's neighbourhood, for the onset test."""
    box = tip_box((smoothed.shape[0], smoothed.shape[1]), tip, params.spread_radius)
    patch = smoothed[box]
    median = float(np.median(patch))
    sigma = max(0.5, 1.4826 * float(np.median(np.abs(patch - median))))
    dark = patch > median + ONSET_K * sigma
    return float(np.count_nonzero(_near_tip(dark, tip, box, params)))


def _near_tip(
    mask: Mask, tip: tuple[float, float], box: tuple[slice, slice], params: PixelParameters
) -> Mask:
    """Components of ``mask`` (a box crop) that come within a few shaft scales of the tip."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    r = tip[0] - box[0].start
    c = tip[1] - box[1].start
    reach = max(3.0, 6.0 * params.shaft_sigma)
    rows, cols = np.ogrid[0 : mask.shape[0], 0 : mask.shape[1]]
    near = (rows - r) ** 2 + (cols - c) ** 2 <= reach**2
    keep = np.unique(labels[near & mask])
    out: Mask = np.isin(labels, keep[keep > 0])
    return out


def segment_spread(
    smoothed: F32,
    tip: tuple[float, float],
    grown: Mask | None,
    shift: tuple[int, int],
    params: PixelParameters,
) -> Mask:
    """The pool in one frame, constrained to contain every earlier frame's pool.

    Parameters
    ----------
    smoothed : ndarray of shape (rows, cols), float32
        :func:`smooth_darkening` of this frame (frame coordinates).
    tip : tuple of float
        Tip ``(row, col)`` in frame coordinates (the seed).
    grown : ndarray of bool or None
        Union of the earlier pools in reference coordinates, or None.
    shift : tuple of int
        Motion of this frame against the reference.
    params : PixelParameters
        Scales in pixels.

    Returns
    -------
    ndarray of shape (rows, cols), bool
        The pool so far, in *reference* coordinates (shift by ``shift`` to draw it on the frame).
    """
    shape = smoothed.shape
    box = tip_box((shape[0], shape[1]), tip, params.spread_radius)
    patch = smoothed[box]
    previous = None if grown is None else shift_mask(grown, *shift)[box]
    if previous is not None and previous.any():
        init = previous
    else:
        rows, cols = np.ogrid[0 : patch.shape[0], 0 : patch.shape[1]]
        r, c = tip[0] - box[0].start, tip[1] - box[1].start
        init = (rows - r) ** 2 + (cols - c) ** 2 <= max(3.0, 3.0 * params.shaft_sigma) ** 2
    scale = max(float(np.percentile(patch, 99)), 1e-3)
    level = morphological_chan_vese(  # type: ignore[no-untyped-call]
        patch / scale, num_iter=CHAN_VESE_ITERATIONS, init_level_set=init.astype(np.int8), smoothing=1
    ).astype(bool)
    if level.any() and float(patch[level].mean()) < float(patch[~level].mean() if (~level).any() else 0.0):
        level = ~level  # the pool is the darker-than-before phase
    pool = _near_tip(level, tip, box, params)
    if previous is not None:
        pool |= previous
    pool = ndimage.binary_fill_holes(pool)
    frame_mask = np.zeros(shape, dtype=bool)
    frame_mask[box] = pool
    result = shift_mask(frame_mask, -shift[0], -shift[1])
    if grown is not None:
        result |= grown
    return result
