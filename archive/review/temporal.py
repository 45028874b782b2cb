"""How each kind of mark is carried from its keyframes to the other frames of a clip.

A reviewer stores a mark on a few *keyframes*; every other frame shows a mark
*carried* from them. These pure functions decide what a frame shows, and both
the review widget and the audit metrics call them (through
:class:`~archive.review.clip.ClipAnnotation`), so a metric is computed on
exactly what the reviewer saw.

Temporal modes (:class:`TemporalMode`), and the mode of each kind
(:data:`TEMPORAL_MODES`):

================  ==========================  ==========================================
kind              mode                        frames after the last keyframe
================  ==========================  ==========================================
needle            ``interpolate``             nothing (the needle moves; no extrapolation)
target            ``hold``                    the last keyframe's target
danger            ``hold``                    the last keyframe's masks
spread            ``interpolate-then-hold``   the last keyframe's mask
================  ==========================  ==========================================

* ``interpolate``: linear between the keyframe before and the keyframe after;
  nothing before the first or after the last keyframe.
* ``hold``: the keyframe's mark from that keyframe until the next one, and after
  the last; nothing before the first. Targets and danger structures are static
  anatomy: marked once, they stay until the reviewer marks them again.
* ``interpolate-then-hold``: interpolated between keyframes, held after the
  last. Spread masks are interpolated by shape (signed distance maps,
  :func:`archive.review.interpolate.interpolate_mask`): a blob that grows, shrinks or
  moves by less than its size changes smoothly; one that jumps so far that the
  two keyframe shapes do not overlap vanishes in between, so mark a keyframe
  closer to the jump.

:func:`carry` is the whole rule on frame numbers; the ``*_shown`` functions
apply it to each kind's marks. ``interpolate-then-hold`` may also be passed for
targets and danger structures (their "optionally interpolated" mode); the
archive uses the modes of :data:`TEMPORAL_MODES`.
"""

from __future__ import annotations

import bisect
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from archive.errors import AnnotationError
from archive.model import NeedleView
from archive.review.interpolate import interpolate_mask, interpolate_point, interpolate_polyline
from archive.review.marks import MarkKind, NeedleMark, TargetMark

logger = logging.getLogger(__name__)

Mask = NDArray[np.bool_]
#: Signed distance map of a keyframe mask by frame (a cache the caller may keep).
DistanceOf = Callable[[int, Mask], NDArray[np.float64]]


class TemporalMode(enum.StrEnum):
    """How a mark is carried from its keyframes to the frames between and after them."""

    INTERPOLATE = "interpolate"
    HOLD = "hold"
    INTERPOLATE_THEN_HOLD = "interpolate-then-hold"


#: The temporal mode of each kind of mark (documented in ``docs/annotation-format.md``).
TEMPORAL_MODES: Mapping[MarkKind, TemporalMode] = MappingProxyType(
    {
        MarkKind.NEEDLE: TemporalMode.INTERPOLATE,
        MarkKind.TARGET: TemporalMode.HOLD,
        MarkKind.DANGER: TemporalMode.HOLD,
        MarkKind.SPREAD: TemporalMode.INTERPOLATE_THEN_HOLD,
    }
)


class MarkState(enum.StrEnum):
    """What a frame shows of one kind of mark."""

    KEYFRAME = "keyframe"
    INTERPOLATED = "interpolated"
    HELD = "held"


@dataclass(frozen=True)
class Carry:
    """Where the mark a frame shows comes from.

    Attributes
    ----------
    before : int
        The keyframe at or before the frame (the frame itself on a keyframe).
    after : int or None
        The next keyframe when the mark is interpolated between ``before`` and
        ``after``; ``None`` when the frame is a keyframe or holds ``before``'s mark.
    """

    before: int
    after: int | None = None

    def state(self, frame: int) -> MarkState:
        """The :class:`MarkState` of ``frame`` under this carry."""
        if self.before == frame:
            return MarkState.KEYFRAME
        return MarkState.HELD if self.after is None else MarkState.INTERPOLATED


def carry(keyframes: Sequence[int], frame: int, mode: TemporalMode) -> Carry | None:
    """Which keyframes the mark on ``frame`` comes from under ``mode``.

    Parameters
    ----------
    keyframes : sequence of int
        The kind's keyframes, ascending.
    frame : int
        0-based frame.
    mode : TemporalMode
        How the kind is carried.

    Returns
    -------
    Carry or None
        ``None`` when the frame shows nothing of the kind: before the first
        keyframe, and after the last in ``interpolate`` mode.
    """
    mode = TemporalMode(mode)
    i = bisect.bisect_right(keyframes, frame)
    if i == 0:
        return None
    before = keyframes[i - 1]
    if before == frame:
        return Carry(before)
    if i == len(keyframes):
        return None if mode is TemporalMode.INTERPOLATE else Carry(before)
    if mode is TemporalMode.HOLD:
        return Carry(before)
    return Carry(before, keyframes[i])


