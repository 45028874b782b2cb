"""Agreement between two reviewers' annotations of the same clip.

Pure: two :class:`~archive.review.ClipAnnotation` of one clip and its
calibration in, an :class:`AgreementMetrics` out. Tip distances are in mm;
Dice coefficients are ratios of pixel counts. Definitions are in
``docs/metrics.md``.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from archive.analysis.geometry import dice, tip_to_point_mm
from archive.analysis.metrics.clip import UNCALIBRATED_NOTE, find_breaches, to_plain
from archive.calibration import Calibration
from archive.errors import CalibrationError, MetricsError
from archive.review import ClipAnnotation, is_proposal_reviewer

logger = logging.getLogger(__name__)


class BreachAgreement(enum.StrEnum):
    """How two reviewers' breach findings compare."""

    BOTH = "both"
    NEITHER = "neither"
    DISAGREE = "disagree"


@dataclass(frozen=True)
class AgreementMetrics:
    """How far two reviewers' marks of one clip agree.

    Parameters
    ----------
    sop_instance_uid : str
        The clip.
    reviewers : tuple of str
        ``(reviewer of a, reviewer of b)``.
    calibrated : bool
        Whether a calibration was given; without it the tip distances are ``None``.
    tip_frames : int
        Number of frames on which both reviewers show a tip (keyframe or
        interpolated) and the distance between the tips was measured in mm
        (0 when uncalibrated).
    tip_distance_mean_mm, tip_distance_max_mm : float or None
        Mean and maximum of the per-frame distance between the two tips over
        those frames; ``None`` when there are none.
    tip_distance_max_frame : int or None
        First frame on which the maximum occurs.
    spread_frames : int
        Number of frames on which at least one reviewer's spread mask has a
        pixel (a frame without a mask counts as an empty mask for the other).
    spread_dice_mean : float or None
        Mean over those frames of the per-frame Dice coefficient.
    spread_dice_pooled : float or None
        Dice of the two reviewers' masks over those frames taken as one
        (T, rows, cols) volume: ``2 Σ|A∩B| / Σ(|A| + |B|)``, so frames with a
        large spread weigh more.
    breach_a, breach_b : bool or None
        Each reviewer's breach finding (``None``: no danger structure marked).
    breach_agreement : BreachAgreement or None
        ``BOTH``, ``NEITHER`` or ``DISAGREE``; ``None`` when either reviewer's
        breach is not assessed.
    notes : tuple of str
        Why metrics are missing, and any measurement that was skipped.
    """

    sop_instance_uid: str
    reviewers: tuple[str, str]
    calibrated: bool
    tip_frames: int = 0
    tip_distance_mean_mm: float | None = None
    tip_distance_max_mm: float | None = None
    tip_distance_max_frame: int | None = None
    spread_frames: int = 0
    spread_dice_mean: float | None = None
    spread_dice_pooled: float | None = None
    breach_a: bool | None = None
    breach_b: bool | None = None
    breach_agreement: BreachAgreement | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The metrics as JSON-ready plain data (lists for tuples, strings for enums).

        ``*_frame`` fields are frame numbers, 1-based (index + 1); the attributes stay 0-based.
        """
        return {
            f.name: (None if (v := getattr(self, f.name)) is None else v + 1)
            if f.name.endswith("_frame")
            else to_plain(getattr(self, f.name))
            for f in fields(self)
        }


def _check_same_clip(a: ClipAnnotation, b: ClipAnnotation) -> None:
    proposals = [x.reviewer for x in (a, b) if is_proposal_reviewer(x.reviewer)]
    if proposals:
        raise MetricsError(
            f"agreement: expected two reviewers' annotations, but {proposals[0]!r} is the automatic "
            "proposals' identity, which is never a review; compare people's annotations (a proposal "
            "accepted by a reviewer is part of that reviewer's annotation)"
        )
    mine = (a.sop_instance_uid, a.n_frames, a.frame_shape)
    theirs = (b.sop_instance_uid, b.n_frames, b.frame_shape)
    if mine != theirs:
        raise MetricsError(
            "agreement: expected two annotations of one clip (same SOP Instance UID, number of frames "
            f"and frame shape), but got {mine} from {a.reviewer!r} and {theirs} from {b.reviewer!r}; "
            "compare annotations of the same clip"
        )


def agreement(a: ClipAnnotation, b: ClipAnnotation, calibration: Calibration | None) -> AgreementMetrics:
    """Compare two reviewers' annotations of the same clip.

    Parameters
    ----------
    a, b : ClipAnnotation
        Annotations of one clip (same SOP Instance UID, frame count and shape),
        usually by two different reviewers.
    calibration : Calibration or None
        The clip's calibration; ``None`` gives no tip distances.

    Returns
    -------
    AgreementMetrics

    Raises
    ------
    MetricsError
        If the annotations are not of the same clip, or one is an automatic
        proposal (:data:`~archive.review.PROPOSAL_REVIEWER`).
    """
    _check_same_clip(a, b)
    notes: list[str] = []
    if calibration is None:
        notes.append(UNCALIBRATED_NOTE)
    distances = _tip_distances(a, b, calibration, notes)
    spread = _spread_dice(a, b, notes)
    breach_a, _ = find_breaches(a)
    breach_b, _ = find_breaches(b)
    verdict: BreachAgreement | None = None
    if breach_a is None or breach_b is None:
        unassessed = [ann.reviewer for ann, br in ((a, breach_a), (b, breach_b)) if br is None]
        notes.append(f"no danger structure marked by {', '.join(unassessed)}: no breach agreement")
    elif breach_a and breach_b:
        verdict = BreachAgreement.BOTH
    elif not breach_a and not breach_b:
        verdict = BreachAgreement.NEITHER
    else:
        verdict = BreachAgreement.DISAGREE

    mean_mm = max_mm = max_frame = None
    if distances:
        mean_mm = float(np.mean([d for _, d in distances]))
        max_frame, max_mm = max(distances, key=lambda fd: (fd[1], -fd[0]))
    logger.debug("agreement of %s and %s on %s: notes %s", a.reviewer, b.reviewer, a.sop_instance_uid, notes)
    return AgreementMetrics(
        sop_instance_uid=a.sop_instance_uid,
        reviewers=(a.reviewer, b.reviewer),
        calibrated=calibration is not None,
        tip_frames=len(distances),
        tip_distance_mean_mm=mean_mm,
        tip_distance_max_mm=max_mm,
        tip_distance_max_frame=max_frame,
        spread_frames=spread[0],
        spread_dice_mean=spread[1],
        spread_dice_pooled=spread[2],
        breach_a=breach_a,
        breach_b=breach_b,
        breach_agreement=verdict,
        notes=tuple(notes),
    )


def _tip_distances(
    a: ClipAnnotation, b: ClipAnnotation, calibration: Calibration | None, notes: list[str]
) -> list[tuple[int, float]]:
    """``(frame, distance_mm)`` for every frame on which both reviewers show a tip."""
    both = [
        (f, tip_a, tip_b)
        for f in range(a.n_frames)
        if (tip_a := a.tip_at(f)) is not None and (tip_b := b.tip_at(f)) is not None
    ]
    if not both:
        notes.append("no frame on which both reviewers show a needle tip: no tip distance")
        return []
    if calibration is None:
        return []
    measured: list[tuple[int, float]] = []
    for frame, tip_a, tip_b in both:
        try:
            measured.append((frame, tip_to_point_mm(calibration, tip_a, tip_b)))
        except CalibrationError as exc:
            notes.append(f"tip distance on frame {frame} not measurable: {exc}")
    return measured


def _spread_dice(
    a: ClipAnnotation, b: ClipAnnotation, notes: list[str]
) -> tuple[int, float | None, float | None]:
    """``(frames, mean per-frame Dice, pooled Dice)`` over frames where either has spread."""
    empty = np.zeros(a.frame_shape, dtype=bool)
    per_frame: list[float] = []
    overlap = total = 0
    for frame in sorted(set(a.spread) | set(b.spread)):
        mask_a = a.spread.get(frame, empty)
        mask_b = b.spread.get(frame, empty)
        if not (mask_a.any() or mask_b.any()):
            continue
        per_frame.append(dice(mask_a, mask_b))
        overlap += int(np.logical_and(mask_a, mask_b).sum())
        total += int(mask_a.sum()) + int(mask_b.sum())
    if not per_frame:
        notes.append("no spread marked by either reviewer: no spread Dice")
        return 0, None, None
    return len(per_frame), float(np.mean(per_frame)), 2.0 * overlap / total
