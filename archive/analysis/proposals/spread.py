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
from skimage.measure import EllipseModel
from skimage.segmentation import morphological_chan_vese

from archive.analysis.proposals.params import PixelParameters

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]

#: Chan-Vese iterations per frame (the level set starts from the previous pool).
CHAN_VESE_ITERATIONS = 12
#: Seed of the pool: darkening above this fraction of its peak (over the median).
SEED_FRACTION = 0.5
#: Largest growth of the pool in one frame relative to its seed; beyond it the contour leaked.
RUNAWAY_FACTOR = 3.0
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
    return float(np.count_nonzero(_near_tip(dark, tip, box, params, reach=params.spread_reach)))


def _near_tip(
    mask: Mask,
    tip: tuple[float, float],
    box: tuple[slice, slice],
    params: PixelParameters,
    reach: float | None = None,
) -> Mask:
    """Components of ``mask`` (a box crop) within ``reach`` (default a few shaft scales) of the tip."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    r = tip[0] - box[0].start
    c = tip[1] - box[1].start
    if reach is None:
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
    hidden: Mask | None = None,
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
    hidden : ndarray of shape (rows, cols), bool, optional
        Where this frame got brighter (the needle): no darkening can show
        there, so the pool's shape is completed under it (see
        :func:`_complete_under_needle`).

    Returns
    -------
    ndarray of shape (rows, cols), bool
        The pool so far, in *reference* coordinates (shift by ``shift`` to draw it on the frame).
    """
    shape = smoothed.shape
    box = tip_box((shape[0], shape[1]), tip, params.spread_radius)
    patch = smoothed[box]
    if hidden is not None and hidden[box].any():
        patch = _fill_hidden(patch, hidden[box], params.spread_reach)
    previous = None if grown is None else shift_mask(grown, *shift)[box]
    median = float(np.median(patch))
    sigma = max(0.5, 1.4826 * float(np.median(np.abs(patch - median))))
    peak = float(np.percentile(patch, 99.5))
    seed = np.zeros(patch.shape, dtype=bool)
    if peak - median >= ONSET_K * sigma:
        threshold = max(median + ONSET_K * sigma, median + SEED_FRACTION * (peak - median))
        seed = _near_tip(patch > threshold, tip, box, params, reach=params.spread_reach)
    init = seed if previous is None else seed | previous
    if not init.any():
        level = init
    else:
        scale = max(peak, 1e-3)
        level = morphological_chan_vese(  # type: ignore[no-untyped-call]
            patch / scale,
            num_iter=CHAN_VESE_ITERATIONS,
            init_level_set=init.astype(np.int8),
            smoothing=2,
            lambda1=1.0,
            lambda2=_variance_ratio(patch, init),
        ).astype(bool)
        if level.any() and (~level).any() and float(patch[level].mean()) < float(patch[~level].mean()):
            level = ~level  # the pool is the darker-than-before phase
        # the contour may leak into speckle; a pool does not triple its area in one frame
        if np.count_nonzero(level) > RUNAWAY_FACTOR * np.count_nonzero(init):
            level = init
    # the needle may cut the pool in parts: keep every part that comes near the tip
    pool = _near_tip(level, tip, box, params, reach=params.spread_reach)
    if hidden is not None:
        pool |= _complete_under_needle(pool, hidden[box])
    if previous is not None:
        pool |= previous
    pool = ndimage.binary_fill_holes(pool)
    frame_mask = np.zeros(shape, dtype=bool)
    frame_mask[box] = pool
    result = shift_mask(frame_mask, -shift[0], -shift[1])
    if grown is not None:
        result |= grown
    return result


#: Bounds of the Chan-Vese weight ratio (pool variance over background variance).
VARIANCE_RATIO_BOUNDS = (1.0, 16.0)


