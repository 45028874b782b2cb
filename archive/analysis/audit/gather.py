"""Build audit inputs from an archive: filtered clips, their reviewed annotations, metrics, outcomes.

Every instance that matches the filters becomes an
:class:`~archive.analysis.audit.model.ArchivedClip` (reviewed or not), with the
identifiers a clinic finds a case by, read from its stored header. For every
instance that matches the filters and every reviewer whose
annotation of it is in the wanted review status (approved by default), the
stored file's header is read (``stop_before_pixels``) for the calibration and
frame times, the annotation is loaded from the annotation store, and
:func:`archive.analysis.metrics.clip_metrics` measures it. Pixels are never decoded.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pydicom

from archive.analysis.audit.model import ArchivedClip, CaseIds, ClipAuditInput
from archive.analysis.metrics import clip_metrics
from archive.analysis.outcomes.model import Outcome
from archive.calibration import calibration_or_none
from archive.errors import ArchiveError
from archive.index.queries import InstanceRow, Query
from archive.model import Approach, ReviewStatus, Side, SpinalLevel, Technique
from archive.timing import frame_times_or_unknown

if TYPE_CHECKING:
    from archive.archive import Archive

logger = logging.getLogger(__name__)

#: ``find`` limit used by the audit: every matching instance.
AUDIT_LIMIT = 10**9


@dataclass(frozen=True)
class GatheredInputs:
    """What :func:`gather_inputs` found: clip inputs, the outcomes of their studies, and notes.

    ``notes`` say which (clip, reviewer) pairs were left out and why;
    ``archived`` holds every matching clip, reviewed or not.
    """

    inputs: tuple[ClipAuditInput, ...]
    outcomes: tuple[Outcome, ...]
    notes: tuple[str, ...]
    archived: tuple[ArchivedClip, ...] = ()
    step_times: Mapping[str, float] = field(default_factory=dict)


def _parse_or_none(
    parse: type[Side] | type[Technique] | type[Approach], value: str | None
) -> Side | Technique | Approach | None:
    if not value:
        return None
    try:
        return parse.parse(value)
    except ValueError:
        return None


def _header_text(dataset: pydicom.Dataset, *keywords: str) -> str | None:
    """The first of ``keywords`` with a value, as text (names with ^ as spaces)."""
    for keyword in keywords:
        try:
            value = dataset.get(keyword)
        except Exception:  # a malformed value must not stop the audit
            continue
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = ", ".join(str(v) for v in value)
        text = str(value).replace("^", " ").strip()
        if text:
            return text
    return None


def case_ids(dataset: pydicom.Dataset) -> CaseIds:
    """Patient ID, study date, accession number, operator and station of a header.

    The operator is Performing Physician's Name (0008,1050), else Operators'
    Name (0008,1070); the study date is given as ISO 8601 when valid.
    """
    raw_date = _header_text(dataset, "StudyDate")
    study_date = raw_date
    if raw_date and len(raw_date) == 8 and raw_date.isdigit():
        study_date = f"{raw_date[:4]}-{raw_date[4:6]}-{raw_date[6:]}"
    return CaseIds(
        patient_id=_header_text(dataset, "PatientID"),
        study_date=study_date,
        accession_number=_header_text(dataset, "AccessionNumber"),
        operator=_header_text(dataset, "PerformingPhysicianName", "OperatorsName"),
        station=_header_text(dataset, "StationName"),
    )


def _archived(row: InstanceRow, dataset: pydicom.Dataset | None) -> ArchivedClip:
    side = _parse_or_none(Side, row.side)
    technique = _parse_or_none(Technique, row.technique)
    approach = _parse_or_none(Approach, row.approach)
    return ArchivedClip(
        sop_instance_uid=row.sop_instance_uid,
        study_uid=row.study_instance_uid,
        side=side if isinstance(side, Side) else None,
        levels=tuple(SpinalLevel.parse(level) for level in row.levels),
        technique=technique if isinstance(technique, Technique) else None,
        approach=approach if isinstance(approach, Approach) else None,
        ids=case_ids(dataset) if dataset is not None else CaseIds(),
        frame_times=frame_times_or_unknown(dataset) if dataset is not None else None,
    )


def _clip_input(
    archive: Archive, row: InstanceRow, reviewer: str, status: ReviewStatus, dataset: pydicom.Dataset
) -> ClipAuditInput:
    times = frame_times_or_unknown(dataset)
    loaded = archive.annotations.load(row.sop_instance_uid, reviewer)
    annotation = loaded.annotation
    metrics = clip_metrics(annotation, calibration_or_none(dataset), times)
    side = _parse_or_none(Side, row.side)
    technique = _parse_or_none(Technique, row.technique)
    approach = _parse_or_none(Approach, row.approach)
    danger_marked = any(
        bool(mask.any()) for by_class in annotation.danger.values() for mask in by_class.values()
    )
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
        approach=approach if isinstance(approach, Approach) else None,
        danger_marked=danger_marked,
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
        Ordered by SOP Instance UID then reviewer; every matching clip,
        reviewed or not; outcomes of the studies involved.
    """
    rows = archive.index.find(dataclasses.replace(query, limit=AUDIT_LIMIT))
    reviews = archive.annotations.list_reviews(status=status, reviewer=query.reviewer)
    by_uid: dict[str, list[tuple[str, ReviewStatus]]] = {}
    for review in reviews:
        by_uid.setdefault(review.sop_instance_uid, []).append((review.reviewer, review.status))
    inputs: list[ClipAuditInput] = []
    archived: list[ArchivedClip] = []
    notes: list[str] = []
    for row in sorted(rows, key=lambda r: r.sop_instance_uid):
        dataset: pydicom.Dataset | None = None
        try:
            dataset = pydicom.dcmread(archive.store.absolute(row.path), stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            notes.append(
                f"clip {row.sop_instance_uid}: stored header unreadable, no identifiers or times: {exc}"
            )
            logger.warning("audit: clip %s header unreadable: %s", row.sop_instance_uid, exc)
        archived.append(_archived(row, dataset))
        if dataset is None:
            continue
        for name, review_status in sorted(by_uid.get(row.sop_instance_uid, [])):
            try:
                inputs.append(_clip_input(archive, row, name, review_status, dataset))
            except (ArchiveError, OSError, pydicom.errors.InvalidDicomError) as exc:
                notes.append(f"clip {row.sop_instance_uid} by {name} left out: {exc}")
                logger.warning("audit: clip %s by %s left out: %s", row.sop_instance_uid, name, exc)
    studies = {clip.study_uid for clip in archived}
    outcomes = archive.outcomes.of_studies(studies)
    logger.info(
        "audit: %d instances matched, %d reviewed annotations, %d outcomes",
        len(rows),
        len(inputs),
        len(outcomes),
    )
    from archive.worklist.steps import timed_studies

    step_times = {
        study: step.duration_s
        for study, step in timed_studies(archive.engine).items()
        if study in studies and step.duration_s is not None and step.duration_s >= 0
    }
    return GatheredInputs(tuple(inputs), tuple(outcomes), tuple(notes), tuple(archived), step_times)
