"""Validation of the events a reviewer marks on a clip (frame indices).

Each of the events ``needle visible``, ``target reached``, ``injection start``
and ``injection end`` is marked at most once per clip, at a 0-based frame.
Adverse events are a separate list of ``(frame, note)`` because there may be
several. The order rules (equal frames allowed):

=================  ========================
earlier event      must not come after
=================  ========================
needle visible     target reached
needle visible     injection start
injection start    injection end
=================  ========================

``target reached`` is deliberately not ordered against ``injection start``: an
injection before the target was reached is exactly what an audit must be able
to record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from archive.errors import AnnotationError
from archive.model import ClipEvent
from archive.review.marks import AdverseEvent

#: Pairs (earlier, later): ``later`` must not be at a frame before ``earlier``.
EVENT_ORDER: tuple[tuple[ClipEvent, ClipEvent], ...] = (
    (ClipEvent.NEEDLE_VISIBLE, ClipEvent.TARGET_REACHED),
    (ClipEvent.NEEDLE_VISIBLE, ClipEvent.INJECTION_START),
    (ClipEvent.INJECTION_START, ClipEvent.INJECTION_END),
)


def check_frame(frame: int, n_frames: int, what: str) -> int:
    """Validate a 0-based frame index against the clip length.

    Parameters
    ----------
    frame : int
        Frame index.
    n_frames : int
        Number of frames of the clip.
    what : str
        Name used in the error message.

    Returns
    -------
    int
        ``frame`` as a Python int.

    Raises
    ------
    AnnotationError
        If ``frame`` is not an integer in ``[0, n_frames - 1]``.
    """
    if isinstance(frame, bool) or not hasattr(frame, "__index__"):
        raise AnnotationError(f"{what}: expected an integer frame index, but got {frame!r}")
    index = int(frame)
    if not 0 <= index < n_frames:
        raise AnnotationError(
            f"{what}: expected a frame index in 0..{n_frames - 1} (frames 1..{n_frames} of the clip), "
            f"but got {index}"
        )
    return index


def check_events(
    events: Mapping[ClipEvent, int],
    adverse_events: Iterable[AdverseEvent],
    n_frames: int,
) -> None:
    """Validate a clip's events: frames in range and the order rules of the module table.

    Parameters
    ----------
    events : mapping of ClipEvent to int
        Frame of each marked event; ``ClipEvent.ADVERSE_EVENT`` is not allowed
        here (adverse events go to ``adverse_events``).
    adverse_events : iterable of AdverseEvent
        Adverse events with their notes.
    n_frames : int
        Number of frames of the clip.

    Raises
    ------
    AnnotationError
        If a frame is out of range, an adverse event is in ``events``, or an
        order rule is broken; the message names both events and their frames.
    """
    for event, frame in events.items():
        if event is ClipEvent.ADVERSE_EVENT:
            raise AnnotationError(
                "events: adverse events carry a note and may repeat; record them with "
                "with_adverse_event(frame, note), not as a single event frame"
            )
        check_frame(frame, n_frames, f"event {event.value!r}")
    for adverse in adverse_events:
        check_frame(adverse.frame, n_frames, f"adverse event {adverse.note!r}")
    for earlier, later in EVENT_ORDER:
        if earlier in events and later in events and events[later] < events[earlier]:
            raise AnnotationError(
                f"events: {later.value!r} (frame {events[later] + 1}) cannot come before "
                f"{earlier.value!r} (frame {events[earlier] + 1}); move one of them"
            )
