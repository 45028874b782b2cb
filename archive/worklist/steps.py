"""Modality Performed Procedure Steps: N-CREATE and N-SET applied to the index (PS3.4 F.7).

:func:`create_step` stores a new step from an N-CREATE attribute list:
its status must be ``IN PROGRESS`` (else 0x0106, invalid attribute value),
its SOP Instance UID new (else 0x0111, duplicate SOP instance), and it needs
the Performed Procedure Step Start Date and Time (else 0x0120, missing
attribute). The step is linked to the worklist entry its Scheduled Step
Attributes Sequence names (Scheduled Procedure Step ID, Study Instance UID,
Accession Number; :meth:`~archive.worklist.store.WorklistStore.entry_for`),
which becomes ``in progress``. A step for no entry of ours (an unscheduled
exam) is stored all the same.

:func:`set_step` applies an N-SET modification list: an unknown instance is
0x0112 (no such object instance); a step already COMPLETED or DISCONTINUED
is 0x0110 (processing failure) with Error ID 0xA710, "Performed Procedure Step
Object may no longer be updated" (PS3.4 F.7.2.2); a status other than IN
PROGRESS, COMPLETED, DISCONTINUED is 0x0106; COMPLETED or DISCONTINUED
without End Date and End Time is 0x0110 (PS3.4 F.7.2.2.2 requires them then).
The Performed Series Sequence, when given, replaces the instances listed. The
final status moves the entry to ``completed`` / ``discontinued``. Each call is
one write transaction.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import Connection, Engine, delete, insert, select, update

from archive.index.engine import read_transaction, write_transaction
from archive.worklist import sql
from archive.worklist.errors import StepError
from archive.worklist.model import Code, EntryStatus, PerformedStep, StepStatus, combine
from archive.worklist.store import WorklistStore

logger = logging.getLogger(__name__)

#: DIMSE statuses of PS3.7 C and PS3.4 F.7.2.
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_INSTANCE = 0x0111
NO_SUCH_INSTANCE = 0x0112
MISSING_ATTRIBUTE = 0x0120
#: Error ID of 0x0110 for a step that is already final (PS3.4 F.7.2.2).
MAY_NO_LONGER_BE_UPDATED = 0xA710
_FINAL = {StepStatus.COMPLETED: EntryStatus.COMPLETED, StepStatus.DISCONTINUED: EntryStatus.DISCONTINUED}


def _text(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()


def _date(dataset: Dataset, keyword: str) -> date | None:
    text = _text(dataset, keyword)
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise StepError(
            INVALID_ATTRIBUTE_VALUE, f"{keyword}: expected a date YYYYMMDD, but got {text!r}"
        ) from None


def _time(dataset: Dataset, keyword: str) -> str | None:
    text = _text(dataset, keyword).replace(":", "")
    if not text:
        return None
    whole = text.partition(".")[0]
    if not whole.isdigit() or len(whole) not in (2, 4, 6) or int(whole[:2]) > 23:
        raise StepError(INVALID_ATTRIBUTE_VALUE, f"{keyword}: expected a time HHMMSS, but got {text!r}")
    return text


def _status(dataset: Dataset) -> StepStatus:
    text = _text(dataset, "PerformedProcedureStepStatus")
    try:
        return StepStatus(text.upper())
    except ValueError:
        raise StepError(
            INVALID_ATTRIBUTE_VALUE,
            "Performed Procedure Step Status: expected IN PROGRESS, COMPLETED or DISCONTINUED, "
            f"but got {text!r}",
        ) from None


def _instances(dataset: Dataset) -> list[tuple[str, str, str]]:
    found = []
    for series in dataset.get("PerformedSeriesSequence") or []:
        series_uid = _text(series, "SeriesInstanceUID")
        for keyword in ("ReferencedImageSequence", "ReferencedNonImageCompositeSOPInstanceSequence"):
            for item in series.get(keyword) or []:
                uid = _text(item, "ReferencedSOPInstanceUID")
                if uid:
                    found.append((series_uid, _text(item, "ReferencedSOPClassUID"), uid))
    return list(dict.fromkeys(found))


def _reason(dataset: Dataset) -> dict[str, Any]:
    items = dataset.get("PerformedProcedureStepDiscontinuationReasonCodeSequence") or []
    if not items:
        return {}
    item = items[0]
    return {
        "reason_code": _text(item, "CodeValue")[:16] or None,
        "reason_scheme": _text(item, "CodingSchemeDesignator")[:16] or None,
        "reason_meaning": _text(item, "CodeMeaning")[:64] or None,
    }


def _write_instances(connection: Connection, pk: int, instances: list[tuple[str, str, str]]) -> None:
    connection.execute(delete(sql.mpps_instance).where(sql.mpps_instance.c.mpps_pk == pk))
    for series_uid, class_uid, uid in instances:
        connection.execute(
            insert(sql.mpps_instance).values(
                mpps_pk=pk, series_instance_uid=series_uid, sop_class_uid=class_uid, sop_instance_uid=uid
            )
        )


def _set_entry(connection: Connection, entry_pk: int | None, status: EntryStatus, now: datetime) -> None:
    if entry_pk is None:
        return
    table = sql.worklist_entry
    connection.execute(
        update(table)
        .where(table.c.id == entry_pk, table.c.status != EntryStatus.CANCELLED.value)
        .values(status=status.value, updated_at=now)
    )


def create_step(
    engine: Engine, sop_instance_uid: str, attributes: Dataset, *, calling_ae: str = ""
) -> PerformedStep:
    """Store a new step from an N-CREATE's attribute list.

    Raises
    ------
    StepError
        With the DIMSE status to answer (module docstring).
    """
    if _status(attributes) is not StepStatus.IN_PROGRESS:
        raise StepError(
            INVALID_ATTRIBUTE_VALUE,
            "Performed Procedure Step Status: expected IN PROGRESS in an N-CREATE, "
            f"but got {_text(attributes, 'PerformedProcedureStepStatus')!r}",
        )
    start_date = _date(attributes, "PerformedProcedureStepStartDate")
    start_time = _time(attributes, "PerformedProcedureStepStartTime")
    if start_date is None or start_time is None:
        raise StepError(
            MISSING_ATTRIBUTE,
            "Performed Procedure Step Start Date and Time: expected both in an N-CREATE, but one is missing",
        )
    scheduled = list(attributes.get("ScheduledStepAttributesSequence") or [])
    step_ids = [_text(item, "ScheduledProcedureStepID") for item in scheduled]
    studies = [_text(item, "StudyInstanceUID") for item in scheduled]
    accessions = [_text(item, "AccessionNumber") for item in scheduled]
    requested = [_text(item, "RequestedProcedureID") for item in scheduled]
    store = WorklistStore(engine)
    entry = store.entry_for(
        study_instance_uid=next((s for s in studies if s), ""),
        accession_numbers=accessions,
        requested_procedure_ids=requested,
        step_ids=step_ids,
    )
    now = datetime.now(UTC)
    table = sql.mpps_step
    with write_transaction(engine) as connection:
        if connection.execute(select(table.c.id).where(table.c.sop_instance_uid == sop_instance_uid)).first():
            raise StepError(
                DUPLICATE_INSTANCE,
                f"step exists: expected a new SOP Instance UID; use N-SET (MPPS {sop_instance_uid})",
            )
        pk = connection.execute(
            insert(table)
            .values(
                sop_instance_uid=sop_instance_uid,
                status=StepStatus.IN_PROGRESS.value,
                entry_pk=entry.pk if entry else None,
                step_id=next((s for s in step_ids if s), None),
                study_instance_uid=next((s for s in studies if s), None),
                accession_number=next((s for s in accessions if s), None),
                patient_id=_text(attributes, "PatientID")[:64] or None,
                station_aet=_text(attributes, "PerformedStationAETitle")[:16] or None,
                start_date=start_date,
                start_time=start_time,
                end_date=_date(attributes, "PerformedProcedureStepEndDate"),
                end_time=_time(attributes, "PerformedProcedureStepEndTime"),
                calling_ae=calling_ae[:16] or None,
                created_at=now,
                updated_at=now,
            )
            .returning(table.c.id)
        ).scalar_one()
        _write_instances(connection, int(pk), _instances(attributes))
        _set_entry(connection, entry.pk if entry else None, EntryStatus.IN_PROGRESS, now)
    logger.info(
        "MPPS %s: IN PROGRESS from %s (entry %s)",
        sop_instance_uid,
        calling_ae or "?",
        entry.pk if entry else "none",
    )
    return get_step(engine, sop_instance_uid)


def set_step(engine: Engine, sop_instance_uid: str, modification: Dataset) -> PerformedStep:
    """Apply an N-SET's modification list to the step ``sop_instance_uid``.

    Raises
    ------
    StepError
        With the DIMSE status to answer (module docstring).
    """
    table = sql.mpps_step
    now = datetime.now(UTC)
    with write_transaction(engine) as connection:
        row = connection.execute(select(table).where(table.c.sop_instance_uid == sop_instance_uid)).first()
        if row is None:
            raise StepError(
                NO_SUCH_INSTANCE,
                f"no such step: expected one made by N-CREATE (MPPS {sop_instance_uid})",
            )
        current = StepStatus(row.status)
        if current is not StepStatus.IN_PROGRESS:
            raise StepError(
                PROCESSING_FAILURE,
                f"step {current.value}: may no longer be updated (MPPS {sop_instance_uid})",
                MAY_NO_LONGER_BE_UPDATED,
            )
        status = _status(modification) if "PerformedProcedureStepStatus" in modification else current
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        for keyword, column, read in (
            ("PerformedProcedureStepEndDate", "end_date", _date),
            ("PerformedProcedureStepEndTime", "end_time", _time),
            ("PerformedProcedureStepStartDate", "start_date", _date),
            ("PerformedProcedureStepStartTime", "start_time", _time),
        ):
            if keyword in modification:
                values[column] = read(modification, keyword)
        if status is not StepStatus.IN_PROGRESS:
            end_date = values.get("end_date", row.end_date)
            end_time = values.get("end_time", row.end_time)
            if end_date is None or end_time is None:
                raise StepError(
                    PROCESSING_FAILURE,
                    f"End Date and Time missing: expected both with status {status.value} "
                    f"(MPPS {sop_instance_uid})",
                )
        values.update(_reason(modification))
        connection.execute(update(table).where(table.c.id == row.id).values(**values))
        if "PerformedSeriesSequence" in modification:
            _write_instances(connection, int(row.id), _instances(modification))
        if status in _FINAL:
            _set_entry(connection, row.entry_pk, _FINAL[status], now)
    logger.info("MPPS %s: %s -> %s", sop_instance_uid, current.value, status.value)
    return get_step(engine, sop_instance_uid)


def _step_of(connection: Connection, row: Any) -> PerformedStep:
    instances = connection.execute(
        select(
            sql.mpps_instance.c.series_instance_uid,
            sql.mpps_instance.c.sop_class_uid,
            sql.mpps_instance.c.sop_instance_uid,
        )
        .where(sql.mpps_instance.c.mpps_pk == row.id)
        .order_by(sql.mpps_instance.c.id)
    ).all()
    reason = (
        Code(row.reason_code, row.reason_scheme or "", row.reason_meaning or "")
        if row.reason_code or row.reason_meaning
        else None
    )
    return PerformedStep(
        pk=int(row.id),
        sop_instance_uid=row.sop_instance_uid,
        status=StepStatus(row.status),
        entry_pk=row.entry_pk,
        study_instance_uid=row.study_instance_uid or "",
        station_aet=row.station_aet or "",
        start=combine(row.start_date, row.start_time),
        end=combine(row.end_date, row.end_time),
        discontinuation=reason,
        instances=tuple((str(a), str(b), str(c)) for a, b, c in instances),
    )


def get_step(engine: Engine, sop_instance_uid: str) -> PerformedStep:
    """The step ``sop_instance_uid``.

    Raises
    ------
    StepError
        0x0112 when there is none.
    """
    with read_transaction(engine) as connection:
        row = connection.execute(
            select(sql.mpps_step).where(sql.mpps_step.c.sop_instance_uid == sop_instance_uid)
        ).first()
        if row is None:
            raise StepError(NO_SUCH_INSTANCE, f"MPPS {sop_instance_uid}: no such step")
        return _step_of(connection, row)


def steps_of_entry(engine: Engine, entry_pk: int) -> list[PerformedStep]:
    """The steps performed for worklist entry ``entry_pk``, oldest first."""
    with read_transaction(engine) as connection:
        rows = connection.execute(
            select(sql.mpps_step).where(sql.mpps_step.c.entry_pk == entry_pk).order_by(sql.mpps_step.c.id)
        ).all()
        return [_step_of(connection, row) for row in rows]


def timed_studies(engine: Engine) -> dict[str, PerformedStep]:
    """Study Instance UID → its COMPLETED step with start and end (the latest), for the audit."""
    with read_transaction(engine) as connection:
        rows = connection.execute(
            select(sql.mpps_step)
            .where(
                sql.mpps_step.c.status == StepStatus.COMPLETED.value,
                sql.mpps_step.c.end_date.is_not(None),
                sql.mpps_step.c.start_date.is_not(None),
            )
            .order_by(sql.mpps_step.c.id)
        ).all()
        found: dict[str, PerformedStep] = {}
        for row in rows:
            step = _step_of(connection, row)
            study = step.study_instance_uid or _entry_study(connection, step.entry_pk)
            if study:
                found[study] = step
        return found


def _entry_study(connection: Connection, entry_pk: int | None) -> str:
    if entry_pk is None:
        return ""
    found = connection.execute(
        select(sql.worklist_entry.c.study_instance_uid).where(sql.worklist_entry.c.id == entry_pk)
    ).scalar()
    return str(found or "")
