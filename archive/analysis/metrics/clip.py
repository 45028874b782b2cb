"""Audit metrics of one reviewer's annotation of one clip.

Pure: a :class:`~archive.review.ClipAnnotation`, the clip's
:class:`~archive.calibration.Calibration` (or ``None``) and its
:class:`~archive.timing.FrameTimes` in, a :class:`ClipMetrics` out. Lengths are
in mm, areas in mm², angles in degrees and durations in seconds, all from the
calibration and timing cores; nothing is measured in pixels. A metric that
cannot be computed is ``None`` and :attr:`ClipMetrics.notes` says why.

Every frame is measured as the review widget shows it: needle, target, spread
and danger masks carried from their keyframes by
:mod:`archive.review.temporal` (interpolated or held), through the
:class:`~archive.review.ClipAnnotation` accessors the widget also uses.

The precise definitions are in ``docs/metrics.md``; the docstring of each
field repeats them in short.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from archive.analysis.geometry import nearest_mask_mm, needle_angle_deg, point_in_mask, tip_to_point_mm
from archive.calibration import Calibration
from archive.errors import CalibrationError, MetricsError
from archive.model import ClipEvent, NeedleView
from archive.review import ClipAnnotation, MarkKind
from archive.timing import FrameTimes

logger = logging.getLogger(__name__)

Mask = NDArray[np.bool_]

#: The note a clip without calibration gets; its mm, mm² and degree metrics are ``None``.
UNCALIBRATED_NOTE = "uncalibrated: no mm metrics (no Sequence of Ultrasound Regions)"
#: Note of a clip without frame timing (no Cine module): time metrics are not assessable.
UNTIMED_NOTE = "untimed: no time metrics (no Frame Time, Frame Time Vector or Cine Rate); not assessable"


class BreachBy(enum.StrEnum):
    """What entered a danger structure."""

    TIP = "tip"
    SPREAD = "spread"


@dataclass(frozen=True, order=True)
class Breach:
    """The needle tip or the injectate spread inside a danger structure on one frame.

    Parameters
    ----------
    frame : int
        0-based frame index.
    danger_class : str
        Class of the danger structure, e.g. ``"spinal canal"``.
    by : BreachBy
        ``TIP`` when the tip's pixel lies in the danger mask, ``SPREAD`` when
        the spread mask and the danger mask share a pixel.
    """

    frame: int
    danger_class: str
    by: BreachBy


@dataclass(frozen=True)
class ClipMetrics:
    """Audit metrics of one reviewer's annotation of one clip.

    Every metric is ``None`` when it cannot be computed; :attr:`notes` then
    says why (missing event, nothing marked, uncalibrated clip, ...).

    Parameters
    ----------
    sop_instance_uid, reviewer : str
        Which clip and whose marks.
    calibrated : bool
        Whether a calibration was given; without it every mm, mm² and degree
        metric is ``None``.
    needle_visible_frame, injection_start_frame, injection_end_frame : int or None
        The events the metrics refer to (0-based frames), ``None`` when not marked.
    tip_to_target_at_injection_start_mm : float or None
        Distance from the needle tip to the target on the injection-start
        frame; tip and target may be interpolated between keyframes there.
    needle_angle_deg : float or None
        Angle between the needle (line from its first marked point to its tip)
        and the skin line (the image row direction), in [0, 90] degrees, on
        :attr:`needle_angle_frame`.
    needle_angle_frame : int or None
        The nearest frame at or before injection start (the last frame of the
        clip when injection start is not marked) on which a needle is shown;
        ``None`` (and no angle) when that needle is out-of-plane or there is none.
    needle_marked_fraction : float or None
        Of the frames from needle visible to injection end inclusive, the
        fraction on which a needle is shown (keyframe or interpolated).
    needle_keyframe_fraction : float or None
        The same fraction counting needle keyframes only.
    max_spread_area_mm2 : float or None
        Largest spread area over the frames that show a spread mask
        (keyframe, interpolated or held).
    max_spread_frame : int or None
        First frame on which :attr:`max_spread_area_mm2` occurs.
    spread_covers_target : bool or None
        Whether, on some frame at or after injection start that has both a
        spread mask and a target, the target's pixel lies in the spread.
    spread_covers_target_frame : int or None
        First such frame, ``None`` when the spread never covers the target.
    min_tip_to_danger_mm : float or None
        Smallest distance from the tip to a non-empty danger mask over frames
        that show both (0.0 when the tip is inside); danger masks are held
        from their keyframes.
    min_tip_to_danger_frame : int or None
        First frame on which the minimum occurs.
    min_tip_to_danger_class : str or None
        Danger class of the minimum (first in alphabetical order on ties).
    breach : bool or None
        Whether any :class:`Breach` occurs; ``None`` when no danger structure
        is marked on any frame (not assessed).
    breaches : tuple of Breach
        Every breach, sorted by frame, class, then tip before spread.
    needle_visible_to_injection_end_s : float or None
        Time from the start of the needle-visible frame to the start of the
        injection-end frame, from the clip's frame times.
    notes : tuple of str
        Why metrics are missing, and any measurement that was skipped.
    """

    sop_instance_uid: str
    reviewer: str
    calibrated: bool
    needle_visible_frame: int | None = None
    injection_start_frame: int | None = None
    injection_end_frame: int | None = None
    tip_to_target_at_injection_start_mm: float | None = None
    needle_angle_deg: float | None = None
    needle_angle_frame: int | None = None
    needle_marked_fraction: float | None = None
    needle_keyframe_fraction: float | None = None
    max_spread_area_mm2: float | None = None
    max_spread_frame: int | None = None
    spread_covers_target: bool | None = None
    spread_covers_target_frame: int | None = None
    min_tip_to_danger_mm: float | None = None
    min_tip_to_danger_frame: int | None = None
    min_tip_to_danger_class: str | None = None
    breach: bool | None = None
    breaches: tuple[Breach, ...] = ()
    needle_visible_to_injection_end_s: float | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The metrics as JSON-ready plain data (lists for tuples, strings for enums).

        Frames are **frame numbers, 1-based** (frame index + 1), as everywhere a
        person or an export sees them: the ``*_frame`` fields and each breach's
        ``frame``. The attributes of this object stay 0-based indices.
        """
        return {
            f.name: _frame_number(getattr(self, f.name))
            if f.name.endswith("_frame")
            else to_plain(getattr(self, f.name))
            for f in fields(self)
        }