def needle_shown(
    needle: Mapping[int, NeedleMark], frame: int, mode: TemporalMode = TEMPORAL_MODES[MarkKind.NEEDLE]
) -> tuple[NeedleMark, MarkState] | None:
    """The needle ``frame`` shows, and whether it is a keyframe, interpolated or held.

    Between keyframes of different views (a shaft and a dot) nothing is
    interpolated: the frame shows no needle in ``interpolate`` mode and the
    earlier keyframe's in the holding modes. Nothing either where interpolation
    collapses the shaft to one point.

    Parameters
    ----------
    needle : mapping of int to NeedleMark
        Needle keyframes, in frame order.
    frame : int
        0-based frame.
    mode : TemporalMode, optional
        Default ``interpolate``.

    Returns
    -------
    tuple of (NeedleMark, MarkState) or None
    """
    found = carry(tuple(needle), frame, mode)
    if found is None:
        return None
    a = needle[found.before]
    if found.after is None:
        return a, found.state(frame)
    b = needle[found.after]
    if a.view is not b.view:
        return None if mode is TemporalMode.INTERPOLATE else (a, MarkState.HELD)
    fa, fb = found.before, found.after
    if a.view is NeedleView.OUT_OF_PLANE:
        return NeedleMark((interpolate_point(a.tip, b.tip, fa, fb, frame),), a.view), MarkState.INTERPOLATED
    points = interpolate_polyline(a.points, b.points, fa, fb, frame)
    distinct = tuple(p for i, p in enumerate(points) if i == 0 or p != points[i - 1])
    try:
        return NeedleMark(distinct, a.view), MarkState.INTERPOLATED
    except AnnotationError as exc:
        # Degenerate geometry, e.g. a shaft whose ends swap between keyframes collapses half-way.
        logger.debug("no needle interpolated on frame %d: %s", frame, exc)
        return None


def target_shown(
    target: Mapping[int, TargetMark], frame: int, mode: TemporalMode = TEMPORAL_MODES[MarkKind.TARGET]
) -> tuple[TargetMark, MarkState] | None:
    """The target ``frame`` shows, and whether it is a keyframe, interpolated or held.

    When interpolating, keyframes naming different targets (L4 then L5 in the
    one-puncture technique) are not interpolated into each other: the earlier
    target is held until the next keyframe (nothing in ``interpolate`` mode).

    Parameters
    ----------
    target : mapping of int to TargetMark
        Target keyframes, in frame order.
    frame : int
        0-based frame.
    mode : TemporalMode, optional
        Default ``hold``.

    Returns
    -------
    tuple of (TargetMark, MarkState) or None
    """
    found = carry(tuple(target), frame, mode)
    if found is None:
        return None
    a = target[found.before]
    if found.after is None:
        return a, found.state(frame)
    b = target[found.after]
    if a.name != b.name:
        return None if mode is TemporalMode.INTERPOLATE else (a, MarkState.HELD)
    point = interpolate_point(a.point, b.point, found.before, found.after, frame)
    return TargetMark(point, a.name), MarkState.INTERPOLATED


def _distance(distance_of: DistanceOf | None, frame: int, mask: Mask) -> NDArray[np.float64] | Mask:
    return mask if distance_of is None else distance_of(frame, mask)


def spread_shown(
    spread: Mapping[int, Mask],
    frame: int,
    mode: TemporalMode = TEMPORAL_MODES[MarkKind.SPREAD],
    distance_of: DistanceOf | None = None,
) -> tuple[Mask, MarkState] | None:
    """The spread mask ``frame`` shows, and whether it is a keyframe, interpolated or held.

    Parameters
    ----------
    spread : mapping of int to ndarray of shape (rows, cols), bool
        Spread keyframe masks, in frame order.
    frame : int
        0-based frame.
    mode : TemporalMode, optional
        Default ``interpolate-then-hold``.
    distance_of : callable, optional
        ``distance_of(keyframe, mask)`` returns the signed distance map of a
        keyframe mask (:func:`archive.review.interpolate.signed_distance`), so a
        caller can keep them; by default they are computed on each call.

    Returns
    -------
    tuple of (ndarray, MarkState) or None
        A keyframe or held mask is the stored read-only array; an interpolated
        one is a new read-only array.
    """
    found = carry(tuple(spread), frame, mode)
    if found is None:
        return None
    if found.after is None:
        return spread[found.before], found.state(frame)
    mask = interpolate_mask(
        _distance(distance_of, found.before, spread[found.before]),
        _distance(distance_of, found.after, spread[found.after]),
        found.before,
        found.after,
        frame,
    )
    mask.setflags(write=False)
    return mask, MarkState.INTERPOLATED


