"""Writes to the index made by ingest: the DICOM hierarchy, the instance row, rule results.

Inserts of shared rows (patient, study, series) use ``ON CONFLICT DO NOTHING``
and then read the row back, so concurrent ingests of one study never fail on a
unique constraint. The instance row itself is the *claim* of a SOP Instance
UID: ``ON CONFLICT DO NOTHING RETURNING id`` tells the caller whether it won
(on PostgreSQL a concurrent claimer waits until the winner commits or rolls
back; on SQLite ``BEGIN IMMEDIATE`` serialises writers).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, Table, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from archive.index import schema
from archive.index.facts import instance_values, patient_values, series_values, study_values
from archive.model import Approach, ProcedureType, Side, SpinalLevel, Technique, sort_levels

if TYPE_CHECKING:
    from archive.rules import Classification

logger = logging.getLogger(__name__)

RULE_SOURCE = "rule"


@functools.cache
def _insert_ignoring(dialect: str, table: Table, keys: tuple[str, ...], returning: bool) -> Insert:
    """``INSERT … ON CONFLICT (keys) DO NOTHING`` for ``table``, built once per dialect.

    The statement has no ``VALUES`` clause: the columns come from the parameters
    passed to ``execute``, so one statement (and one compiled form per set of
    columns) serves every call.
    """
    statement: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    else:
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    return statement.returning(table.c.id) if returning else statement


@functools.cache
def _select_id(table: Table, keys: tuple[str, ...]) -> Select[Any]:
    """``SELECT id FROM table WHERE key = :key AND …``, built once."""
    return select(table.c.id).where(*(table.c[name] == bindparam(name) for name in keys))


_STUDY_DATE = select(schema.study.c.study_date).where(schema.study.c.id == bindparam("pk"))
_FIND_INSTANCE = select(
    schema.instance.c.id,
    schema.instance.c.sop_class_uid,
    schema.instance.c.path,
    schema.instance.c.sha256,
    schema.instance.c.size,
).where(schema.instance.c.sop_instance_uid == bindparam("uid"))
_PROCEDURE_ROW = select(schema.instance_procedure).where(
    schema.instance_procedure.c.instance_pk == bindparam("pk")
)
_INSERT_PROCEDURE = schema.instance_procedure.insert()
# The bound name differs from every column name: the other parameters become the SET clause.
_UPDATE_PROCEDURE = update(schema.instance_procedure).where(
    schema.instance_procedure.c.instance_pk == bindparam("procedure_instance_pk")
)
_DELETE_LEVELS = delete(schema.instance_level).where(schema.instance_level.c.instance_pk == bindparam("pk"))
_SORT_DATE = select(schema.instance.c.sort_date).where(schema.instance.c.id == bindparam("pk"))
_INSERT_LEVELS = schema.instance_level.insert()
_SYNC_LEVEL_TECHNIQUE = (
    update(schema.instance_level)
    .where(schema.instance_level.c.instance_pk == bindparam("pk"))
    .values(
        technique=select(schema.instance_procedure.c.technique)
        .where(schema.instance_procedure.c.instance_pk == bindparam("pk"))
        .scalar_subquery()
    )
)


def _insert_or_get(connection: Connection, table: Table, keys: dict[str, Any], values: dict[str, Any]) -> int:
    names = tuple(keys)
    connection.execute(_insert_ignoring(connection.dialect.name, table, names, False), {**keys, **values})
    return int(connection.execute(_select_id(table, names), keys).scalar_one())


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
    study_date = connection.execute(_STUDY_DATE, {"pk": study_pk}).scalar()
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
    row = connection.execute(_FIND_INSTANCE, {"uid": sop_instance_uid}).first()
    if row is None:
        return None
    return StoredInstance(row.id, sop_instance_uid, row.sop_class_uid, row.path, row.sha256, row.size)


def claim_instance(connection: Connection, values: dict[str, Any]) -> int | None:
    """Insert an instance row unless its SOP Instance UID is indexed; its id, or ``None`` if taken."""
    statement = _insert_ignoring(connection.dialect.name, schema.instance, ("sop_instance_uid",), True)
    found = connection.execute(statement, values).scalar()
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
    return connection.execute(_PROCEDURE_ROW, {"pk": pk}).first()


def _classification_fields(
    classification: Classification | None,
) -> tuple[dict[str, tuple[str | None, str | None]], dict[str, str]]:
    """Per field ``(value, detail)`` the rules found, and their provenance."""
    if classification is None:
        return {
            "side": (None, None),
            "technique": (Technique.UNKNOWN.value, None),
            "procedure_type": (None, None),
        }, {}
    provenance: dict[str, str] = dict(classification.provenance)
    fields: dict[str, tuple[str | None, str | None]] = {
        "side": (_value(classification.side), provenance.get("side")),
        "technique": (
            _value(classification.technique) or Technique.UNKNOWN.value,
            provenance.get("technique"),
        ),
        "approach": (
            _value(getattr(classification, "approach", None)) or Approach.UNKNOWN.value,
            provenance.get("approach"),
        ),
        "procedure_type": (
            _value(classification.procedure_type),
            provenance.get("procedure_type"),
        ),
    }
    return fields, provenance


def _source_of(classification: Classification | None, name: str) -> str:
    """The source a field of ``classification`` is recorded with: the rules', or e.g. ``worklist:12``."""
    sources = getattr(classification, "sources", None) or {}
    return str(sources.get(name, RULE_SOURCE))


