"""What :meth:`archive.archive.Archive.ingest` checks of its caller, and its result when storage fails."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

from archive.dicom_header import InstanceHeader
from archive.ingest import IngestOutcome, IngestResult, Origin, RejectCode
from archive.store import RESOURCE_ERRNOS

logger = logging.getLogger("archive.archive")

_HEX_DIGITS = frozenset("0123456789abcdef")


def check_trusted_inputs(
    source: Path | bytes, transfer_syntax: str | None, sha256: str | None, header: InstanceHeader | None
) -> None:
    """Refuse a caller's digest or header that is malformed or cannot describe the stored bytes.

    Raises
    ------
    ValueError
        If ``sha256`` is not 64 lowercase hex digits, or a digest or header is given for
        bytes or a bare data set (they describe a Part 10 file given by path only).
    """
    if sha256 is not None and (len(sha256) != 64 or not _HEX_DIGITS.issuperset(sha256)):
        raise ValueError(f"ingest: sha256 must be 64 lowercase hex digits, but got {sha256!r}")
    for name, given, what in (("sha256", sha256, "its bytes"), ("header", header, "read_header of it")):
        if given is not None and (transfer_syntax is not None or isinstance(source, bytes)):
            raise ValueError(
                f"ingest: {name} applies to a Part 10 file given by path ({what}); "
                "omit it for bytes or a bare dataset with transfer_syntax"
            )


def storage_failure(origin: Origin, exc: OSError) -> IngestResult:
    """The REJECTED result of an offer whose bytes could not be stored (disk full, I/O error).

    Parameters
    ----------
    origin : Origin
        Where the offer came from (logged).
    exc : OSError
        The failure; out-of-space and quota errnos map to ``OUT_OF_RESOURCES``.

    Returns
    -------
    IngestResult
    """
    code = RejectCode.OUT_OF_RESOURCES if exc.errno in RESOURCE_ERRNOS else RejectCode.STORAGE_ERROR
    logger.error("ingest from %s failed: %s", origin.describe(), exc)
    return IngestResult(
        outcome=IngestOutcome.REJECTED,
        sop_instance_uid=None,
        sop_class_uid=None,
        reason=f"storage failed ({errno.errorcode.get(exc.errno or 0, 'error')}): {exc}; "
        "nothing was stored; free space or fix the data directory and send again",
        code=code,
    )
