"""Group clips into procedures (same study and side) and time them (pure functions).

Procedures come from the archived clips, reviewed or not (see
:class:`~archive.analysis.audit.model.ArchivedClip`): outcomes and techniques need no
annotation, and neither does the time.

A procedure's time runs from the earliest needle-visible frame to the latest
injection-end frame across its clips (source :data:`TIME_FROM_EVENTS`) when
its reviewed clips mark either event (a missing one leaves the time not
assessable, with the reason); when no event is marked it is the acquisition span of
its clips, from the first frame of the earliest clip to the last frame of the
latest (source :data:`TIME_FROM_CLIP_SPAN`). Each frame is placed in absolute
time by its clip's Content Date/Time (+ Frame Delay) and frame offsets
(:meth:`archive.timing.FrameTimes.absolute`).

When the scanner sent an MPPS COMPLETED with start and end for the study
(``step_times``, :func:`archive.worklist.steps.timed_studies`), that is the
procedure's time (source :data:`TIME_FROM_MPPS`): the scanner's own record of
the procedure. It is used only for a study with one procedure (one side):
one step of a bilateral study does not time each side.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from archive.analysis.audit.model import (
    MIXED_TECHNIQUE,
    TIME_FROM_CLIP_SPAN,
    TIME_FROM_EVENTS,
    TIME_FROM_MPPS,
    ArchivedClip,
    CaseIds,
    ClipAuditInput,
    Procedure,
)
from archive.model import Side, SpinalLevel, Technique, sort_levels

logger = logging.getLogger(__name__)


def primary_inputs(inputs: Iterable[ClipAuditInput]) -> list[ClipAuditInput]:
    """One input per clip: the one of the reviewer first in alphabetical order.

    Procedure times and outcomes are per procedure, not per reviewer; when two
    reviewers' approved annotations of a clip are audited, the events of the
    first reviewer (by name) time the procedure.

    Parameters
    ----------
    inputs : iterable of ClipAuditInput
        Clip inputs, possibly several per clip (one per reviewer).

    Returns
    -------
    list of ClipAuditInput
        Ordered by SOP Instance UID.
    """
    chosen: dict[str, ClipAuditInput] = {}
    for item in inputs:
        held = chosen.get(item.sop_instance_uid)
        if held is None or item.reviewer < held.reviewer:
            chosen[item.sop_instance_uid] = item
    return [chosen[uid] for uid in sorted(chosen)]


def _sort_key(item: ClipAuditInput) -> tuple[int, datetime, str]:
    start = item.frame_times.start
    if start is None:
        return (1, datetime.min, item.sop_instance_uid)
    return (0, start.replace(tzinfo=None), item.sop_instance_uid)


def procedure_time(clips: Sequence[ClipAuditInput]) -> tuple[float | None, str | None]:
    """Seconds from the earliest needle-visible to the latest injection end across ``clips``.

    Parameters
    ----------
    clips : sequence of ClipAuditInput
        The clips of one procedure (one input per clip).

    Returns
    -------
    time_s : float or None
        The procedure time in seconds.
    note : str or None
        Why ``time_s`` is ``None``: a clip without frame timing or Content Date/Time, no
        needle-visible or injection-end event marked, or an end before the start.
    """
    untimed = [c.sop_instance_uid for c in clips if not c.frame_times.timed]
    if untimed:
        return (
            None,
            f"no frame timing in clip {', '.join(untimed)} (its frame times are unknown), so its events "
            "cannot be placed in time: not assessable",
        )
    undated = [c.sop_instance_uid for c in clips if c.frame_times.start is None]
    if undated:
        return (
            None,
            f"no Content Date/Time in clip {', '.join(undated)}, so its events cannot be placed in time",
        )
    starts = [
        c.frame_times.absolute(c.metrics.needle_visible_frame)
        for c in clips
        if c.metrics.needle_visible_frame is not None
    ]
    ends = [
        c.frame_times.absolute(c.metrics.injection_end_frame)
        for c in clips
        if c.metrics.injection_end_frame is not None
    ]
    if not starts:
        return None, "no clip has a needle-visible event marked"
    if not ends:
        return None, "no clip has an injection-end event marked"
    try:
        seconds = (max(ends) - min(starts)).total_seconds()
    except TypeError:
        return None, "the clips mix timezone-aware and local Content Times, so they cannot be compared"
    if seconds < 0:
        return None, f"the last injection end is {-seconds:.1f} s before the first needle-visible frame"
    return seconds, None


def clip_span(clips: Sequence[ArchivedClip]) -> tuple[float | None, str | None]:
    """Seconds from the first frame of the earliest clip to the last frame of the latest clip.

    The nearest measure of a procedure's time when no events are marked: it
    counts how long the procedure side was imaged, from the start of the
    earliest clip's first frame to the start of the latest clip's last frame
    (the last frame's own duration is not added).

    Parameters
    ----------
    clips : sequence of ArchivedClip
        The clips of one procedure.

    Returns
    -------
    time_s : float or None
        The span in seconds.
    note : str or None
        Why ``time_s`` is ``None``: a clip whose header is unreadable, without
        frame timing or without Content Date/Time, or clips mixing
        timezone-aware and local Content Times.
    """
    if not clips:
        return None, "the procedure has no clip, so no clip span: not assessable"
    unread = [c.sop_instance_uid for c in clips if c.frame_times is None]
    if unread:
        return (
            None,
            f"the stored header of clip {', '.join(unread)} is unreadable, so the clip span is not "
            "assessable",
        )
    untimed = [c.sop_instance_uid for c in clips if c.frame_times is not None and not c.frame_times.timed]
    if untimed:
        return (
            None,
            f"no frame timing in clip {', '.join(untimed)} (its frame times are unknown), so the clip "
            "span is not assessable",
        )
    undated = [c.sop_instance_uid for c in clips if c.frame_times is not None and c.frame_times.start is None]
    if undated:
        return (
            None,
            f"no Content Date/Time in clip {', '.join(undated)}, so the clip span is not assessable",
        )
    firsts = [c.frame_times.absolute(0) for c in clips if c.frame_times is not None]
    lasts = [
        c.frame_times.absolute(c.frame_times.number_of_frames - 1) for c in clips if c.frame_times is not None
    ]
    try:
        return (max(lasts) - min(firsts)).total_seconds(), None
    except TypeError:
        return (
            None,
            "the clips mix timezone-aware and local Content Times, so the clip span is not assessable",
        )


def _time(
    clips: Sequence[ArchivedClip], reviewed: Sequence[ClipAuditInput]
) -> tuple[float | None, str | None, str | None]:
    """(seconds, note, source): the events when marked, else the clip span."""
    marked = any(
        c.metrics.needle_visible_frame is not None or c.metrics.injection_end_frame is not None
        for c in reviewed
    )
    if marked:
        time_s, note = procedure_time(sorted(reviewed, key=_sort_key))
        return time_s, note, TIME_FROM_EVENTS if time_s is not None else None
    time_s, note = clip_span(clips)
    if time_s is None:
        return None, note, None
    return time_s, None, TIME_FROM_CLIP_SPAN


def _technique(clips: Sequence[ArchivedClip]) -> tuple[Technique | None, str | None]:
    found = sorted({c.technique.value for c in clips if c.technique is not None})
    if len(found) > 1:
        return None, f"{MIXED_TECHNIQUE}: the clips have techniques {', '.join(found)}"
    if not found:
        return None, "no clip has a technique recorded"
    return Technique(found[0]), None


def _as_archived(item: ClipAuditInput) -> ArchivedClip:
    return ArchivedClip(
        sop_instance_uid=item.sop_instance_uid,
        study_uid=item.study_uid,
        side=item.side,
        levels=item.levels,
        technique=item.technique,
        approach=item.approach,
        ids=CaseIds(),
        frame_times=item.frame_times,
    )


def _archived_sort_key(item: ArchivedClip) -> tuple[int, datetime, str]:
    start = item.frame_times.start if item.frame_times is not None else None
    if start is None:
        return (1, datetime.min, item.sop_instance_uid)
    return (0, start.replace(tzinfo=None), item.sop_instance_uid)


def group_procedures(
    inputs: Iterable[ClipAuditInput],
    archived: Iterable[ArchivedClip] | None = None,
    step_times: Mapping[str, float] | None = None,
) -> tuple[list[Procedure], list[str]]:
    """Group clips into procedures by (study, side) and time each procedure.

    Parameters
    ----------
    inputs : iterable of ClipAuditInput
        Reviewed clip inputs; with several reviewers per clip,
        :func:`primary_inputs` picks the one that times the procedure.
    archived : iterable of ArchivedClip, optional
        Every archived clip the audit covers, reviewed or not; the procedures
        are made from these (plus any reviewed clip missing here). Without
        them, only the reviewed clips make procedures.
    step_times : mapping of str to float, optional
        Study Instance UID → seconds from its MPPS start to end; the time of
        the study's procedure when it has one side only.

    Returns
    -------
    procedures : list of Procedure
        Ordered by study UID, then side.
    notes : list of str
        Clips that could not be grouped (no side recorded).
    """
    primaries = {item.sop_instance_uid: item for item in primary_inputs(inputs)}
    members: dict[str, ArchivedClip] = {clip.sop_instance_uid: clip for clip in archived or ()}
    for uid, item in primaries.items():
        members.setdefault(uid, _as_archived(item))
    by_key: dict[tuple[str, Side], list[ArchivedClip]] = {}
    notes: list[str] = []
    for uid in sorted(members):
        clip = members[uid]
        if clip.side is None:
            notes.append(f"clip {uid} has no side recorded, so it is in no procedure")
            continue
        by_key.setdefault((clip.study_uid, clip.side), []).append(clip)
    procedures: list[Procedure] = []
    sides = Counter(study for study, _ in by_key)
    for (study_uid, side), clips in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
        clips.sort(key=_archived_sort_key)
        reviewed = [primaries[c.sop_instance_uid] for c in clips if c.sop_instance_uid in primaries]
        levels: set[SpinalLevel] = {lv for c in clips for lv in c.levels}
        technique, technique_note = _technique(clips)
        time_s, time_note, time_source = _time(clips, reviewed)
        mpps_s = (step_times or {}).get(study_uid)
        if mpps_s is not None and sides[study_uid] == 1:
            time_s, time_note, time_source = mpps_s, None, TIME_FROM_MPPS
        if time_note:
            logger.info("procedure %s %s: no time: %s", study_uid, side.value, time_note)
        procedures.append(
            Procedure(
                study_uid=study_uid,
                side=side,
                levels=sort_levels(levels),
                technique=technique,
                technique_note=technique_note,
                sop_instance_uids=tuple(c.sop_instance_uid for c in clips),
                time_s=time_s,
                time_note=time_note,
                ids=next((c.ids for c in clips if c.ids != CaseIds()), CaseIds()),
                reviewed_clips=len(reviewed),
                time_source=time_source,
            )
        )
    return procedures, notes