def _rule_columns(
    row: dict[str, Any], name: str, value: str | None, detail: str | None, source: str = RULE_SOURCE
) -> None:
    row[name] = value
    row[f"{name}_source"] = source if value is not None else None
    row[f"{name}_detail"] = detail if value is not None else None


def apply_classification(
    connection: Connection, pk: int, classification: Classification | None, now: datetime
) -> None:
    """Store what the rules found for an instance, except fields a person has set.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        Inside a write transaction.
    pk : int
        Instance id.
    classification : archive.rules.Classification or None
        ``None`` (rules failed) leaves technique and approach unknown and everything else empty.
    now : datetime
        UTC time recorded as ``set_at``.
    """
    fields, provenance = _classification_fields(classification)
    levels: tuple[SpinalLevel, ...] = () if classification is None else classification.levels
    existing = _procedure_row(connection, pk)
    row: dict[str, Any] = {"updated_at": now}
    for name, (value, detail) in fields.items():
        if existing is not None and _is_user(getattr(existing, f"{name}_source")):
            continue
        _rule_columns(row, name, value, detail, _source_of(classification, name))
    user_levels = existing is not None and _is_user(existing.levels_source)
    levels_source = _source_of(classification, "levels")
    if not user_levels:
        row["levels_source"] = levels_source if levels else None
    if existing is None:
        connection.execute(_INSERT_PROCEDURE, {"instance_pk": pk, **row})
    else:
        connection.execute(_UPDATE_PROCEDURE, {"procedure_instance_pk": pk, **row})
    if user_levels:
        sync_level_technique(connection, pk)
    else:
        write_levels(connection, pk, levels, levels_source, provenance.get("levels"), now)


def insert_classification(
    connection: Connection, pk: int, classification: Classification | None, now: datetime, sort_date: date
) -> None:
    """Store what the rules found for an instance row this transaction has just inserted.

    Same rows as :func:`apply_classification`, without its reads and deletes: a
    new instance has no procedure or level rows yet.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        Inside the write transaction that inserted the instance row.
    pk : int
        The new instance's id.
    classification : archive.rules.Classification or None
        ``None`` (rules failed) leaves technique and approach unknown and everything else empty.
    now : datetime
        UTC time recorded as ``set_at``.
    sort_date : date
        The instance row's ``sort_date``, copied to its level rows.
    """
    fields, provenance = _classification_fields(classification)
    levels: tuple[SpinalLevel, ...] = () if classification is None else classification.levels
    row: dict[str, Any] = {"instance_pk": pk, "updated_at": now}
    for name, (value, detail) in fields.items():
        _rule_columns(row, name, value, detail, _source_of(classification, name))
    levels_source = _source_of(classification, "levels")
    row["levels_source"] = levels_source if levels else None
    connection.execute(_INSERT_PROCEDURE, row)
    _insert_levels(
        connection, pk, levels, levels_source, provenance.get("levels"), now, sort_date, row["technique"]
    )


def write_levels(
    connection: Connection,
    pk: int,
    levels: Sequence[SpinalLevel],
    source: str,
    detail: str | None,
    now: datetime,
) -> None:
    """Replace the spinal levels of an instance (they take its current technique)."""
    connection.execute(_DELETE_LEVELS, {"pk": pk})
    sort_date = connection.execute(_SORT_DATE, {"pk": pk}).scalar_one()
    _insert_levels(connection, pk, levels, source, detail, now, sort_date)
    sync_level_technique(connection, pk)


def _insert_levels(
    connection: Connection,
    pk: int,
    levels: Sequence[SpinalLevel],
    source: str,
    detail: str | None,
    now: datetime,
    sort_date: date,
    technique: str | None = None,
) -> None:
    rows = [
        {
            "instance_pk": pk,
            "level": level.value,
            "source": source,
            "detail": detail,
            "set_at": now,
            "sort_date": sort_date,
            "technique": technique,
        }
        for level in sort_levels(list(levels))
    ]
    if rows:
        connection.execute(_INSERT_LEVELS, rows)


def sync_level_technique(connection: Connection, pk: int) -> None:
    """Copy the instance's technique onto its level rows (after either has changed).

    Parameters
    ----------
    connection : sqlalchemy.Connection
        Inside the write transaction that changed the procedure or the levels.
    pk : int
        Instance id.
    """
    connection.execute(_SYNC_LEVEL_TECHNIQUE, {"pk": pk})


def _value(member: Side | Technique | Approach | ProcedureType | None) -> str | None:
    return None if member is None else str(member.value)


def _is_user(source: str | None) -> bool:
    return bool(source) and str(source).startswith("user:")
