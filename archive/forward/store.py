"""The forwarding outbox: :attr:`archive.archive.Archive.forward`.

The same shape as :attr:`Archive.annotations` and :attr:`Archive.outcomes`: one
store over the index, the table in :mod:`archive.forward.sql`, the model in
:mod:`archive.forward.model`. Tasks are inserted by ingest itself
(:func:`archive.forward.sql.insert_routed_tasks`, in the ingest transaction);
this store is how workers and people act on them.

What workers do (claim, renew, finish, storage commitment) is
:class:`archive.forward.claims.WorkerOperations`, mixed in; here are reading,
what people do (retry, cancel, resend), the files kept for exports, and the
check of ``verify``.
"""

from __future__ import annotations

import builtins
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, true, update

from archive.errors import ArchiveError
from archive.forward import coverage, sql
from archive.forward.claims import WorkerOperations, status_text, utc_now
from archive.forward.config import ForwardSettings
from archive.forward.model import (
    CANCELLABLE_STATES,
    PENDING_STATES,
    RETRYABLE_STATES,
    DestinationSummary,
    ForwardTask,
    TaskStatus,
)
from archive.fsutil import fsync_directory, fsync_file
from archive.index import schema
from archive.index.engine import read_transaction, write_transaction
from archive.store import FileStore

logger = logging.getLogger(__name__)

_T = sql.forward_task.c
#: Tasks a list shows at most unless told otherwise.
DEFAULT_LIST_LIMIT = 1000