def _frame_number(index: int | None) -> int | None:
    return None if index is None else index + 1


def to_plain(value: Any) -> Any:
    """Convert metric values to JSON-ready data: dataclasses to dicts, tuples to lists, enums to str.

    A :class:`Breach` becomes ``{"frame": frame number (1-based), "danger_class", "by"}``.
    """
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Breach):
        return {"frame": value.frame + 1, "danger_class": value.danger_class, "by": value.by.value}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    return value


def find_breaches(annotation: ClipAnnotation) -> tuple[bool | None, tuple[Breach, ...]]:
    """Every breach of a danger structure by the tip or the spread.

    Pixel facts, no calibration needed: the tip breaches a danger structure
    when :func:`~archive.analysis.geometry.point_in_mask` says its pixel is in the mask;
    the spread breaches it when the two masks of the frame share a pixel.

    Parameters
    ----------
    annotation : ClipAnnotation
        One reviewer's marks.

    Returns
    -------
    breach : bool or None
        Whether any breach occurs; ``None`` when no danger mask is marked on any
        frame (breach not assessed).
    breaches : tuple of Breach
        Sorted by frame, class, then tip before spread.
    """
    if not annotation.danger:
        return None, ()
    found: list[Breach] = []
    for frame, by_class in _shown_danger(annotation):
        tip = annotation.tip_at(frame)
        spread = annotation.spread_at(frame)
        for danger_class, mask in by_class.items():
            if tip is not None and point_in_mask(tip, mask):
                found.append(Breach(frame, danger_class, BreachBy.TIP))
            if spread is not None and bool(np.logical_and(spread, mask).any()):
                found.append(Breach(frame, danger_class, BreachBy.SPREAD))
    return bool(found), tuple(sorted(found, key=lambda b: (b.frame, b.danger_class, b.by != BreachBy.TIP)))


def _shown_spread(annotation: ClipAnnotation) -> Iterator[tuple[int, Mask]]:
    """Every frame's spread mask as the widget shows it: keyframes, interpolated and held."""
    for frame in annotation.shown_frames(MarkKind.SPREAD):
        mask = annotation.spread_at(frame)
        if mask is not None:
            yield frame, mask


def _shown_danger(annotation: ClipAnnotation) -> Iterator[tuple[int, Mapping[str, Mask]]]:
    """Every frame's danger masks as the widget shows them: keyframes and held."""
    for frame in annotation.shown_frames(MarkKind.DANGER):
        if by_class := annotation.danger_at(frame):
            yield frame, by_class


