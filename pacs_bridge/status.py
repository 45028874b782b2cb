"""DIMSE status codes the receiver answers with, and how archive outcomes map to them.

Values from PS3.4 Annex B.2.3 (C-STORE) and Annex J.3.2 (storage commitment
failure reasons), and PS3.7 Annex C.
"""

from __future__ import annotations

import enum

from archive.ingest import CommitCheck, IngestOutcome, IngestResult, RejectCode


class StoreStatus(enum.IntEnum):
    """C-STORE response statuses the receiver sends.

    An unsupported SOP class or transfer syntax never reaches C-STORE: its
    presentation context is rejected during association negotiation.
    """

    SUCCESS = 0x0000
    #: Refused: Out of Resources.
    OUT_OF_RESOURCES = 0xA700
    #: Error: Data Set does not match SOP Class.
    DATASET_DOES_NOT_MATCH = 0xA900
    #: Error: Cannot understand.
    CANNOT_UNDERSTAND = 0xC000
    #: Processing failure (the generic failure, e.g. an archive error).
    PROCESSING_FAILURE = 0x0110
    #: Duplicate SOP Instance (a different instance already stored under this UID).
    DUPLICATE_SOP_INSTANCE = 0x0111


class CommitFailureReason(enum.IntEnum):
    """Failure Reason (0008,1197) values of PS3.4 Table J.3-2 that the archive's checks produce."""

    PROCESSING_FAILURE = 0x0110
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    CLASS_INSTANCE_CONFLICT = 0x0119


_REJECT_STATUS: dict[RejectCode, StoreStatus] = {
    RejectCode.NOT_DICOM: StoreStatus.CANNOT_UNDERSTAND,
    RejectCode.TRUNCATED: StoreStatus.CANNOT_UNDERSTAND,
    RejectCode.MALFORMED: StoreStatus.CANNOT_UNDERSTAND,
    RejectCode.MISSING_ATTRIBUTE: StoreStatus.DATASET_DOES_NOT_MATCH,
    RejectCode.INVALID_UID: StoreStatus.CANNOT_UNDERSTAND,
    RejectCode.UNKNOWN_TRANSFER_SYNTAX: StoreStatus.CANNOT_UNDERSTAND,
    RejectCode.CONFLICT: StoreStatus.DUPLICATE_SOP_INSTANCE,
    RejectCode.OUT_OF_RESOURCES: StoreStatus.OUT_OF_RESOURCES,
    RejectCode.STORAGE_ERROR: StoreStatus.OUT_OF_RESOURCES,
}


def status_for_ingest(result: IngestResult) -> StoreStatus:
    """The C-STORE status that answers an :class:`IngestResult`.

    Stored, replaced and identical duplicates are a success (the archive has the
    instance durably, and a scanner retrying after a lost response must not see an
    error); a rejection maps through its :class:`RejectCode`. A storage error that
    is not a full disk is still answered "out of resources": it is a refusal the
    sender may retry, not a fault in its data.
    """
    if result.outcome is not IngestOutcome.REJECTED:
        return StoreStatus.SUCCESS
    if result.code is None:
        return StoreStatus.PROCESSING_FAILURE
    return _REJECT_STATUS.get(result.code, StoreStatus.PROCESSING_FAILURE)


_COMMIT_REASON: dict[CommitCheck, CommitFailureReason] = {
    CommitCheck.NO_SUCH_INSTANCE: CommitFailureReason.NO_SUCH_OBJECT_INSTANCE,
    CommitCheck.CLASS_MISMATCH: CommitFailureReason.CLASS_INSTANCE_CONFLICT,
    CommitCheck.HASH_MISMATCH: CommitFailureReason.PROCESSING_FAILURE,
}


def failure_reason(check: CommitCheck) -> CommitFailureReason | None:
    """The storage commitment Failure Reason for ``check``; ``None`` when committed."""
    return _COMMIT_REASON.get(check)
