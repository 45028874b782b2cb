"""Approved annotations as DICOM SR (TID 1500) in their study, so DICOMweb lists them and OHIF shows them.

:func:`publish_measurement_reports` builds one measurement report
(:func:`archive.research.export.sr.build_measurement_report`, the same builder
as ``usarchive export --format sr``) per approved annotation version and
stores it through the one ingest path (:meth:`Archive.ingest`), so QIDO-RS,
WADO-RS and ``/metadata`` serve it like any other instance, with no special
case in the DICOMweb code. ``usarchive web --ohif`` runs it when it starts.

Stored rather than generated per request: the SR is then durable, verified
like every stored file and identical on each retrieval. The UIDs are derived
(:func:`pydicom.uid.generate_uid` with entropy sources) from the clip, the
reviewer and the annotation version, so publishing again stores nothing new
(a duplicate), and a later approved version is a new instance in the same
series (one series per reviewer and clip, Series Number 900).

Annotations that yield no report (an uncalibrated clip, nothing measurable)
are listed in the result with the builder's reason, never half-stored.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

from pydicom import dcmread
from pydicom.uid import generate_uid

from archive.analysis.metrics import clip_metrics
from archive.archive import Archive
from archive.calibration import calibration_or_none
from archive.errors import ArchiveError
from archive.index.queries import Query
from archive.ingest import IngestOutcome, Origin
from archive.model import ReviewStatus
from archive.research.export.sr import build_measurement_report
from archive.timing import frame_times_or_unknown

logger = logging.getLogger(__name__)


@dataclass
class PublishedReports:
    """What :func:`publish_measurement_reports` did.

    Attributes
    ----------
    stored : list of str
        SOP Instance UIDs of reports stored now.
    already : list of str
        Reports stored before (same clip, reviewer and version).
    skipped : list of tuple
        ``(clip SOP Instance UID, reviewer, reason)`` of approved annotations with no report.
    """

    stored: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)


def report_uids(clip_uid: str, reviewer: str, version: int) -> tuple[str, str]:
    """``(series, instance)`` UIDs of the report of ``reviewer``'s ``version`` of ``clip_uid``."""
    series = generate_uid(entropy_srcs=["usarchive measurement report series", clip_uid, reviewer])
    instance = generate_uid(entropy_srcs=["usarchive measurement report", clip_uid, reviewer, str(version)])
    return series, instance


def publish_measurement_reports(archive: Archive) -> PublishedReports:
    """Store an SR measurement report of every approved annotation that has none yet.

    Parameters
    ----------
    archive : Archive
        The open archive.

    Returns
    -------
    PublishedReports
    """
    result = PublishedReports()
    paths = {row.sop_instance_uid: row.path for row in archive.index.find(Query(limit=2**62))}
    for review in archive.annotations.list_reviews(status=ReviewStatus.APPROVED):
        clip, reviewer = review.sop_instance_uid, review.reviewer
        series, instance = report_uids(clip, reviewer, review.latest_version)
        if instance in paths:
            result.already.append(instance)
            continue
        try:
            loaded = archive.annotations.load(clip, reviewer)
            if clip not in paths:
                raise ArchiveError(f"clip {clip}: expected it in the index, but it is not there (removed?)")
            header = dcmread(archive.store.absolute(paths[clip]), stop_before_pixels=True)
            calibration = calibration_or_none(header)
            metrics = clip_metrics(loaded.annotation, calibration, frame_times_or_unknown(header))
            report = build_measurement_report(
                header,
                loaded.annotation,
                metrics,
                series_instance_uid=series,
                sop_instance_uid=instance,
                instance_number=review.latest_version,
            )
        except ArchiveError as exc:
            result.skipped.append((clip, reviewer, str(exc)))
            logger.info("measurement report of %s by %s: not published (%s)", clip, reviewer, exc)
            continue
        buffer = io.BytesIO()
        report.save_as(buffer, enforce_file_format=True)
        stored = archive.ingest(buffer.getvalue(), origin=Origin(kind="web", path="measurement report"))
        if stored.outcome is IngestOutcome.DUPLICATE:
            result.already.append(instance)
        elif stored.outcome is IngestOutcome.REJECTED:
            result.skipped.append((clip, reviewer, f"the archive refused the report: {stored.reason}"))
        else:
            result.stored.append(instance)
    logger.info(
        "measurement reports: %d stored, %d already, %d without report",
        len(result.stored),
        len(result.already),
        len(result.skipped),
    )
    return result
