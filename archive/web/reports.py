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

A report supersedes the reviewer's earlier reports of the clip: they stay
stored (the archive deletes nothing) and are named in its Predecessor
Documents Sequence; OHIF shows a series' highest Instance Number, the newest
approved version.

While the server runs, :class:`ReportPublisher` publishes approvals made
since it last looked (by the CLI, the annotator, another process): before a
QIDO-RS or ``/metadata`` request, one aggregate query
(:func:`archive.web.reviews.approvals_marker`) says whether approvals changed,
and only then is :func:`publish_measurement_reports` run again.
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass, field

import anyio.to_thread
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import Engine, or_, select
from starlette.types import ASGIApp, Receive, Scope, Send

from archive.analysis.metrics import clip_metrics
from archive.archive import Archive
from archive.calibration import calibration_or_none
from archive.errors import ArchiveError
from archive.index import schema
from archive.index.engine import autocommit_reads
from archive.ingest import IngestOutcome, Origin
from archive.model import ReviewStatus
from archive.research.export.sr import build_measurement_report
from archive.timing import frame_times_or_unknown
from archive.web.reviews import approvals_marker

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
    reviews = archive.annotations.list_reviews(status=ReviewStatus.APPROVED)
    wanted = [(r, *report_uids(r.sop_instance_uid, r.reviewer, r.latest_version)) for r in reviews]
    paths, by_series = _stored(
        archive.engine,
        {r.sop_instance_uid for r, _, _ in wanted} | {instance for _, _, instance in wanted},
        {series for _, series, _ in wanted},
    )
    for review, series, instance in wanted:
        clip, reviewer = review.sop_instance_uid, review.reviewer
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
                previous_versions=_earlier_reports(archive, by_series.get(series, [])),
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


def _stored(
    engine: Engine, instances: set[str], series: set[str]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Store paths of these instances, and of every instance of these series (by series); one query."""
    it, se = schema.instance, schema.series
    query = (
        select(it.c.sop_instance_uid, it.c.path, se.c.series_instance_uid)
        .select_from(it.join(se, se.c.id == it.c.series_pk))
        .where(or_(it.c.sop_instance_uid.in_(instances), se.c.series_instance_uid.in_(series)))
    )
    paths: dict[str, str] = {}
    by_series: dict[str, list[str]] = {}
    if not instances and not series:
        return paths, by_series
    with autocommit_reads(engine) as connection:
        for uid, path, series_uid in connection.execute(query):
            paths[uid] = path
            if series_uid in series:
                by_series.setdefault(series_uid, []).append(path)
    return paths, by_series


def _earlier_reports(archive: Archive, paths: list[str]) -> list[Dataset]:
    """The reports stored in a report series before (the reviewer's earlier approved versions)."""
    return [dcmread(archive.store.absolute(path)) for path in paths]


class ReportPublisher:
    """Publishes approved annotations as SR again whenever approvals changed since it last did.

    Thread-safe: request handlers call :meth:`refresh` from Starlette's
    thread pool; one publication runs at a time.

    Parameters
    ----------
    archive : Archive
        The open archive the server serves.
    """

    def __init__(self, archive: Archive) -> None:
        self._archive = archive
        self._lock = threading.Lock()
        self._published: tuple[int, int, str] | None = None

    def refresh(self) -> PublishedReports | None:
        """Publish if approvals changed since the last publication; ``None`` if they did not."""
        if approvals_marker(self._archive.engine) == self._published:
            return None
        with self._lock:
            marker = approvals_marker(self._archive.engine)
            if marker == self._published:
                return None  # another thread published while this one waited
            result = publish_measurement_reports(self._archive)
            self._published = marker
            return result


#: Last path segments of the requests before which :class:`PublishingReports` refreshes.
_STUDY_REQUESTS = frozenset({"studies", "series", "instances", "metadata", "overview"})


class PublishingReports:
    """ASGI: refresh the published reports before QIDO-RS, ``/metadata`` and the landing page's data.

    Frames, bulk data and retrievals pass straight through (no query per
    frame). A failure to publish is logged and the request served anyway: a
    study query must not fail because a report could not be built.

    Parameters
    ----------
    app : ASGIApp
        The DICOMweb application.
    publisher : ReportPublisher
        What to refresh.
    """

    def __init__(self, app: ASGIApp, publisher: ReportPublisher) -> None:
        self.app = app
        self.publisher = publisher

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refresh (in a worker thread) if this is a study request, then serve it."""
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and str(scope["path"]).rstrip("/").rpartition("/")[2] in _STUDY_REQUESTS
        ):
            try:
                await anyio.to_thread.run_sync(self.publisher.refresh)
            except Exception:  # logged; the query itself is still answered
                logger.exception("measurement reports: publishing new approvals failed")
        await self.app(scope, receive, send)
