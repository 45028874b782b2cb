"""Needle and injectate-spread proposals for a whole clip: the public entry point.

:func:`propose_clip` takes the grey frames of a clip (arrays in, marks out,
no I/O) and returns a :class:`ClipProposal`: per frame a needle tip and shaft
(in-plane) or tip (out-of-plane) with a confidence, and per frame after the
injection start a spread mask with its area. Everything is in full-image
pixel coordinates ``(row, col)``, frames are numbered from 1. The method is
described in ``docs/proposals.md``; its parameters are physical
(:class:`~archive.analysis.proposals.params.MethodParameters`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt

from archive.analysis.proposals.background import (
    brightening,
    darkening,
    downsample,
    estimate_shift,
    imaged_area,
    noise_map,
    occluded_background,
    reference_image,
    registration_window,
    shift_image,
    widen,
    working_factor,
)
from archive.analysis.proposals.errors import ProposalCancelled, ProposalInputError
from archive.analysis.proposals.inplane import ShaftMeasurement, measure_shaft, noise_level, smooth
from archive.analysis.proposals.outofplane import measure_dot
from archive.analysis.proposals.params import DEFAULTS, MethodParameters, PixelParameters, to_pixels
from archive.analysis.proposals.results import ClipProposal, FrameProposal, SpreadProposal
from archive.analysis.proposals.spread import (
    onset_area,
    segment_spread,
    shift_mask,
    smooth_darkening,
)
from archive.analysis.proposals.tracking import ShaftTracker

#: Name and version of the method, stored with every proposal.
METHOD = "diff-sato-ransac-kalman/1"
#: Approaches (needle views) the detector knows.
APPROACHES = ("in-plane", "out-of-plane")
#: Confidence from which a needle is claimed on a frame.
CLAIM_SCORE = 0.5
#: Contrast (noise units) at which the confidence is 1 - 1/e.
CONTRAST_SCALE = 6.0

F32 = npt.NDArray[np.float32]
Region = tuple[int, int, int, int]


def propose_clip(
    frames: npt.NDArray[np.generic],
    *,
    spacing_mm: tuple[float, float] | None,
    frame_interval_s: float | None,
    region: Region | None = None,
    approach: str = "in-plane",
    first: int = 1,
    last: int | None = None,
    injection_start: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    params: MethodParameters = DEFAULTS,
) -> ClipProposal:
    """Propose needle marks and spread masks for frames ``first``..``last`` of a clip.

    Parameters
    ----------
    frames : ndarray of shape (T, rows, cols), uint8
        Greyscale frames (convert RGB or palette to grey first).
    spacing_mm : tuple of float or None
        ``(row, col)`` mm per pixel of the imaging region
        (:attr:`archive.calibration.Calibration.pixel_size_mm`); None for an
        uncalibrated clip, which then works in pixels (``units="px"``).
    frame_interval_s : float or None
        Seconds between frames; None uses frame-count defaults.
    region : tuple of int, optional
        ``(row0, col0, row1, col1)`` inclusive bounds of the imaging region
        (DICOM ``RegionLocationMinY0, MinX0, MaxY1, MaxX1``); None = whole frame.
    approach : {"in-plane", "out-of-plane"}
        Needle view.
    first, last : int
        1-based inclusive frame range; ``last`` None = the last frame.
        Frames before ``first`` still serve as the background reference.
    injection_start : int, optional
        1-based frame of the injection start event; None = detect the onset.
    progress : callable, optional
        Called as ``progress(done, total)`` after each frame.
    cancelled : callable, optional
        Polled before each frame; when it returns True,
        :class:`ProposalCancelled` is raised.
    params : MethodParameters, optional
        Physical parameters of the method.

    Returns
    -------
    ClipProposal

    Raises
    ------
    ProposalInputError
        If an argument is out of range (the message names it).
    ProposalCancelled
        If ``cancelled()`` returned True.
    """
    stack = _check_frames(frames)
    return propose_frames(
        iter(stack),
        count=stack.shape[0],
        spacing_mm=spacing_mm,
        frame_interval_s=frame_interval_s,
        region=region,
        approach=approach,
        first=first,
        last=last,
        injection_start=injection_start,
        progress=progress,
        cancelled=cancelled,
        params=params,
    )


def propose_frames(
    frames: Iterable[npt.NDArray[np.generic]],
    *,
    count: int,
    spacing_mm: tuple[float, float] | None,
    frame_interval_s: float | None,
    region: Region | None = None,
    approach: str = "in-plane",
    first: int = 1,
    last: int | None = None,
    injection_start: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    params: MethodParameters = DEFAULTS,
) -> ClipProposal:
    """:func:`propose_clip` on frames that arrive one at a time (decoded as they are needed).

    Memory stays bounded whatever the clip's length: besides the frame in
    hand, only the reference frames at the start of the clip, the last few
    frames the injection onset needs (``rest_s``) and the state of the
    tracker and the spread are kept, all at the working resolution. Frames
    after ``last`` are not read from ``frames``.

    Parameters
    ----------
    frames : iterable of ndarray of shape (rows, cols), uint8
        The clip's greyscale frames in order, from frame 1 (e.g.
        :func:`archive.pixels.iter_grey_frames`).
    count : int
        Number of frames of the clip (the frame range and ``injection_start``
        are checked against it).
    spacing_mm, frame_interval_s, region, approach, first, last, injection_start, progress, cancelled, params
        As for :func:`propose_clip`.

    Returns
    -------
    ClipProposal

    Raises
    ------
    ProposalInputError
        If an argument is out of range, a frame is not a 2-D uint8 array of
        the first frame's shape, or ``frames`` ends before the frames needed.
    ProposalCancelled
        If ``cancelled()`` returned True.
    """
    if not isinstance(count, int) or count < 1:
        raise ProposalInputError(f"count: expected the clip's number of frames (>= 1), but got {count!r}")
    if approach not in APPROACHES:
        raise ProposalInputError(
            f"approach: expected one of {', '.join(APPROACHES)}, but got {approach!r}; pick the needle view"
        )
    stop = count if last is None else last
    if not (isinstance(first, int) and isinstance(stop, int) and 1 <= first <= stop <= count):
        raise ProposalInputError(
            f"frame range: expected 1 <= first <= last <= {count} (1-based, inclusive), "
            f"but got first={first!r}, last={last!r}; choose frames inside the clip"
        )
    if injection_start is not None and not (
        isinstance(injection_start, int) and 1 <= injection_start <= count
    ):
        raise ProposalInputError(
            f"injection_start: expected a 1-based frame from 1 to {count}, but got {injection_start!r}; "
            "pass the injection start event's frame, or None to detect it"
        )
    factor = working_factor(spacing_mm)
    working = None if spacing_mm is None else (spacing_mm[0] * factor, spacing_mm[1] * factor)
    pixels = to_pixels(params, working, frame_interval_s)
    n_ref = min(pixels.reference_frames, count)
    needed = max(stop, n_ref)
    total = stop - first + 1
    shape: tuple[int, int] | None = None
    bounds: Region = (0, 0, 0, 0)
    references: list[F32] = []
    # the last frames read: the spread reference before a given injection start is made of them
    recent: deque[tuple[int, F32]] = deque(maxlen=max(pixels.rest_frames, n_ref) + 1)
    pending: list[tuple[int, F32]] = []
    run: _ClipRun | None = None
    done = 0
    index = -1
    for index, raw in enumerate(frames):
        frame = _check_frame(raw, index, shape)
        if shape is None:
            shape = (int(frame.shape[0]), int(frame.shape[1]))
            bounds = _check_region(region, shape)
        crop = _crop(frame, bounds, factor)
        recent.append((index, crop))
        if index < n_ref:
            references.append(crop)
        if index >= first - 1:
            pending.append((index, crop))
        if run is None and index == n_ref - 1:
            run = _ClipRun(
                shape, bounds, pixels, approach, injection_start, factor, np.stack(references), recent
            )
            references = []
        if run is not None:
            for step_index, step_crop in pending:
                if cancelled is not None and cancelled():
                    raise ProposalCancelled(
                        f"proposal cancelled after {done} of {total} frames; nothing was stored"
                    )
                run.step(step_index, step_crop)
                done += 1
                if progress is not None:
                    progress(done, total)
            pending = []
        if index == needed - 1:
            break
    if run is None or index < needed - 1:
        raise ProposalInputError(
            f"frames: expected {needed} frame(s) (the clip has {count}), but only {index + 1} came; "
            "pass count as the number of frames the source yields"
        )
    return ClipProposal(
        frames=tuple(run.frame_proposals),
        spread=tuple(run.spread_proposals),
        approach=approach,
        units="mm" if spacing_mm is not None else "px",
        method=METHOD,
        injection_start=None if run.injection_index is None else run.injection_index + 1,
    )


def _check_frame(
    raw: npt.NDArray[np.generic], index: int, shape: tuple[int, int] | None
) -> npt.NDArray[np.uint8]:
    frame = np.asarray(raw)
    if (
        frame.ndim != 2
        or frame.dtype != np.uint8
        or 0 in frame.shape
        or (shape is not None and frame.shape != shape)
    ):
        expected = "a 2-D uint8 greyscale frame" + ("" if shape is None else f" of shape {shape}")
        raise ProposalInputError(
            f"frames: expected {expected}, but frame {index + 1} has shape {frame.shape} dtype "
            f"{frame.dtype}; convert RGB or palette frames to grey first"
        )
    checked: npt.NDArray[np.uint8] = frame
    return checked


def _crop(frame: npt.NDArray[np.uint8], region: Region, factor: int) -> F32:
    row0, col0, row1, col1 = region
    return downsample(frame[row0 : row1 + 1, col0 : col1 + 1], factor)


def _check_frames(frames: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    array = np.asarray(frames)
    if array.ndim != 3 or array.dtype != np.uint8 or 0 in array.shape:
        raise ProposalInputError(
            "frames: expected a (T, rows, cols) uint8 greyscale stack, but got "
            f"shape {array.shape} dtype {array.dtype}; convert RGB or palette frames to grey first"
        )
    stack: npt.NDArray[np.uint8] = array
    return stack


def _check_region(region: Region | None, shape: tuple[int, ...]) -> Region:
    rows, cols = int(shape[0]), int(shape[1])
    if region is None:
        return (0, 0, rows - 1, cols - 1)
    if len(region) != 4:
        raise ProposalInputError(f"region: expected (row0, col0, row1, col1), but got {region!r}")
    row0, col0, row1, col1 = (int(v) for v in region)
    if not (0 <= row0 < row1 < rows and 0 <= col0 < col1 < cols):
        raise ProposalInputError(
            f"region: expected inclusive bounds inside the {rows}x{cols} frame with row0 < row1 and "
            f"col0 < col1, but got {region!r}; pass the imaging region's pixel rectangle"
        )
    return (row0, col0, row1, col1)


def _confidence(contrast: float) -> float:
    return float(1.0 - math.exp(-max(contrast, 0.0) / CONTRAST_SCALE))


class _ClipRun:
    """State of one :func:`propose_clip` call: references, tracker, spread."""

    def __init__(
        self,
        shape: tuple[int, int],
        region: Region,
        params: PixelParameters,
        approach: str,
        injection_start: int | None,
        factor: int,
        reference_frames: F32,
        recent: deque[tuple[int, F32]],
    ) -> None:
        self.shape = shape
        self.factor = factor
        self.region = region
        self.params = params
        self.approach = approach
        row0, col0, _, _ = region
        self.offset = (float(row0), float(col0))
        #: the last frames read (working resolution), for the spread reference before an injection start
        self.recent = recent
        self.reference = reference_image(reference_frames)
        self.noise = noise_map(reference_frames, self.reference, 4.0 * params.shaft_sigma)
        self.reference_bright = widen(self.reference, brighter=True)
        self.valid = imaged_area(self.reference, params.motion_margin)
        self.window = registration_window(self.valid)
        self.occluded = occluded_background(self.reference_bright, self.valid)
        self.tracker = ShaftTracker(params)
        self.frame_proposals: list[FrameProposal] = []
        self.spread_proposals: list[SpreadProposal] = []
        self.injection_index: int | None = None if injection_start is None else injection_start - 1
        self.spread_reference: F32 | None = None
        self.spread_reference_dark: F32 | None = None
        self.spread_hidden: npt.NDArray[np.bool_] | None = None
        self.dark_history: list[F32] = []
        self.grown: npt.NDArray[np.bool_] | None = None
        self.seed: tuple[float, float] | None = None
        self.rest: list[tuple[int, tuple[float, float]]] = []
        self.rest_anchor: tuple[float, float] | None = None
        self.onset_frames: list[int] = []
        self.last_dot: tuple[float, float] | None = None
        self.dot_missed = 0

    def step(self, index: int, frame: F32) -> None:
        shift = estimate_shift(self.reference[self.window], frame[self.window])
        valid = self.valid * shift_image(self.valid, *shift) / shift_image(self.noise, *shift)
        smoothed = smooth(brightening(self.reference_bright, frame, shift) * valid, self.params)
        noise = noise_level(smoothed)
        tip_region: tuple[float, float] | None = None
        if self.approach == "in-plane":
            shaft = self._shaft(smoothed, noise)
            if shaft is not None:
                tip_region = shaft.tip
                score = _confidence(shaft.contrast)
                self.frame_proposals.append(
                    FrameProposal(
                        frame=index + 1,
                        tip=self._image(shaft.tip),
                        shaft=(self._image(shaft.entry), self._image(shaft.tip)),
                        score=score,
                    )
                )
            else:
                self.frame_proposals.append(FrameProposal(index + 1, None, None, 0.0))
        else:
            near = self.last_dot if self.dot_missed == 0 else None
            dot = measure_dot(smoothed, self.params, noise=noise, near=near)
            score = 0.0 if dot is None else _confidence(dot.contrast)
            if dot is not None and score >= CLAIM_SCORE:
                tip_region = dot.tip
                self.last_dot = dot.tip
                self.dot_missed = 0
                self.frame_proposals.append(FrameProposal(index + 1, self._image(dot.tip), None, score))
            else:
                self.dot_missed += 1
                self.frame_proposals.append(FrameProposal(index + 1, None, None, 0.0))
        self._spread(index, frame, tip_region, smoothed > noise[0] + 4.0 * noise[1])

    def _shaft(self, smoothed: F32, noise: tuple[float, float]) -> ShaftMeasurement | None:
        prior = self.tracker.prior()
        measurement = measure_shaft(smoothed, self.params, noise=noise, prior=prior, occluded=self.occluded)
        if measurement is not None and not self.tracker.gate(measurement):
            measurement = None
        if measurement is None and prior is not None:
            measurement = measure_shaft(smoothed, self.params, noise=noise, occluded=self.occluded)
            if measurement is not None and not self.tracker.gate(measurement):
                if self.tracker.outgrown(measurement):
                    self.tracker.reset()  # the track was born from a short, wrong stub
                else:
                    measurement = None
        if measurement is None or _confidence(measurement.contrast) < CLAIM_SCORE:
            self.tracker.miss()
            return None
        return self.tracker.update(measurement)

    def _image(self, point: tuple[float, float]) -> tuple[float, float]:
        k = self.factor
        centre = 0.5 * (k - 1)  # working pixel i covers full pixels k*i .. k*i + k - 1
        return (point[0] * k + centre + self.offset[0], point[1] * k + centre + self.offset[1])

    def _spread(
        self,
        index: int,
        frame: F32,
        tip: tuple[float, float] | None,
        hidden: npt.NDArray[np.bool_],
    ) -> None:
        if tip is not None and self.grown is None:
            self.seed = tip
        if self.injection_index is None:
            self._look_for_onset(index, frame, tip)
            if self.injection_index is None:
                return
        if index < self.injection_index:
            return
        if self.spread_reference is None:
            start = self.injection_index
            n_pre = min(self.params.rest_frames, start) if start > 0 else 1
            lo = max(0, start - n_pre)
            before = [f for i, f in self.recent if lo <= i < max(lo + 1, start)]
            self._set_spread_reference(before or [frame])
        assert self.spread_reference is not None and self.spread_reference_dark is not None
        if self.seed is None:
            self.spread_proposals.append(SpreadProposal(index + 1, None, None))
            return
        shift = estimate_shift(self.spread_reference[self.window], frame[self.window])
        dark = self._persistent(
            smooth_darkening(darkening(self.spread_reference_dark, frame, shift), self.params), shift
        )
        seed = self.seed
        if self.grown is not None:
            seed = (self.seed[0] + shift[0], self.seed[1] + shift[1])
        if self.spread_hidden is not None:
            hidden = hidden | shift_mask(self.spread_hidden, *shift)
        self.grown = segment_spread(dark, seed, self.grown, shift, self.params, hidden=hidden)
        on_frame = shift_mask(self.grown, *shift)
        self.spread_proposals.append(self._spread_proposal(index, on_frame))

    def _persistent(self, dark: F32, shift: tuple[int, int]) -> F32:
        """The darkening every one of the last ``spread_persist_frames`` frames shows (their minimum).

        Fluid stays where it pooled; darkening from decorrelating speckle
        comes and goes. The minimum is taken in the reference's coordinates
        (probe motion removed) and returned in the frame's.
        """
        n = self.params.spread_persist_frames
        if n <= 1:
            return dark
        self.dark_history = [*self.dark_history[-(n - 1) :], shift_image(dark, -shift[0], -shift[1])]
        persistent: F32 = np.min(np.stack(self.dark_history), axis=0)
        return shift_image(persistent, *shift)

    def _spread_proposal(self, index: int, region_mask: npt.NDArray[np.bool_]) -> SpreadProposal:
        if not region_mask.any():
            return SpreadProposal(index + 1, None, None)
        rows = np.nonzero(region_mask.any(axis=1))[0]
        cols = np.nonzero(region_mask.any(axis=0))[0]
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        k = self.factor
        box = region_mask[r0:r1, c0:c1]
        upsampled = np.repeat(np.repeat(box, k, axis=0), k, axis=1) if k > 1 else box
        row0, col0, row1, col1 = self.region
        # working pixel i covers full pixels k*i .. k*i + k - 1; nothing past the region
        top, left = row0 + k * r0, col0 + k * c0
        upsampled = upsampled[: row1 + 1 - top, : col1 + 1 - left]
        area = None
        if self.params.pixel_area_mm2 is not None:
            # the working pixel area is factor² full pixels; count full pixels
            area = float(np.count_nonzero(upsampled)) * self.params.pixel_area_mm2 / k**2
        return SpreadProposal.from_box(index + 1, self.shape, (top, left), upsampled.copy(), area)

    def _set_spread_reference(self, frames: list[F32]) -> None:
        """The frames before the injection as its reference, and where the needle's echo hides a pool.

        The needle at rest and its reverberation copies are bright in the
        reference and stay bright over a pool (fluid removes the tissue
        echo, not the needle's): there no darkening can show, so
        :func:`segment_spread` treats those pixels as unseen.
        """
        reference = reference_image(np.stack(frames))
        self.spread_reference = reference
        self.spread_reference_dark = widen(reference, brighter=False)
        shift = estimate_shift(self.reference[self.window], reference[self.window])
        valid = self.valid * shift_image(self.valid, *shift) / shift_image(self.noise, *shift)
        smoothed = smooth(brightening(self.reference_bright, reference, shift) * valid, self.params)
        noise = noise_level(smoothed)
        self.spread_hidden = smoothed > noise[0] + 4.0 * noise[1]

    def _look_for_onset(self, index: int, frame: F32, tip: tuple[float, float] | None) -> None:
        """Detect the injection start: darkening at a tip that has been at rest.

        The tip is judged by the median of its last ``rest_frames``
        positions: a single frame on which the detector slips (onto a
        reverberation copy, say) is an error of the measurement, not a
        movement of the needle, and must not restart the rest. The darkening
        must persist for ``spread_persist_frames`` frames; the injection
        start is the first of them, and the spread is proposed from the frame
        that confirms it on.
        """
        if tip is None:
            return
        n = self.params.rest_frames
        self.rest = [*self.rest[-(n - 1) :], (index, tip)] if n > 1 else [(index, tip)]
        if len(self.rest) < n:
            return
        recent = _median_point([t for _, t in self.rest])
        if self.rest_anchor is not None and math.dist(self.rest_anchor, recent) > self.params.rest:
            self.rest_anchor = None
            self.spread_reference = None
            self.onset_frames = []
        if self.spread_reference is None:
            spread = float(np.median([math.dist(recent, t) for _, t in self.rest]))
            if spread <= self.params.rest:
                at_rest = {i for i, _ in self.rest}
                self._set_spread_reference([f for i, f in self.recent if i in at_rest])
                self.rest_anchor = recent
            return
        assert self.spread_reference_dark is not None and self.rest_anchor is not None
        shift = estimate_shift(self.spread_reference[self.window], frame[self.window])
        dark = smooth_darkening(darkening(self.spread_reference_dark, frame, shift), self.params)
        if onset_area(dark, self.rest_anchor, self.params) < self.params.spread_min_area:
            self.onset_frames = []
            return
        # fluid stays: the darkening must persist, as in the segmentation (see _persistent)
        self.onset_frames.append(index)
        if len(self.onset_frames) >= self.params.spread_persist_frames:
            self.injection_index = self.onset_frames[0]
            self.seed = self.rest_anchor


def _median_point(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Component-wise median of ``(row, col)`` points."""
    array = np.asarray(points, dtype=np.float64)
    return float(np.median(array[:, 0])), float(np.median(array[:, 1]))
