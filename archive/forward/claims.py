"""The worker side of the forwarding outbox: claim, renew, finish, storage commitment.

Mixed into :class:`archive.forward.store.ForwardStore` (reach it as
:attr:`archive.archive.Archive.forward`). Claiming is one write transaction: on
PostgreSQL the due rows are locked with ``SELECT … FOR UPDATE SKIP LOCKED``, so
workers on several machines never claim the same task; on SQLite the
transaction begins with ``BEGIN IMMEDIATE`` and holds the write lock, which
supports one worker per archive. A claim leases its tasks for ``[forward]
lease_s``; a task whose lease expired (its worker was killed) is due again and
is taken over by the next claim. A worker's result counts only while the task
is still leased to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from archive.forward import sql
from archive.forward.config import Destination, ForwardSettings, RetryPolicy
from archive.forward.model import AttemptKind, AttemptResult, ForwardTask, TaskStatus
from archive.forward.retry import next_delay
from archive.index.engine import write_transaction
from archive.store import FileStore

logger = logging.getLogger("archive.forward.store")

_T = sql.forward_task.c
_LEASED = (TaskStatus.IN_PROGRESS.value, TaskStatus.AWAITING_COMMITMENT.value)


def utc_now(now: datetime | None) -> datetime:
    """``now`` in UTC, or the current time."""
    return datetime.now(UTC) if now is None else now.astimezone(UTC)


def status_text(status: int | None) -> str:
    """A DIMSE status as ``0x0000``, or ``no response``."""
    return "no response" if status is None else f"0x{status:04X}"


class WorkerOperations:
    """Reading tasks and what workers do with them; needs the store's ``engine``, ``settings``, ``store``."""

    engine: Engine
    settings: ForwardSettings
    store: FileStore

    def _task(self, values: Mapping[str, Any]) -> ForwardTask:
        if values["source_path"]:
            path = Path(values["source_path"])
            syntax = values["transfer_syntax"] or ""
        else:
            stored = values["stored_path"]
            path = self.store.absolute(stored) if stored else Path()
            syntax = values["stored_transfer_syntax"] or values["transfer_syntax"] or ""
        return ForwardTask(
            id=values["id"],
            destination=values["destination"],
            sop_instance_uid=values["sop_instance_uid"],
            sop_class_uid=values["sop_class_uid"],
            study_uid=values["study_uid"],
            batch_key=values["batch_key"],
            status=TaskStatus(values["status"]),
            scheduled_at=values["scheduled_at"],
            attempts=values["attempts"],
            last_status=values["last_status"],
            last_comment=values["last_comment"],
            lease_owner=values["lease_owner"],
            lease_expires=values["lease_expires"],
            path=path,
            transfer_syntax=syntax,
            route=values["route"],
            commitment_uid=values["commitment_uid"],
            created_at=values["created_at"],
            updated_at=values["updated_at"],
            completed_at=values["completed_at"],
        )

    def _read(self, connection: Connection, where: Any, limit: int | None = None) -> list[ForwardTask]:
        query = sql.task_query().where(where).order_by(_T.id)
        if limit is not None:
            query = query.limit(limit)
        return [self._task(sql.row_values(row)) for row in connection.execute(query)]

    def claim(
        self, worker: str, *, now: datetime | None = None, limit: int | None = None
    ) -> list[ForwardTask]:
        """Lease one batch of due tasks to ``worker``.

        A batch is of one destination: the due tasks of one study (study
        granularity) or several due instance-granularity tasks, at most
        ``limit`` (default the destination's ``batch_size``). Claimed tasks are
        ``in-progress``, leased until ``now + lease_s``, with one more attempt
        counted. Only destinations of the destination table are claimed.

        Parameters
        ----------
        worker : str
            The worker's id (host and process), recorded as the lease owner.
        now : datetime, optional
            The time to judge due tasks and leases by (default: now, UTC).
        limit : int, optional
            At most this many tasks.

        Returns
        -------
        list of ForwardTask
            Empty when nothing is due.
        """
        moment = utc_now(now)
        names = list(self.settings.destinations)
        if not names:
            return []
        with write_transaction(self.engine) as connection:
            locking = connection.dialect.name == "postgresql"
            first_query = (
                select(_T.id, _T.destination, _T.batch_key, _T.sop_instance_uid)
                .where(sql.due_clause(moment), _T.destination.in_(names))
                .order_by(_T.scheduled_at, _T.id)
                .limit(1)
            )
            if locking:
                first_query = first_query.with_for_update(skip_locked=True)
            first = connection.execute(first_query).first()
            if first is None:
                return []
            destination = self.settings.destinations[first.destination]
            size = min(limit, destination.batch_size) if limit else destination.batch_size
            same_batch = (
                _T.batch_key == first.batch_key
                if first.batch_key != first.sop_instance_uid
                else _T.batch_key == _T.sop_instance_uid
            )
            batch_query = (
                select(_T.id)
                .where(sql.due_clause(moment), _T.destination == first.destination, same_batch)
                .order_by(_T.scheduled_at, _T.id)
                .limit(size)
            )
            if locking:
                batch_query = batch_query.with_for_update(skip_locked=True)
            ids = list(connection.execute(batch_query).scalars())
            connection.execute(
                update(sql.forward_task)
                .where(_T.id.in_(ids))
                .values(
                    status=TaskStatus.IN_PROGRESS.value,
                    lease_owner=worker,
                    lease_expires=moment + timedelta(seconds=self.settings.lease_s),
                    attempts=_T.attempts + 1,
                    commitment_uid=None,
                    updated_at=moment,
                )
            )
            tasks = self._read(connection, _T.id.in_(ids))
        logger.debug("%s claimed %d tasks for %s", worker, len(tasks), destination.name)
        return tasks

    def renew(self, task_ids: Iterable[int], worker: str, *, now: datetime | None = None) -> int:
        """Extend the lease of ``worker``'s tasks by ``lease_s`` from now (a long batch).

        Returns
        -------
        int
            Tasks renewed (those still leased to ``worker``).
        """
        moment = utc_now(now)
        with write_transaction(self.engine) as connection:
            return connection.execute(
                update(sql.forward_task)
                .where(
                    _T.id.in_(list(task_ids)),
                    _T.lease_owner == worker,
                    _T.status.in_(_LEASED),
                )
                .values(lease_expires=moment + timedelta(seconds=self.settings.lease_s), updated_at=moment)
            ).rowcount

    def _policy(self, destination: str) -> RetryPolicy:
        found: Destination | None = self.settings.destinations.get(destination)
        return found.retry if found is not None else RetryPolicy()

    def _outcome_values(
        self, row: Any, kind: AttemptKind, status: int | None, comment: str, moment: datetime
    ) -> tuple[AttemptKind, dict[str, Any]]:
        """What an attempt's result writes: the state, schedule and last status (retry policy applied)."""
        policy = self._policy(row.destination)
        if kind is AttemptKind.FAILED and policy.retry_permanent:
            kind = AttemptKind.RETRY
        if kind is AttemptKind.RETRY and row.attempts >= policy.max_attempts:
            kind = AttemptKind.FAILED
            comment = f"{comment} (gave up after {row.attempts} attempts)".strip()
        values: dict[str, Any] = {"last_status": status, "last_comment": comment, "updated_at": moment}
        released = {"lease_owner": None, "lease_expires": None}
        if kind is AttemptKind.COMPLETED or kind is AttemptKind.WARNING:
            state = TaskStatus.COMPLETED if kind is AttemptKind.COMPLETED else TaskStatus.WARNING
            values.update(released, status=state.value, completed_at=moment)
        elif kind is AttemptKind.RETRY:
            due = moment + timedelta(seconds=next_delay(policy, max(1, row.attempts)))
            values.update(released, status=TaskStatus.SCHEDULED.value, scheduled_at=due)
        elif kind is AttemptKind.FAILED:
            values.update(released, status=TaskStatus.FAILED.value)
        else:  # awaiting commitment: the lease bounds the wait for the report
            values.update(
                status=TaskStatus.AWAITING_COMMITMENT.value,
                lease_expires=moment + timedelta(seconds=self.settings.lease_s),
            )
        return kind, values

    def finish(self, results: Sequence[AttemptResult], worker: str, *, now: datetime | None = None) -> int:
        """Record the results of ``worker``'s attempts, one log line each.

        ``RETRY`` schedules the task again after the destination's backoff
        (:func:`archive.forward.retry.next_delay`), or fails it once
        ``max_attempts`` were made; ``FAILED`` fails it unless the destination
        sets ``retry_permanent``. A task awaiting commitment may be finished
        too (its N-ACTION failed: ``RETRY``). A result for a task no longer leased to
        ``worker`` (its lease expired and another worker took it, or a person
        cancelled it) is logged and ignored.

        Returns
        -------
        int
            Results recorded.
        """
        moment = utc_now(now)
        recorded = 0
        by_id = {result.task_id: result for result in results}
        with write_transaction(self.engine) as connection:
            rows = {
                row.id: row
                for row in connection.execute(
                    select(_T.id, _T.destination, _T.attempts, _T.sop_instance_uid).where(
                        _T.id.in_(list(by_id)),
                        _T.lease_owner == worker,
                        _T.status.in_(_LEASED),
                    )
                )
            }
            for task_id, result in by_id.items():
                row = rows.get(task_id)
                if row is None:
                    logger.warning(
                        "forward task %d: not leased to %s any more; result ignored", task_id, worker
                    )
                    continue
                kind, values = self._outcome_values(
                    row, result.kind, result.dimse_status, result.comment, moment
                )
                connection.execute(update(sql.forward_task).where(_T.id == task_id).values(**values))
                recorded += 1
                logger.info(
                    "forward task %d %s → %s attempt %d: %s (%s) %s",
                    task_id,
                    row.sop_instance_uid,
                    row.destination,
                    row.attempts,
                    values["status"]
                    if kind is not AttemptKind.RETRY
                    else f"retry at {values['scheduled_at']}",
                    status_text(result.dimse_status),
                    result.comment,
                )
        return recorded

    def await_commitment(
        self, task_ids: Iterable[int], transaction_uid: str, worker: str, *, now: datetime | None = None
    ) -> int:
        """Mark ``worker``'s sent tasks as awaiting the storage commitment report ``transaction_uid``.

        Call it before sending the N-ACTION, so that a report arriving at once
        finds them. The lease (``lease_s``) bounds the wait: a report that never
        comes makes the task due again.

        Returns
        -------
        int
            Tasks marked.
        """
        moment = utc_now(now)
        with write_transaction(self.engine) as connection:
            return connection.execute(
                update(sql.forward_task)
                .where(
                    _T.id.in_(list(task_ids)),
                    _T.lease_owner == worker,
                    _T.status.in_(_LEASED),
                )
                .values(
                    status=TaskStatus.AWAITING_COMMITMENT.value,
                    commitment_uid=transaction_uid,
                    lease_expires=moment + timedelta(seconds=self.settings.lease_s),
                    updated_at=moment,
                )
            ).rowcount

    def commitment_report(
        self,
        transaction_uid: str,
        succeeded_uids: Iterable[str],
        failed: Mapping[str, str],
        *,
        now: datetime | None = None,
    ) -> int:
        """Apply a storage commitment report: committed instances complete, failed ones are retried.

        Parameters
        ----------
        transaction_uid : str
            The Transaction UID of the N-EVENT-REPORT.
        succeeded_uids : iterable of str
            SOP Instance UIDs of its Referenced SOP Sequence.
        failed : mapping of str to str
            SOP Instance UID → reason, of its Failed SOP Sequence.
        now : datetime, optional
            The time of the report (default now).

        Returns
        -------
        int
            Tasks updated.
        """
        moment = utc_now(now)
        succeeded = set(succeeded_uids)
        updated = 0
        with write_transaction(self.engine) as connection:
            rows = connection.execute(
                select(_T.id, _T.destination, _T.attempts, _T.sop_instance_uid).where(
                    _T.commitment_uid == transaction_uid,
                    _T.status == TaskStatus.AWAITING_COMMITMENT.value,
                )
            ).all()
            for row in rows:
                if row.sop_instance_uid in succeeded:
                    kind, comment = AttemptKind.COMPLETED, "committed by the destination"
                elif row.sop_instance_uid in failed:
                    kind = AttemptKind.RETRY
                    comment = f"storage commitment failed: {failed[row.sop_instance_uid]}"
                else:
                    continue
                kind, values = self._outcome_values(
                    row, kind, None if kind is AttemptKind.RETRY else 0, comment, moment
                )
                connection.execute(update(sql.forward_task).where(_T.id == row.id).values(**values))
                logger.info(
                    "forward task %d %s → %s: %s", row.id, row.sop_instance_uid, row.destination, comment
                )
                updated += 1
        return updated
