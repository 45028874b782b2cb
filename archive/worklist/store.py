"""The worklist and the performed procedure steps in the archive: :attr:`archive.archive.Archive.worklist`.

The same shape as :attr:`Archive.outcomes`: one store object over the index,
the tables in :mod:`archive.worklist.sql`, the model in
:mod:`archive.worklist.model`. Commands, the MWL SCP and the MPPS SCP only
parse and answer.

Identifiers. Scheduling generates the Study Instance UID (``2.25.`` + a
random UUID, PS3.5 B.2), the Requested Procedure ID (``RP`` + 14 hex digits)
and the Scheduled Procedure Step ID (``SPS`` + 12 hex digits), each unique in
the table; the scanner copies them into its images, and
:meth:`WorklistStore.entry_for` finds the entry of an arriving instance by
any of them or by the accession number.

Status. ``scheduled`` → ``in progress`` (an MPPS N-CREATE for it) →
``completed`` / ``discontinued`` (its N-SET); ``cancelled`` by a person.
``complete`` and ``cancel`` refuse an entry already final. A scheduled entry
whose start lies more than :attr:`WorklistSettings.expire_after_hours` in
the past is *expired*: not offered to scanners, listed as such.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from archive.index import schema
from archive.index.engine import read_transaction, write_transaction
from archive.model import Approach, ProcedureType, Side, SpinalLevel, Technique
from archive.worklist import sql
from archive.worklist.dataset import write_entry_items
from archive.worklist.errors import WorklistError
from archive.worklist.model import (
    EntryStatus,
    ScheduledProcedure,
    WorklistEntry,
    WorklistSettings,
)

logger = logging.getLogger(__name__)


def new_study_uid() -> str:
    """A fresh Study Instance UID (``2.25.`` + a random UUID as an integer)."""
    return f"2.25.{uuid.uuid4().int}"


def entry_of(row: Any) -> WorklistEntry:
    """A :class:`WorklistEntry` from a ``worklist_entry`` row."""
    procedure = ScheduledProcedure(
        patient_id=row.patient_id,
        patient_name=row.patient_name,
        birth_date=row.birth_date,
        sex=row.sex or "",
        accession_number=row.accession_number,
        start=datetime.combine(
            row.start_date,
            datetime.strptime(row.start_time[:6], "%H%M%S").time(),
        ),
        station_aet=row.station_aet,
        modality=row.modality,
        procedure_type=ProcedureType(row.procedure_type),
        levels=tuple(SpinalLevel(level) for level in row.levels.split(",") if level),
        side=Side(row.side),
        technique=Technique(row.technique),
        approach=Approach(row.approach),
        physician=row.physician or "",
    )
    return WorklistEntry(
        pk=int(row.id),
        procedure=procedure,
        study_instance_uid=row.study_instance_uid,
        requested_procedure_id=row.requested_procedure_id,
        step_id=row.step_id,
        status=EntryStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        note=row.note or "",
    )


def _row(procedure: ScheduledProcedure, now: datetime) -> dict[str, Any]:
    return {
        "patient_id": procedure.patient_id,
        "patient_name": procedure.patient_name,
        "birth_date": procedure.birth_date,
        "sex": procedure.sex,
        "accession_number": procedure.accession_number,
        "study_instance_uid": new_study_uid(),
        "requested_procedure_id": "RP" + secrets.token_hex(7).upper(),
        "step_id": "SPS" + secrets.token_hex(6).upper(),
        "start_date": procedure.start.date(),
        "start_time": procedure.start.strftime("%H%M%S"),
        "station_aet": procedure.station_aet,
        "modality": procedure.modality,
        "procedure_type": procedure.procedure_type.value,
        "levels": ",".join(level.value for level in procedure.levels),
        "side": procedure.side.value,
        "technique": procedure.technique.value,
        "approach": procedure.approach.value,
        "physician": procedure.physician,
        "status": EntryStatus.SCHEDULED.value,
        "created_at": now,
        "updated_at": now,
    }


def schedule_in(connection: Connection, procedures: Sequence[ScheduledProcedure], now: datetime) -> list[int]:
    """Insert ``procedures`` as scheduled entries inside the caller's transaction; their ids."""
    pks = []
    for procedure in procedures:
        statement = (
            insert(sql.worklist_entry).values(**_row(procedure, now)).returning(sql.worklist_entry.c.id)
        )
        pk = int(connection.execute(statement).scalar_one())
        write_entry_items(connection, pk, procedure)
        pks.append(pk)
    return pks


