"""One reviewer's annotation of one clip, as an immutable value.

Every edit (``with_…`` / ``without_…`` / :meth:`ClipAnnotation.copy_from_previous`)
returns a new :class:`ClipAnnotation` and leaves the old one untouched, so undo
is keeping the previous object and a saved version is one object serialised
(:mod:`archive.review.serialise`). Masks are stored read-only and shared
between versions, so keeping many versions is cheap.

Keyframes and carried marks
---------------------------
Marks are stored on *keyframes* only; every other frame shows a mark
*carried* from them by the kind's temporal mode
(:data:`~archive.review.temporal.TEMPORAL_MODES`, documented in
:mod:`~archive.review.temporal`): the needle is interpolated between
keyframes; the target and danger structures are held from a keyframe until
the next and after the last; the spread is interpolated by shape between
keyframes and held after the last. :meth:`~ClipAnnotation.needle_at`,
:meth:`~ClipAnnotation.target_at`, :meth:`~ClipAnnotation.spread_at` and
:meth:`~ClipAnnotation.danger_at` return what a frame shows, and
:meth:`~ClipAnnotation.mark_state` says whether it is a keyframe,
interpolated or held. Nothing is shown before a kind's first keyframe, and no
needle after its last one (no extrapolation) or between keyframes of
different views (a shaft cannot be interpolated into a dot). Targets of
different names (L4 then L5 in the one-puncture technique) are held, never
interpolated into each other.

Editing a keyframe therefore changes the carried frames after it (and, for
interpolated kinds, before it); :meth:`~ClipAnnotation.make_keyframe` stores
what a carried frame shows as a keyframe of its own.

Masks
-----
Injectate spread is one boolean mask of shape ``(rows, cols)`` per frame that
has one. Danger structures are, per frame, a mapping from class name to a
boolean mask of shape ``(rows, cols)``; masks of different classes may overlap.
A danger keyframe holds every class shown on that frame.
Class names are stripped and lower-cased (``"Nerve root "`` -> ``"nerve root"``);
:data:`~archive.review.marks.DANGER_CLASSES` lists the usual ones. An
all-false mask is kept: it records "checked, nothing here", unlike no mask.

Marks may be edited only while the status is draft or needs-rework
(:data:`~archive.review.workflow.EDITABLE_STATUSES`); comments may be added
in any status.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from archive.errors import AnnotationError
from archive.model import ClipEvent, ReviewStatus
from archive.review.events import check_events, check_frame
from archive.review.interpolate import Point
from archive.review.marks import (
    AdverseEvent,
    MarkKind,
    Mask,
    NeedleMark,
    ReviewComment,
    TargetMark,
    check_point,
    danger_class_name,
    frozen_mask,
)
from archive.review.temporal import (
    TEMPORAL_MODES,
    CarriedMasks,
    MarkState,
    needle_shown,
    target_shown,
)
from archive.review.workflow import COMMENT_REQUIRED, EDITABLE_STATUSES, transition

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ClipAnnotation:
    """One reviewer's marks, events and review status for one clip.

    Create an empty one with :meth:`new`; edit with the ``with_…`` methods.
    Frames are 0-based indices into the clip in this API and in the stored
    JSON; error messages, like everything a person reads, number frames from 1.

    Parameters
    ----------
    sop_instance_uid : str
        SOP Instance UID of the annotated clip.
    reviewer : str
        User name of the reviewer who owns these marks.
    n_frames : int
        Number of frames of the clip, >= 1.
    frame_shape : tuple of int
        ``(rows, cols)`` of one frame.
    needle : mapping of int to NeedleMark
        Needle keyframes.
    target : mapping of int to TargetMark
        Target keyframes.
    spread : mapping of int to ndarray of shape (rows, cols), bool
        Injectate spread masks.
    danger : mapping of int to mapping of str to ndarray of shape (rows, cols), bool
        Danger-structure masks by class name, per frame.
    events : mapping of ClipEvent to int
        Frame of each marked event except adverse events.
    adverse_events : tuple of AdverseEvent
        Adverse events, kept sorted by frame then note.
    status : ReviewStatus
        Review status.
    comments : tuple of ReviewComment
        Review comments in the order they were made.

    Raises
    ------
    AnnotationError
        If any mark, mask or event does not fit the clip.
    """

    sop_instance_uid: str
    reviewer: str
    n_frames: int
    frame_shape: tuple[int, int]
    needle: Mapping[int, NeedleMark] = field(default_factory=dict)
    target: Mapping[int, TargetMark] = field(default_factory=dict)
    spread: Mapping[int, Mask] = field(default_factory=dict)
    danger: Mapping[int, Mapping[str, Mask]] = field(default_factory=dict)
    events: Mapping[ClipEvent, int] = field(default_factory=dict)
    adverse_events: tuple[AdverseEvent, ...] = ()
    status: ReviewStatus = ReviewStatus.DRAFT
    comments: tuple[ReviewComment, ...] = ()
    _masks: CarriedMasks = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        uid = str(self.sop_instance_uid).strip()
        reviewer = str(self.reviewer).strip()
        if not uid or not reviewer:
            raise AnnotationError(
                f"annotation: expected a SOP Instance UID and a reviewer, but got "
                f"sop_instance_uid={self.sop_instance_uid!r}, reviewer={self.reviewer!r}"
            )
        integers = (self.n_frames, *self.frame_shape)
        if any(isinstance(v, bool) or not hasattr(v, "__index__") for v in integers):
            raise AnnotationError(
                f"annotation: expected integer n_frames and frame_shape, but got "
                f"n_frames={self.n_frames!r}, frame_shape={self.frame_shape!r}"
            )
        n_frames = int(self.n_frames)
        if n_frames < 1:
            raise AnnotationError(f"n_frames: expected at least 1 frame, but got {self.n_frames}")
        if len(self.frame_shape) != 2 or min(int(v) for v in self.frame_shape) < 1:
            raise AnnotationError(
                f"frame_shape: expected (rows, cols) with both >= 1, but got {self.frame_shape!r}"
            )
        shape = (int(self.frame_shape[0]), int(self.frame_shape[1]))

        needle: dict[int, NeedleMark] = {}
        for frame, mark in sorted(self.needle.items()):
            f = check_frame(frame, n_frames, "needle keyframe")
            for i, point in enumerate(mark.points):
                check_point(point, shape, f"needle point {i} on frame {f + 1}")
            needle[f] = mark
        target: dict[int, TargetMark] = {}
        for frame, tmark in sorted(self.target.items()):
            f = check_frame(frame, n_frames, "target keyframe")
            check_point(tmark.point, shape, f"target on frame {f + 1}")
            target[f] = tmark
        spread: dict[int, Mask] = {}
        for frame, mask in sorted(self.spread.items()):
            f = check_frame(frame, n_frames, "spread mask")
            spread[f] = frozen_mask(mask, shape, f"spread mask on frame {f + 1}")
        danger: dict[int, Mapping[str, Mask]] = {}
        for frame, by_class in sorted(self.danger.items()):
            f = check_frame(frame, n_frames, "danger mask")
            masks: dict[str, Mask] = {}
            for name, mask in sorted(by_class.items()):
                cls = danger_class_name(name)
                if cls in masks:
                    raise AnnotationError(
                        f"danger masks on frame {f + 1}: class {cls!r} given twice (names are compared "
                        "stripped and lower-cased); merge the masks"
                    )
                masks[cls] = frozen_mask(mask, shape, f"danger mask {cls!r} on frame {f + 1}")
            if masks:
                danger[f] = MappingProxyType(masks)
        events = {ClipEvent.parse(e): f for e, f in self.events.items()}
        for comment in self.comments:
            if comment.frame is not None:
                check_frame(comment.frame, n_frames, f"frame of comment {comment.text!r}")
        adverse = tuple(sorted(self.adverse_events))
        for first, second in itertools.pairwise(adverse):
            if first == second:
                raise AnnotationError(
                    f"adverse events: {first} is recorded twice; record each adverse event once"
                )
        check_events(events, adverse, n_frames)
        events = {e: int(f) for e, f in events.items()}

        set_ = object.__setattr__
        set_(self, "sop_instance_uid", uid)
        set_(self, "reviewer", reviewer)
        set_(self, "n_frames", n_frames)
        set_(self, "frame_shape", shape)
        set_(self, "needle", MappingProxyType(needle))
        set_(self, "target", MappingProxyType(target))
        set_(self, "spread", MappingProxyType(spread))
        set_(self, "danger", MappingProxyType(danger))
        set_(self, "_masks", CarriedMasks(self.spread, self.danger))
        set_(self, "events", MappingProxyType(dict(sorted(events.items()))))
        set_(self, "adverse_events", adverse)
        set_(self, "status", ReviewStatus.parse(self.status))
        set_(self, "comments", tuple(self.comments))

    @classmethod
    def new(
        cls, sop_instance_uid: str, reviewer: str, n_frames: int, frame_shape: tuple[int, int]
    ) -> ClipAnnotation:
        """An empty draft annotation of a clip.

        Parameters
        ----------
        sop_instance_uid : str
            SOP Instance UID of the clip.
        reviewer : str
            User name of the reviewer.
        n_frames : int
            Number of frames of the clip.
        frame_shape : tuple of int
            ``(rows, cols)`` of one frame.
        """
        return cls(sop_instance_uid, reviewer, n_frames, frame_shape)

    # -- equality ---------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClipAnnotation):
            return NotImplemented
        plain = [
            "sop_instance_uid",
            "reviewer",
            "n_frames",
            "frame_shape",
            "needle",
            "target",
            "events",
            "adverse_events",
            "status",
            "comments",
        ]
        if any(getattr(self, name) != getattr(other, name) for name in plain):
            return False
        if self.spread.keys() != other.spread.keys() or self.danger.keys() != other.danger.keys():
            return False
        if not all(np.array_equal(m, other.spread[f]) for f, m in self.spread.items()):
            return False
        for frame, by_class in self.danger.items():
            theirs = other.danger[frame]
            if by_class.keys() != theirs.keys():
                return False
            if not all(np.array_equal(m, theirs[c]) for c, m in by_class.items()):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    # -- reading ----------------------------------------------------------------------------

    @property
    def editable(self) -> bool:
        """Whether marks may be changed in the present review status."""
        return self.status in EDITABLE_STATUSES

    def _frames_of(self, kind: MarkKind | str) -> Mapping[int, Any]:
        kind = MarkKind(kind)
        return {
            MarkKind.NEEDLE: self.needle,
            MarkKind.TARGET: self.target,
            MarkKind.SPREAD: self.spread,
            MarkKind.DANGER: self.danger,
        }[kind]

    def keyframes(self, kind: MarkKind | str) -> tuple[int, ...]:
        """Frames on which marks of ``kind`` are stored, ascending.

        For masks (``SPREAD``, ``DANGER``) these are the frames that have a mask.
        """
        return tuple(self._frames_of(kind))

    def is_keyframe(self, kind: MarkKind | str, frame: int) -> bool:
        """Whether ``frame`` holds a stored (not interpolated) mark of ``kind``."""
        check_frame(frame, self.n_frames, "frame")
        return int(frame) in self._frames_of(kind)

    def mark_state(self, kind: MarkKind | str, frame: int) -> MarkState | None:
        """Whether ``frame`` shows a keyframe, an interpolated or a held mark of ``kind``.

        Returns
        -------
        MarkState or None
            ``None`` when the frame shows no mark of ``kind``.
        """
        kind = MarkKind(kind)
        frame = check_frame(frame, self.n_frames, "frame")
        shown: tuple[Any, MarkState] | None
        if kind is MarkKind.NEEDLE:
            shown = needle_shown(self.needle, frame, TEMPORAL_MODES[kind])
        elif kind is MarkKind.TARGET:
            shown = target_shown(self.target, frame, TEMPORAL_MODES[kind])
        elif kind is MarkKind.SPREAD:
            shown = self._spread_shown(frame)
        else:
            shown = self._danger_shown(frame)
        return None if shown is None else shown[1]

    def is_interpolated(self, kind: MarkKind | str, frame: int) -> bool:
        """Whether ``frame`` shows a mark of ``kind`` interpolated between two keyframes."""
        return self.mark_state(kind, frame) is MarkState.INTERPOLATED

    def is_carried(self, kind: MarkKind | str, frame: int) -> bool:
        """Whether ``frame`` shows a mark of ``kind`` carried from keyframes (interpolated or held)."""
        return self.mark_state(kind, frame) in (MarkState.INTERPOLATED, MarkState.HELD)

    def shown_frames(self, kind: MarkKind | str) -> tuple[int, ...]:
        """Every frame that shows a mark of ``kind`` (keyframe or carried), ascending.

        The audit metrics iterate over these, so they use what the widget shows.
        """
        kind = MarkKind(kind)
        marked = self.keyframes(kind)
        if not marked:
            return ()
        if kind in (MarkKind.NEEDLE, MarkKind.TARGET):
            return tuple(f for f in range(marked[0], self.n_frames) if self.mark_state(kind, f) is not None)
        return tuple(range(marked[0], self.n_frames))

    def next_keyframe(self, kind: MarkKind | str, frame: int) -> int | None:
        """The first keyframe of ``kind`` strictly after ``frame``, or ``None``."""
        return next((f for f in self.keyframes(kind) if f > frame), None)

    def previous_keyframe(self, kind: MarkKind | str, frame: int) -> int | None:
        """The last keyframe of ``kind`` strictly before ``frame``, or ``None``."""
        return next((f for f in reversed(self.keyframes(kind)) if f < frame), None)

    def needle_at(self, frame: int) -> NeedleMark | None:
        """The needle on ``frame``: its keyframe mark or one interpolated between keyframes.

        Returns
        -------
        NeedleMark or None
            ``None`` outside the keyframe range, between keyframes of different
            views, or where interpolation collapses the shaft to one point.
        """
        frame = check_frame(frame, self.n_frames, "frame")
        shown = needle_shown(self.needle, frame, TEMPORAL_MODES[MarkKind.NEEDLE])
        return None if shown is None else shown[0]

    def target_at(self, frame: int) -> TargetMark | None:
        """The target on ``frame``: its keyframe mark, or the last earlier keyframe's (held).

        Returns
        -------
        TargetMark or None
            ``None`` before the first target keyframe.
        """
        frame = check_frame(frame, self.n_frames, "frame")
        shown = target_shown(self.target, frame, TEMPORAL_MODES[MarkKind.TARGET])
        return None if shown is None else shown[0]

    def tip_at(self, frame: int) -> Point | None:
        """The needle tip ``(row, col)`` on ``frame`` (last needle point), or ``None``."""
        mark = self.needle_at(frame)
        return None if mark is None else mark.tip

    def _spread_shown(self, frame: int) -> tuple[Mask, MarkState] | None:
        return self._masks.spread(frame)

    def _danger_shown(self, frame: int) -> tuple[Mapping[str, Mask], MarkState] | None:
        return self._masks.danger(frame)

    def spread_at(self, frame: int) -> Mask | None:
        """The read-only spread mask ``frame`` shows (keyframe, interpolated or held), or ``None``.

        Shape (rows, cols), bool; ``None`` before the first spread keyframe.
        """
        shown = self._spread_shown(check_frame(frame, self.n_frames, "frame"))
        return None if shown is None else shown[0]

    def danger_at(self, frame: int) -> Mapping[str, Mask]:
        """Danger masks ``frame`` shows by class name (held from the last danger keyframe; empty if none)."""
        shown = self._danger_shown(check_frame(frame, self.n_frames, "frame"))
        return MappingProxyType({}) if shown is None else shown[0]

    # -- editing marks ----------------------------------------------------------------------

    def _edit(self, **changes: Any) -> ClipAnnotation:
        if not self.editable:
            raise AnnotationError(
                f"annotation of {self.sop_instance_uid} by {self.reviewer} is {self.status.value!r} "
                "and cannot be edited; move it back to 'draft' (if submitted) or to 'needs-rework' first"
            )
        return dataclasses.replace(self, **changes)

    def with_needle(self, frame: int, mark: NeedleMark) -> ClipAnnotation:
        """Set (or replace) the needle keyframe on ``frame``."""
        frame = check_frame(frame, self.n_frames, "needle keyframe")
        return self._edit(needle={**self.needle, frame: mark})

    def without_needle(self, frame: int) -> ClipAnnotation:
        """Remove the needle keyframe on ``frame`` (an error if there is none)."""
        return self._edit(needle=self._removed(MarkKind.NEEDLE, self.needle, frame))

    def with_target(self, frame: int, mark: TargetMark) -> ClipAnnotation:
        """Set (or replace) the target keyframe on ``frame``."""
        frame = check_frame(frame, self.n_frames, "target keyframe")
        return self._edit(target={**self.target, frame: mark})

    def without_target(self, frame: int) -> ClipAnnotation:
        """Remove the target keyframe on ``frame`` (an error if there is none)."""
        return self._edit(target=self._removed(MarkKind.TARGET, self.target, frame))

    def with_spread(self, frame: int, mask: ArrayLike) -> ClipAnnotation:
        """Set the spread mask of ``frame``; ``mask`` has shape (rows, cols), bool or 0/1."""
        frame = check_frame(frame, self.n_frames, "spread mask")
        return self._edit(spread={**self.spread, frame: mask})

    def without_spread(self, frame: int) -> ClipAnnotation:
        """Remove the spread mask of ``frame`` (an error if there is none)."""
        return self._edit(spread=self._removed(MarkKind.SPREAD, self.spread, frame))

    def with_danger(self, frame: int, class_name: str, mask: ArrayLike) -> ClipAnnotation:
        """Set the mask of danger class ``class_name`` on ``frame``; shape (rows, cols)."""
        frame = check_frame(frame, self.n_frames, "danger mask")
        # On a frame that holds carried masks the new keyframe starts from what the frame shows.
        shown = self.danger[frame] if frame in self.danger else self.danger_at(frame)
        by_class = {**shown, danger_class_name(class_name): mask}
        return self._edit(danger={**self.danger, frame: by_class})

    def without_danger(self, frame: int, class_name: str | None = None) -> ClipAnnotation:
        """Remove one danger class (or, with ``class_name=None``, all) from ``frame``."""
        frame = check_frame(frame, self.n_frames, "danger mask")
        if class_name is None:
            return self._edit(danger=self._removed(MarkKind.DANGER, self.danger, frame))
        cls = danger_class_name(class_name)
        by_class = dict(self.danger.get(frame, {}))
        if cls not in by_class:
            raise AnnotationError(
                f"danger mask {cls!r} on frame {frame + 1}: there is none to remove; "
                f"classes on this frame: {sorted(by_class) or 'none'}"
            )
        del by_class[cls]
        return self._edit(danger={**self.danger, frame: by_class})

    def _removed(self, kind: MarkKind, marks: Mapping[int, Any], frame: int) -> dict[int, Any]:
        frame = check_frame(frame, self.n_frames, f"{kind.value} keyframe")
        if frame not in marks:
            raise AnnotationError(
                f"{kind.value} on frame {frame + 1}: there is no stored mark to remove; "
                f"{kind.value} keyframes are {[f + 1 for f in marks] or 'none'}"
            )
        return {f: m for f, m in marks.items() if f != frame}

    def copy_from_previous(self, kind: MarkKind | str, frame: int) -> ClipAnnotation:
        """Make ``frame`` a keyframe holding the mark of the nearest earlier marked frame.

        For the needle and target the source is the mark shown on ``frame - 1``
        (keyframe or interpolated) or, if none is shown there, the last keyframe
        before ``frame``. For spread the source is the last earlier frame with a
        mask; for danger structures all classes of the last earlier frame with
        danger masks replace those of ``frame``.

        Raises
        ------
        AnnotationError
            If no earlier frame has a mark of ``kind``, or the annotation is not
            editable.
        """
        kind = MarkKind(kind)
        frame = check_frame(frame, self.n_frames, "frame")
        source: Any = None
        if frame > 0 and kind is MarkKind.NEEDLE:
            source = self.needle_at(frame - 1)
        elif frame > 0 and kind is MarkKind.TARGET:
            source = self.target_at(frame - 1)
        if source is None:
            before = self.previous_keyframe(kind, frame)
            if before is None:
                raise AnnotationError(
                    f"copy {kind.value} to frame {frame + 1}: expected a {kind.value} mark on an earlier "
                    "frame, but there is none; mark it on this frame instead"
                )
            source = self._frames_of(kind)[before]
        marks = {**self._frames_of(kind), frame: source}
        return self._edit(**{kind.value: marks})

    def make_keyframe(self, kind: MarkKind | str, frame: int) -> ClipAnnotation:
        """Store the mark ``frame`` shows of ``kind`` (interpolated or held) as a keyframe.

        The frame then keeps that mark when other keyframes are edited.

        Raises
        ------
        AnnotationError
            If ``frame`` shows no mark of ``kind``, is a keyframe of it already,
            or the annotation is not editable.
        """
        kind = MarkKind(kind)
        frame = check_frame(frame, self.n_frames, "frame")
        state = self.mark_state(kind, frame)
        if state is None or state is MarkState.KEYFRAME:
            why = "is a keyframe already" if state is not None else "shows no carried mark of it"
            raise AnnotationError(
                f"make frame {frame + 1} a {kind.value} keyframe: the frame {why}; "
                f"{kind.value} keyframes are {[f + 1 for f in self.keyframes(kind)] or 'none'} (1-based)"
            )
        shown: Any
        if kind is MarkKind.NEEDLE:
            shown = self.needle_at(frame)
        elif kind is MarkKind.TARGET:
            shown = self.target_at(frame)
        elif kind is MarkKind.SPREAD:
            shown = self.spread_at(frame)
        else:
            shown = dict(self.danger_at(frame))
        return self._edit(**{kind.value: {**self._frames_of(kind), frame: shown}})

    # -- events, status, comments -----------------------------------------------------------

    def with_event(self, event: ClipEvent | str, frame: int) -> ClipAnnotation:
        """Mark ``event`` (not an adverse event) at ``frame``, replacing an earlier mark of it."""
        parsed = ClipEvent.parse(event)
        return self._edit(events={**self.events, parsed: check_frame(frame, self.n_frames, parsed.value)})

    def without_event(self, event: ClipEvent | str) -> ClipAnnotation:
        """Remove the mark of ``event`` (an error if it is not marked)."""
        parsed = ClipEvent.parse(event)
        if parsed not in self.events:
            raise AnnotationError(
                f"event {parsed.value!r} is not marked; marked events: "
                f"{[e.value for e in self.events] or 'none'}"
            )
        return self._edit(events={e: f for e, f in self.events.items() if e is not parsed})

    def with_adverse_event(self, frame: int, note: str) -> ClipAnnotation:
        """Record an adverse event at ``frame`` with a note saying what happened."""
        frame = check_frame(frame, self.n_frames, f"adverse event {note!r}")
        return self._edit(adverse_events=(*self.adverse_events, AdverseEvent(frame, note)))

    def without_adverse_event(self, event: AdverseEvent) -> ClipAnnotation:
        """Remove a recorded adverse event (an error if it is not recorded)."""
        if event not in self.adverse_events:
            raise AnnotationError(f"adverse event {event} is not recorded; nothing to remove")
        return self._edit(adverse_events=tuple(a for a in self.adverse_events if a != event))

    def with_status(self, new: ReviewStatus | str, comment: ReviewComment | None = None) -> ClipAnnotation:
        """Move to review status ``new`` following :func:`~archive.review.workflow.transition`.

        Parameters
        ----------
        new : ReviewStatus or str
            Wanted status.
        comment : ReviewComment, optional
            Appended to the comments; required when moving to needs-rework.

        Raises
        ------
        AnnotationError
            If the transition is not allowed or a required comment is missing.
        """
        status = transition(self.status, new)
        if status in COMMENT_REQUIRED and comment is None and status is not self.status:
            raise AnnotationError(
                f"review status {status.value!r}: expected a comment saying what to rework, but got none"
            )
        comments = self.comments if comment is None else (*self.comments, comment)
        return dataclasses.replace(self, status=status, comments=comments)

    def with_comment(self, comment: ReviewComment) -> ClipAnnotation:
        """Append a review comment (allowed in every status)."""
        return dataclasses.replace(self, comments=(*self.comments, comment))
