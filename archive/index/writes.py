"""Writes to the index made by ingest: the DICOM hierarchy, the instance row, rule results.

Inserts of shared rows (patient, study, series) use ``ON CONFLICT DO NOTHING``
and then read the row back, so concurrent ingests of one study never fail on a
unique constraint. The instance row itself is the *claim* of a SOP Instance
UID: ``ON CONFLICT DO NOTHING RETURNING id`` tells the caller whether it won
(on PostgreSQL a concurrent claimer waits until the winner commits or rolls
back; on SQLite ``BEGIN IMMEDIATE`` serialises writers).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from archive.index import schema
from archive.index.facts import instance_values, patient_values, series_values, study_values
from archive.model import ProcedureType, Side, SpinalLevel, Technique, sort_levels

logger = logging.getLogger(__name__)

RULE_SOURCE = "rule"


def _insert(connection: Connection, table: Table) -> Insert:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _insert_or_get(connection: Connection, table: Table, keys: dict[str, Any], values: dict[str, Any]) -> int:
    statement = _insert(connection, table).values(**keys, **values)
    statement = statement.on_conflict_do_nothing(index_elements=list(keys))  # type: ignore[attr-defined]
    connection.execute(statement)
    condition = [table.c[name] == value for name, value in keys.items()]
    return int(connection.execute(select(table.c.id).where(*condition)).scalar_one())


def upsert_hierarchy(
    connection: Connection, ds: Any, study_instance_uid: str, series_instance_uid: str
) -> tuple[int, date]:
    """Make sure patient, study and series rows exist (first writer's values win).

    Returns
    -------
    tuple of (int, date)
        The series id and the instance's ``sort_date`` (the stored study's date,
        or ``SORT_DATE_UNKNOWN``).

    Parameters
    ----------
    connection : sqlalchemy.Connection
        Inside a write transaction.
    ds : pydicom.dataset.Dataset
        The instance header.
    study_instance_uid, series_instance_uid : str
        Validated UIDs.
    """
    patient = patient_values(ds)
    patient_pk = _insert_or_get(
        connection,
        schema.patient,
        {"patient_id": patient.pop("patient_id"), "issuer": patient.pop("issuer")},
        patient,
    )
    study_pk = _insert_or_get(
        connection,
        schema.study,
        {"study_instance_uid": study_instance_uid},
        {"patient_pk": patient_pk, **study_values(ds)},
    )
    series_pk = _insert_or_get(
        connection,
        schema.series,
        {"series_instance_uid": series_instance_uid},
        {"study_pk": study_pk, **series_values(ds)},
    )
    study_date = connection.execute(
        select(schema.study.c.study_date).where(schema.study.c.id == study_pk)
    ).scalar()
    return series_pk, study_date or schema.SORT_DATE_UNKNOWN


@dataclass(frozen=True)
class StoredInstance:
    """What the index says about one stored instance."""

    pk: int
    sop_instance_uid: str
    sop_class_uid: str
    path: str
    sha256: str
    size: int


def find_instance(connection: Connection, sop_instance_uid: str) -> StoredInstance | None:
    """The indexed instance with this SOP Instance UID, or ``None``."""
    table = schema.instance
    row = connection.execute(
        select(table.c.id, table.c.sop_class_uid, table.c.path, table.c.sha256, table.c.size).where(
            table.c.sop_instance_uid == sop_instance_uid
        )
    ).first()
    if row is None:
        return None
    return StoredInstance(row.id, sop_instance_uid, row.sop_class_uid, row.path, row.sha256, row.size)


def claim_instance(connection: Connection, values: dict[str, Any]) -> int | None:
    """Insert an instance row unless its SOP Instance UID is indexed; its id, or ``None`` if taken."""
    statement = (
        _insert(connection, schema.instance)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["sop_instance_uid"])  # type: ignore[attr-defined]
        .returning(schema.instance.c.id)
    )
    found = connection.execute(statement).scalar()
    return None if found is None else int(found)


def instance_row_values(ds: Any) -> dict[str, Any]:
    """The image-fact columns of an instance row, read from its header."""
    return instance_values(ds)


def update_instance(connection: Connection, pk: int, values: dict[str, Any]) -> None:
    """Overwrite columns of an instance row (used when a replacement is stored)."""
    connection.execute(update(schema.instance).where(schema.instance.c.id == pk).values(**values))
    if "sort_date" in values:
        connection.execute(
            update(schema.instance_level)
            .where(schema.instance_level.c.instance_pk == pk)
            .values(sort_date=values["sort_date"])
        )


def record_instance_event(connection: Connection, values: dict[str, Any]) -> None:
    """Append a row to ``instance_history`` (replacements)."""
    connection.execute(schema.instance_history.insert().values(**values))


def _procedure_row(connection: Connection, pk: int) -> Any:
    return connection.execute(
        select(schema.instance_procedure).where(schema.instance_procedure.c.instance_pk == pk)
    ).first()


def apply_classification(connection: Connection, pk: int, classification: Any, now: datetime) -> None:
    """Store what the rules found for an instance, except fields a person has set.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        Inside a write transaction.
    pk : int
        Instance id.
    classification : archive.rules.Classification or None
        ``None`` (rules failed) leaves technique unknown and everything else empty.
    now : datetime
        UTC time recorded as ``set_at``.
    """
    provenance: dict[str, str] = dict(getattr(classification, "provenance", {}) or {})
    fields: dict[str, tuple[str | None, str | None]] = {
        "side": (_value(getattr(classification, "side", None)), provenance.get("side")),
        "technique": (
            _value(getattr(classification, "technique", None)) or Technique.UNKNOWN.value,
            provenance.get("technique"),
        ),
        "procedure_type": (
            _value(getattr(classification, "procedure_type", None)),
            provenance.get("procedure_type"),
        ),
    }
    levels: tuple[SpinalLevel, ...] = tuple(getattr(classification, "levels", ()) or ())
    existing = _procedure_row(connection, pk)
    row: dict[str, Any] = {"updated_at": now}
    for name, (value, detail) in fields.items():
        if existing is not None and _is_user(getattr(existing, f"{name}_source")):
            continue
        row[name] = value
        row[f"{name}_source"] = RULE_SOURCE if value is not None else None
        row[f"{name}_detail"] = detail if value is not None else None
    user_levels = existing is not None and _is_user(existing.levels_source)
    if not user_levels:
        row["levels_source"] = RULE_SOURCE if levels else None
    if existing is None:
        connection.execute(schema.instance_procedure.insert().values(instance_pk=pk, **row))
    else:
        connection.execute(
            update(schema.instance_procedure)
            .where(schema.instance_procedure.c.instance_pk == pk)
            .values(**row)
        )
    if not user_levels:
        write_levels(connection, pk, levels, RULE_SOURCE, provenance.get("levels"), now)


def write_levels(
    connection: Connection,
    pk: int,
    levels: Sequence[SpinalLevel],
    source: str,
    detail: str | None,
    now: datetime,
) -> None:
    """Replace the spinal levels of an instance."""
    connection.execute(delete(schema.instance_level).where(schema.instance_level.c.instance_pk == pk))
    sort_date = connection.execute(
        select(schema.instance.c.sort_date).where(schema.instance.c.id == pk)
    ).scalar_one()
    rows = [
        {
            "instance_pk": pk,
            "level": level.value,
            "source": source,
            "detail": detail,
            "set_at": now,
            "sort_date": sort_date,
        }
        for level in sort_levels(list(levels))
    ]
    if rows:
        connection.execute(schema.instance_level.insert(), rows)


def _value(member: Side | Technique | ProcedureType | None) -> str | None:
    return None if member is None else str(member.value)


def _is_user(source: str | None) -> bool:
    return bool(source) and str(source).startswith("user:")
