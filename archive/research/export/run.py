"""Run an export: read each selected clip, de-identify it, and hand it to the writer of the format.

Formats (:class:`ExportFormat`):

- ``hdf5``: the research dataset of :mod:`archive.research.export.hdf5`, one record per
  clip and selected reviewer (a clip nobody annotated: one record without
  annotation), with the stored outcome of the clip's study and side,
  de-identified;
- ``dicom``: one de-identified DICOM file per clip (:mod:`archive.research.export.dicom_out`);
- ``sr``: one measurement report (TID 1500) per clip and reviewer, NOT
  de-identified: it goes back to the hospital PACS and references the
  original clip; optionally sent there with C-STORE.

Clips are handled one at a time. The dicom format holds one decoded clip in
memory (the de-identified file is written whole); the hdf5 format decodes,
cleans and writes one frame at a time (:func:`archive.research.export.records.clean_frames`),
with the header de-identified for the pseudonym and the new UID; reviewers
become keyed pseudonyms and staff free text is withheld unless
``include_free_text`` (:mod:`archive.research.export.redact`). A clip that
cannot be exported as asked (no 2D region without ``allow_uncalibrated``,
undecodable pixels, no frame timing, nothing to report, a failed C-STORE) is
*refused*: it is left out, the reason is recorded in the
:class:`ExportSummary`, and the export goes on with the next clip.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from archive.analysis.metrics import clip_metrics
from archive.analysis.outcomes.model import Outcome
from archive.archive import Archive
from archive.calibration import UltrasoundRegion, calibration_or_none
from archive.errors import ArchiveError, ExportError
from archive.model import Side, Technique
from archive.pixels import OutputForm, iter_rgb_frames, output_form
from archive.research.deid import DeidOptions, DeidResult, deidentify_dataset, tissue_regions
from archive.research.export.card import CardInfo
from archive.research.export.dicom_out import (
    DicomDirectoryWriter,
    WrittenFile,
    deidentified_card_markdown,
    report_card_markdown,
)
from archive.research.export.gather import SelectedClip, load_annotation
from archive.research.export.hdf5 import HDF5DatasetWriter
from archive.research.export.records import ClipRecord, clean_frames
from archive.research.export.redact import (
    WITHHELD_ADVERSE_EVENT,
    WITHHELD_NOTE,
    redact_annotation,
    redact_outcome,
    reviewer_pseudonym,
)
from archive.research.export.send import send_dataset
from archive.research.export.sr import build_measurement_report
from archive.timing import frame_times_or_unknown

logger = logging.getLogger(__name__)

#: What each de-identified research export applies, for the dataset card.
DEIDENTIFICATION_STEPS = (
    "PS3.15 Basic Application Level Confidentiality Profile (DCM 113100): private attributes "
    "removed, identifying attributes removed or replaced",
    "Keyed pseudonyms (HMAC-SHA256 with the site's secret) for patients; UIDs replaced by keyed UIDs",
    "Dates shifted by a keyed per-patient number of days (DCM 113107)",
    "Clean Pixel Data (DCM 113101): every pixel outside the 2D ultrasound regions set to 0",
    "Reviewers' user names replaced by keyed pseudonyms (R-<12 hex digits>, HMAC-SHA256 with the "
    "site's secret; stable across exports with the same secret); review comments not exported",
)
#: Card statement when free text is withheld (the default).
FREE_TEXT_WITHHELD = (
    f"Free text withheld: adverse-event notes read {WITHHELD_NOTE.format(number='N')!r} (N numbers "
    "the clip's adverse events; their frames are kept); an "
    f"outcome's adverse event reads {WITHHELD_ADVERSE_EVENT!r} when one was recorded"
)
#: Card statement when free text is exported (``include_free_text``).
FREE_TEXT_INCLUDED = (
    "free text included verbatim: NOT de-identified (adverse-event notes and outcomes' adverse-event "
    "descriptions as typed by staff; they may name a patient or a date: check them before sharing)"
)

#: Progress callback: ``(clips done, clips in all, SOP Instance UID of the clip just handled)``.
ProgressCallback = Callable[[int, int, str], None]


class ExportFormat(enum.StrEnum):
    """Output formats of ``usarchive export``."""

    HDF5 = "hdf5"
    DICOM = "dicom"
    SR = "sr"

    @property
    def deidentified(self) -> bool:
        """Whether the format is a de-identified research export (``sr`` is not)."""
        return self is not ExportFormat.SR


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Parameters
    ----------
    export_format : ExportFormat
        The output format.
    output : Path
        The ``.h5`` file (hdf5) or the new directory (dicom, sr).
    deid : DeidOptions or None
        Secret and options; required for hdf5 and dicom, unused for sr.
        Its ``allow_uncalibrated`` lets clips without 2D regions through,
        marked as not pixel-cleaned.
    selection : str
        How the clips were chosen, for the card; must hold no patient data.
    title : str
        Title of the HDF5 dataset card.
    seed : int
        Seed of the HDF5 patient-level split.
    overwrite : bool
        Replace an existing HDF5 file.
    send_to : tuple of (str, str, int), optional
        ``(AE title, host, port)`` to C-STORE each report to, at once (sr only).
    queue_to : str, optional
        A destination of the destination table: each report is queued in the
        forwarding outbox for it once the export is complete (sr only), and
        sent with retries by the forwarder (docs/forwarding.md).
    include_free_text : bool
        hdf5 only: export adverse-event notes and outcomes' adverse-event
        descriptions verbatim (NOT de-identified; the card says so). By
        default they are withheld (:mod:`archive.research.export.redact`).
    """

    export_format: ExportFormat
    output: Path
    deid: DeidOptions | None = None
    selection: str = ""
    title: str = "usarchive research export"
    seed: int = 0
    overwrite: bool = False
    send_to: tuple[str, str, int] | None = None
    include_free_text: bool = False
    queue_to: str | None = None

    def __post_init__(self) -> None:
        if self.export_format.deidentified and self.deid is None:
            raise ArchiveError(
                f"export --format {self.export_format.value}: expected de-identification options with a "
                "secret, but got none; configure the secret (deid_secret) first"
            )


