"""The ``forward_task`` table (created by migration 7) and the outbox insert of the ingest transaction.

``forward_task``
    One row per instance per destination: what to send (``sop_instance_uid``;
    ``source_path`` for a file kept outside the store, e.g. an exported SR
    report), where (``destination``, a name of the destination table), its
    ``batch_key`` (the study UID for study granularity, the SOP Instance UID
    for instance granularity), the state and schedule (``status``,
    ``scheduled_at``, ``attempts``), the last attempt's ``last_status`` (DIMSE)
    and ``last_comment``, the lease (``lease_owner``, ``lease_expires``), a
    storage commitment ``commitment_uid``, and timestamps. Modelled on dcm4chee's
    task table.

:func:`insert_routed_tasks` runs inside :meth:`archive.archive.Archive.ingest`'s
write transaction, after the instance row is claimed: the instance and its
tasks commit together or not at all (the outbox pattern), so no acknowledged
instance that matches a route is ever without its task. Times are UTC; SQLite
returns them without a zone, :func:`utc` gives it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    and_,
    insert,
    or_,
    select,
    update,
)

from archive.forward.config import Route
from archive.forward.model import TaskStatus
from archive.index import schema

_UID = 64

forward_task = Table(
    "forward_task",
    schema.metadata,
    Column("id", Integer, primary_key=True),
    Column("destination", String(64), nullable=False),
    Column("route", Integer),
    Column("sop_instance_uid", String(_UID), nullable=False),
    Column("sop_class_uid", String(_UID), nullable=False),
    Column("study_uid", String(_UID), nullable=False),
    Column("batch_key", String(_UID), nullable=False),
    Column("status", String(24), nullable=False),
    Column("scheduled_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_status", Integer),
    Column("last_comment", Text, nullable=False),
    Column("lease_owner", String(128)),
    Column("lease_expires", DateTime(timezone=True)),
    Column("commitment_uid", String(_UID)),
    Column("source_path", Text),
    Column("transfer_syntax", String(_UID)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    Index("ix_forward_task_due", "status", "scheduled_at"),
    Index("ix_forward_task_lease", "status", "lease_expires"),
    Index("ix_forward_task_batch", "destination", "batch_key"),
    Index("ix_forward_task_instance", "sop_instance_uid"),
    Index("ix_forward_task_commitment", "commitment_uid"),
)

#: Tables of migration 7.
FORWARD_TABLES = (forward_task,)

_T = forward_task.c


def utc(value: datetime | None) -> datetime | None:
    """``value`` with its UTC zone (SQLite returns stored times without one)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def due_clause(now: datetime) -> Any:
    """Tasks a worker may claim at ``now``: scheduled and due, or leased and the lease expired."""
    return or_(
        and_(_T.status == TaskStatus.SCHEDULED.value, _T.scheduled_at <= now),
        and_(
            _T.status.in_([TaskStatus.IN_PROGRESS.value, TaskStatus.AWAITING_COMMITMENT.value]),
            _T.lease_expires < now,
        ),
    )


def new_task_values(
    *,
    destination: str,
    route: int | None,
    sop_instance_uid: str,
    sop_class_uid: str,
    study_uid: str,
    batch_key: str,
    scheduled_at: datetime,
    now: datetime,
    source_path: str | None = None,
    transfer_syntax: str | None = None,
) -> dict[str, Any]:
    """Column values of a new ``scheduled`` task."""
    return {
        "destination": destination,
        "route": route,
        "sop_instance_uid": sop_instance_uid,
        "sop_class_uid": sop_class_uid,
        "study_uid": study_uid,
        "batch_key": batch_key,
        "status": TaskStatus.SCHEDULED.value,
        "scheduled_at": scheduled_at,
        "attempts": 0,
        "last_comment": "",
        "source_path": source_path,
        "transfer_syntax": transfer_syntax,
        "created_at": now,
        "updated_at": now,
    }


def insert_routed_tasks(
    connection: Connection,
    routes: Sequence[tuple[int, Route]],
    *,
    sop_instance_uid: str,
    sop_class_uid: str,
    study_uid: str,
    now: datetime,
    replacing: bool = False,
) -> int:
    """Insert the tasks of the routes an instance matched, inside the caller's ingest transaction.

    For study granularity every still scheduled task of the study toward the
    same destination is moved to ``now + delay_s``: a study goes when it has
    been stable for ``delay_s``. A replaced instance (``replacing``) gets a new
    task, unless one is still scheduled (it will send the new file).

    Parameters
    ----------
    connection : sqlalchemy.Connection
        The open write transaction that claimed (or replaced) the instance row.
    routes : sequence of (int, Route)
        :func:`archive.forward.routes.matching_routes` of the instance.
    sop_instance_uid : str
        The instance's SOP Instance UID.
    sop_class_uid : str
        Its SOP Class UID.
    study_uid : str
        Its Study Instance UID (the batch key of study granularity).
    now : datetime
        The ingest time (UTC).
    replacing : bool
        The instance replaces a stored one with the same UID.

    Returns
    -------
    int
        Tasks inserted.
    """
    inserted = 0
    for index, route in routes:
        due = now + timedelta(seconds=route.delay_s)
        study = route.granularity == "study"
        batch_key = study_uid if study else sop_instance_uid
        waiting = None
        if replacing:
            waiting = connection.execute(
                select(_T.id).where(
                    _T.sop_instance_uid == sop_instance_uid,
                    _T.destination == route.destination,
                    _T.status == TaskStatus.SCHEDULED.value,
                )
            ).first()
        if waiting is None:
            connection.execute(
                insert(forward_task).values(
                    new_task_values(
                        destination=route.destination,
                        route=index,
                        sop_instance_uid=sop_instance_uid,
                        sop_class_uid=sop_class_uid,
                        study_uid=study_uid,
                        batch_key=batch_key,
                        scheduled_at=due,
                        now=now,
                    )
                )
            )
            inserted += 1
        if study:
            connection.execute(
                update(forward_task)
                .where(
                    _T.destination == route.destination,
                    _T.batch_key == study_uid,
                    _T.status == TaskStatus.SCHEDULED.value,
                    _T.attempts == 0,
                    _T.scheduled_at < due,
                )
                .values(scheduled_at=due, updated_at=now)
            )
    return inserted


def task_columns() -> list[Any]:
    """Columns of a task read with its instance's stored path and transfer syntax."""
    instance = schema.instance
    return [
        *forward_task.c,
        instance.c.path.label("stored_path"),
        instance.c.transfer_syntax.label("stored_transfer_syntax"),
    ]


def task_query() -> Any:
    """``SELECT`` of tasks joined to their instance (absent for files kept outside the store)."""
    instance = schema.instance
    return select(*task_columns()).select_from(
        forward_task.outerjoin(instance, instance.c.sop_instance_uid == _T.sop_instance_uid)
    )


def row_values(row: Row[Any]) -> dict[str, Any]:
    """A joined task row as a dict, times with their zone."""
    values = dict(row._mapping)
    for name in ("scheduled_at", "lease_expires", "created_at", "updated_at", "completed_at"):
        values[name] = utc(values[name])
    return values
