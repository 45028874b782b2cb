"""Background subtraction: what changed in a frame against a reference, probe motion removed.

The needle and the injectate are what *changes* in a clip; tissue, fascia
and bone (with its shadow) stay. A reference image (the median of frames in
which the needle is not yet in, or of frames before injection) is aligned to
each frame by phase correlation (the probe moves by hand), widened by a 3×3
grey dilation (or erosion, for darkening) so that sub-pixel motion and
speckle flicker do not show as change, and subtracted. The median of the
difference is removed, which cancels a global gain change (log-compressed
images turn a gain change into an offset).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.registration import phase_cross_correlation

F32 = npt.NDArray[np.float32]

#: Largest probe motion followed by the registration, as a fraction of the region size.
MAX_SHIFT_FRACTION = 0.1


#: Working pixel size the frames are reduced to (block means) when finer, mm.
WORKING_SPACING_MM = 0.3


def working_factor(spacing_mm: tuple[float, float] | None) -> int:
    """Integer block size that brings the pixels near :data:`WORKING_SPACING_MM` (1 if uncalibrated).

    A needle echo is about 0.5-1 mm thick; finer pixels only cost time.
    """
    if spacing_mm is None:
        return 1
    return max(1, round(WORKING_SPACING_MM / max(spacing_mm)))


def downsample(image: npt.NDArray[np.uint8], factor: int) -> F32:
    """Block means of ``factor`` × ``factor`` pixels (partial blocks at the edge dropped), float32."""
    if factor == 1:
        return image.astype(np.float32)
    rows, cols = image.shape[0] // factor, image.shape[1] // factor
    total = np.zeros((rows, cols), dtype=np.uint16)
    for dr in range(factor):
        for dc in range(factor):
            total += image[dr : rows * factor : factor, dc : cols * factor : factor]
    reduced: F32 = total.astype(np.float32) * np.float32(1.0 / factor**2)
    return reduced


def reference_image(frames: npt.NDArray[np.uint8] | F32) -> F32:
    """Pixel-wise median of a stack of frames.

    Parameters
    ----------
    frames : ndarray of shape (N, rows, cols)
        N ≥ 1 frames of the region.

    Returns
    -------
    ndarray of shape (rows, cols), float32
    """
    median: F32 = np.median(np.asarray(frames, dtype=np.float32), axis=0).astype(np.float32)
    return median


def estimate_shift(reference: F32, frame: F32) -> tuple[int, int]:
    """Integer ``(d_row, d_col)`` by which the content of ``frame`` is moved against ``reference``.

    Registration runs at half resolution (phase correlation), then the shift
    is refined by one full-resolution step of ±1 pixel; shifts beyond
    :data:`MAX_SHIFT_FRACTION` of the region are treated as no motion.
    """
    small_ref = reference[::2, ::2]
    small = frame[::2, ::2]
    shift, _, _ = phase_cross_correlation(small_ref, small, normalization=None)  # type: ignore[no-untyped-call]
    d_row, d_col = (-2 * round(float(s)) for s in shift)
    rows, cols = reference.shape
    if abs(d_row) > MAX_SHIFT_FRACTION * rows or abs(d_col) > MAX_SHIFT_FRACTION * cols:
        return 0, 0
    best = (np.inf, d_row, d_col)
    for dr in (d_row - 1, d_row, d_row + 1):
        for dc in (d_col - 1, d_col, d_col + 1):
            cost = _mismatch(reference, frame, dr, dc)
            if cost < best[0]:
                best = (cost, dr, dc)
    return best[1], best[2]


def _mismatch(reference: F32, frame: F32, d_row: int, d_col: int) -> float:
    """Mean absolute difference on a coarse grid of the overlap of frame and shifted reference."""
    a, b = _overlap(reference, frame, d_row, d_col)
    return float(np.mean(np.abs(a[::3, ::3] - b[::3, ::3])))


def _overlap(reference: F32, frame: F32, d_row: int, d_col: int) -> tuple[F32, F32]:
    rows, cols = reference.shape
    r0, r1 = max(0, d_row), min(rows, rows + d_row)
    c0, c1 = max(0, d_col), min(cols, cols + d_col)
    return reference[r0 - d_row : r1 - d_row, c0 - d_col : c1 - d_col], frame[r0:r1, c0:c1]


def shift_image(image: F32, d_row: int, d_col: int) -> F32:
    """``image`` moved by ``(d_row, d_col)``; uncovered pixels repeat the nearest edge."""
    if d_row == 0 and d_col == 0:
        return image
    rows, cols = image.shape
    row_index = np.clip(np.arange(rows) - d_row, 0, rows - 1)
    col_index = np.clip(np.arange(cols) - d_col, 0, cols - 1)
    moved: F32 = image[np.ix_(row_index, col_index)]
    return moved


def brightening(reference_dilated: F32, frame: F32, shift: tuple[int, int]) -> F32:
    """How much brighter ``frame`` is than the aligned reference, gain offset removed.

    Parameters
    ----------
    reference_dilated : ndarray of shape (rows, cols), float32
        The reference after :func:`widen` with ``brighter=True``.
    frame : ndarray of shape (rows, cols), float32
        The frame's region.
    shift : tuple of int
        From :func:`estimate_shift`.

    Returns
    -------
    ndarray of shape (rows, cols), float32
        Positive where something bright appeared; zero elsewhere.
    """
    diff = frame - shift_image(reference_dilated, *shift)
    diff -= np.float32(np.median(diff[::4, ::4]))
    out: F32 = np.maximum(diff, np.float32(0.0))
    _clear_uncovered(out, shift)
    return out


def darkening(reference_eroded: F32, frame: F32, shift: tuple[int, int]) -> F32:
    """How much darker ``frame`` is than the aligned reference (positive numbers), gain offset removed."""
    diff = shift_image(reference_eroded, *shift) - frame
    diff -= np.float32(np.median(diff[::4, ::4]))
    out: F32 = np.maximum(diff, np.float32(0.0))
    _clear_uncovered(out, shift)
    return out


def _clear_uncovered(diff: F32, shift: tuple[int, int]) -> None:
    """Zero the edge bands the shifted reference does not cover (it repeats its edge there)."""
    d_row, d_col = shift
    band_r, band_c = abs(d_row) + 1 if d_row else 0, abs(d_col) + 1 if d_col else 0
    if d_row > 0:
        diff[:band_r] = 0.0
    elif d_row < 0:
        diff[-band_r:] = 0.0
    if d_col > 0:
        diff[:, :band_c] = 0.0
    elif d_col < 0:
        diff[:, -band_c:] = 0.0


def widen(reference: F32, *, brighter: bool) -> F32:
    """3×3 grey dilation (``brighter``) or erosion of the reference."""
    if brighter:
        widened: F32 = ndimage.grey_dilation(reference, size=(3, 3))
    else:
        widened = ndimage.grey_erosion(reference, size=(3, 3))
    return widened


#: Fraction of exactly black reference pixels from which the region is taken to hold a sector.
SECTOR_FRACTION = 0.05


def imaged_area(reference: F32, margin: int) -> npt.NDArray[np.float32]:
    """1 inside the imaged sector less ``margin`` pixels, 0 outside (as float32, to multiply).

    The sector (non-zero pixels of the reference, holes filled) does not move
    with the probe, the anatomy does: after registration its edge would show
    as change, so it is cut away.
    """
    inside = ndimage.binary_fill_holes(reference > 0)
    if margin > 0:
        # a sector that reaches the region's edge (the skin line of a convex probe) ends
        # there too; a region that is all image (no sector) keeps its edges
        sector = float(np.mean(reference == 0)) > SECTOR_FRACTION
        inside = ndimage.binary_erosion(inside, iterations=margin, border_value=0 if sector else 1)
    area: npt.NDArray[np.float32] = inside.astype(np.float32)
    return area


def registration_window(area: npt.NDArray[np.float32]) -> tuple[slice, slice]:
    """A rectangle well inside the imaged sector, where registration sees only anatomy.

    The central half (in each direction) of the sector's bounding box, moved
    down into the sector if its top corners fall outside (a convex probe's
    fan is narrow at the top). Registering on the whole frame would lock onto
    the static sector edge instead of the moving anatomy.
    """
    rows = np.nonzero(area.any(axis=1))[0]
    cols = np.nonzero(area.any(axis=0))[0]
    if rows.size == 0 or cols.size == 0:
        return slice(None), slice(None)
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    height, width = r1 - r0, c1 - c0
    top, bottom = r0 + height // 4, r1 - height // 4
    left, right = c0 + width // 4, c1 - width // 4
    while top < bottom - 16 and not (area[top, left] and area[top, right - 1]):
        top += 1
    while bottom > top + 16 and not (area[bottom - 1, left] and area[bottom - 1, right - 1]):
        bottom -= 1
    return slice(top, bottom), slice(left, right)


#: Percentile of the widened reference above which a needle adds no visible change.
OCCLUSION_PERCENTILE = 92.0


def occluded_background(reference_widened: F32, area: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """Where the background is brightest (fascia, bone): a needle crossing it barely shows as change.

    Log compression and saturation leave little room above a bright echo,
    so the change a needle makes there is small; these stretches are bridged,
    not taken as the end of the shaft.
    """
    inside = area > 0
    values = reference_widened[inside] if inside.any() else reference_widened.ravel()
    level = float(np.percentile(values[::7], OCCLUSION_PERCENTILE))
    occluded: npt.NDArray[np.bool_] = reference_widened >= level
    return occluded


#: Smallest local noise level (grey levels) of the difference images.
NOISE_FLOOR = 2.0


def noise_map(frames: F32, reference: F32, sigma: float) -> F32:
    """Local standard deviation of frame-to-reference differences over the reference frames.

    Dark regions (acoustic shadow, deep tissue) are dominated by electronic
    noise that log compression magnifies; there a change means less than in
    bright, stable tissue. Dividing the brightening by this map makes one
    threshold fit the whole image.

    Parameters
    ----------
    frames : ndarray of shape (N, rows, cols), float32
        The reference frames.
    reference : ndarray of shape (rows, cols), float32
        Their median.
    sigma : float
        Spatial smoothing of the variance, pixels.

    Returns
    -------
    ndarray of shape (rows, cols), float32
        At least :data:`NOISE_FLOOR`.
    """
    variance = np.mean((frames - reference[None]) ** 2, axis=0) * (len(frames) / max(1, len(frames) - 1))
    smoothed = ndimage.gaussian_filter(variance.astype(np.float32), sigma)
    local: F32 = np.maximum(np.sqrt(smoothed), np.float32(NOISE_FLOOR)).astype(np.float32)
    return local
