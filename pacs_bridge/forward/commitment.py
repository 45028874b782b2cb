"""Storage commitment toward a destination: we are the SCU (N-ACTION out, N-EVENT-REPORT in).

After a batch's C-STOREs succeed on a destination with ``commitment = true``, the
forwarder records the tasks as ``awaiting-commitment`` under a new Transaction
UID (*before* asking, so a fast report always finds them), then sends the
N-ACTION (action type 1, PS3.4 J.3.2) on the same association. A task completes
only when an N-EVENT-REPORT for that transaction lists its instance in the
Referenced SOP Sequence; instances in the Failed SOP Sequence go back to retry
(``ForwardStore.commitment_report``).

The report comes on the same association if the PACS sends it before we release
(:func:`request_commitment` waits a moment for it), or later on a new
association to our receiver (``usarchive serve``; Orthanc does this, to the
address of our AE title in its ``DicomModalities``): :class:`CommitmentReports`
is the receiver's ``evt.EVT_N_EVENT_REPORT`` handler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from archive.forward.model import ForwardTask
from pacs_bridge.commitment import STORAGE_COMMITMENT_INSTANCE
from pacs_bridge.contexts import StorageCommitmentPushModel

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.events import Event

LOGGER = logging.getLogger(__name__)

_PROCESSING_FAILURE = 0x0110
_NO_SUCH_EVENT_TYPE = 0x0113
_INVALID_ARGUMENT = 0x0115


class CommitmentLedger(Protocol):
    """The part of ``archive.forward.store.ForwardStore`` that receives commitment reports."""

    def commitment_report(
        self, transaction_uid: str, succeeded_uids: Sequence[str], failed: Mapping[str, str]
    ) -> None:
        """Complete the listed instances of the transaction; send the failed ones back to retry."""
        ...


def new_transaction_uid() -> str:
    """A fresh Transaction UID (0008,1195)."""
    return str(generate_uid())


def action_information(transaction_uid: str, tasks: Sequence[ForwardTask]) -> Dataset:
    """The N-ACTION Action Information: Transaction UID and Referenced SOP Sequence of ``tasks``."""
    info = Dataset()
    info.TransactionUID = transaction_uid
    references = DicomSequence()
    for task in tasks:
        item = Dataset()
        item.ReferencedSOPClassUID = task.sop_class_uid
        item.ReferencedSOPInstanceUID = task.sop_instance_uid
        references.append(item)
    info.ReferencedSOPSequence = references
    return info


def request_commitment(assoc: Association, transaction_uid: str, tasks: Sequence[ForwardTask]) -> str | None:
    """Send the N-ACTION for ``tasks``; ``None`` when the destination accepted it, else why not."""
    accepted = any(cx.abstract_syntax == StorageCommitmentPushModel for cx in assoc.accepted_contexts)
    if not accepted:
        return "the destination refused the Storage Commitment Push Model presentation context"
    try:
        status, _ = assoc.send_n_action(
            action_information(transaction_uid, tasks),
            1,
            StorageCommitmentPushModel,
            STORAGE_COMMITMENT_INSTANCE,
        )
    except (RuntimeError, ValueError) as exc:
        return f"the N-ACTION could not be sent: {exc}"
    code = status.get("Status") if status else None
    if code is None:
        return "no answer to the N-ACTION (timeout or association lost)"
    if code != 0x0000:
        return f"the destination answered the N-ACTION with 0x{int(code):04X}"
    return None


def parse_report(info: Dataset) -> tuple[str, list[str], dict[str, str]]:
    """Transaction UID, committed SOP Instance UIDs and failed ones (UID → reason) of a report."""
    transaction_uid = str(info.get("TransactionUID", "") or "")
    succeeded = [
        str(item.ReferencedSOPInstanceUID)
        for item in info.get("ReferencedSOPSequence", [])
        if item.get("ReferencedSOPInstanceUID")
    ]
    failed: dict[str, str] = {}
    for item in info.get("FailedSOPSequence", []):
        uid = str(item.get("ReferencedSOPInstanceUID", "") or "")
        if uid:
            reason = item.get("FailureReason")
            failed[uid] = (
                f"storage commitment failed (Failure Reason 0x{int(reason):04X})"
                if reason is not None
                else "storage commitment failed (no Failure Reason)"
            )
    return transaction_uid, succeeded, failed


class CommitmentReports:
    """``evt.EVT_N_EVENT_REPORT`` handler: storage commitment results for forwarded instances.

    Parameters
    ----------
    ledger : CommitmentLedger
        The archive's forwarding store.
    """

    def __init__(self, ledger: CommitmentLedger) -> None:
        self._ledger = ledger

    def __call__(self, event: Event) -> tuple[int, Dataset | None]:
        """Record one report; answer its status. Never raises into pynetdicom."""
        try:
            return self._handle(event), None
        except Exception:  # the handler must answer whatever happened
            LOGGER.exception("storage commitment report: unexpected error")
            return _PROCESSING_FAILURE, None

    def _handle(self, event: Event) -> int:
        request: Any = event.request
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        if str(request.AffectedSOPClassUID) != StorageCommitmentPushModel:
            LOGGER.warning(
                "N-EVENT-REPORT from %s for SOP class %s refused", calling_ae, request.AffectedSOPClassUID
            )
            return _INVALID_ARGUMENT
        if request.EventTypeID not in (1, 2):
            return _NO_SUCH_EVENT_TYPE
        transaction_uid, succeeded, failed = parse_report(event.event_information)
        if not transaction_uid:
            return _INVALID_ARGUMENT
        self._ledger.commitment_report(transaction_uid, succeeded, failed)
        LOGGER.info(
            "storage commitment report %s from %s: %d committed, %d failed",
            transaction_uid,
            calling_ae,
            len(succeeded),
            len(failed),
        )
        return 0x0000


__all__ = [
    "CommitmentLedger",
    "CommitmentReports",
    "action_information",
    "new_transaction_uid",
    "parse_report",
    "request_commitment",
]
