"""Automatic proposals of needle and spread marks: run on a stored clip, store, accept into a review.

A *proposal* is what :func:`archive.analysis.proposals.propose_frames` finds on
a clip's frames, stored as the annotation of the reserved reviewer
:data:`~archive.review.PROPOSAL_REVIEWER` (``auto``), always in draft, so it
is kept, versioned and listed like any annotation but never counted as a
review (the audit, exports, agreement and ``usarchive find --status`` leave
that identity out). Its provenance is the version's ``saved_by`` (who ran it),
``saved_at``, and one review comment by ``auto`` naming the method, approach,
frame range and units. A new run is a new version of the proposal.

The proposal becomes marks in the annotation model with the kinds' temporal
modes (:mod:`archive.review.temporal`): each frame with a proposed needle is a
needle keyframe (in-plane: the shaft from entry to tip; out-of-plane: the tip
as a dot), each frame with a proposed spread mask a spread keyframe. Frames
with nothing proposed hold no keyframe.

Accepting (:func:`accept_proposal`, :meth:`ProposalStore.accept`) copies the
proposal's keyframes on the chosen frames into the reviewer's own annotation
as the reviewer's keyframes; the reviewer's marks on frames without a
proposal stay as they are. Only the reviewer's annotation counts: correcting
a frame afterwards replaces that keyframe, like any edit.

Frames are numbered from 1 in this module's public API and JSON (as a person
reads them) and stored 0-based in annotations (docs/annotation-format.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydicom

from archive.analysis.proposals import ClipProposal, FrameProposal, ProposalInputError, propose_frames
from archive.calibration import calibration_or_none
from archive.errors import AnnotationError
from archive.model import NeedleView, ReviewStatus
from archive.pixels import iter_grey_frames
from archive.review import PROPOSAL_REVIEWER, ClipAnnotation, NeedleMark, ReviewComment
from archive.review.store import LoadedAnnotation, SavedVersion
from archive.timing import frame_times_or_unknown

if TYPE_CHECKING:
    from archive.domains import ArchiveDomains

__all__ = [
    "AcceptedProposal",
    "ProposalRun",
    "ProposalStore",
    "accept_proposal",
    "frame_range",
    "proposal_annotation",
]

logger = logging.getLogger(__name__)

#: A shaft whose tip is shallower than its entry by at most this (pixels) is stored level.
_LEVEL_TOLERANCE_PX = 1.0


def frame_range(first: int | None, last: int | None, n_frames: int) -> tuple[int, int]:
    """Check a 1-based inclusive frame range against a clip; defaults are the whole clip.

    Parameters
    ----------
    first, last : int or None
        1-based frame numbers; ``None``: 1, and the last frame.
    n_frames : int
        Frames of the clip.

    Returns
    -------
    tuple of int
        ``(first, last)``.

    Raises
    ------
    AnnotationError
        If the range is empty or leaves the clip.
    """
    start = 1 if first is None else int(first)
    end = n_frames if last is None else int(last)
    if not 1 <= start <= end <= n_frames:
        raise AnnotationError(
            f"frames: expected FIRST-LAST with 1 <= FIRST <= LAST <= {n_frames} (the clip has "
            f"{n_frames} frame(s)), but got {start}-{end}"
        )
    return start, end


def _inside(point: tuple[float, float], frame_shape: tuple[int, int]) -> tuple[float, float]:
    rows, cols = frame_shape
    return (min(max(float(point[0]), -0.5), rows - 0.5), min(max(float(point[1]), -0.5), cols - 0.5))


def _needle_mark(found: FrameProposal, view: NeedleView, frame_shape: tuple[int, int]) -> NeedleMark | None:
    """The needle mark of one proposed frame; ``None`` when nothing (usable) was found."""
    if found.tip is None:
        return None
    tip = _inside(found.tip, frame_shape)
    if view is NeedleView.OUT_OF_PLANE or found.shaft is None:
        # an in-plane frame with a tip but no shaft is a dot: shown, never interpolated into a shaft
        return NeedleMark((tip,), NeedleView.OUT_OF_PLANE)
    entry = _inside(found.shaft[0], frame_shape)
    if tip[0] < entry[0]:
        if entry[0] - tip[0] > _LEVEL_TOLERANCE_PX:
            logger.info("proposal frame %d: tip shallower than the entry, not stored", found.frame)
            return None
        entry = (tip[0], entry[1])  # a level shaft, the tip deepest by the convention
    if math.isclose(entry[0], tip[0]) and math.isclose(entry[1], tip[1]):
        return NeedleMark((tip,), NeedleView.OUT_OF_PLANE)
    return NeedleMark((entry, tip), NeedleView.IN_PLANE)


def proposal_annotation(
    proposal: ClipProposal,
    *,
    sop_instance_uid: str,
    n_frames: int,
    frame_shape: tuple[int, int],
    requested_by: str,
) -> ClipAnnotation:
    """The annotation that stores a proposal: needle and spread keyframes under ``auto``, draft.

    Parameters
    ----------
    proposal : ClipProposal
        What the detection found (frames 1-based).
    sop_instance_uid : str
        The clip.
    n_frames : int
        Frames of the clip.
    frame_shape : tuple of int
        ``(rows, cols)``.
    requested_by : str
        Who ran it (named in the provenance comment).

    Returns
    -------
    ClipAnnotation
        Reviewer :data:`~archive.review.PROPOSAL_REVIEWER`, status draft; one
        needle keyframe per frame with a proposed tip, one spread keyframe per
        frame with a proposed mask, and a comment by ``auto`` with the provenance.

    Raises
    ------
    AnnotationError
        If a proposed frame or mask does not fit the clip.
    """
    view = NeedleView.parse(proposal.approach)
    needle: dict[int, NeedleMark] = {}
    for found in proposal.frames:
        mark = _needle_mark(found, view, frame_shape)
        if mark is not None:
            needle[found.frame - 1] = mark
    spread = {s.frame - 1: s.mask for s in proposal.spread if s.mask is not None}
    numbers = [f.frame for f in proposal.frames] or [s.frame for s in proposal.spread]
    span = f"{min(numbers)}-{max(numbers)}" if numbers else "none"
    text = (
        f"automatic proposal by {proposal.method}; approach {view.value}; frames {span}; "
        f"units {proposal.units}; needle on {len(needle)} of {len(proposal.frames)} frame(s), "
        f"spread on {len(spread)}; run by {requested_by}"
    )
    annotation = ClipAnnotation(
        sop_instance_uid,
        PROPOSAL_REVIEWER,
        n_frames,
        frame_shape,
        needle=needle,
        spread=spread,
        status=ReviewStatus.DRAFT,
        comments=(ReviewComment(PROPOSAL_REVIEWER, text),),
    )
    return annotation


def accept_proposal(
    annotation: ClipAnnotation, proposal: ClipAnnotation, frames: Iterable[int]
) -> tuple[ClipAnnotation, tuple[int, ...], tuple[int, ...]]:
    """Copy a proposal's needle and spread keyframes on ``frames`` into a reviewer's annotation.

    Parameters
    ----------
    annotation : ClipAnnotation
        The reviewer's annotation (editable: draft or needs-rework).
    proposal : ClipAnnotation
        The stored proposal of the same clip.
    frames : iterable of int
        1-based frame numbers to accept.

    Returns
    -------
    tuple
        ``(annotation with the marks as its keyframes, needle frames accepted,
        spread frames accepted)``, the frames 1-based. Frames where the
        proposal has nothing keep the reviewer's marks.

    Raises
    ------
    AnnotationError
        If the two are not of the same clip or the annotation is not editable.
    """
    if (proposal.sop_instance_uid, proposal.n_frames, proposal.frame_shape) != (
        annotation.sop_instance_uid,
        annotation.n_frames,
        annotation.frame_shape,
    ):
        raise AnnotationError(
            f"accept proposal: expected the proposal of clip {annotation.sop_instance_uid} "
            f"({annotation.n_frames} frames), but it is of {proposal.sop_instance_uid} "
            f"({proposal.n_frames} frames)"
        )
    needle: list[int] = []
    spread: list[int] = []
    result = annotation
    for number in frames:
        index = number - 1
        if index in proposal.needle:
            result = result.with_needle(index, proposal.needle[index])
            needle.append(number)
        if index in proposal.spread:
            result = result.with_spread(index, proposal.spread[index])
            spread.append(number)
    return result, tuple(needle), tuple(spread)


@dataclass(frozen=True)
class ProposalRun:
    """A proposal computed on a stored clip and saved (:meth:`ProposalStore.run`)."""

    sop_instance_uid: str
    proposal: ClipProposal
    saved: SavedVersion

    def to_json(self) -> dict[str, Any]:
        """The documented JSON of ``usarchive --json propose`` (frames 1-based, pixels (row, col))."""
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "frames": [
                {
                    "frame": int(f.frame),
                    "tip": None if f.tip is None else [float(f.tip[0]), float(f.tip[1])],
                    "shaft": None if f.shaft is None else [[float(p[0]), float(p[1])] for p in f.shaft],
                    "score": float(f.score),
                }
                for f in self.proposal.frames
            ],
            "spread": [
                {"frame": int(s.frame), "area_mm2": None if s.area_mm2 is None else float(s.area_mm2)}
                for s in self.proposal.spread
            ],
        }


@dataclass(frozen=True)
class AcceptedProposal:
    """What :meth:`ProposalStore.accept` copied (frames 1-based) and the reviewer's saved version."""

    saved: SavedVersion
    proposal_version: int
    needle_frames: tuple[int, ...]
    spread_frames: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "sop_instance_uid": self.saved.sop_instance_uid,
            "reviewer": self.saved.reviewer,
            "version": self.saved.version,
            "created": self.saved.created,
            "proposal_version": self.proposal_version,
            "needle_frames": list(self.needle_frames),
            "spread_frames": list(self.spread_frames),
        }