def clip_metrics(
    annotation: ClipAnnotation, calibration: Calibration | None, frame_times: FrameTimes
) -> ClipMetrics:
    """Compute the audit metrics of one reviewer's annotation of one clip.

    Parameters
    ----------
    annotation : ClipAnnotation
        The reviewer's marks and events; frames are 0-based.
    calibration : Calibration or None
        The clip's calibration; ``None`` for an uncalibrated clip, which gets no
        mm, mm² or degree metrics and the note :data:`UNCALIBRATED_NOTE`.
    frame_times : FrameTimes
        The clip's frame times, one offset per frame of the annotation; for a
        clip without timing (:func:`archive.timing.unknown_frame_times`) the
        time metrics are ``None`` with the note :data:`UNTIMED_NOTE`.

    Returns
    -------
    ClipMetrics
        Metrics that cannot be computed are ``None`` with a note saying why.

    Raises
    ------
    MetricsError
        If ``frame_times`` has a different number of frames than the annotation.
    """
    if frame_times.number_of_frames != annotation.n_frames:
        raise MetricsError(
            f"clip metrics of {annotation.sop_instance_uid}: expected frame times for the annotation's "
            f"{annotation.n_frames} frames, but got {frame_times.number_of_frames}; pass the frame "
            "times read from the annotated clip"
        )
    notes: list[str] = []
    if calibration is None:
        notes.append(UNCALIBRATED_NOTE)
    events = annotation.events
    visible = events.get(ClipEvent.NEEDLE_VISIBLE)
    start = events.get(ClipEvent.INJECTION_START)
    end = events.get(ClipEvent.INJECTION_END)
    span = _visible_span(visible, end, notes)
    tip_to_target_mm = _tip_to_target(annotation, calibration, start, notes)
    angle, angle_frame = _needle_angle(annotation, calibration, start, notes)
    marked, keyframed = _needle_fractions(annotation, span)
    area, area_frame = _max_spread(annotation, calibration, notes)
    covers, covers_frame = _spread_covers_target(annotation, start, notes)
    danger_mm, danger_frame, danger_class = _min_tip_to_danger(annotation, calibration, notes)
    breach, breaches = find_breaches(annotation)
    if breach is None:
        notes.append("no danger structure marked on any frame: breach not assessed")
    duration_s = None
    if not frame_times.timed:
        notes.append(UNTIMED_NOTE)
    elif span is not None:
        duration_s = (frame_times.offsets_ms[span[1]] - frame_times.offsets_ms[span[0]]) / 1000.0
    logger.debug(
        "clip metrics of %s by %s: %d breaches, notes %s",
        annotation.sop_instance_uid,
        annotation.reviewer,
        len(breaches),
        notes,
    )
    return ClipMetrics(
        sop_instance_uid=annotation.sop_instance_uid,
        reviewer=annotation.reviewer,
        calibrated=calibration is not None,
        needle_visible_frame=visible,
        injection_start_frame=start,
        injection_end_frame=end,
        tip_to_target_at_injection_start_mm=tip_to_target_mm,
        needle_angle_deg=angle,
        needle_angle_frame=angle_frame,
        needle_marked_fraction=marked,
        needle_keyframe_fraction=keyframed,
        max_spread_area_mm2=area,
        max_spread_frame=area_frame,
        spread_covers_target=covers,
        spread_covers_target_frame=covers_frame,
        min_tip_to_danger_mm=danger_mm,
        min_tip_to_danger_frame=danger_frame,
        min_tip_to_danger_class=danger_class,
        breach=breach,
        breaches=breaches,
        needle_visible_to_injection_end_s=duration_s,
        notes=tuple(notes),
    )


def _visible_span(visible: int | None, end: int | None, notes: list[str]) -> tuple[int, int] | None:
    """Frames ``(needle visible, injection end)`` when both are marked in that order."""
    if visible is None or end is None:
        missing = " and ".join(
            e.value
            for e, f in ((ClipEvent.NEEDLE_VISIBLE, visible), (ClipEvent.INJECTION_END, end))
            if f is None
        )
        notes.append(
            f"no {missing} marked: no needle-visible fraction and no needle-visible to injection-end time"
        )
        return None
    if end < visible:
        notes.append(
            f"injection end (frame {end}) before needle visible (frame {visible}): no needle-visible "
            "fraction and no needle-visible to injection-end time"
        )
        return None
    return visible, end