def _variance_ratio(patch: F32, pool: Mask) -> float:
    """Chan-Vese weight of the background phase relative to the pool's: their variance ratio.

    Chan-Vese is the maximum-likelihood split of two Gaussian phases when
    each phase's weight is the inverse of its variance. The darkening inside
    a pool varies with the echo of the tissue it replaced; outside it is
    zero-mean noise. Equal weights put the boundary halfway between the
    phase means and cut off the pool's weaker parts; the ratio, measured on
    the current pool and its box, puts it where the likelihoods meet.
    """
    if not pool.any() or pool.all():
        return 1.0
    inside = float(np.var(patch[pool]))
    outside = max(float(np.var(patch[~pool])), 1e-6)
    low, high = VARIANCE_RATIO_BOUNDS
    return float(np.clip(inside / outside, low, high))


#: Smallest pool (pixels) whose shape is completed under the needle.
MIN_COMPLETION_PIXELS = 24
#: Largest completed area relative to the seen pool.
MAX_COMPLETION_RATIO = 1.8


def _fill_hidden(patch: F32, hidden: Mask, sigma: float) -> F32:
    """Darkening under the needle replaced by the mean of what is seen around it.

    Normalised convolution: a Gaussian-weighted mean of the pixels not under
    the needle, so the contour can grow across the needle where the pool
    lies on both sides, instead of stopping at it.
    """
    seen = (~hidden).astype(np.float32)
    numerator = ndimage.gaussian_filter(patch * seen, sigma)
    denominator = ndimage.gaussian_filter(seen, sigma)
    filled = np.where(hidden, numerator / np.maximum(denominator, np.float32(1e-3)), patch)
    out: F32 = filled.astype(np.float32)
    return out


def _complete_under_needle(pool: Mask, hidden: Mask) -> Mask:
    """Pool pixels hidden under the needle, from an ellipse fitted to the pool's seen edge.

    Where the needle (or its reverberation) crosses the pool, the image got
    brighter, not darker, so the pool's edge there is not an edge of the
    pool. An ellipse is fitted (:class:`skimage.measure.EllipseModel`) to the
    edge pixels away from the needle; its pixels under the needle are
    returned. Bone and shadow are *not* completed: injectate does not enter bone.
    """
    empty = np.zeros_like(pool)
    if np.count_nonzero(pool) < MIN_COMPLETION_PIXELS or not hidden.any():
        return empty
    edge = pool & ~ndimage.binary_erosion(pool)
    near_needle = ndimage.binary_dilation(hidden, iterations=2)
    free = edge & ~near_needle
    rows, cols = np.nonzero(free)
    if rows.size < 8 or np.count_nonzero(edge & near_needle) == 0:
        return empty
    fitted = _fit_ellipse(np.column_stack([cols, rows]).astype(np.float64))
    if fitted is None:
        return empty
    xc, yc, a, b, theta = fitted
    grid_r, grid_c = np.mgrid[0 : pool.shape[0], 0 : pool.shape[1]]
    dx, dy = grid_c - xc, grid_r - yc
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    inside = (u / max(a, 1e-6)) ** 2 + (v / max(b, 1e-6)) ** 2 <= 1.0
    if np.count_nonzero(inside) > MAX_COMPLETION_RATIO * np.count_nonzero(pool):
        return empty
    completed: Mask = inside & ndimage.binary_dilation(hidden, iterations=2)
    return completed


def _fit_ellipse(points: npt.NDArray[np.float64]) -> tuple[float, float, float, float, float] | None:
    """``(xc, yc, a, b, theta)`` of the ellipse through ``points`` (x, y), or None.

    scikit-image 0.26 replaced ``EllipseModel().estimate`` by
    ``EllipseModel.from_estimate``; both are handled here, in one place.
    """
    if hasattr(EllipseModel, "from_estimate"):
        model = EllipseModel.from_estimate(points)  # type: ignore[no-untyped-call]
        if not model:
            return None
        (xc, yc), (a, b), theta = model.center, model.axis_lengths, model.theta
    else:  # pragma: no cover - scikit-image < 0.26
        model = EllipseModel()
        if not model.estimate(points):
            return None
        xc, yc, a, b, theta = model.params
    values = (float(xc), float(yc), float(a), float(b), float(theta))
    if not all(np.isfinite(values)):
        return None
    return values