class ProposalStore:
    """Run, keep and accept automatic proposals of an archive's clips.

    Get one from :attr:`archive.archive.Archive.proposals`.

    Parameters
    ----------
    archive : ArchiveDomains
        The open archive (its stored files, index and annotation store).
    """

    def __init__(self, archive: ArchiveDomains) -> None:
        self.archive = archive

    def _clip(self, sop_instance_uid: str) -> tuple[Any, pydicom.Dataset, dict[str, Any]]:
        found = self.archive.index.show(sop_instance_uid)
        if found is None or found.kind != "instance":
            what = "nothing" if found is None else f"a {found.kind}"
            raise AnnotationError(
                f"propose: expected the SOP Instance UID of an archived clip, but {sop_instance_uid!r} "
                f"names {what}; list clips with 'usarchive find'"
            )
        path = self.archive.store.absolute(str(found.data["path"]))
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise AnnotationError(
                f"propose: the stored file of {sop_instance_uid} is unreadable: {exc}; "
                "check it with 'usarchive verify'"
            ) from exc
        return path, header, found.data

    def frame_count(self, sop_instance_uid: str) -> int:
        """Number of frames of an archived clip (from its stored header).

        Raises
        ------
        AnnotationError
            If the clip is not archived or its file is unreadable.
        """
        _, header, _ = self._clip(sop_instance_uid)
        return int(header.get("NumberOfFrames", 1) or 1)

    def run(
        self,
        sop_instance_uid: str,
        *,
        requested_by: str,
        first: int | None = None,
        last: int | None = None,
        approach: str | None = None,
        injection_start: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> ProposalRun:
        """Propose needle and spread marks on a stored clip and store them as its proposal.

        Parameters
        ----------
        sop_instance_uid : str
            The clip (a whole UID).
        requested_by : str
            Who runs it (the version's ``saved_by``).
        first, last : int, optional
            1-based frame range (default: the whole clip).
        approach : str, optional
            ``"in-plane"`` or ``"out-of-plane"``; default: the clip's indexed
            approach, else in-plane.
        injection_start : int, optional
            1-based frame of the injection start, if known (else detected).
        progress : callable, optional
            ``progress(done, total)`` as frames are processed.
        cancelled : callable, optional
            Polled; returning ``True`` stops the run (nothing is stored).

        Returns
        -------
        ProposalRun

        Raises
        ------
        AnnotationError
            If the clip is not archived, unreadable, or the range leaves it.
        archive.analysis.proposals.ProposalCancelled
            If ``cancelled`` said so; nothing was stored.
        """
        path, header, detail = self._clip(sop_instance_uid)
        n_frames = int(header.get("NumberOfFrames", 1) or 1)
        frame_shape = (int(header.Rows), int(header.Columns))
        start, end = frame_range(first, last, n_frames)
        view = NeedleView.parse(approach or _indexed_approach(detail) or NeedleView.IN_PLANE)
        calibration = calibration_or_none(header)
        times = frame_times_or_unknown(header)
        interval_s = (
            times.nominal_frame_time_ms / 1000.0
            if times.timed and times.nominal_frame_time_ms is not None
            else None
        )
        region = None
        if calibration is not None:
            r = calibration.primary_region
            # scanners write a maximum one past the last pixel now and then: keep it inside the frame
            rows, cols = frame_shape
            region = (max(0, r.min_y0), max(0, r.min_x0), min(r.max_y1, rows - 1), min(r.max_x1, cols - 1))
        try:
            # decoded frame by frame as the detector asks for them: a long clip is never held whole
            proposal = propose_frames(
                iter_grey_frames(path, header, last=end),
                count=end,
                spacing_mm=None if calibration is None else calibration.pixel_size_mm,
                frame_interval_s=interval_s,
                region=region,
                approach=view.value,
                first=start,
                last=end,
                injection_start=injection_start,
                progress=progress,
                cancelled=cancelled,
            )
        except ProposalInputError:
            raise
        except (ValueError, NotImplementedError, RuntimeError, OSError) as exc:  # pydicom's decoders
            raise AnnotationError(
                f"propose: expected pixel data this installation can decode, but clip {sop_instance_uid} "
                f"fails: {exc}; check the decoders ('usarchive verify' checks the stored file)"
            ) from exc
        annotation = proposal_annotation(
            proposal,
            sop_instance_uid=sop_instance_uid,
            n_frames=n_frames,
            frame_shape=frame_shape,
            requested_by=requested_by,
        )
        saved = self.archive.annotations.save_proposal(annotation, saved_by=requested_by)
        logger.info(
            "proposal for %s (frames %d-%d, %s) saved as version %d",
            sop_instance_uid,
            start,
            end,
            view.value,
            saved.version,
        )
        return ProposalRun(sop_instance_uid, proposal, saved)

    def load(self, sop_instance_uid: str) -> LoadedAnnotation | None:
        """The clip's latest stored proposal, or ``None`` when it has none.

        Raises
        ------
        AnnotationError
            If the clip is not archived.
        """
        store = self.archive.annotations
        if PROPOSAL_REVIEWER not in store.reviewers(sop_instance_uid, proposals=True):
            return None
        return store.load(sop_instance_uid, PROPOSAL_REVIEWER)

    def accept(
        self,
        sop_instance_uid: str,
        reviewer: str,
        *,
        first: int | None = None,
        last: int | None = None,
        saved_by: str | None = None,
    ) -> AcceptedProposal:
        """Copy the stored proposal on frames ``first`` .. ``last`` into ``reviewer``'s annotation; save.

        Parameters
        ----------
        sop_instance_uid : str
            The clip.
        reviewer : str
            Whose annotation receives the marks (a new draft if there is none).
        first, last : int, optional
            1-based frame range (default: every frame).
        saved_by : str, optional
            Who saves (default: ``reviewer``).

        Returns
        -------
        AcceptedProposal

        Raises
        ------
        AnnotationError
            If the clip has no proposal, the range leaves the clip, or the
            reviewer's annotation is not editable.
        StaleAnnotationError
            If the reviewer's annotation was saved by someone else meanwhile.
        """
        proposal = self.load(sop_instance_uid)
        if proposal is None:
            raise AnnotationError(
                f"accept proposal: clip {sop_instance_uid} has no proposal; run "
                f"'usarchive propose {sop_instance_uid}' first"
            )
        store = self.archive.annotations
        marks = proposal.annotation
        start, end = frame_range(first, last, marks.n_frames)
        if reviewer in store.reviewers(sop_instance_uid):
            loaded = store.load(sop_instance_uid, reviewer)
            mine, base = loaded.annotation, loaded.version
        else:
            mine = ClipAnnotation.new(sop_instance_uid, reviewer, marks.n_frames, marks.frame_shape)
            base = None
        updated, needle, spread = accept_proposal(mine, marks, range(start, end + 1))
        saved = store.save(updated, base_version=base, saved_by=saved_by)
        return AcceptedProposal(saved, proposal.version, needle, spread)


def _indexed_approach(detail: dict[str, Any]) -> str | None:
    procedure = detail.get("procedure") or {}
    value = procedure.get("approach")
    return str(value) if value in (NeedleView.IN_PLANE.value, NeedleView.OUT_OF_PLANE.value) else None
