"""Score needle and spread proposals against the ground truth of synthetic clips.

One :class:`ProposalTruth` per clip (made from a phantom
:class:`~archive.phantom.truth.GroundTruth` or a
:class:`~archive.phantom.hard.HardClip`), one :class:`ClipScore` per clip and
proposal, and a :class:`Summary` over a corpus with the figures issue 20
asks for: tip error (median, p90, mm) and shaft angle error (median, degrees)
on frames where the needle is visible, the fraction of visible frames on
which a needle is found, the fraction of needle-free frames on which one is
claimed, and the Dice of the spread mask at injection end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from archive.analysis.proposals import ClipProposal
from archive.phantom.hard import HardClip
from archive.phantom.truth import GroundTruth

Point = tuple[float, float]


@dataclass(frozen=True)
class ProposalTruth:
    """What a proposal for one clip should find.

    Attributes
    ----------
    tips, entries : list of (row, col) or None
        Per frame; ``entries`` may be None where only a dot is seen.
    visible, absent : ndarray of shape (T,), bool
        Frames where the needle is visible / where there is no needle echo.
    spread_end : ndarray of shape (rows, cols), bool, or None
        Pool at injection end.
    injection_end : int or None
        0-based frame of injection end.
    spacing_mm : tuple of float
        ``(row, col)`` mm per pixel.
    """

    tips: list[Point | None]
    entries: list[Point | None]
    visible: npt.NDArray[np.bool_]
    absent: npt.NDArray[np.bool_]
    spread_end: npt.NDArray[np.bool_] | None
    injection_end: int | None
    spacing_mm: tuple[float, float]
    observable: npt.NDArray[np.bool_] | None = None
    """Where a pool could show at all (out of the acoustic shadow); see :func:`observable_area`."""


#: Grey level (pre-injection frame smoothed over 1 mm) below which a pixel is acoustic shadow.
SHADOW_GREY = 40.0


def observable_area(before: npt.NDArray[np.uint8], spacing_mm: float) -> npt.NDArray[np.bool_]:
    """Pixels where an injectate pool can change the image: not in the acoustic shadow.

    In the shadow under a bone surface only electronic noise remains (grey
    levels of about 10-25 in the phantom), so a pool there darkens nothing.
    Both corpora keep their pools in soft tissue, above the bone surface,
    but soft tissue can still lie in the shadow of a steep bone wall; the
    Dice on the observable part of the truth shows what any image-based
    segmentation can reach.

    Parameters
    ----------
    before : ndarray of shape (rows, cols), uint8
        A frame just before the injection starts.
    spacing_mm : float
        Pixel size (the smoothing is 1 mm).

    Returns
    -------
    ndarray of shape (rows, cols), bool
    """
    smoothed = ndimage.gaussian_filter(before.astype(np.float32), 1.0 / spacing_mm)
    observable: npt.NDArray[np.bool_] = smoothed >= SHADOW_GREY
    return observable


def truth_from_phantom(truth: GroundTruth, frames: npt.NDArray[np.uint8] | None = None) -> ProposalTruth:
    """The :class:`ProposalTruth` of a phantom clip (visible = the truth has a needle).

    ``frames`` (the clip's grey frames), when given, yield the observable area
    (:func:`observable_area`) from the frame before the injection start.
    """
    spacing = float(truth.calibration["spacing_mm"])
    tips: list[Point | None] = []
    entries: list[Point | None] = []
    for line in truth.needle:
        if not line:
            tips.append(None)
            entries.append(None)
            continue
        tips.append((float(line[-1][0]), float(line[-1][1])))
        entries.append((float(line[0][0]), float(line[0][1])) if len(line) > 1 else None)
    present = np.array([t is not None for t in tips])
    end = truth.events.get("injection end")
    start = truth.events.get("injection start")
    observable = None
    if frames is not None and start is not None:
        observable = observable_area(frames[max(0, start - 1)], spacing)
    return ProposalTruth(
        tips=tips,
        entries=entries,
        visible=present,
        absent=~present,
        spread_end=None if end is None else truth.spread[end],
        injection_end=end,
        spacing_mm=(spacing, spacing),
        observable=observable,
    )


def truth_from_hard(clip: HardClip) -> ProposalTruth:
    """The :class:`ProposalTruth` of a hard-corpus clip (its pool never enters bone or shadow)."""
    end = clip.injection_end
    start = clip.injection_start
    return ProposalTruth(
        tips=clip.tips,
        entries=clip.entries,
        visible=clip.visible,
        absent=clip.absent,
        spread_end=None if end is None else clip.spread[end],
        injection_end=end,
        spacing_mm=clip.spacing_mm,
        observable=None
        if start is None
        else observable_area(clip.frames[max(0, start - 1)], clip.spacing_mm[0]),
    )


@dataclass(frozen=True)
class FrameError:
    """Error of one proposed frame with a visible needle (mm, degrees); None if not measurable."""

    clip: str
    frame: int
    tip_mm: float
    angle_deg: float | None


@dataclass
class ClipScore:
    """Per-clip tallies."""

    name: str
    errors: list[FrameError] = field(default_factory=list)
    visible: int = 0
    found: int = 0
    absent: int = 0
    claimed: int = 0
    dice: float | None = None
    dice_observable: float | None = None


def _angle(a: Point, b: Point, spacing: tuple[float, float]) -> float:
    return math.degrees(math.atan2((b[0] - a[0]) * spacing[0], (b[1] - a[1]) * spacing[1]))


def _angle_error(
    truth: tuple[Point, Point], found: tuple[Point, Point], spacing: tuple[float, float]
) -> float:
    diff = abs(_angle(*truth, spacing) - _angle(*found, spacing)) % 180.0
    return min(diff, 180.0 - diff)


def dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    """Dice coefficient of two masks (1.0 when both are empty)."""
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(a & b)) / total


def score_clip(name: str, proposal: ClipProposal, truth: ProposalTruth, *, spread: bool = True) -> ClipScore:
    """Compare one clip's proposal with its truth.

    Parameters
    ----------
    name : str
        Label of the clip in the results.
    proposal : ClipProposal
        From :func:`archive.analysis.proposals.propose_clip` (or the baseline).
    truth : ProposalTruth
        What the clip shows.
    spread : bool
        Score the spread (False for a method that proposes none, the baseline).

    Returns
    -------
    ClipScore
    """
    score = ClipScore(name)
    sp = truth.spacing_mm
    for frame in proposal.frames:
        t = frame.frame - 1
        if truth.visible[t]:
            score.visible += 1
            tip = truth.tips[t]
            if frame.tip is not None and tip is not None:
                score.found += 1
                error = math.hypot((frame.tip[0] - tip[0]) * sp[0], (frame.tip[1] - tip[1]) * sp[1])
                angle = None
                entry = truth.entries[t]
                if frame.shaft is not None and entry is not None:
                    angle = _angle_error((entry, tip), frame.shaft, sp)
                score.errors.append(FrameError(name, frame.frame, error, angle))
        elif truth.absent[t]:
            score.absent += 1
            if frame.tip is not None:
                score.claimed += 1
    end = truth.injection_end
    if spread and truth.spread_end is not None and end is not None:
        masks = {s.frame - 1: s.mask for s in proposal.spread}
        if end in {f.frame - 1 for f in proposal.frames}:
            found = masks.get(end)
            mask = found if found is not None else np.zeros_like(truth.spread_end)
            score.dice = dice(truth.spread_end, mask)
            if truth.observable is not None:
                score.dice_observable = dice(truth.spread_end & truth.observable, mask)
    return score


@dataclass(frozen=True)
class Summary:
    """Corpus figures (see the module docstring); None where nothing was measurable."""

    tip_median_mm: float | None
    tip_p90_mm: float | None
    angle_median_deg: float | None
    found_fraction: float | None
    claimed_fraction: float | None
    dice_median: float | None
    dice_min: float | None
    dice_observable_median: float | None
    visible_frames: int
    absent_frames: int

    def as_dict(self) -> dict[str, float | int | None]:
        """Plain numbers, rounded for tables."""
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def summarise(scores: list[ClipScore]) -> Summary:
    """Pool the per-clip tallies of a corpus."""
    tip = np.array([e.tip_mm for s in scores for e in s.errors])
    angle = np.array([e.angle_deg for s in scores for e in s.errors if e.angle_deg is not None])
    visible = sum(s.visible for s in scores)
    absent = sum(s.absent for s in scores)
    dices = [s.dice for s in scores if s.dice is not None]
    observable = [s.dice_observable for s in scores if s.dice_observable is not None]
    return Summary(
        tip_median_mm=float(np.median(tip)) if tip.size else None,
        tip_p90_mm=float(np.percentile(tip, 90)) if tip.size else None,
        angle_median_deg=float(np.median(angle)) if angle.size else None,
        found_fraction=sum(s.found for s in scores) / visible if visible else None,
        claimed_fraction=sum(s.claimed for s in scores) / absent if absent else None,
        dice_median=float(np.median(dices)) if dices else None,
        dice_min=float(min(dices)) if dices else None,
        dice_observable_median=float(np.median(observable)) if observable else None,
        visible_frames=visible,
        absent_frames=absent,
    )


def worst_frames(scores: list[ClipScore], count: int) -> list[FrameError]:
    """The ``count`` frames with the largest tip error."""
    errors = [e for s in scores for e in s.errors]
    return sorted(errors, key=lambda e: e.tip_mm, reverse=True)[:count]
