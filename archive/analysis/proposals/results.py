"""What the proposal method returns: per-frame needle proposals, spread masks, the clip's result."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class FrameProposal:
    """The proposed needle of one frame.

    Attributes
    ----------
    frame : int
        1-based frame number.
    tip : tuple of float or None
        ``(row, col)`` image pixels; None where no needle is found.
    shaft : tuple of tuple of float or None
        ``(entry point, tip)``, each ``(row, col)``: the superficial end of the
        visible shaft and the tip (in-plane); None out-of-plane or without a needle.
    score : float
        Confidence 0..1 that a needle is at ``tip``; 0.0 when ``tip`` is None.
    """

    frame: int
    tip: tuple[float, float] | None
    shaft: tuple[tuple[float, float], tuple[float, float]] | None
    score: float


class SpreadProposal:
    """The proposed injectate spread of one frame.

    The pool is kept as its bounding box only (a long clip's masks would
    otherwise take as much memory as its frames); :attr:`mask` expands it.

    Parameters
    ----------
    frame : int
        1-based frame number.
    mask : ndarray of shape (rows, cols), bool, or None
        The pool in full-image pixels; None before a pool is found.
    area_mm2 : float or None
        Pool area; None when the clip is uncalibrated or there is no pool.
    """

    __slots__ = ("_box", "_shape", "area_mm2", "frame")

    def __init__(self, frame: int, mask: npt.NDArray[np.bool_] | None, area_mm2: float | None) -> None:
        self.frame = frame
        self.area_mm2 = area_mm2
        self._shape: tuple[int, int] | None = None
        self._box: tuple[int, int, npt.NDArray[np.bool_]] | None = None
        if mask is not None:
            array = np.asarray(mask, dtype=bool)
            self._shape = (int(array.shape[0]), int(array.shape[1]))
            rows = np.nonzero(array.any(axis=1))[0]
            cols = np.nonzero(array.any(axis=0))[0]
            r0, c0 = (int(rows[0]), int(cols[0])) if rows.size else (0, 0)
            r1, c1 = (int(rows[-1]) + 1, int(cols[-1]) + 1) if rows.size else (0, 0)
            self._box = (r0, c0, array[r0:r1, c0:c1].copy())

    @classmethod
    def from_box(
        cls,
        frame: int,
        shape: tuple[int, int],
        origin: tuple[int, int],
        box: npt.NDArray[np.bool_],
        area_mm2: float | None,
    ) -> SpreadProposal:
        """A pool given as the mask ``box`` whose top-left pixel is ``origin`` of a ``shape`` frame."""
        made = cls(frame, None, area_mm2)
        made._shape, made._box = shape, (origin[0], origin[1], box)
        return made

    @property
    def mask(self) -> npt.NDArray[np.bool_] | None:
        """The pool as a full-image mask of shape (rows, cols), bool; None before a pool is found."""
        if self._shape is None or self._box is None:
            return None
        full = np.zeros(self._shape, dtype=bool)
        r0, c0, box = self._box
        full[r0 : r0 + box.shape[0], c0 : c0 + box.shape[1]] = box
        return full

    def __repr__(self) -> str:
        return f"SpreadProposal(frame={self.frame}, area_mm2={self.area_mm2})"


@dataclass(frozen=True)
class ClipProposal:
    """Proposals for a range of frames of one clip.

    Attributes
    ----------
    frames : tuple of FrameProposal
        One per frame of the range, in order.
    spread : tuple of SpreadProposal
        One per frame of the range from the injection start (given or
        detected) on; empty when no injection was found.
    approach : str
        ``"in-plane"`` or ``"out-of-plane"``.
    units : str
        ``"mm"`` for a calibrated clip, ``"px"`` when uncalibrated (the pixel
        defaults of the parameters were used).
    method : str
        Short name and version of the method (:data:`METHOD`).
    injection_start : int or None
        1-based frame of the injection start used (given or detected).
    """

    frames: tuple[FrameProposal, ...]
    spread: tuple[SpreadProposal, ...]
    approach: str
    units: str
    method: str
    injection_start: int | None = None