def entry_for_in(
    connection: Connection,
    *,
    study_instance_uid: str = "",
    accession_numbers: Sequence[str] = (),
    requested_procedure_ids: Sequence[str] = (),
    step_ids: Sequence[str] = (),
) -> WorklistEntry | None:
    """The entry an instance carrying these identifiers was made for, or ``None``.

    The most specific identifier wins: Scheduled Procedure Step ID, then
    Requested Procedure ID, then Study Instance UID, then accession number
    (an accession shared by several entries matches none of them). A
    cancelled entry is never matched.
    """
    table = sql.worklist_entry
    tests = [
        (table.c.step_id, [v for v in step_ids if v]),
        (table.c.requested_procedure_id, [v for v in requested_procedure_ids if v]),
        (table.c.study_instance_uid, [study_instance_uid] if study_instance_uid else []),
        (table.c.accession_number, [v for v in accession_numbers if v]),
    ]
    wanted = [column.in_(values) for column, values in tests if values]
    if not wanted:
        return None
    rows = connection.execute(
        select(table).where(or_(*wanted), table.c.status != EntryStatus.CANCELLED.value).limit(20)
    ).all()
    for column, values in tests:
        found = [row for row in rows if getattr(row, column.name) in values]
        if len(found) == 1:
            return entry_of(found[0])
    return None


