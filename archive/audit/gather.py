"""Build audit inputs from an archive: filtered clips, their reviewed annotations, metrics, outcomes.

For every instance that matches the filters and every reviewer whose
annotation of it is in the wanted review status (approved by default), the
stored file's header is read (``stop_before_pixels``) for the calibration and
frame times, the annotation is loaded from the annotation store, and
:func:`archive.metrics.clip_metrics` measures it. Pixels are never decoded.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pydicom

from archive.audit.model import ClipAuditInput
from archive.calibration import calibration_or_none
from archive.errors import ArchiveError
from archive.index.queries import InstanceRow, Query
from archive.metrics import clip_metrics
from archive.model import ReviewStatus, Side, SpinalLevel, Technique
from archive.outcomes import Outcome
from archive.timing import frame_times

if TYPE_CHECKING:
    from archive.archive import Archive

logger = logging.getLogger(__name__)

#: ``find`` limit used by the audit: every matching instance.
AUDIT_LIMIT = 10**9


@dataclass(frozen=True)
class GatheredInputs:
    """What :func:`gather_inputs` found: clip inputs, the outcomes of their studies, and notes.

    ``notes`` say which (clip, reviewer) pairs were left out and why.
    """

    inputs: tuple[ClipAuditInput, ...]
    outcomes: tuple[Outcome, ...]
    notes: tuple[str, ...]


def _parse_or_none(parse: type[Side] | type[Technique], value: str | None) -> Side | Technique | None:
    if not value:
        return None
    try:
        return parse.parse(value)
    except ValueError:
        return None


def _clip_input(archive: Archive, row: InstanceRow, reviewer: str, status: ReviewStatus) -> ClipAuditInput:
    path = archive.store.absolute(row.path)
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    times = frame_times(dataset)
    loaded = archive.annotations.load(row.sop_instance_uid, reviewer)
    annotation = loaded.annotation
    metrics = clip_metrics(annotation, calibration_or_none(dataset), times)
    side = _parse_or_none(Side, row.side)
    technique = _parse_or_none(Technique, row.technique)
    return ClipAuditInput(
        sop_instance_uid=row.sop_instance_uid,
        study_uid=row.study_instance_uid,
        side=side if isinstance(side, Side) else None,
        levels=tuple(SpinalLevel.parse(level) for level in row.levels),
        technique=technique if isinstance(technique, Technique) else None,
        reviewer=reviewer,
        status=status,
        metrics=metrics,
        frame_times=times,
        adverse_events=tuple(event.note for event in annotation.adverse_events),
    )


def gather_inputs(
    archive: Archive, query: Query, *, status: ReviewStatus | None = ReviewStatus.APPROVED
) -> GatheredInputs:
    """Audit inputs of the clips ``query`` selects, one per reviewed annotation.

    Parameters
    ----------
    archive : Archive
        An open archive.
    query : Query
        Instance filters (level, side, technique, procedure, dates, ...);
        ``query.reviewer``, when set, keeps only that reviewer's annotations.
        Its limit is ignored: every matching instance is audited.
    status : ReviewStatus or None
        Review status an annotation must have; ``None`` for any status.

    Returns
    -------
    GatheredInputs
        Ordered by SOP Instance UID then reviewer; outcomes of the studies
        involved.
    """
    rows = archive.find(dataclasses.replace(query, limit=AUDIT_LIMIT))
    reviews = archive.annotations.list_reviews(status=status, reviewer=query.reviewer)
    by_uid: dict[str, list[tuple[str, ReviewStatus]]] = {}
    for review in reviews:
        by_uid.setdefault(review.sop_instance_uid, []).append((review.reviewer, review.status))
    inputs: list[ClipAuditInput] = []
    notes: list[str] = []
    for row in sorted(rows, key=lambda r: r.sop_instance_uid):
        for name, review_status in sorted(by_uid.get(row.sop_instance_uid, [])):
            try:
                inputs.append(_clip_input(archive, row, name, review_status))
            except (ArchiveError, OSError, pydicom.errors.InvalidDicomError) as exc:
                notes.append(f"clip {row.sop_instance_uid} by {name} left out: {exc}")
                logger.warning("audit: clip %s by %s left out: %s", row.sop_instance_uid, name, exc)
    studies = {item.study_uid for item in inputs}
    outcomes = archive.outcomes.of_studies(studies)
    logger.info(
        "audit: %d instances matched, %d reviewed annotations, %d outcomes",
        len(rows),
        len(inputs),
        len(outcomes),
    )
    return GatheredInputs(tuple(inputs), tuple(outcomes), tuple(notes))
