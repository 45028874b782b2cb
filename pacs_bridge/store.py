"""The C-STORE handler: from a spooled data set to a durable, indexed archive instance.

The data set has been streamed by pynetdicom into a spool file on the store's
filesystem (see :mod:`pacs_bridge.spool`). The handler reads and validates its
header once (:func:`archive.dicom_header.read_header`), checks that the data
set is what the command announced, hands the file, that header and the SHA-256
computed while it was spooled to ``Archive.ingest(move=True, sha256=...,
header=...)`` (a rename into the store after fsync, without reading the file
again) and answers Success only when ingest says the instance is durably
stored and indexed. It never raises: every failure is a
DIMSE status with an Error Comment.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydicom.dataset import Dataset

from archive.dicom_header import InstanceHeader, read_header
from archive.index.engine import bounded_lock_wait
from archive.ingest import IngestOutcome, IngestRejectedError, IngestResult, Origin, RejectCode
from pacs_bridge.spool import SpoolDirectory, SpoolFile
from pacs_bridge.status import StoreStatus, status_for_ingest

if TYPE_CHECKING:
    from pynetdicom.events import Event

LOGGER = logging.getLogger(__name__)


class Ingestor(Protocol):
    """The part of ``archive.archive.Archive`` the receiver needs to store instances."""

    def ingest(
        self,
        source: Path | bytes,
        *,
        origin: Origin,
        transfer_syntax: str | None = None,
        move: bool = False,
        sha256: str | None = None,
        header: InstanceHeader | None = None,
    ) -> IngestResult:
        """Store one instance durably and index it (see ``Archive.ingest``)."""
        ...


@dataclass
class AssociationTally:
    """What one association has stored so far, for its closing log line."""

    started: float = field(default_factory=time.monotonic)
    #: Instances newly stored (or replacing a stored version), answered Success.
    instances: int = 0
    #: Instances whose data set was already stored, answered Success and not stored again.
    duplicates: int = 0
    failures: int = 0
    bytes_received: int = 0

    def summary(self) -> str:
        """``"3 stored, 1 duplicate, 0 failed"``, for the association's closing log line."""
        return f"{self.instances} stored, {self.duplicates} duplicate, {self.failures} failed"


def peer_of(event: Event) -> tuple[str, str]:
    """The calling AE title and ``"host:port"`` of the association of ``event``."""
    requestor = event.assoc.requestor
    return str(requestor.ae_title).strip(), f"{requestor.address}:{requestor.port}"


#: Error Comment (0000,0902) is LO: at most 64 characters (PS3.7 Annex C, PS3.5 Table 6.2-1).
_ERROR_COMMENT_MAX = 64

#: Complete short sentences for reasons too long for an Error Comment; the log has the whole reason.
_SHORT_REASON: dict[RejectCode, str] = {
    RejectCode.CONFLICT: "UID already stored with another data set; kept the first",
    RejectCode.NOT_DICOM: "not a DICOM data set",
    RejectCode.TRUNCATED: "data set truncated",
    RejectCode.MALFORMED: "data set malformed",
    RejectCode.MISSING_ATTRIBUTE: "required attribute missing or empty",
    RejectCode.INVALID_UID: "invalid UID in the data set",
    RejectCode.UNKNOWN_TRANSFER_SYNTAX: "unknown transfer syntax",
    RejectCode.OUT_OF_RESOURCES: "archive out of resources; send again later",
    RejectCode.STORAGE_ERROR: "archive storage failed; send again later",
}


def error_comment(reason: str, code: RejectCode | None = None) -> str:
    """An Error Comment that fits LO (64 characters) and is never cut off mid-sentence.

    A reason that fits is sent as it is; a longer one is replaced by a short
    complete sentence for its code (the whole reason goes to the log).

    Examples
    --------
    >>> error_comment("disk full")
    'disk full'
    >>> error_comment("x" * 80, RejectCode.CONFLICT)
    'UID already stored with another data set; kept the first'
    """
    if len(reason) <= _ERROR_COMMENT_MAX:
        return reason
    short = _SHORT_REASON.get(code) if code is not None else None
    if short is not None:
        return short
    head = reason[: _ERROR_COMMENT_MAX - 16].rsplit(" ", 1)[0].rstrip(",;:(")
    return f"{head}; see the log"


