"""The forwarder: claims due tasks from the outbox and sends them, one association per batch.

Loop: ``ForwardStore.claim`` hands a batch (tasks of one destination; one study
for study granularity) leased to this worker; one association carries the whole
batch (:mod:`pacs_bridge.forward.association`); each file is C-STOREd as stored
(or losslessly transcoded when allowed); each response is classified
(``archive.forward.retry.classify_store_status``) and the results are reported
with ``ForwardStore.finish``, which schedules retries with the destination's
backoff. Leases are renewed while a long batch runs, and results reported at
the same moments, so a killed worker leaves little to re-send: a batch a dead
worker held is claimed again when its lease expires (an instance may then reach
the PACS twice, which a PACS answers as a duplicate; none is ever lost).

With ``commitment = true`` the sent instances wait for the PACS's storage
commitment report (:mod:`pacs_bridge.forward.commitment`).

:meth:`Forwarder.stop` lets the C-STORE in flight finish, reports what was done
and releases the association; tasks not yet sent keep their lease and are
taken over when it expires. :meth:`Forwarder.reload` swaps destinations and
routes (SIGHUP) between batches.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pynetdicom import evt

from archive.forward.config import Destination, ForwardSettings
from archive.forward.model import AttemptKind, AttemptResult, ForwardTask
from archive.forward.retry import classify_store_status
from pacs_bridge import _pynetdicom_compat
from pacs_bridge.config import TLSSettings
from pacs_bridge.forward.association import (
    TranscodeRefusedError,
    open_association,
    plan_send,
    rejection_reason,
    requested_contexts,
    send_stored,
    split_for_contexts,
    transcoded_dataset,
)
from pacs_bridge.forward.commitment import CommitmentReports, new_transaction_uid, request_commitment
from pacs_bridge.tls import client_context

if TYPE_CHECKING:
    from pynetdicom.association import Association

LOGGER = logging.getLogger(__name__)

#: Fraction of the lease after which a running batch renews it (and reports its results so far).
RENEW_FRACTION = 1.0 / 3.0


class TaskLedger(Protocol):
    """What the forwarder needs of ``archive.forward.store.ForwardStore``."""

    def claim(
        self, worker: str, *, now: datetime | None = None, limit: int | None = None
    ) -> list[ForwardTask]:
        """Lease one batch of due tasks to ``worker``."""
        ...

    def renew(self, task_ids: Sequence[int], worker: str) -> None:
        """Extend the lease of tasks ``worker`` holds."""
        ...

    def finish(self, results: Sequence[AttemptResult], worker: str) -> None:
        """Record the outcome of attempts (retries scheduled with the destination's backoff)."""
        ...

    def await_commitment(self, task_ids: Sequence[int], transaction_uid: str, worker: str) -> None:
        """Mark sent tasks as waiting for the storage commitment report of ``transaction_uid``."""
        ...

    def commitment_report(
        self, transaction_uid: str, succeeded_uids: Sequence[str], failed: Mapping[str, str]
    ) -> None:
        """Complete committed instances; send failed ones back to retry."""
        ...


class ForwardingArchive(Protocol):
    """What the forwarder needs of ``archive.archive.Archive``."""

    @property
    def forward(self) -> Any:
        """The archive's ``ForwardStore`` (a :class:`TaskLedger`)."""
        ...


class _Claimed(enum.Enum):
    """What one claim brought."""

    NOTHING = 0
    PART = 1  # fewer tasks than the destination's batch_size
    FULL = 2


def default_worker_id() -> str:
    """``host:pid:thread`` — unique per forwarder thread, readable in ``forward list``."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class Forwarder:
    """Sends the archive's forwarding tasks to their destinations until stopped.

    Parameters
    ----------
    archive : ForwardingArchive
        An open archive; its ``forward`` store is the outbox.
    settings : ForwardSettings
        Destinations, lease and poll interval.
    worker_id : str, optional
        This worker's name in the task table (default :func:`default_worker_id`).
    tls : TLSSettings, optional
        The ``[tls]`` section: presented to and trusted for destinations with
        ``tls = true`` (:func:`pacs_bridge.tls.client_context`).
    """

    def __init__(
        self,
        archive: ForwardingArchive,
        settings: ForwardSettings,
        worker_id: str | None = None,
        *,
        tls: TLSSettings | None = None,
    ) -> None:
        self._archive = archive
        self.tls = tls
        self._settings = settings
        self.worker_id = worker_id or default_worker_id()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        _pynetdicom_compat.enable_chunked_send()

    @property
    def settings(self) -> ForwardSettings:
        """The settings in use (replaced by :meth:`reload`)."""
        with self._lock:
            return self._settings

    def reload(self, settings: ForwardSettings) -> None:
        """Use new destinations and routes from the next batch on (SIGHUP)."""
        with self._lock:
            self._settings = settings
        LOGGER.info(
            "forwarding settings reloaded: %d destinations, %d routes",
            len(settings.destinations),
            len(settings.routes),
        )
        self._wake.set()

    def start(self) -> None:
        """Run :meth:`run` in a background thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = 60.0) -> None:
        """Finish the C-STORE in flight, report results, release; wait for the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                LOGGER.warning("forwarder %s did not stop within %.0f s", self.worker_id, timeout_s or 0)
            self._thread = None

    def wake(self) -> None:
        """Look for due tasks now instead of at the end of the poll interval."""
        self._wake.set()

    def run(self) -> None:
        """Claim and send batches until :meth:`stop`; wait ``poll_s`` when nothing (or a part batch) was due.

        After a batch of instance tasks smaller than its destination's ``batch_size``
        the worker also waits ``poll_s``: while instances are arriving, the next batch fills up
        instead of each instance taking a claim, an association and a finish of its
        own (which would compete with the receiver for the index's write lock).
        """
        LOGGER.info("forwarder %s started", self.worker_id)
        while not self._stop.is_set():
            try:
                full = self.run_once() is _Claimed.FULL
            except Exception:  # a database hiccup must not end the worker
                LOGGER.exception("forwarder %s: batch failed; trying again", self.worker_id)
                full = False
            if not full:
                self._wake.wait(self.settings.poll_s)
                self._wake.clear()
        LOGGER.info("forwarder %s stopped", self.worker_id)

    def run_once(self) -> _Claimed:
        """Claim one batch and send it; say whether nothing, a part batch or a full batch was due."""
        ledger = self.ledger
        tasks = ledger.claim(self.worker_id)
        if not tasks:
            return _Claimed.NOTHING
        self.batches += 1
        settings = self.settings
        destination = settings.destinations.get(tasks[0].destination)
        if destination is None:
            comment = (
                f"destination {tasks[0].destination!r} is not in the destination table; add "
                f"[destinations.{tasks[0].destination}] to usarchive.toml, then `usarchive forward retry`"
            )
            ledger.finish(
                [AttemptResult(t.id, AttemptKind.FAILED, None, comment) for t in tasks], self.worker_id
            )
            return _Claimed.FULL
        for group in split_for_contexts(tasks, commitment=destination.commitment):
            _Batch(self, destination, group, settings.lease_s).send()
        per_instance = all(t.batch_key == t.sop_instance_uid for t in tasks)
        if per_instance and len(tasks) < destination.batch_size:
            return _Claimed.PART  # a study's batch is whole; instance tasks may still be arriving
        return _Claimed.FULL

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    @property
    def ledger(self) -> TaskLedger:
        """The task store, with the archive's current destinations (``Archive.reload_forward``)."""
        ledger: TaskLedger = self._archive.forward
        return ledger


def _no_delay(event: Any) -> None:
    # Nagle off, and files as stored go out by the fast sender (tested pynetdicom only).
    _pynetdicom_compat.set_tcp_nodelay(event.assoc)
    _pynetdicom_compat.install_send_guard(event.assoc)


class _Batch:
    """One association's worth of tasks toward one destination."""

    def __init__(
        self, forwarder: Forwarder, destination: Destination, tasks: list[ForwardTask], lease_s: float
    ):
        self.forwarder = forwarder
        self.ledger = forwarder.ledger
        self.worker = forwarder.worker_id
        self.destination = destination
        self.tasks = tasks
        self.lease_s = lease_s
        self.pending: list[AttemptResult] = []  # results not yet reported
        self.committing: list[ForwardTask] = []  # stored, waiting for the commitment request
        self.started = time.monotonic()
        self.last_renewal = self.started

    def send(self) -> None:
        dest = self.destination
        unsent: list[ForwardTask] = []
        for task in self.tasks:
            if not Path(task.path).is_file():
                self._result(task, AttemptKind.FAILED, None, f"file to send is missing: {task.path}")
            else:
                unsent.append(task)
        if not unsent:
            self._flush()
            return
        contexts = requested_contexts(unsent, commitment=dest.commitment)
        ssl_context = client_context(self.forwarder.tls) if dest.tls else None
        handlers = [
            (evt.EVT_N_EVENT_REPORT, CommitmentReports(self.ledger)),
            (evt.EVT_CONN_OPEN, _no_delay),
        ]
        try:
            assoc = open_association(dest, contexts, ssl_context=ssl_context, evt_handlers=handlers)
        except (OSError, ssl.SSLError) as exc:
            self._all(unsent, classify_store_status(None, network_error=True), None, f"cannot connect: {exc}")
            return
        if not assoc.is_established and assoc.rejected_contexts and not assoc.accepted_contexts:
            # The destination accepted the association but none of its contexts (pynetdicom aborts it):
            # every task fails with why its SOP class or transfer syntax was refused.
            for task in unsent:
                self._store(assoc, task)
            self._flush()
            return
        if not assoc.is_established:
            reason, permanent = rejection_reason(assoc)
            kind = classify_store_status(None, network_error=not permanent, permanent_rejection=permanent)
            self._all(unsent, kind, None, f"{dest.ae_title}@{dest.host}:{dest.port}: {reason}")
            return
        sent = 0
        try:
            for index, task in enumerate(unsent):
                if self.forwarder.stopping:
                    LOGGER.info(
                        "forwarder stopping: %d tasks left leased, taken over later", len(unsent) - index
                    )
                    break
                if not assoc.is_established:
                    rest = unsent[index:]
                    self._all(rest, AttemptKind.RETRY, None, "association lost before this instance was sent")
                    break
                self._store(assoc, task)
                sent += 1
                self._maybe_renew(unsent)
            if self.committing:
                self._commit(assoc)
        finally:
            if assoc.is_established:
                assoc.release()
            self._flush()
        LOGGER.info(
            "forwarded batch of %d to %s (%s@%s:%d) in one association, %.0f ms",
            sent,
            dest.name,
            dest.ae_title,
            dest.host,
            dest.port,
            (time.monotonic() - self.started) * 1000.0,
        )

    def _store(self, assoc: Association, task: ForwardTask) -> None:
        try:
            plan = plan_send(assoc, task, transcode=self.destination.transcode)
            payload: Any = task.path if plan.as_stored else transcoded_dataset(task, plan)
        except TranscodeRefusedError as exc:
            self._result(task, AttemptKind.FAILED, None, str(exc))
            return
        except (OSError, ValueError) as exc:
            self._result(task, AttemptKind.FAILED, None, f"cannot read {task.path}: {exc}")
            return
        try:
            status = send_stored(assoc, task.path) if plan.as_stored else assoc.send_c_store(payload)
        except (RuntimeError, ValueError, AttributeError, OSError) as exc:
            self._result(task, AttemptKind.RETRY, None, f"C-STORE not sent: {exc}")
            return
        code = status.get("Status") if status else None
        if code is None:
            self._result(task, AttemptKind.RETRY, None, "no C-STORE response (timeout or association lost)")
            return
        code = int(code)
        kind = classify_store_status(code)
        comment = str(status.get("ErrorComment", "") or "")
        if not plan.as_stored:
            comment = f"transcoded {task.transfer_syntax} to {plan.transfer_syntax}" + (
                f"; {comment}" if comment else ""
            )
        if kind in (AttemptKind.COMPLETED, AttemptKind.WARNING) and self.destination.commitment:
            self.committing.append(task)  # its attempt's line is logged when the report comes
            return
        self._result(task, kind, code, comment or f"C-STORE status 0x{code:04X}")

    def _commit(self, assoc: Association) -> None:
        tasks, self.committing = self.committing, []
        transaction_uid = new_transaction_uid()
        self._flush()  # what failed so far is reported before the state of the rest changes
        self.ledger.await_commitment([t.id for t in tasks], transaction_uid, self.worker)
        problem = request_commitment(assoc, transaction_uid, tasks)
        if problem is None:
            LOGGER.info(
                "storage commitment %s requested from %s for %d instances",
                transaction_uid,
                self.destination.name,
                len(tasks),
            )
            return
        LOGGER.warning("storage commitment %s toward %s: %s", transaction_uid, self.destination.name, problem)
        # Nothing was committed: every instance goes back to retry through the report path.
        self.ledger.commitment_report(transaction_uid, [], {t.sop_instance_uid: problem for t in tasks})

    def _maybe_renew(self, tasks: Sequence[ForwardTask]) -> None:
        now = time.monotonic()
        if now - self.last_renewal < self.lease_s * RENEW_FRACTION:
            return
        self._flush()
        done = {r.task_id for r in self.pending}
        self.ledger.renew([t.id for t in tasks if t.id not in done], self.worker)
        self.last_renewal = now

    def _all(self, tasks: Sequence[ForwardTask], kind: AttemptKind, status: int | None, comment: str) -> None:
        for task in tasks:
            self._result(task, kind, status, comment)
        self._flush()

    def _result(self, task: ForwardTask, kind: AttemptKind, status: int | None, comment: str) -> None:
        # ForwardStore.finish logs the one line of this attempt when it records it.
        self.pending.append(AttemptResult(task.id, kind, status, comment))

    def _flush(self) -> None:
        if self.pending:
            results, self.pending = self.pending, []
            self.ledger.finish(results, self.worker)


__all__ = ["RENEW_FRACTION", "Forwarder", "ForwardingArchive", "TaskLedger", "default_worker_id"]
