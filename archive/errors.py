"""Errors raised by the archive package.

Every message says what was expected, what was found and what to do, in the
manner of pydicom's errors. Callers catch :class:`ArchiveError` for anything
this package raises on purpose.
"""

from __future__ import annotations


class ArchiveError(Exception):
    """Base class of every error the archive raises deliberately."""


class CalibrationError(ArchiveError):
    """A physical measurement (mm, mm²) cannot be made from the image's calibration.

    Raised when an image has no Sequence of Ultrasound Regions, when a region is
    not 2D tissue, its units are not centimetres, or two points lie in different
    regions. The archive never guesses a pixel spacing.
    """


class TimingError(ArchiveError):
    """Frame times cannot be derived from the image's attributes."""


class PhantomError(ArchiveError, ValueError):
    """A phantom (synthetic clip) cannot be made or read back.

    A generator argument is out of range, or a ground-truth file is not in the
    layout this version writes (unknown schema or mask encoding, damaged mask).
    """


class InstanceRejectedError(ArchiveError):
    """An instance offered for ingest was refused; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(ArchiveError):
    """The configuration (TOML file, environment or options) is invalid."""


class AnnotationError(ArchiveError, ValueError):
    """A clip annotation or an edit of it is invalid.

    Raised for marks outside the clip, events in an impossible order, edits of
    an annotation that is submitted or approved, review-status transitions the
    workflow does not allow, and malformed serialised annotations.
    """


class StatisticsError(ArchiveError, ValueError):
    """A statistical test cannot be computed from the data given.

    Raised when a group has too few values (e.g. fewer than two for a t-test),
    counts are impossible (more successes than cases), or a repeated-measures
    table is malformed (a subject in two groups, a time point given twice).
    """


class OutcomeImportError(ArchiveError, ValueError):
    """An outcomes CSV has bad rows; nothing from it was imported.

    ``problems`` holds every bad row as ``(line number, reason)``, line numbers
    counted from 1 with the header on line 1, so the whole file can be fixed
    in one pass.
    """

    def __init__(self, problems: list[tuple[int, str]], source: str = "outcomes CSV") -> None:
        self.problems: tuple[tuple[int, str], ...] = tuple(problems)
        self.source = source
        lines = "\n".join(f"  line {line}: {reason}" for line, reason in self.problems)
        count = len(self.problems)
        super().__init__(
            f"{source}: expected every row to be valid, but {count} "
            f"{'row is' if count == 1 else 'rows are'} bad, so nothing was imported; "
            f"fix these and import the file again:\n{lines}"
        )


class MetricsError(ArchiveError, ValueError):
    """Audit metrics cannot be computed because their inputs do not fit together.

    Raised when the frame times have a different number of frames than the
    annotation, or two annotations compared for agreement are of different
    clips, lengths or frame shapes.
    """


class DeidentificationError(ArchiveError):
    """An instance cannot be de-identified as asked.

    Raised when a clip has no 2D ultrasound region to keep while cleaning the
    pixels (and uncalibrated clips were not explicitly allowed), when its
    pixel data cannot be decoded, when no patient key exists to shift dates,
    or when the de-identification options are invalid (e.g. a missing or short
    secret).
    """


class ExportError(ArchiveError, ValueError):
    """A research dataset cannot be written or read as asked.

    Raised when a clip handed to the HDF5 writer does not fit its own
    description (frame count or shape, annotation of another clip), when a
    clip is not pixel-cleaned without being explicitly allowed, when the
    output exists and overwriting was not asked for, and when a file read
    back is not a usarchive research dataset.
    """


class MeasurementReportError(ArchiveError, ValueError):
    """A DICOM measurement report (SR) cannot be built from the inputs given.

    Raised when the clip header, annotation and metrics are not of one clip and
    one reviewer, when a metric refers to marks the annotation lacks, or when
    no metric has a value to report (e.g. an uncalibrated clip).
    """


class SendError(ArchiveError):
    """An instance could not be sent to a remote application entity.

    Raised when a destination ``AE@host:port`` is malformed, and when a peer
    cannot be reached, rejects or aborts the association, accepts no context
    for the SOP class, or sends no C-STORE response.
    """


class StaleAnnotationError(AnnotationError):
    """A save of an annotation was based on a version that is no longer the latest.

    Someone (another editor of the same reviewer's annotation, or an approver
    changing its status) saved in between. Nothing was saved; the caller still
    holds the unsaved annotation and should reload the stored version, re-apply
    its changes and save again with the new base version.
    """

    def __init__(
        self,
        message: str,
        *,
        sop_instance_uid: str,
        reviewer: str,
        base_version: int | None,
        stored_version: int,
    ) -> None:
        super().__init__(message)
        self.sop_instance_uid = sop_instance_uid
        self.reviewer = reviewer
        self.base_version = base_version
        self.stored_version = stored_version


class ArchiveNotFoundError(ConfigError):
    """The data directory (or index) named holds no archive; ``usarchive init`` creates one."""