@dataclass(frozen=True)
class ClipProblem:
    """A clip (and reviewer) left out of the export, and why."""

    sop_instance_uid: str
    reviewer: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"sop_instance_uid": self.sop_instance_uid, "reviewer": self.reviewer, "reason": self.reason}


@dataclass
class ExportSummary:
    """What an export did.

    Attributes
    ----------
    export_format : ExportFormat
    output : Path
        The file or directory written.
    clips : int
        Clips selected.
    written : int
        Clips (hdf5, dicom) or reports (sr) written.
    refused : list of ClipProblem
        Clips (or clip-reviewer pairs) refused; the command exits non-zero
        when this is not empty.
    skipped : list of ClipProblem
        Clips with nothing to write in this format (sr: no annotation).
    not_pixel_cleaned : int
        Clips exported with their pixels unchanged (``allow_uncalibrated``).
    sent : int
        Reports stored on the PACS (sr with ``send_to``).
    queued : int
        Reports queued in the forwarding outbox (sr with ``queue_to``).
    """

    export_format: ExportFormat
    output: Path
    clips: int = 0
    written: int = 0
    refused: list[ClipProblem] = field(default_factory=list)
    skipped: list[ClipProblem] = field(default_factory=list)
    not_pixel_cleaned: int = 0
    sent: int = 0
    queued: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``--json`` output of ``usarchive export``)."""
        return {
            "format": self.export_format.value,
            "output": str(self.output),
            "clips": self.clips,
            "written": self.written,
            "not_pixel_cleaned": self.not_pixel_cleaned,
            "sent": self.sent,
            "queued": self.queued,
            "refused": [p.to_json() for p in self.refused],
            "skipped": [p.to_json() for p in self.skipped],
        }


def run_export(
    archive: Archive,
    clips: Sequence[SelectedClip],
    options: ExportOptions,
    *,
    progress: ProgressCallback | None = None,
) -> ExportSummary:
    """Export ``clips`` in ``options.export_format`` to ``options.output``.

    Parameters
    ----------
    archive : Archive
        The open archive (annotations are read from it).
    clips : sequence of SelectedClip
        From :func:`archive.research.export.gather.select_clips`.
    options : ExportOptions
        Format, output and de-identification.
    progress : callable, optional
        Called after each clip.

    Returns
    -------
    ExportSummary
        Refused clips are listed there, not raised.

    Raises
    ------
    ExportError
        If the output cannot be created (exists, not empty); nothing is written then.
    """
    summary = ExportSummary(options.export_format, options.output, clips=len(clips))
    exporters = {
        ExportFormat.HDF5: _export_hdf5,
        ExportFormat.DICOM: _export_dicom,
        ExportFormat.SR: _export_sr,
    }
    exporters[options.export_format](archive, clips, options, summary, progress or _no_progress)
    logger.info(
        "export %s to %s: %d of %d clip(s) written, %d refused",
        options.export_format.value,
        options.output,
        summary.written,
        summary.clips,
        len(summary.refused),
    )
    return summary


def _no_progress(done: int, total: int, uid: str) -> None:
    """Progress callback that does nothing."""


def _deidentify(clip: SelectedClip, options: ExportOptions) -> DeidResult:
    assert options.deid is not None, "checked by ExportOptions"
    return deidentify_dataset(dcmread(clip.path), options.deid)


def _refuse(summary: ExportSummary, clip: SelectedClip, reviewer: str | None, exc: Exception) -> None:
    # Our own errors say what was wrong and what to do; anything else (a library's) gets its type
    # and the traceback in the debug log, and the export goes on with the next clip.
    if isinstance(exc, ArchiveError | InvalidDicomError | OSError):
        reason = str(exc)
    else:
        logger.debug("clip %s: unexpected %s", clip.sop_instance_uid, type(exc).__name__, exc_info=exc)
        reason = (
            f"{type(exc).__name__}: {exc} (file {clip.path.name}); this clip cannot be exported in this "
            "format, the others were; report it with the file if it should be"
        )
    logger.warning("clip %s refused: %s", clip.sop_instance_uid, reason)
    summary.refused.append(ClipProblem(clip.sop_instance_uid, reviewer, reason))


# -- dicom -------------------------------------------------------------------------------------


def _export_dicom(
    archive: Archive,
    clips: Sequence[SelectedClip],
    options: ExportOptions,
    summary: ExportSummary,
    progress: ProgressCallback,
) -> None:
    not_cleaned: list[WrittenFile] = []
    patients: set[str] = set()
    codes: set[str] = set()
    with DicomDirectoryWriter(options.output) as writer:
        for done, clip in enumerate(clips, start=1):
            try:
                result = _deidentify(clip, options)
                written = writer.add(result.dataset, folder=result.patient_pseudonym)
            except Exception as exc:
                _refuse(summary, clip, None, exc)
            else:
                summary.written += 1
                patients.add(result.patient_pseudonym)
                codes.update(result.method_codes)
                if not result.pixels_cleaned:
                    not_cleaned.append(written)
            progress(done, len(clips), clip.sop_instance_uid)
        card = deidentified_card_markdown(
            writer.files,
            n_patients=len(patients),
            method_codes=sorted(codes),
            not_pixel_cleaned=not_cleaned,
            selection=options.selection,
        )
        writer.close(card)
    summary.not_pixel_cleaned = len(not_cleaned)


# -- hdf5 --------------------------------------------------------------------------------------


def _frames(
    path: Path, header: Dataset, regions: Sequence[UltrasoundRegion], uid: str
) -> Callable[[], Iterator[npt.NDArray[Any]]]:
    """A frame source decoding ``path`` one frame at a time (colour as RGB), blanked outside ``regions``."""

    def decoded() -> Iterator[npt.NDArray[Any]]:
        try:
            yield from iter_rgb_frames(path, header)
        except (NotImplementedError, RuntimeError, ValueError, KeyError, AttributeError) as exc:
            raise ExportError(
                f"instance {uid}: expected pixel data that pydicom can decode, but decoding failed: "
                f"{type(exc).__name__}: {exc}; install the pylibjpeg plugins for its transfer syntax"
            ) from exc

    def frames() -> Iterator[npt.NDArray[Any]]:
        return clean_frames(decoded(), regions) if regions else decoded()

    return frames


def _output_form(ds: Dataset, uid: str) -> OutputForm:
    try:
        return output_form(ds)
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        raise ExportError(
            f"instance {uid}: the research dataset holds grey (MONOCHROME1/2) or RGB frames of 8 or 16 "
            f"bits, but this clip cannot be represented so: {exc}"
        ) from exc


def _clip_key(uid: str, reviewer: str | None, n_reviews: int) -> str:
    # ``reviewer`` is the pseudonym ("R-" and hex digits): never the user name.
    if reviewer is None or n_reviews <= 1:
        return uid
    return f"{uid}~{reviewer}"


OutcomesBySide = dict[tuple[str, Side], Outcome]


def _outcomes(archive: Archive, clips: Sequence[SelectedClip]) -> OutcomesBySide:
    studies = {clip.row.study_instance_uid for clip in clips}
    return {(o.study_uid, Side.parse(o.side)): o for o in archive.outcomes.of_studies(studies)}


def _outcome_of(clip: SelectedClip, outcomes: OutcomesBySide) -> Outcome | None:
    if clip.row.side is None:
        return None
    return outcomes.get((clip.row.study_instance_uid, Side.parse(clip.row.side)))


def _clip_records(
    archive: Archive, clip: SelectedClip, options: ExportOptions, outcomes: OutcomesBySide
) -> Iterator[ClipRecord]:
    # Header only: the frames are decoded and cleaned one at a time as the writer pulls them.
    assert options.deid is not None, "checked by ExportOptions"
    original = dcmread(clip.path, stop_before_pixels=True)
    regions = tissue_regions(original, allow_uncalibrated=options.deid.allow_uncalibrated)
    result = deidentify_dataset(original, replace(options.deid, clean_pixels=False))
    free_text = options.include_free_text
    outcome = _outcome_of(clip, outcomes)
    times = frame_times_or_unknown(original)
    calibration = calibration_or_none(original)
    form = _output_form(original, clip.sop_instance_uid)
    base: dict[str, Any] = {
        "patient_pseudonym": result.patient_pseudonym,
        "frames": _frames(clip.path, original, regions, clip.sop_instance_uid),
        "n_frames": int(original.get("NumberOfFrames", 1) or 1),
        "frame_shape": form.frame_shape,
        "frame_dtype": form.dtype.name,
        "photometric": form.photometric,
        "source_photometric": form.source_photometric,
        "timed": times.timed,
        "frame_times_ms": times.offsets_ms,
        "pixel_size_mm": None if calibration is None else calibration.pixel_size_mm,
        "levels": clip.row.levels,
        "side": clip.row.side,
        "technique": clip.row.technique or Technique.UNKNOWN,
        "procedure_type": clip.row.procedure_type,
        "outcome": None if outcome is None else redact_outcome(outcome, include_free_text=free_text),
        "pixels_cleaned": bool(regions),
    }
    if not clip.reviews:
        yield ClipRecord(clip_key=result.sop_instance_uid, **base)
        return
    for review in clip.reviews:
        annotation = redact_annotation(
            load_annotation(archive, review), options.deid.secret, include_free_text=free_text
        )
        metrics = clip_metrics(annotation, calibration, times)
        yield ClipRecord(
            clip_key=_clip_key(result.sop_instance_uid, annotation.reviewer, len(clip.reviews)),
            annotation=annotation,
            metrics=metrics.to_dict(),
            **base,
        )


def _export_hdf5(
    archive: Archive,
    clips: Sequence[SelectedClip],
    options: ExportOptions,
    summary: ExportSummary,
    progress: ProgressCallback,
) -> None:
    assert options.deid is not None, "checked by ExportOptions"
    info = CardInfo(
        title=options.title,
        description="Ultrasound-guided spinal injection clips with reviewers' annotations and metrics.",
        selection=options.selection,
        deidentification=(
            *DEIDENTIFICATION_STEPS,
            FREE_TEXT_INCLUDED if options.include_free_text else FREE_TEXT_WITHHELD,
        ),
    )
    with HDF5DatasetWriter(
        options.output,
        seed=options.seed,
        card_info=info,
        allow_not_pixel_cleaned=options.deid.allow_uncalibrated,
        overwrite=options.overwrite,
    ) as writer:
        outcomes = _outcomes(archive, clips)
        for done, clip in enumerate(clips, start=1):
            # The summary goes to the exporting user: it names reviewers, not their pseudonyms.
            names = {reviewer_pseudonym(options.deid.secret, r.reviewer): r.reviewer for r in clip.reviews}
            reviewer: str | None = None
            written = 0
            cleaned = True
            try:
                for record in _clip_records(archive, clip, options, outcomes):
                    reviewer = None if record.reviewer is None else names[record.reviewer]
                    writer.add_clip(record)
                    written += 1
                    cleaned = record.pixels_cleaned
            except Exception as exc:
                _refuse(summary, clip, reviewer, exc)
            if written:
                summary.written += 1
                summary.not_pixel_cleaned += not cleaned
            progress(done, len(clips), clip.sop_instance_uid)
        writer.close()


# -- sr ----------------------------------------------------------------------------------------


def _send(
    summary: ExportSummary, clip: SelectedClip, reviewer: str, report: Dataset, options: ExportOptions
) -> None:
    assert options.send_to is not None
    ae_title, host, port = options.send_to
    status = send_dataset(report, ae_title, host, port)
    if status == 0x0000 or 0xB000 <= status <= 0xBFFF:
        summary.sent += 1
        return
    summary.refused.append(
        ClipProblem(
            clip.sop_instance_uid,
            reviewer,
            f"C-STORE of report {report.SOPInstanceUID} to {ae_title}@{host}:{port}: expected status "
            f"0x0000 (success), but got 0x{status:04X}; the report was written but not stored; "
            "send the file again when the PACS accepts it",
        )
    )


def _export_sr(
    archive: Archive,
    clips: Sequence[SelectedClip],
    options: ExportOptions,
    summary: ExportSummary,
    progress: ProgressCallback,
) -> None:
    with DicomDirectoryWriter(options.output) as writer:
        for done, clip in enumerate(clips, start=1):
            if not clip.reviews:
                summary.skipped.append(
                    ClipProblem(clip.sop_instance_uid, None, "no annotation: nothing to report")
                )
                progress(done, len(clips), clip.sop_instance_uid)
                continue
            try:
                header = dcmread(clip.path, stop_before_pixels=True)
            except Exception as exc:
                _refuse(summary, clip, None, exc)
                progress(done, len(clips), clip.sop_instance_uid)
                continue
            for review in clip.reviews:
                try:
                    annotation = load_annotation(archive, review)
                    times = frame_times_or_unknown(header)
                    metrics = clip_metrics(annotation, calibration_or_none(header), times)
                    report = build_measurement_report(header, annotation, metrics)
                    writer.add(report)
                    summary.written += 1
                    if options.send_to is not None:
                        _send(summary, clip, review.reviewer, report, options)
                except Exception as exc:
                    _refuse(summary, clip, review.reviewer, exc)
            progress(done, len(clips), clip.sop_instance_uid)
        sent_to = None if options.send_to is None else "{}@{}:{}".format(*options.send_to)
        if options.queue_to is not None:
            sent_to = f"{options.queue_to} (queued in the forwarding outbox)"
        final = writer.close(report_card_markdown(writer.files, selection=options.selection, sent_to=sent_to))
        if options.queue_to is not None:
            for written in writer.files:
                archive.forward.enqueue_file(final / written.relative_path, options.queue_to)
                summary.queued += 1