def _tip_to_target(
    annotation: ClipAnnotation, calibration: Calibration | None, start: int | None, notes: list[str]
) -> float | None:
    if start is None:
        notes.append("no injection start marked: no tip-to-target distance")
        return None
    tip, target = annotation.tip_at(start), annotation.target_at(start)
    if tip is None or target is None:
        absent = " and ".join(n for n, v in (("needle", tip), ("target", target)) if v is None)
        notes.append(f"no {absent} on the injection-start frame {start}: no tip-to-target distance")
        return None
    if calibration is None:
        return None
    try:
        return tip_to_point_mm(calibration, tip, target.point)
    except CalibrationError as exc:
        notes.append(f"tip-to-target on frame {start} not measurable: {exc}")
        return None


def _needle_angle(
    annotation: ClipAnnotation, calibration: Calibration | None, start: int | None, notes: list[str]
) -> tuple[float | None, int | None]:
    last = annotation.n_frames - 1 if start is None else start
    shown = ((f, m) for f in range(last, -1, -1) if (m := annotation.needle_at(f)) is not None)
    found = next(shown, None)
    where = "the last frame" if start is None else "the injection-start frame"
    if found is None:
        notes.append(f"no needle on or before {where}: no needle angle")
        return None, None
    frame, mark = found
    if mark.view is NeedleView.OUT_OF_PLANE:
        notes.append(
            f"needle out-of-plane on frame {frame}, the last one shown on or before {where}: no angle"
        )
        return None, None
    if start is None:
        notes.append(f"no injection start marked: needle angle taken on frame {frame}, the last needle shown")
    if calibration is None:
        return None, frame
    try:
        return needle_angle_deg(calibration, mark.entry, mark.tip), frame
    except (CalibrationError, ValueError) as exc:
        notes.append(f"needle angle on frame {frame} not measurable: {exc}")
        return None, frame


def _needle_fractions(
    annotation: ClipAnnotation, span: tuple[int, int] | None
) -> tuple[float | None, float | None]:
    if span is None:
        return None, None
    frames = range(span[0], span[1] + 1)
    shown = sum(annotation.needle_at(f) is not None for f in frames)
    keyed = sum(f in annotation.needle for f in frames)
    return shown / len(frames), keyed / len(frames)


def _max_spread(
    annotation: ClipAnnotation, calibration: Calibration | None, notes: list[str]
) -> tuple[float | None, int | None]:
    if not annotation.spread:
        notes.append("no spread marked: no spread area")
        return None, None
    if calibration is None:
        return None, None
    best: tuple[float, int] | None = None
    for frame, mask in _shown_spread(annotation):
        try:
            area = calibration.area_mm2(mask)
        except CalibrationError as exc:
            notes.append(f"spread area on frame {frame} not measurable: {exc}")
            continue
        if best is None or area > best[0]:
            best = (area, frame)
    return (None, None) if best is None else best


def _spread_covers_target(
    annotation: ClipAnnotation, start: int | None, notes: list[str]
) -> tuple[bool | None, int | None]:
    if start is None:
        notes.append("no injection start marked: spread coverage of the target not assessed")
        return None, None
    assessed = False
    for frame, mask in _shown_spread(annotation):
        target = annotation.target_at(frame) if frame >= start else None
        if target is None:
            continue
        assessed = True
        if point_in_mask(target.point, mask):
            return True, frame
    if not assessed:
        notes.append(
            "no frame at or after injection start has both a spread mask and a target: "
            "spread coverage of the target not assessed"
        )
        return None, None
    return False, None


def _min_tip_to_danger(
    annotation: ClipAnnotation, calibration: Calibration | None, notes: list[str]
) -> tuple[float | None, int | None, str | None]:
    frames = [
        (frame, tip, masks)
        for frame, by_class in _shown_danger(annotation)
        if (tip := annotation.tip_at(frame)) is not None
        and (masks := {name: mask for name, mask in by_class.items() if mask.any()})
    ]
    if not frames:
        if annotation.danger:
            notes.append(
                "no frame has both a needle tip and a non-empty danger mask: no tip-to-danger distance"
            )
        return None, None, None
    if calibration is None:
        return None, None, None
    best: tuple[float, int, str] | None = None
    for frame, tip, masks in frames:
        nearest = nearest_mask_mm(calibration, tip, masks)
        notes.extend(
            f"tip to {name!r} on frame {frame} not measurable: {why}"
            for name, why in nearest.unmeasurable.items()
        )
        if nearest.distance_mm is None or nearest.name is None:
            continue
        if best is None or nearest.distance_mm < best[0]:
            best = (nearest.distance_mm, frame, nearest.name)
    return (None, None, None) if best is None else best
