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
    """A phantom (synthetic clip) generator argument is out of range."""


class InstanceRejectedError(ArchiveError):
    """An instance offered for ingest was refused; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(ArchiveError):
    """The configuration (TOML file, environment or options) is invalid."""
