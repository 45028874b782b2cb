"""In-plane needle: shaft line and tip in one frame's brightening image.

Steps (after :mod:`~archive.analysis.proposals.background` has removed the
static scene):

1. smooth the brightening with a Gaussian of the shaft scale; candidate
   pixels are those well above the frame's noise (median + k·MAD) — inside
   the band around the tracker's predicted line, when there is one;
2. a ridge filter (:func:`skimage.filters.sato`, bright ridges) on the
   candidates' bounding box keeps line-like structures and suppresses blobs;
3. :func:`skimage.measure.ransac` with :class:`~skimage.measure.LineModelND`
   fits the shaft to the strongest ridge pixels;
4. reverberation copies lie *below* the shaft and parallel to it: parallel
   lines up to ``reverb_search`` above the fit are scored and the shallowest
   one nearly as strong as the best is taken;
5. the smoothed brightening is sampled along the line; the shaft spans where
   it stays above half the shaft level (gaps up to ``tip_gap`` bridged), the
   tip is its deep end (the half-maximum of a blurred line end is the end).

Coordinates are ``(row, col)`` pixels of the array given (the region).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.filters import sato
from skimage.measure import LineModelND, ransac

from archive.analysis.proposals.params import PixelParameters

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Candidate threshold in robust standard deviations above the median.
CANDIDATE_K = 4.0
#: RANSAC sees only pixels above this fraction of the strongest change (the needle is the brightest).
PEAK_FRACTION = 0.55
#: Lines tried per frame (sequential RANSAC: each next one on the points the previous left).
LINE_CANDIDATES = 3
#: Contrast (noise units) of a line so clear that no further line is tried.
CLEAR_CONTRAST = 15.0
#: RANSAC trials per line.
RANSAC_TRIALS = 40
#: Most ridge pixels given to RANSAC (the strongest are kept).
MAX_RANSAC_POINTS = 600
#: A parallel line counts as the shaft above its reverberations at this fraction of the best.
REVERB_FRACTION = 0.6
#: Most ridge pixels the angle refinement projects.
MAX_ANGLE_POINTS = 1500
#: Angles tried around the RANSAC fit by the refinement: half range and step, degrees.
ANGLE_SEARCH_DEG = (6.0, 0.25)
#: A parallel line below the shaft counts as its reverberation copy from this fraction of its level.
COPY_FRACTION = 0.3
#: Fewest reverberation copies that may stand in for a hidden stretch of the shaft.
MIN_COPIES = 2
#: Plausible in-plane shaft angles to the image rows, degrees.
ANGLE_RANGE_DEG = (3.0, 85.0)


@dataclass(frozen=True)
class ShaftMeasurement:
    """One frame's in-plane needle measurement, region pixels.

    Attributes
    ----------
    entry, tip : tuple of float
        Superficial and deep end of the visible shaft, ``(row, col)``.
    angle_deg : float
        Direction of the shaft from entry to tip, ``atan2(d_row, d_col)`` in
        degrees (rows grow downwards, so a descending shaft has a positive angle).
    contrast : float
        Shaft level over the off-line level, in noise units.
    """

    entry: tuple[float, float]
    tip: tuple[float, float]
    angle_deg: float
    contrast: float

    @property
    def length(self) -> float:
        """Visible shaft length in pixels."""
        return math.hypot(self.tip[0] - self.entry[0], self.tip[1] - self.entry[1])


@dataclass(frozen=True)
class LinePrior:
    """Where the tracker expects the shaft: a point on it and its direction angle (degrees)."""

    point: tuple[float, float]
    angle_deg: float


def smooth(brightening: F32, params: PixelParameters) -> F32:
    """The brightening smoothed at the shaft scale."""
    out: F32 = ndimage.gaussian_filter(brightening, params.shaft_sigma * 0.7)
    return out


def noise_level(smoothed: F32, valid: npt.NDArray[np.bool_] | None = None) -> tuple[float, float]:
    """Robust ``(median, sigma)`` of a smoothed brightening (MAD × 1.4826, floored)."""
    sample = smoothed[::3, ::3] if valid is None else smoothed[valid][::9]
    median = float(np.median(sample))
    mad = float(np.median(np.abs(sample - median))) * 1.4826
    return median, max(mad, 0.5)


def measure_shaft(
    smoothed: F32,
    params: PixelParameters,
    *,
    noise: tuple[float, float],
    prior: LinePrior | None = None,
    occluded: npt.NDArray[np.bool_] | None = None,
    rng: np.random.Generator | None = None,
) -> ShaftMeasurement | None:
    """Fit the shaft and find the tip in one frame.

    Parameters
    ----------
    smoothed : ndarray of shape (rows, cols), float32
        Output of :func:`smooth`.
    params : PixelParameters
        Scales in pixels.
    noise : tuple of float
        ``(median, sigma)`` of the smoothed brightening (:func:`noise_level`).
    prior : LinePrior, optional
        Search only within ``params.search_radius`` of this line.
    occluded : ndarray of shape (rows, cols), bool, optional
        Where the background is so bright that a needle crossing it adds no
        visible change (fascia, bone surface); the walk to the tip bridges
        these stretches, but the tip is never put inside one.
    rng : numpy.random.Generator, optional
        RANSAC's sampling (deterministic by default).

    Returns
    -------
    ShaftMeasurement or None
        None when no line-like brightening is found.
    """
    median, sigma = noise
    candidates = smoothed > median + CANDIDATE_K * sigma
    if prior is not None:
        candidates &= _band(smoothed.shape, prior, params.search_radius)
    if np.count_nonzero(candidates) < params.min_shaft:
        return None
    box = _box(candidates, pad=int(3 * params.shaft_sigma) + 2)
    ridge = sato(smoothed[box], sigmas=[params.shaft_sigma], black_ridges=False, mode="nearest")  # type: ignore[no-untyped-call]
    ridge_full = np.zeros(smoothed.shape, dtype=np.float32)
    ridge_full[box] = ridge
    peak = float(smoothed[candidates].max())
    strong = candidates & (ridge_full > 0.25 * float(ridge.max())) & (smoothed > PEAK_FRACTION * peak)
    rows, cols = np.nonzero(strong)
    if rows.size < max(4, params.min_shaft):
        return None
    weights = smoothed[rows, cols]
    if rows.size > MAX_RANSAC_POINTS:
        keep = np.argsort(weights)[-MAX_RANSAC_POINTS:]
        rows, cols, weights = rows[keep], cols[keep], weights[keep]
    points = np.column_stack([rows, cols]).astype(np.float64)
    # the angle refinement sees every ridge pixel of the frame, not only the strongest
    c_rows, c_cols = np.nonzero(candidates & (ridge_full > 0.25 * float(ridge.max())))
    if c_rows.size > MAX_ANGLE_POINTS:
        pick = np.linspace(0, c_rows.size - 1, MAX_ANGLE_POINTS).astype(np.intp)
        c_rows, c_cols = c_rows[pick], c_cols[pick]
    candidate_points = np.column_stack([c_rows, c_cols]).astype(np.float64)
    candidate_weights = smoothed[c_rows, c_cols].astype(np.float64)
    generator = rng if rng is not None else np.random.default_rng(0)
    best: ShaftMeasurement | None = None
    for _ in range(LINE_CANDIDATES):
        found = _fit_line(points, params, generator)
        if found is None:
            break
        origin, direction, inliers = found
        direction = _sharpest_direction(origin, direction, candidate_points, candidate_weights, params)
        origin, copies = _shallowest_parallel(smoothed, origin, direction, points[inliers], params, noise)
        measured = _walk_to_tip(smoothed, origin, direction, points[inliers], params, noise, occluded, copies)
        if measured is not None and (best is None or measured.contrast > best.contrast):
            best = measured
        if prior is not None or (best is not None and best.contrast >= CLEAR_CONTRAST):
            break
        points = points[~inliers]
        if len(points) < max(4, params.min_shaft):
            break
    return best


def _plausible(model: LineModelND, *data: F64) -> bool:
    """RANSAC model check: an in-plane shaft is neither horizontal nor vertical."""
    # skimage >= 0.26 names it ``direction``; ``params[1]`` before (deprecated since)
    direction = np.asarray(model.direction if hasattr(model, "direction") else model.params[1])
    angle = abs(math.degrees(math.atan2(abs(direction[0]), abs(direction[1]))))
    return ANGLE_RANGE_DEG[0] <= angle <= ANGLE_RANGE_DEG[1]


def _fit_line(
    points: F64, params: PixelParameters, rng: np.random.Generator
) -> tuple[F64, F64, npt.NDArray[np.bool_]] | None:
    """One RANSAC line (centroid, unit direction pointing deeper, inlier mask) or None."""
    with warnings.catch_warnings():
        # "Estimated model is not valid": no plausible line among the trials, handled below
        warnings.simplefilter("ignore", UserWarning)
        model, inliers = ransac(  # type: ignore[no-untyped-call]
            points,
            LineModelND,
            min_samples=2,
            residual_threshold=params.line_tolerance,
            max_trials=RANSAC_TRIALS,
            is_model_valid=_plausible,
            rng=rng,
        )
    if model is None or inliers is None or np.count_nonzero(inliers) < max(4, params.min_shaft):
        return None
    origin, direction = _line_of(model, points[inliers])
    if direction[0] < 0:
        direction = -direction
    return origin, direction, inliers


def _line_of(model: LineModelND, inlier_points: F64) -> tuple[F64, F64]:
    """Total-least-squares refit of the line to the inliers: (centroid, unit direction)."""
    centre = inlier_points.mean(axis=0)
    _, _, vt = np.linalg.svd(inlier_points - centre, full_matrices=False)
    direction = vt[0] / np.linalg.norm(vt[0])
    del model
    return centre, direction


def _band(shape: tuple[int, ...], prior: LinePrior, radius: float) -> npt.NDArray[np.bool_]:
    rows, cols = np.ogrid[0 : shape[0], 0 : shape[1]]
    rad = math.radians(prior.angle_deg)
    normal = (math.cos(rad), -math.sin(rad))  # perpendicular to (sin, cos) in (row, col)
    distance = (rows - prior.point[0]) * normal[0] + (cols - prior.point[1]) * normal[1]
    band: npt.NDArray[np.bool_] = np.abs(distance) <= radius
    return band


def _box(mask: npt.NDArray[np.bool_], pad: int) -> tuple[slice, slice]:
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    return (
        slice(max(0, int(rows[0]) - pad), min(mask.shape[0], int(rows[-1]) + pad + 1)),
        slice(max(0, int(cols[0]) - pad), min(mask.shape[1], int(cols[-1]) + pad + 1)),
    )


def _sample(image: F32, rows: F64, cols: F64) -> F64:
    values: F64 = ndimage.map_coordinates(image, [rows, cols], order=1, mode="constant", cval=0.0)
    return values


def _normal_up(direction: F64) -> F64:
    """Unit normal of the line pointing up (towards smaller rows)."""
    normal = np.array([-direction[1], direction[0]])
    return -normal if normal[0] > 0 else normal


def _sharpest_direction(
    origin: F64, direction: F64, points: F64, weights: F64, params: PixelParameters
) -> F64:
    """The direction near the fit along which the ridge pixels stack up sharpest.

    The shaft and its reverberation copies are exactly parallel; a fit that
    joins the shaft's near part to a copy's far part (the copies are brighter
    over an acoustic shadow) is tilted against all of them. Projected onto the
    normal of the right direction the ridge pixels pile up in narrow peaks
    (one per copy), so the weighted sum of squares of that projection's
    histogram is largest there (a local Radon transform around the fit).
    """
    if len(points) < 8:
        return direction
    rel = points - origin
    half = params.reverb_search + 2.0 * params.line_tolerance
    bin_size = max(0.5, 0.5 * params.line_tolerance)
    base = math.atan2(direction[0], direction[1])
    width, step = ANGLE_SEARCH_DEG

    def sharpness(delta: float) -> float:
        angle = base + math.radians(delta)
        offset = rel @ np.array([-math.cos(angle), math.sin(angle)])
        near = np.abs(offset) <= half
        bins = np.floor((offset[near] + half) / bin_size).astype(np.intp)
        return float(np.sum(np.bincount(bins, weights=weights[near]) ** 2))

    # coarse to fine: whole degrees over the range, then quarter steps around the best
    coarse = max(np.arange(-width, width + 0.5, 1.0), key=lambda d: sharpness(float(d)))
    fine = max(np.arange(coarse - 1.0, coarse + 1.0 + 0.5 * step, step), key=lambda d: sharpness(float(d)))
    angle = base + math.radians(float(fine))
    best = np.array([math.sin(angle), math.cos(angle)])
    if best[0] < 0:
        best = -best
    return best


def _shallowest_parallel(
    smoothed: F32,
    origin: F64,
    direction: F64,
    span_points: F64,
    params: PixelParameters,
    noise: tuple[float, float],
) -> tuple[F64, list[F64]]:
    """The shaft among the parallel lines around the fit, and its reverberation copies below it.

    Returns the line's new origin (moved up to the shaft if the fit locked
    onto a reverberation copy) and the displacements (rows down the beam,
    same columns) of the copies found below the shaft (each a local maximum of the level over the
    normal offset, at least :data:`COPY_FRACTION` of the shaft's level above
    the noise).
    """
    along = (span_points - origin) @ direction
    s = np.linspace(float(along.min()), float(along.max()), 48)
    normal = _normal_up(direction)
    step = max(0.5, 0.5 * params.shaft_sigma)
    offsets = np.arange(-params.reverb_search, params.reverb_search + 0.5 * step, step)
    grid = origin + np.outer(s, direction)[None] + offsets[:, None, None] * normal
    values = _sample(smoothed, grid[..., 0].ravel(), grid[..., 1].ravel()).reshape(len(offsets), len(s))
    # the 75th percentile: a copy bright over only part of the line still counts
    level = np.percentile(values, 75, axis=1)
    peaks = [
        k
        for k in range(len(level))
        if level[k] >= (level[k - 1] if k > 0 else -np.inf)
        and level[k] >= (level[k + 1] if k + 1 < len(level) else -np.inf)
    ]
    at_fit = int(np.argmin(np.abs(offsets)))
    best = float(level[offsets >= -0.5 * step].max())
    # the shallowest strong maximum at or above the fit (reverberations lie below the shaft)
    chosen = max(
        (k for k in peaks if offsets[k] >= -step and level[k] >= REVERB_FRACTION * best),
        key=lambda k: offsets[k],
        default=at_fit,
    )
    median = noise[0]
    floor = median + COPY_FRACTION * (level[chosen] - median)
    # a copy is the shaft moved down the beam (along the columns): the same columns, rows lower
    copies = [
        np.array([(offsets[chosen] - offsets[k]) / max(abs(float(normal[0])), 0.2), 0.0])
        for k in peaks
        if offsets[k] < offsets[chosen] - 1.5 * params.shaft_sigma and level[k] >= floor
    ]
    result: F64 = origin + offsets[chosen] * normal
    return result, copies


def _walk_to_tip(
    smoothed: F32,
    origin: F64,
    direction: F64,
    inliers: F64,
    params: PixelParameters,
    noise: tuple[float, float],
    occluded: npt.NDArray[np.bool_] | None,
    copies: list[F64] | None = None,
) -> ShaftMeasurement | None:
    """Find the visible span of the shaft along the line; None if too short or too faint.

    The shaft spans where its profile, or the median profile of its
    reverberation copies (at least :data:`MIN_COPIES`; each sampled at the
    same columns ``copies`` rows lower, as its excess over the level half a
    copy spacing above and below it), stays above half its level (the
    shaft's own level, or the copy's where the copy is brighter). Copies over
    an acoustic shadow show the shaft's far end where the shaft itself lies
    on a bright echo (bone surface) and barely changes the image; copies
    weaker than the shaft extend it only where they are as bright as half
    the shaft.
    """
    along = (inliers - origin) @ direction
    rows, cols = smoothed.shape
    reach = float(np.hypot(rows, cols))
    step = 0.5
    s = np.arange(float(along.min()) - reach, float(along.max()) + reach, step)
    points = origin + np.outer(s, direction)
    inside = (
        (points[:, 0] >= 0) & (points[:, 0] <= rows - 1) & (points[:, 1] >= 0) & (points[:, 1] <= cols - 1)
    )
    s, points = s[inside], points[inside]
    if s.size < 4:
        return None
    profile = _sample(smoothed, points[:, 0], points[:, 1])
    core = (s >= along.min()) & (s <= along.max())
    if not core.any():
        return None
    median, sigma = noise
    level = float(np.percentile(profile[core], 75))
    if level - median < CANDIDATE_K * sigma:
        return None
    profile = (profile - median) / (level - median)
    if copies is not None and len(copies) >= MIN_COPIES:
        lines = []
        # a copy counts where it is a ridge down the beam: above the level half a copy spacing off it
        half_gap = np.array([0.5 * min(float(c[0]) for c in copies), 0.0])
        for copy in copies:
            moved = points + copy
            line = _sample(smoothed, moved[:, 0], moved[:, 1])
            above_it, below_it = moved - half_gap, moved + half_gap
            beside = np.maximum(
                _sample(smoothed, above_it[:, 0], above_it[:, 1]),
                _sample(smoothed, below_it[:, 0], below_it[:, 1]),
            )
            ridge = np.maximum(line - beside, 0.0) + median
            copy_level = max(level, float(np.percentile(ridge[core], 75)))
            lines.append((ridge - median) / (copy_level - median))
        # the median over the copies: one stray echo next to one copy (a bone surface) does not count
        profile = np.maximum(profile, np.median(np.array(lines), axis=0))
    half = 0.5
    above = profile >= half
    # the connected run (gaps bridged) containing the strongest core sample
    gap = math.ceil(params.tip_gap / step)
    hidden = np.zeros_like(above)
    if occluded is not None:
        hidden = ndimage.map_coordinates(occluded, [points[:, 0], points[:, 1]], order=0).astype(bool)
    bridged = ndimage.binary_closing(above | hidden, structure=np.ones(2 * gap + 1, dtype=bool)) | above
    labels, _ = ndimage.label(bridged)
    seed = int(np.argmax(np.where(core, profile, -np.inf)))
    run = np.nonzero((labels == labels[seed]) & above)[0]
    first, last = int(run[0]), int(run[-1])
    # sub-sample crossing of the half level at both ends
    s_entry = _crossing(s, profile, half, first, -1)
    s_tip = _crossing(s, profile, half, last, +1)
    if s_tip - s_entry < params.min_shaft:
        return None
    entry = origin + s_entry * direction
    tip = origin + s_tip * direction
    off = _off_line_level(smoothed, origin, direction, s_entry, s_tip, params)
    contrast = (level - off) / sigma
    angle = math.degrees(math.atan2(direction[0], direction[1]))
    return ShaftMeasurement(
        entry=(float(entry[0]), float(entry[1])),
        tip=(float(tip[0]), float(tip[1])),
        angle_deg=angle,
        contrast=float(contrast),
    )


def _crossing(s: F64, profile: F64, half: float, index: int, side: int) -> float:
    """Interpolated position where the profile crosses ``half`` just beyond ``index`` on ``side``."""
    nxt = index + side
    if nxt < 0 or nxt >= len(s):
        return float(s[index])
    a, b = float(profile[index]), float(profile[nxt])
    if a == b:
        return float(s[index])
    frac = min(1.0, max(0.0, (a - half) / (a - b)))
    return float(s[index] + frac * (s[nxt] - s[index]))


def _off_line_level(
    smoothed: F32, origin: F64, direction: F64, s0: float, s1: float, params: PixelParameters
) -> float:
    """Median brightening on lines 3 shaft scales above the shaft (reverberations lie below)."""
    normal = np.array([-direction[1], direction[0]])
    if normal[0] > 0:
        normal = -normal
    s = np.linspace(s0, s1, 32)
    values = []
    for offset in (3.0 * params.shaft_sigma + 2.0, 5.0 * params.shaft_sigma + 3.0):
        points = origin + np.outer(s, direction) + offset * normal
        values.append(_sample(smoothed, points[:, 0], points[:, 1]))
    return float(np.median(np.concatenate(values)))
