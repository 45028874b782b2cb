"""The live readout of the current frame: distances, angle and area in physical units.

Pure: a :class:`~archive.review.ClipAnnotation`, the clip's
:class:`~archive.calibration.Calibration` (or ``None``) and a frame index in,
a :class:`FrameReadout` out. Every number comes from the archive's pure
functions (:mod:`archive.analysis.geometry`, :meth:`Calibration.area_mm2`), the same
ones :func:`archive.analysis.metrics.clip_metrics` uses for the audit, so what a
reviewer sees while marking is what the audit will report.

A clip without calibration gets no number at all: each measurement says it
is unavailable instead of showing a pixel count that could be read as mm.

:func:`proposed_readout` measures an automatic proposal's needle and spread of
the frame the same way, so the widget can show the reviewed and the proposed
value side by side (``reviewed: … · proposed: …``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from archive.analysis.geometry import nearest_mask_mm, needle_angle_deg, tip_to_point_mm
from archive.calibration import Calibration
from archive.errors import CalibrationError
from archive.model import NeedleView
from archive.review import ClipAnnotation

logger = logging.getLogger(__name__)

#: Text of every mm, mm² and degree readout of a clip without calibration.
UNCALIBRATED_TEXT = "unavailable: clip is uncalibrated (no ultrasound regions)"


@dataclass(frozen=True)
class Measurement:
    """One readout line.

    Attributes
    ----------
    value : float or None
        The number in the unit named by the field holding it; ``None`` when it
        cannot be measured on this frame.
    text : str
        What the widget shows: the number with its unit, or why there is none.
    """

    value: float | None
    text: str


@dataclass(frozen=True)
class FrameReadout:
    """The measurements of one frame.

    Attributes
    ----------
    frame : int
        0-based frame index.
    tip_to_target_mm : Measurement
        Needle tip to target, mm.
    needle_angle_deg : Measurement
        Needle shaft to the skin line (image rows), degrees in [0, 90].
    spread_area_mm2 : Measurement
        Injectate spread area, mm².
    nearest_danger_mm : Measurement
        Needle tip to the nearest danger structure, mm.
    nearest_danger_class : str or None
        Class of that structure.
    """

    frame: int
    tip_to_target_mm: Measurement
    needle_angle_deg: Measurement
    spread_area_mm2: Measurement
    nearest_danger_mm: Measurement
    nearest_danger_class: str | None


def _missing(reason: str) -> Measurement:
    return Measurement(None, f"— ({reason})")


def _not_measurable(exc: Exception) -> Measurement:
    return Measurement(None, f"unavailable: {exc}")


def _tip_to_target(annotation: ClipAnnotation, calibration: Calibration | None, frame: int) -> Measurement:
    tip, target = annotation.tip_at(frame), annotation.target_at(frame)
    if tip is None or target is None:
        absent = " and ".join(n for n, v in (("needle", tip), ("target", target)) if v is None)
        return _missing(f"no {absent} on this frame")
    if calibration is None:
        return Measurement(None, UNCALIBRATED_TEXT)
    try:
        distance_mm = tip_to_point_mm(calibration, tip, target.point)
    except CalibrationError as exc:
        return _not_measurable(exc)
    return Measurement(distance_mm, f"{distance_mm:.1f} mm")


def _needle_angle(annotation: ClipAnnotation, calibration: Calibration | None, frame: int) -> Measurement:
    mark = annotation.needle_at(frame)
    if mark is None:
        return _missing("no needle on this frame")
    if mark.view is NeedleView.OUT_OF_PLANE:
        return _missing("out-of-plane needle: a dot has no angle")
    if calibration is None:
        return Measurement(None, UNCALIBRATED_TEXT)
    try:
        angle_deg = needle_angle_deg(calibration, mark.entry, mark.tip)
    except (CalibrationError, ValueError) as exc:
        return _not_measurable(exc)
    return Measurement(angle_deg, f"{angle_deg:.1f}°")


def _spread_area(annotation: ClipAnnotation, calibration: Calibration | None, frame: int) -> Measurement:
    mask = annotation.spread_at(frame)
    if mask is None:
        return _missing("no spread marked on this frame")
    if calibration is None:
        return Measurement(None, UNCALIBRATED_TEXT)
    try:
        area_mm2 = calibration.area_mm2(mask)
    except CalibrationError as exc:
        return _not_measurable(exc)
    return Measurement(area_mm2, f"{area_mm2:.1f} mm²")


def _nearest_danger(
    annotation: ClipAnnotation, calibration: Calibration | None, frame: int
) -> tuple[Measurement, str | None]:
    masks = {name: mask for name, mask in annotation.danger_at(frame).items() if mask.any()}
    tip = annotation.tip_at(frame)
    if not masks or tip is None:
        absent = " and ".join(n for n, v in (("needle", tip), ("danger structure", masks)) if not v)
        return _missing(f"no {absent} on this frame"), None
    if calibration is None:
        return Measurement(None, UNCALIBRATED_TEXT), None
    nearest = nearest_mask_mm(calibration, tip, masks)
    if nearest.distance_mm is None:
        problems = "; ".join(f"{name}: {why}" for name, why in nearest.unmeasurable.items())
        return Measurement(None, f"unavailable: {problems}"), None
    return Measurement(nearest.distance_mm, f"{nearest.distance_mm:.1f} mm ({nearest.name})"), nearest.name


def frame_readout(annotation: ClipAnnotation, calibration: Calibration | None, frame: int) -> FrameReadout:
    """Measure the marks shown on one frame (keyframe or interpolated).

    Parameters
    ----------
    annotation : ClipAnnotation
        The reviewer's marks.
    calibration : Calibration or None
        The clip's calibration; ``None`` for an uncalibrated clip, whose
        measurements all say :data:`UNCALIBRATED_TEXT`.
    frame : int
        0-based frame index.

    Returns
    -------
    FrameReadout
        Tip to target (mm), needle angle to the skin line (degrees), spread
        area (mm²) and tip to the nearest danger structure (mm, with its
        class), each with the text to show.

    Raises
    ------
    AnnotationError
        If ``frame`` is not a frame of the clip.
    """
    danger, danger_class = _nearest_danger(annotation, calibration, frame)
    return FrameReadout(
        frame=frame,
        tip_to_target_mm=_tip_to_target(annotation, calibration, frame),
        needle_angle_deg=_needle_angle(annotation, calibration, frame),
        spread_area_mm2=_spread_area(annotation, calibration, frame),
        nearest_danger_mm=danger,
        nearest_danger_class=danger_class,
    )


def proposed_readout(
    annotation: ClipAnnotation, proposal: ClipAnnotation, calibration: Calibration | None, frame: int
) -> FrameReadout | None:
    """Measure what an automatic proposal shows on one frame, with the reviewer's anatomy.

    Parameters
    ----------
    annotation : ClipAnnotation
        The reviewer's marks: their target and danger structures are used.
    proposal : ClipAnnotation
        The stored proposal (reviewer ``auto``): its needle and spread
        keyframe of ``frame`` replace the reviewer's.
    calibration : Calibration or None
        The clip's calibration.
    frame : int
        0-based frame index.

    Returns
    -------
    FrameReadout or None
        ``None`` when the proposal has neither a needle nor a spread keyframe
        on ``frame`` (nothing proposed to measure).
    """
    needle = {frame: proposal.needle[frame]} if frame in proposal.needle else {}
    spread = {frame: proposal.spread[frame]} if frame in proposal.spread else {}
    if not needle and not spread:
        return None
    proposed = ClipAnnotation(
        annotation.sop_instance_uid,
        annotation.reviewer,
        annotation.n_frames,
        annotation.frame_shape,
        needle=needle,
        target=annotation.target,
        spread=spread,
        danger=annotation.danger,
    )
    return frame_readout(proposed, calibration, frame)