def _status(status: StoreStatus, comment: str | None = None, code: RejectCode | None = None) -> Dataset:
    """A status data set, with an Error Comment (LO, at most 64 characters) for failures."""
    answer = Dataset()
    answer.Status = int(status)
    if comment and status is not StoreStatus.SUCCESS:
        answer.ErrorComment = error_comment(comment, code)
    return answer


@dataclass(frozen=True)
class _Outcome:
    """The answer to one C-STORE, with what the tally and the log line need besides it."""

    answer: Dataset
    reason: str | None = None  # the whole reason (the Error Comment may be its short form)
    duplicate: bool = False

    @classmethod
    def failed(cls, status: StoreStatus, reason: str) -> _Outcome:
        return cls(_status(status, reason), reason=reason)


def _check_uids(
    dataset_class: str | None, dataset_instance: str | None, sop_class_uid: str, sop_instance_uid: str
) -> tuple[StoreStatus, str] | None:
    """Compare the data set's SOP class and instance with the command; ``None`` when they match.

    A UID the data set lacks (``None``) is not compared: ingest reports it.
    """
    if dataset_class is not None and dataset_class != sop_class_uid:
        return StoreStatus.DATASET_DOES_NOT_MATCH, f"data set SOP class {dataset_class} != request"
    if dataset_instance is not None and dataset_instance != sop_instance_uid:
        return StoreStatus.DATASET_DOES_NOT_MATCH, f"data set SOP instance {dataset_instance} != request"
    return None


def _read_request_header(
    path: Path, sop_class_uid: str, sop_instance_uid: str
) -> InstanceHeader | tuple[StoreStatus, str] | None:
    """Read and validate the spooled data set's header once, for both the check and ingest.

    Returns the header when its SOP class and instance match the C-STORE
    request, else the status that refuses the data set: "does not match SOP
    class" for a mismatch (checked first, as far as the header could be read),
    else the status of ingest's rejection (a data set that cannot be parsed is
    "cannot understand"). ``None`` when the file could not be read (an OS
    error): ingest then reads it again and reports the storage failure. A data
    set pydicom cannot parse at all (nested deeper than Python's recursion
    limit, or an error other than ingest's rejection) is "cannot understand"
    with the reason, never a processing failure.
    """
    try:
        header = read_header(path)
    except IngestRejectedError as rejection:
        mismatch = _check_uids(
            rejection.sop_class_uid, rejection.sop_instance_uid, sop_class_uid, sop_instance_uid
        )
        return mismatch or (status_for_ingest(rejection.to_result()), rejection.reason)
    except OSError:
        return None
    except RecursionError:
        return StoreStatus.CANNOT_UNDERSTAND, "data set nested too deeply to parse"
    except Exception as exc:  # pydicom's parser on bytes it cannot make sense of
        return StoreStatus.CANNOT_UNDERSTAND, f"unparsable data set ({type(exc).__name__})"
    mismatch = _check_uids(header.sop_class_uid, header.sop_instance_uid, sop_class_uid, sop_instance_uid)
    return mismatch or header