def danger_shown(
    danger: Mapping[int, Mapping[str, Mask]],
    frame: int,
    mode: TemporalMode = TEMPORAL_MODES[MarkKind.DANGER],
    distance_of: Callable[[int, str, Mask], NDArray[np.float64]] | None = None,
) -> tuple[Mapping[str, Mask], MarkState] | None:
    """The danger-structure masks ``frame`` shows, and whether they are a keyframe's, interpolated or held.

    A danger keyframe holds every class marked on that frame, so the next
    keyframe replaces all classes at once. When interpolating, a class present
    on both keyframes is interpolated by shape; a class on the earlier keyframe
    only is held until the next keyframe.

    Parameters
    ----------
    danger : mapping of int to mapping of str to ndarray of shape (rows, cols), bool
        Danger keyframes: masks by class name, in frame order.
    frame : int
        0-based frame.
    mode : TemporalMode, optional
        Default ``hold``.
    distance_of : callable, optional
        ``distance_of(keyframe, class_name, mask)``: signed distance maps kept by the caller.

    Returns
    -------
    tuple of (mapping of str to ndarray, MarkState) or None
    """
    found = carry(tuple(danger), frame, mode)
    if found is None:
        return None
    a = danger[found.before]
    if found.after is None:
        return a, found.state(frame)
    b = danger[found.after]
    masks: dict[str, Mask] = {}
    for name, mask in a.items():
        if name not in b:
            masks[name] = mask
            continue
        if distance_of is None:
            da: NDArray[np.float64] | Mask = mask
            db: NDArray[np.float64] | Mask = b[name]
        else:
            da, db = distance_of(found.before, name, mask), distance_of(found.after, name, b[name])
        shown = interpolate_mask(da, db, found.before, found.after, frame)
        shown.setflags(write=False)
        masks[name] = shown
    return MappingProxyType(masks), MarkState.INTERPOLATED


class CarriedMasks:
    """The masks each frame of one annotation shows, with what they cost to compute kept.

    An annotation is immutable, so the signed distance maps of its keyframe
    masks are kept for good, and the carried masks of the last
    :data:`KEPT_FRAMES` frames asked for (bounded memory): stepping back and
    forth gets the same array, which the widget sees as an unchanged mark.

    Parameters
    ----------
    spread : mapping of int to ndarray
        Spread keyframe masks, in frame order.
    danger : mapping of int to mapping of str to ndarray
        Danger keyframe masks by class, in frame order.
    """

    #: How many frames' carried masks are kept.
    KEPT_FRAMES = 16

    def __init__(self, spread: Mapping[int, Mask], danger: Mapping[int, Mapping[str, Mask]]) -> None:
        self._spread = spread
        self._danger = danger
        self._distances: dict[tuple[int, str], NDArray[np.float64]] = {}
        self._shown: dict[tuple[MarkKind, int], object] = {}

    def _distance(self, frame: int, name: str, mask: Mask) -> NDArray[np.float64]:
        from archive.review.interpolate import signed_distance

        key = (frame, name)
        if key not in self._distances:
            self._distances[key] = signed_distance(mask)
        return self._distances[key]

    def _keep(self, key: tuple[MarkKind, int], value: object) -> None:
        if len(self._shown) >= self.KEPT_FRAMES:
            del self._shown[next(iter(self._shown))]
        self._shown[key] = value

    def spread(self, frame: int) -> tuple[Mask, MarkState] | None:
        """:func:`spread_shown` of ``frame`` in the mode of :data:`TEMPORAL_MODES`."""
        key = (MarkKind.SPREAD, frame)
        if key not in self._shown:
            mode = TEMPORAL_MODES[MarkKind.SPREAD]
            self._keep(key, spread_shown(self._spread, frame, mode, lambda f, m: self._distance(f, "", m)))
        return self._shown[key]  # type: ignore[return-value]

    def danger(self, frame: int) -> tuple[Mapping[str, Mask], MarkState] | None:
        """:func:`danger_shown` of ``frame`` in the mode of :data:`TEMPORAL_MODES`."""
        key = (MarkKind.DANGER, frame)
        if key not in self._shown:
            mode = TEMPORAL_MODES[MarkKind.DANGER]
            self._keep(
                key, danger_shown(self._danger, frame, mode, lambda f, c, m: self._distance(f, "d " + c, m))
            )
        return self._shown[key]  # type: ignore[return-value]