class ForwardStore(WorkerOperations):
    """Forwarding tasks in the index at ``engine``, sent to the destinations of ``settings``.

    Get one from :attr:`archive.archive.Archive.forward`.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Engine of an index migrated to version 7 or later.
    settings : ForwardSettings
        The destination table, routes and lease.
    store : FileStore
        The archive's file store (stored paths are relative to it).
    outbox_dir : Path
        Where :meth:`enqueue_file` keeps its copies of files outside the store.
    """

    def __init__(self, engine: Engine, settings: ForwardSettings, store: FileStore, outbox_dir: Path) -> None:
        self.engine = engine
        self.settings = settings
        self.store = store
        self.outbox_dir = outbox_dir

    # -- reading -----------------------------------------------------------------------------------

    def get(self, task_ids: Iterable[int]) -> builtins.list[ForwardTask]:
        """The tasks with these ids (those that exist), in id order."""
        ids = sorted(set(task_ids))
        with read_transaction(self.engine) as connection:
            return self._read(connection, _T.id.in_(ids))

    def list(
        self,
        status: TaskStatus | str | None = None,
        destination: str | None = None,
        *,
        limit: int | None = DEFAULT_LIST_LIMIT,
    ) -> builtins.list[ForwardTask]:
        """Tasks, oldest first, optionally of one status and one destination.

        Parameters
        ----------
        status : TaskStatus or str, optional
            Only tasks in this state.
        destination : str, optional
            Only tasks toward this destination.
        limit : int or None
            At most this many (``None``: all).

        Raises
        ------
        ArchiveError
            If ``status`` is not a task state.
        """
        conditions = []
        if status is not None:
            conditions.append(_T.status == _parse_status(status).value)
        if destination is not None:
            conditions.append(_T.destination == destination)
        with read_transaction(self.engine) as connection:
            return self._read(connection, and_(*conditions) if conditions else true(), limit)

    def summary(self, *, now: datetime | None = None) -> builtins.list[DestinationSummary]:
        """Per destination (configured or named by a task): counts, oldest pending age, last error."""
        moment = utc_now(now)
        with read_transaction(self.engine) as connection:
            counts = connection.execute(
                select(_T.destination, _T.status, func.count()).group_by(_T.destination, _T.status)
            ).all()
            oldest = dict(
                connection.execute(
                    select(_T.destination, func.min(_T.created_at))
                    .where(_T.status.in_([s.value for s in PENDING_STATES]))
                    .group_by(_T.destination)
                ).all()
            )
            by_destination: dict[str, dict[str, int]] = {name: {} for name in self.settings.destinations}
            for name, status, count in counts:
                by_destination.setdefault(name, {})[status] = count
            out = []
            for name in sorted(by_destination):
                states = by_destination[name]
                first = sql.utc(oldest.get(name))
                out.append(
                    DestinationSummary(
                        destination=name,
                        configured=name in self.settings.destinations,
                        pending=states.get(TaskStatus.SCHEDULED.value, 0),
                        in_progress=states.get(TaskStatus.IN_PROGRESS.value, 0)
                        + states.get(TaskStatus.AWAITING_COMMITMENT.value, 0),
                        failed=states.get(TaskStatus.FAILED.value, 0),
                        completed=states.get(TaskStatus.COMPLETED.value, 0),
                        warning=states.get(TaskStatus.WARNING.value, 0),
                        cancelled=states.get(TaskStatus.CANCELLED.value, 0),
                        oldest_pending_age_s=(moment - first).total_seconds() if first else None,
                        last_error=self._last_error(connection, name),
                    )
                )
            return out

    def _last_error(self, connection: Connection, destination: str) -> str | None:
        failed_attempt = or_(
            _T.status == TaskStatus.FAILED.value,
            and_(_T.status == TaskStatus.SCHEDULED.value, _T.attempts > 0),
        )
        row = connection.execute(
            select(_T.id, _T.last_status, _T.last_comment)
            .where(_T.destination == destination, failed_attempt)
            .order_by(_T.updated_at.desc(), _T.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return f"task {row.id}: {status_text(row.last_status)}: {row.last_comment}".rstrip(": ")

    # -- people ------------------------------------------------------------------------------------

    def _existing(self, connection: Connection, task_ids: Sequence[int]) -> None:
        found = set(connection.execute(select(_T.id).where(_T.id.in_(list(task_ids)))).scalars())
        missing = sorted(set(task_ids) - found)
        if missing:
            raise ArchiveError(
                "forward: expected ids of forwarding tasks, but there is no task "
                f"{', '.join(map(str, missing))}; see usarchive forward list"
            )

    def retry(
        self,
        task_ids: Sequence[int] | None = None,
        destination: str | None = None,
        *,
        now: datetime | None = None,
    ) -> int:
        """Schedule failed or cancelled tasks again, now, with their attempts reset.

        Parameters
        ----------
        task_ids : sequence of int, optional
            The tasks; ``None``: every failed task (of ``destination`` if given).
        destination : str, optional
            Only tasks toward this destination.
        now : datetime, optional
            When they are due again (default now).

        Returns
        -------
        int
            Tasks scheduled again (tasks in other states are left as they are).

        Raises
        ------
        ArchiveError
            If an id names no task.
        """
        moment = utc_now(now)
        conditions: builtins.list[Any] = [_T.status.in_([s.value for s in RETRYABLE_STATES])]
        if task_ids is None:
            conditions = [_T.status == TaskStatus.FAILED.value]
        else:
            conditions.append(_T.id.in_(list(task_ids)))
        if destination is not None:
            conditions.append(_T.destination == destination)
        with write_transaction(self.engine) as connection:
            if task_ids is not None:
                self._existing(connection, task_ids)
            count = connection.execute(
                update(sql.forward_task)
                .where(*conditions)
                .values(
                    status=TaskStatus.SCHEDULED.value,
                    scheduled_at=moment,
                    attempts=0,
                    lease_owner=None,
                    lease_expires=None,
                    commitment_uid=None,
                    updated_at=moment,
                )
            ).rowcount
        logger.info("forward: %d tasks scheduled again", count)
        return count

    def cancel(self, task_ids: Sequence[int], *, now: datetime | None = None) -> int:
        """Cancel pending, in-progress or failed tasks (a worker's later result for them is ignored).

        Returns
        -------
        int
            Tasks cancelled.

        Raises
        ------
        ArchiveError
            If an id names no task.
        """
        moment = utc_now(now)
        with write_transaction(self.engine) as connection:
            self._existing(connection, task_ids)
            count = connection.execute(
                update(sql.forward_task)
                .where(_T.id.in_(list(task_ids)), _T.status.in_([s.value for s in CANCELLABLE_STATES]))
                .values(
                    status=TaskStatus.CANCELLED.value,
                    lease_owner=None,
                    lease_expires=None,
                    updated_at=moment,
                )
            ).rowcount
        logger.info("forward: %d tasks cancelled", count)
        return count

    def resend(self, study_uid: str, destination: str, *, now: datetime | None = None) -> int:
        """Send every instance of a study to ``destination`` again (a manual resend, study granularity).

        Instances that already have a pending task toward it are not queued twice.

        Returns
        -------
        int
            Tasks inserted.

        Raises
        ------
        ConfigError
            If ``destination`` is not in the destination table.
        ArchiveError
            If the index holds no instance of ``study_uid``.
        """
        self.settings.destination(destination)
        moment = utc_now(now)
        i, se, st = schema.instance, schema.series, schema.study
        with write_transaction(self.engine) as connection:
            instances = connection.execute(
                select(i.c.sop_instance_uid, i.c.sop_class_uid)
                .select_from(i.join(se, se.c.id == i.c.series_pk).join(st, st.c.id == se.c.study_pk))
                .where(st.c.study_instance_uid == study_uid)
                .order_by(i.c.id)
            ).all()
            if not instances:
                raise ArchiveError(
                    "forward resend: expected a study of the archive, but no instance has Study Instance "
                    f"UID {study_uid}; see usarchive find"
                )
            pending = set(
                connection.execute(
                    select(_T.sop_instance_uid).where(
                        _T.study_uid == study_uid,
                        _T.destination == destination,
                        _T.status.in_([s.value for s in PENDING_STATES]),
                    )
                ).scalars()
            )
            rows = [
                sql.new_task_values(
                    destination=destination,
                    route=None,
                    sop_instance_uid=uid,
                    sop_class_uid=sop_class,
                    study_uid=study_uid,
                    batch_key=study_uid,
                    scheduled_at=moment,
                    now=moment,
                )
                for uid, sop_class in instances
                if uid not in pending
            ]
            if rows:
                connection.execute(insert(sql.forward_task), rows)
        logger.info("forward: study %s queued for %s (%d instances)", study_uid, destination, len(rows))
        return len(rows)

    def enqueue_file(self, path: Path, destination: str, *, now: datetime | None = None) -> int:
        """Queue a Part 10 file that is not in the store (an exported SR report) for ``destination``.

        The file is copied into the outbox directory first (temp, fsync,
        rename), so the task does not depend on the original staying where it is.

        Returns
        -------
        int
            The new task's id.

        Raises
        ------
        ConfigError
            If ``destination`` is not in the destination table.
        IngestRejectedError
            If the file is not a valid DICOM Part 10 file.
        """
        from archive.dicom_header import read_header

        self.settings.destination(destination)
        header = read_header(path)
        moment = utc_now(now)
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=self.outbox_dir, prefix=".tmp-", suffix=".dcm")
        temp = Path(temp_name)
        try:
            with os.fdopen(handle, "wb") as out, path.open("rb") as source:
                shutil.copyfileobj(source, out)
            fsync_file(temp)
            final = self.outbox_dir / f"{header.sop_instance_uid}-{moment.strftime('%Y%m%dT%H%M%S%fZ')}.dcm"
            temp.replace(final)
            fsync_directory(self.outbox_dir)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        with write_transaction(self.engine) as connection:
            task_id = connection.execute(
                insert(sql.forward_task)
                .values(
                    sql.new_task_values(
                        destination=destination,
                        route=None,
                        sop_instance_uid=header.sop_instance_uid,
                        sop_class_uid=header.sop_class_uid,
                        study_uid=header.study_instance_uid,
                        batch_key=header.sop_instance_uid,
                        scheduled_at=moment,
                        now=moment,
                        source_path=str(final.resolve()),
                        transfer_syntax=header.transfer_syntax,
                    )
                )
                .returning(_T.id)
            ).scalar_one()
        logger.info("forward: %s queued for %s as task %d", path, destination, task_id)
        return int(task_id)

    # -- verification ------------------------------------------------------------------------------

    def unrouted(self) -> builtins.list[str]:
        """SOP Instance UIDs that match a route but have no task toward its destination (any state).

        See :func:`archive.forward.coverage.unrouted`.
        """
        return [gap.sop_instance_uid for gap in coverage.unrouted(self.engine, self.settings.routes)]

    def queue_unrouted(self, *, now: datetime | None = None) -> int:
        """Queue the missing tasks of :meth:`unrouted` instances (``verify --repair``); they will be sent.

        Returns
        -------
        int
            Tasks inserted.
        """
        gaps = coverage.unrouted(self.engine, self.settings.routes)
        moment = utc_now(now)
        with write_transaction(self.engine) as connection:
            for gap in gaps:
                sql.insert_routed_tasks(
                    connection,
                    [(index, replace(route, delay_s=0.0)) for index, route in gap.routes],
                    sop_instance_uid=gap.sop_instance_uid,
                    sop_class_uid=gap.sop_class_uid,
                    study_uid=gap.study_uid,
                    now=moment,
                )
        count = sum(len(gap.routes) for gap in gaps)
        logger.info("forward: %d missing tasks queued for %d instances", count, len(gaps))
        return count


def _parse_status(value: TaskStatus | str) -> TaskStatus:
    try:
        return TaskStatus(value)
    except ValueError:
        valid = ", ".join(s.value for s in TaskStatus)
        raise ArchiveError(f"forward: expected a task status ({valid}), but got {value!r}") from None