class WorklistStore:
    """Scheduled procedures and their performed steps, in the index at ``engine``.

    Get one from :attr:`archive.archive.Archive.worklist`.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Engine of an index migrated to version 10 or later.
    settings : WorklistSettings
    """

    def __init__(self, engine: Engine, settings: WorklistSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or WorklistSettings()

    def schedule(self, procedures: Iterable[ScheduledProcedure]) -> list[WorklistEntry]:
        """Schedule ``procedures`` in one transaction (all or none); the new entries."""
        items = list(procedures)
        now = datetime.now(UTC)
        try:
            with write_transaction(self.engine) as connection:
                pks = schedule_in(connection, items, now)
        except IntegrityError as exc:  # a generated identifier collided: vanishingly rare, retry
            raise WorklistError(
                f"worklist: generated identifiers collided ({exc.orig}); schedule again"
            ) from exc
        for pk, item in zip(pks, items, strict=True):
            logger.info("worklist: scheduled entry %d (%s, %s)", pk, item.accession_number, item.description)
        return [self.get(pk) for pk in pks]

    def import_csv(self, path: Any) -> list[WorklistEntry]:
        """Schedule every row of a CSV (:mod:`archive.worklist.csvfile`), all or nothing.

        Raises
        ------
        WorklistImportError
            Listing every bad row by line; nothing is scheduled then.
        """
        from archive.worklist.csvfile import read_procedures

        return self.schedule(procedure for _, procedure in read_procedures(path))

    def get(self, pk: int) -> WorklistEntry:
        """The entry ``pk``.

        Raises
        ------
        WorklistError
            If there is none.
        """
        with read_transaction(self.engine) as connection:
            row = connection.execute(select(sql.worklist_entry).where(sql.worklist_entry.c.id == pk)).first()
        if row is None:
            raise WorklistError(
                f"worklist entry {pk}: expected an entry of 'usarchive worklist list', but there is none"
            )
        return entry_of(row)

    def entries(
        self,
        *,
        statuses: Sequence[EntryStatus] = (),
        on: Any = None,
        limit: int | None = None,
    ) -> list[WorklistEntry]:
        """Entries (of ``statuses``, starting on date ``on``), by start time."""
        table = sql.worklist_entry
        statement = select(table).order_by(table.c.start_date, table.c.start_time, table.c.id)
        if statuses:
            statement = statement.where(table.c.status.in_([s.value for s in statuses]))
        if on is not None:
            statement = statement.where(table.c.start_date == on)
        if limit is not None:
            statement = statement.limit(limit)
        with read_transaction(self.engine) as connection:
            return [entry_of(row) for row in connection.execute(statement)]

    def is_expired(self, entry: WorklistEntry, now: datetime | None = None) -> bool:
        """Whether a scheduled entry is past its start by more than ``expire_after_hours``."""
        local_now = now or datetime.now()
        limit = timedelta(hours=self.settings.expire_after_hours)
        return entry.status is EntryStatus.SCHEDULED and entry.procedure.start < local_now - limit

    def _finish(
        self, pk: int, status: EntryStatus, note: str | None, *, allowed: Sequence[EntryStatus]
    ) -> WorklistEntry:
        table = sql.worklist_entry
        with write_transaction(self.engine) as connection:
            row = connection.execute(select(table.c.status).where(table.c.id == pk)).first()
            if row is None:
                raise WorklistError(
                    f"worklist entry {pk}: expected an entry of 'usarchive worklist list', but there is none"
                )
            current = EntryStatus(row.status)
            if current not in allowed:
                raise WorklistError(
                    f"worklist entry {pk}: expected an entry that is {' or '.join(s.value for s in allowed)} "
                    f"to mark it {status.value}, but it is {current.value}"
                )
            values: dict[str, Any] = {"status": status.value, "updated_at": datetime.now(UTC)}
            if note:
                values["note"] = note
            connection.execute(update(table).where(table.c.id == pk).values(**values))
        logger.info("worklist: entry %d %s -> %s", pk, current.value, status.value)
        return self.get(pk)

    def cancel(self, pk: int, reason: str | None = None) -> WorklistEntry:
        """Cancel a scheduled entry (no longer offered to scanners)."""
        return self._finish(pk, EntryStatus.CANCELLED, reason, allowed=(EntryStatus.SCHEDULED,))

    def complete(self, pk: int, note: str | None = None) -> WorklistEntry:
        """Mark an entry completed by hand (a scanner that sends no MPPS)."""
        return self._finish(
            pk, EntryStatus.COMPLETED, note, allowed=(EntryStatus.SCHEDULED, EntryStatus.IN_PROGRESS)
        )

    def entry_for(
        self,
        *,
        study_instance_uid: str = "",
        accession_numbers: Sequence[str] = (),
        requested_procedure_ids: Sequence[str] = (),
        step_ids: Sequence[str] = (),
    ) -> WorklistEntry | None:
        """The entry an instance carrying these identifiers was made for (:func:`entry_for_in`)."""
        with read_transaction(self.engine) as connection:
            return entry_for_in(
                connection,
                study_instance_uid=study_instance_uid,
                accession_numbers=accession_numbers,
                requested_procedure_ids=requested_procedure_ids,
                step_ids=step_ids,
            )

    def has_entries(self) -> bool:
        """Whether any entry was ever scheduled (ingest skips the look-up otherwise)."""
        with read_transaction(self.engine) as connection:
            return connection.execute(select(sql.worklist_entry.c.id).limit(1)).first() is not None

    def unsent_instances(self, pk: int) -> list[tuple[str, str]]:
        """``(MPPS UID, SOP instance UID)`` a COMPLETED step of entry ``pk`` lists and the index lacks."""
        return [pair for pair in self.all_unsent_instances() if pair[0] in self._step_uids(pk)]

    def _step_uids(self, pk: int) -> set[str]:
        with read_transaction(self.engine) as connection:
            return set(
                connection.execute(
                    select(sql.mpps_step.c.sop_instance_uid).where(sql.mpps_step.c.entry_pk == pk)
                ).scalars()
            )

    def all_unsent_instances(self) -> list[tuple[str, str]]:
        """``(MPPS SOP instance UID, SOP instance UID)`` of every COMPLETED step's instance not in the index.

        A clip the scanner says it made (in its MPPS) but never sent.
        """
        step, listed, instance = sql.mpps_step, sql.mpps_instance, schema.instance
        statement = (
            select(step.c.sop_instance_uid, listed.c.sop_instance_uid)
            .select_from(listed.join(step, step.c.id == listed.c.mpps_pk))
            .outerjoin(instance, instance.c.sop_instance_uid == listed.c.sop_instance_uid)
            .where(step.c.status == "COMPLETED", instance.c.id.is_(None))
            .order_by(step.c.id, listed.c.id)
        )
        with read_transaction(self.engine) as connection:
            return [(str(a), str(b)) for a, b in connection.execute(statement)]
