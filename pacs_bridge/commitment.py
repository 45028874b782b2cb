"""Storage Commitment Push Model SCP: N-ACTION in, N-EVENT-REPORT out.

A scanner asks (N-ACTION, action type 1) whether the archive has taken
responsibility for a list of instances. The handler answers the N-ACTION at
once and queues the transaction; a worker thread checks every referenced
instance with ``Archive.check_commitment`` (present, same SOP class, file hash
still equal to the indexed one) and sends the result as an N-EVENT-REPORT
(event type 1: all committed; 2: some failed, with PS3.4 Table J.3-2 reasons):

* on the requester's association, if it is still open — sent from the worker,
  after pynetdicom has sent the N-ACTION response (a handler cannot send on its
  own association while it runs) and after :data:`RELEASE_GRACE_S` in which
  the requester did not release it. A scanner that wants the report on a new
  association releases as soon as it has the N-ACTION response; a report sent
  on the association while its release is under way would get no answer (the
  requester is waiting for the release reply), and both sides would wait for
  their timeouts before the report went out on a new association;
* otherwise on a new association to the address configured for the
  requester's AE title (``[commitment_peers]``), where we request the Storage
  Commitment SCP role by SCP/SCU role selection.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE, build_role
from pynetdicom.dimse_messages import N_ACTION_RSP

from archive.ingest import CommitCheck
from pacs_bridge._pynetdicom_compat import ignores_c_responses
from pacs_bridge.config import BridgeSettings
from pacs_bridge.contexts import StorageCommitmentPushModel, commitment_report_context
from pacs_bridge.status import failure_reason

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.events import Event

LOGGER = logging.getLogger(__name__)

#: The well-known SOP Instance of the Storage Commitment Push Model.
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"

#: N-ACTION statuses used here (PS3.4 J.3.2, PS3.7 C).
_NO_SUCH_ACTION = 0x0123
_INVALID_ARGUMENT = 0x0115
_INVALID_OBJECT_INSTANCE = 0x0117
_RESOURCE_LIMITATION = 0x0213
_PROCESSING_FAILURE = 0x0110

#: Outstanding transactions the worker may queue before refusing new ones.
_QUEUE_LIMIT = 256

#: Seconds after the N-ACTION response in which a requester that releases its association
#: gets the report on a new one instead (see the module doc).
RELEASE_GRACE_S = 0.5
_GRACE_POLL_S = 0.01


class CommitmentChecker(Protocol):
    """The part of ``archive.archive.Archive`` storage commitment needs."""

    def check_commitment(self, sop_class_uid: str, sop_instance_uid: str) -> CommitCheck:
        """Whether the instance is durably in the archive (see ``Archive.check_commitment``)."""
        ...


@dataclass(frozen=True)
class CommitmentRequest:
    """One N-ACTION: what to check and where the answer goes."""

    transaction_uid: str
    references: tuple[tuple[str, str], ...]  # (SOP class UID, SOP instance UID)
    calling_ae: str
    assoc: Association
    response_sent: threading.Event


def build_event_report(
    transaction_uid: str, results: list[tuple[str, str, CommitCheck]]
) -> tuple[int, Dataset]:
    """The N-EVENT-REPORT event type and Event Information for checked references.

    Parameters
    ----------
    transaction_uid : str
        Transaction UID of the N-ACTION.
    results : list of (sop_class_uid, sop_instance_uid, CommitCheck)
        Every referenced instance with the archive's answer for it.

    Returns
    -------
    event_type : int
        1 when every instance is committed, else 2.
    info : Dataset
        Transaction UID, Referenced SOP Sequence (committed) and, for type 2,
        Failed SOP Sequence with Failure Reason.
    """
    info = Dataset()
    info.TransactionUID = transaction_uid
    committed = Sequence()
    failed = Sequence()
    for sop_class, sop_instance, check in results:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        reason = failure_reason(check)
        if reason is None:
            committed.append(item)
        else:
            item.FailureReason = int(reason)
            failed.append(item)
    if committed:
        info.ReferencedSOPSequence = committed
    if failed:
        info.FailedSOPSequence = failed
        return 2, info
    return 1, info


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


class CommitmentService:
    """Handles ``evt.EVT_N_ACTION`` and sends the results from a worker thread.

    Parameters
    ----------
    archive : CommitmentChecker
        The archive.
    settings : BridgeSettings
        Our AE title, timeouts and the ``commitment_peers`` addresses.
    """

    def __init__(self, archive: CommitmentChecker, settings: BridgeSettings) -> None:
        self._archive = archive
        self._settings = settings
        self._queue: queue.Queue[CommitmentRequest | None] = queue.Queue(maxsize=_QUEUE_LIMIT)
        self._pending: dict[tuple[int, int], threading.Event] = {}
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="storage-commitment", daemon=True)
        self._worker.start()

    def handle_action(self, event: Event) -> tuple[Dataset, None]:
        """Accept or refuse an N-ACTION; never raises."""
        try:
            return self._accept(event), None
        except Exception:  # the handler must answer, whatever happened
            LOGGER.exception("storage commitment N-ACTION: unexpected error")
            return _status(_PROCESSING_FAILURE, "internal error"), None

    def _accept(self, event: Event) -> Dataset:
        request: Any = event.request
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        if str(request.RequestedSOPInstanceUID) != STORAGE_COMMITMENT_INSTANCE:
            return _status(_INVALID_OBJECT_INSTANCE, "expected SOP instance 1.2.840.10008.1.20.1.1")
        if request.ActionTypeID != 1:
            return _status(_NO_SUCH_ACTION, f"expected action type 1, got {request.ActionTypeID}")
        info = event.action_information
        transaction_uid = str(info.get("TransactionUID", "") or "")
        if not transaction_uid:
            return _status(_INVALID_ARGUMENT, "Transaction UID (0008,1195) missing")
        references: list[tuple[str, str]] = []
        for item in info.get("ReferencedSOPSequence", []):
            sop_class = str(item.get("ReferencedSOPClassUID", "") or "")
            sop_instance = str(item.get("ReferencedSOPInstanceUID", "") or "")
            if not sop_class or not sop_instance:
                return _status(_INVALID_ARGUMENT, "Referenced SOP Sequence item without UIDs")
            references.append((sop_class, sop_instance))
        if not references:
            return _status(_INVALID_ARGUMENT, "Referenced SOP Sequence (0008,1199) empty")
        sent = threading.Event()
        with self._lock:
            self._pending[(id(event.assoc), int(request.MessageID))] = sent
        job = CommitmentRequest(transaction_uid, tuple(references), calling_ae, event.assoc, sent)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._lock:
                self._pending.pop((id(event.assoc), int(request.MessageID)), None)
            return _status(_RESOURCE_LIMITATION, "too many outstanding commitment requests")
        LOGGER.info(
            "storage commitment %s from %s: %d instances queued", transaction_uid, calling_ae, len(references)
        )
        return _status(0x0000, "")

    @ignores_c_responses
    def handle_sent(self, event: Event) -> None:
        """``evt.EVT_DIMSE_SENT``: note that an N-ACTION response went out (the report may follow)."""
        message: Any = event.message
        if not isinstance(message, N_ACTION_RSP):
            return
        key = (id(event.assoc), int(message.command_set.MessageIDBeingRespondedTo))
        with self._lock:
            sent = self._pending.pop(key, None)
        if sent is not None:
            sent.set()

    def close(self) -> None:
        """Finish queued transactions and stop the worker."""
        self._queue.put(None)
        self._worker.join()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._complete(job)
            except Exception:  # a failed report must not stop the worker
                LOGGER.exception("storage commitment %s: report failed", job.transaction_uid)

    def _check(self, sop_class: str, sop_instance: str) -> CommitCheck:
        try:
            return self._archive.check_commitment(sop_class, sop_instance)
        except Exception:
            LOGGER.exception("storage commitment: checking %s failed", sop_instance)
            return CommitCheck.HASH_MISMATCH  # reported as processing failure (0x0110)

    def _complete(self, job: CommitmentRequest) -> None:
        results = [(cls, inst, self._check(cls, inst)) for cls, inst in job.references]
        event_type, info = build_event_report(job.transaction_uid, results)
        failed = sum(1 for *_, check in results if check is not CommitCheck.COMMITTED)
        # The N-ACTION response must be on the wire before the report; if the
        # association ends first, the event is never set and we use a new one.
        deadline = time.monotonic() + self._settings.dimse_timeout_s
        while not job.response_sent.wait(0.05):
            if not job.assoc.is_established or time.monotonic() > deadline:
                break
        grace_end = time.monotonic() + RELEASE_GRACE_S
        while job.assoc.is_established and time.monotonic() < grace_end:
            time.sleep(_GRACE_POLL_S)  # polls the association state: no event for it here
        if job.assoc.is_established and self._send_on(job.assoc, event_type, info):
            how = "same association"
        elif self._send_on_new_association(job.calling_ae, event_type, info):
            how = "new association"
        else:
            LOGGER.error(
                "storage commitment %s for %s: result could not be delivered (association closed and no "
                "[commitment_peers] address for %s, or the peer refused); the scanner must ask again",
                job.transaction_uid,
                job.calling_ae,
                job.calling_ae,
            )
            return
        LOGGER.info(
            "storage commitment %s for %s: %d committed, %d failed, sent on %s",
            job.transaction_uid,
            job.calling_ae,
            len(results) - failed,
            failed,
            how,
        )

    def _send_on(self, assoc: Association, event_type: int, info: Dataset) -> bool:
        try:
            status, _ = assoc.send_n_event_report(
                info, event_type, StorageCommitmentPushModel, STORAGE_COMMITMENT_INSTANCE
            )
        except (RuntimeError, ValueError) as exc:
            LOGGER.info("storage commitment: cannot report on the open association (%s)", exc)
            return False
        code = status.get("Status")
        if code is None:
            return False
        if code != 0x0000:
            LOGGER.warning("storage commitment: peer answered N-EVENT-REPORT with 0x%04X", code)
        return True

    def _send_on_new_association(self, calling_ae: str, event_type: int, info: Dataset) -> bool:
        peer = self._settings.commitment_peer(calling_ae)
        if peer is None:
            return False
        ae = AE(ae_title=self._settings.aet)
        ae.acse_timeout = self._settings.acse_timeout_s
        ae.dimse_timeout = self._settings.dimse_timeout_s
        ae.network_timeout = self._settings.network_timeout_s
        context = commitment_report_context()
        ae.add_requested_context(StorageCommitmentPushModel, context.transfer_syntax)
        role = build_role(StorageCommitmentPushModel, scp_role=True)
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, ext_neg=[role])
        if not assoc.is_established:
            LOGGER.warning(
                "storage commitment: %s at %s:%d refused or unreachable", peer.ae_title, peer.host, peer.port
            )
            return False
        try:
            return self._send_on(assoc, event_type, info)
        finally:
            assoc.release()


__all__ = [
    "STORAGE_COMMITMENT_INSTANCE",
    "CommitmentRequest",
    "CommitmentService",
    "build_event_report",
]