class StoreHandler:
    """Handles ``evt.EVT_C_STORE`` for one receiver; also keeps per-association tallies.

    Parameters
    ----------
    archive : Ingestor
        The archive (``archive.archive.Archive``).
    spool : SpoolDirectory
        Where pynetdicom spools this receiver's data sets.
    called_ae : str
        Our AE title, recorded in the instance's origin.
    index_busy_timeout_s : float or None
        Longest wait for a locked SQLite index per instance; then the store
        is answered 0xA700 "index busy" (logged), well inside a scanner's
        DIMSE timeout. ``None`` waits as long as the archive does.
    """

    def __init__(
        self,
        archive: Ingestor,
        spool: SpoolDirectory,
        called_ae: str,
        *,
        index_busy_timeout_s: float | None = None,
    ) -> None:
        self._archive = archive
        self._index_busy_timeout_s = index_busy_timeout_s
        self._spool = spool
        self._called_ae = called_ae
        self._tallies: dict[int, AssociationTally] = {}
        self._lock = threading.Lock()

    def tally(self, assoc: object) -> AssociationTally:
        """The tally of ``assoc`` (created on first use)."""
        with self._lock:
            return self._tallies.setdefault(id(assoc), AssociationTally())

    def pop_tally(self, assoc: object) -> AssociationTally:
        """Remove and return the tally of ``assoc`` (when the association ends)."""
        with self._lock:
            return self._tallies.pop(id(assoc), AssociationTally())

    def __call__(self, event: Event) -> Dataset:
        """Store the data set of ``event``; return the C-STORE response status.

        Never raises: an unexpected error is logged and answered with 0x0110
        (Processing Failure), so the association survives.
        """
        started = time.monotonic()
        request: Any = event.request
        sop_class = str(request.AffectedSOPClassUID)
        sop_instance = str(request.AffectedSOPInstanceUID)
        calling_ae, address = peer_of(event)
        size = 0
        path: Path | None = None
        try:
            path = Path(event.dataset_path)
            spool_file = self._spool.lookup(path)
            if spool_file is not None:
                size = spool_file.bytes_written
            elif path.exists():
                size = path.stat().st_size
            outcome = self._store(spool_file, path, sop_class, sop_instance, calling_ae, address)
        except Exception as exc:  # the handler must answer, whatever happened
            LOGGER.exception("C-STORE %s from %s@%s: unexpected error", sop_instance, calling_ae, address)
            outcome = _Outcome.failed(StoreStatus.PROCESSING_FAILURE, f"internal error: {type(exc).__name__}")
        finally:
            if path is not None:
                self._spool.release(path)
        answer = outcome.answer
        elapsed_ms = (time.monotonic() - started) * 1000.0
        tally = self.tally(event.assoc)
        tally.bytes_received += size
        reason = outcome.reason if answer.Status != StoreStatus.SUCCESS else None
        if answer.Status != StoreStatus.SUCCESS:
            tally.failures += 1
        elif outcome.duplicate:
            tally.duplicates += 1
        else:
            tally.instances += 1
        comment = answer.ErrorComment if "ErrorComment" in answer else None
        LOGGER.info(
            "C-STORE from %s@%s class=%s instance=%s status=0x%04X bytes=%d ms=%.1f%s%s",
            calling_ae,
            address,
            sop_class,
            sop_instance,
            answer.Status,
            size,
            elapsed_ms,
            f" comment={comment!r}" if comment else "",
            f" reason: {reason}" if reason and reason != comment else "",
        )
        return answer

    def _store(
        self,
        spool_file: SpoolFile | None,
        path: Path,
        sop_class: str,
        sop_instance: str,
        calling_ae: str,
        address: str,
    ) -> _Outcome:
        digest: str | None = None
        if spool_file is not None:
            digest = spool_file.seal()
            if spool_file.error is not None:
                reason = "disk full" if spool_file.out_of_space else "spool write failed"
                return _Outcome.failed(StoreStatus.OUT_OF_RESOURCES, f"{reason}: {spool_file.error.strerror}")
        header = _read_request_header(path, sop_class, sop_instance)
        if isinstance(header, tuple):
            return _Outcome.failed(*header)
        origin = Origin(kind="network", calling_ae=calling_ae, address=address, called_ae=self._called_ae)
        # The digest of the bytes as spooled and the header just read: ingest reads the file neither
        # to hash it nor to parse it.
        with contextlib.ExitStack() as stack:
            if self._index_busy_timeout_s is not None:
                stack.enter_context(bounded_lock_wait(self._index_busy_timeout_s))
            result = self._archive.ingest(path, origin=origin, move=True, sha256=digest, header=header)
        status = status_for_ingest(result)
        if result.outcome is IngestOutcome.DUPLICATE:
            LOGGER.info("C-STORE %s: duplicate (%s)", sop_instance, result.reason)
        return _Outcome(
            _status(status, result.reason, result.code),
            reason=result.reason,
            duplicate=result.outcome is IngestOutcome.DUPLICATE,
        )
