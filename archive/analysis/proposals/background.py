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
    return out


def darkening(reference_eroded: F32, frame: F32, shift: tuple[int, int]) -> F32:
    """How much darker ``frame`` is than the aligned reference (positive numbers), gain offset removed."""
    diff = shift_image(reference_eroded, *shift) - frame
    diff -= np.float32(np.median(diff[::4, ::4]))
    out: F32 = np.maximum(diff, np.float32(0.0))
    return out


def widen(reference: F32, *, brighter: bool) -> F32:
    """3×3 grey dilation (``brighter``) or erosion of the reference."""
    if brighter:
        widened: F32 = ndimage.grey_dilation(reference, size=(3, 3))
    else:
        widened = ndimage.grey_erosion(reference, size=(3, 3))
    return widened
