"""Versioned migrations of the index schema.

A small runner rather than Alembic: the schema is owned by this package alone,
must be created on first open by whichever process gets there first (eight
importers may start at once), and needs no autogeneration. Alembic would add a
configuration directory and an environment script for what is here a list of
functions.

Rules: :data:`MIGRATIONS` is an ordered list of ``(version, description,
function)``; each function runs in its own transaction together with the row it
adds to ``schema_version``, under a lock (``BEGIN IMMEDIATE`` on SQLite, a
transaction-level advisory lock on PostgreSQL), after re-reading the current
version, so concurrent openers apply each migration exactly once and opening an
up-to-date index changes nothing. A migration, once released, is never edited:
a later change of a table is a new migration (altering what the earlier ones
created). Versions 1-3 create tables from the current definitions in
:mod:`archive.index.schema`, so a later migration that adds a column or an
index first checks whether it is already there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, inspect, select, text, update

from archive.analysis.outcomes.sql import OUTCOME_TABLES
from archive.errors import ArchiveError
from archive.forward.sql import FORWARD_TABLES
from archive.index import schema
from archive.index.engine import write_transaction
from archive.index.items import ITEM_TABLES, sequence_item_pending
from archive.review.sql import ANNOTATION_TABLES
from archive.web.tokens.sql import TOKEN_TABLES
from archive.worklist.dataset import write_entry_items
from archive.worklist.sql import WORKLIST_TABLES, worklist_entry, worklist_item_value
from archive.worklist.store import entry_of

logger = logging.getLogger(__name__)

_ADVISORY_LOCK_KEY = 0x75_5341_7263  # "uSArc"

Migration = tuple[int, str, Callable[[Connection], None]]


_V1_TABLES = (
    schema.patient,
    schema.study,
    schema.series,
    schema.instance,
    schema.instance_level,
    schema.instance_procedure,
    schema.tag_history,
    schema.instance_history,
)


def _create_v1_tables(connection: Connection) -> None:
    for table in _V1_TABLES:
        table.create(connection)


def _create_v2_annotation_tables(connection: Connection) -> None:
    for table in ANNOTATION_TABLES:
        table.create(connection)


def _create_v3_outcome_tables(connection: Connection) -> None:
    for table in OUTCOME_TABLES:
        table.create(connection)


def _add_v4_level_technique(connection: Connection) -> None:
    # Versions 1-3 create their tables from the current definitions in
    # archive.index.schema, so an index made by this release has the column and
    # index already; one made before version 4 gets them here, filled from
    # instance_procedure. Either way the result is the same.
    columns = {column["name"] for column in inspect(connection).get_columns("instance_level")}
    if "technique" not in columns:
        connection.execute(text("ALTER TABLE instance_level ADD COLUMN technique VARCHAR(16)"))
    connection.execute(
        update(schema.instance_level).values(
            technique=select(schema.instance_procedure.c.technique)
            .where(schema.instance_procedure.c.instance_pk == schema.instance_level.c.instance_pk)
            .scalar_subquery()
        )
    )
    index = next(ix for ix in schema.instance_level.indexes if ix.name == "ix_instance_level_technique")
    index.create(connection, checkfirst=True)


def _add_v5_instance_patient(connection: Connection) -> None:
    # The instance's own Patient ID and Name. Rows indexed before version 5 get
    # those of the patient row their study was filed under (what was shown for
    # them until now); their files are not read again.
    columns = {column["name"] for column in inspect(connection).get_columns("instance")}
    for name, length in (("patient_id", 64), ("patient_name", 324)):
        if name not in columns:
            connection.execute(text(f"ALTER TABLE instance ADD COLUMN {name} VARCHAR({length})"))
    i, se, st, p = schema.instance, schema.series, schema.study, schema.patient

    def of_patient(column: Any) -> Any:
        return (
            select(column)
            .select_from(se.join(st, st.c.id == se.c.study_pk).join(p, p.c.id == st.c.patient_pk))
            .where(se.c.id == i.c.series_pk)
            .scalar_subquery()
        )

    connection.execute(
        update(i)
        .where(i.c.patient_id.is_(None))
        .values(patient_id=of_patient(p.c.patient_id), patient_name=of_patient(p.c.name))
    )


#: Technique values of versions 1-5 that are needle approaches, moved by version 6.
_APPROACH_VALUES = ("in-plane", "out-of-plane")
#: ``changed_by`` of the history rows version 6 writes.
_V6_CHANGED_BY = "migration:6"


def _add_missing_columns(connection: Connection, table: str, columns: dict[str, str]) -> None:
    present = {column["name"] for column in inspect(connection).get_columns(table)}
    for name, sql_type in columns.items():
        if name not in present:
            connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))


def _split_v6_approach(connection: Connection) -> None:
    # Reads and writes only tables of versions 1-4 (and the columns it adds), so
    # it applies whether or not another version 5 ran before it.
    _add_missing_columns(
        connection,
        "instance_procedure",
        {"approach": "VARCHAR(16)", "approach_source": "VARCHAR(80)", "approach_detail": "TEXT"},
    )
    _add_missing_columns(connection, "tag_history", {"note": "TEXT"})
    index = next(ix for ix in schema.instance_procedure.indexes if ix.name == "ix_procedure_approach")
    index.create(connection, checkfirst=True)
    table = schema.instance_procedure
    moved = connection.execute(
        select(table.c.instance_pk, table.c.technique, table.c.technique_source, table.c.technique_detail)
        .where(table.c.technique.in_(_APPROACH_VALUES))
        .order_by(table.c.instance_pk)
    ).all()
    now = datetime.now(UTC)
    note = "schema version 6: in-plane/out-of-plane is the needle approach, not the technique"
    for pk, value, source, detail in moved:
        connection.execute(
            update(table)
            .where(table.c.instance_pk == pk)
            .values(
                approach=value,
                approach_source=source,
                approach_detail=detail,
                technique="unknown",
                technique_source=source if source == "rule" else None,
                technique_detail=note,
                updated_at=now,
            )
        )
        for attribute, old, new in (("technique", value, "unknown"), ("approach", None, value)):
            connection.execute(
                insert(schema.tag_history).values(
                    instance_pk=pk,
                    attribute=attribute,
                    old_value=old,
                    new_value=new,
                    changed_by=_V6_CHANGED_BY,
                    changed_at=now,
                    note=note,
                )
            )
    connection.execute(update(table).where(table.c.approach.is_(None)).values(approach="unknown"))
    level = schema.instance_level
    connection.execute(
        update(level)
        .where(level.c.technique.in_(_APPROACH_VALUES))
        .values(
            technique=select(table.c.technique)
            .where(table.c.instance_pk == level.c.instance_pk)
            .scalar_subquery()
        )
    )


def _create_v7_forward_tables(connection: Connection) -> None:
    for table in FORWARD_TABLES:
        table.create(connection, checkfirst=True)


def _create_v10_worklist_tables(connection: Connection) -> None:
    for table in WORKLIST_TABLES:
        table.create(connection, checkfirst=True)


def _create_v11_web_tokens(connection: Connection) -> None:
    for table in TOKEN_TABLES:
        table.create(connection, checkfirst=True)


def _create_v12_sequence_items(connection: Connection) -> None:
    for table in (*ITEM_TABLES, worklist_item_value):
        table.create(connection, checkfirst=True)
    for row in connection.execute(select(worklist_entry)).all():  # the worklist's codes, from its columns
        write_entry_items(connection, int(row.id), entry_of(row).procedure)
    # instances indexed before: their items are read once from the stored headers (items.backfill_items)
    connection.execute(
        insert(sequence_item_pending).from_select(["instance_pk"], select(schema.instance.c.id))
    )


MIGRATIONS: list[Migration] = [
    (1, "patient, study, series, instance, procedure attributes, histories", _create_v1_tables),
    (2, "annotation versions, review states and review comments", _create_v2_annotation_tables),
    (3, "procedure outcomes (VAS, ODI, adverse events) and their history", _create_v3_outcome_tables),
    (4, "technique copied onto instance_level for level + technique searches", _add_v4_level_technique),
    (5, "the instance's own Patient ID and Name, for patient conflicts", _add_v5_instance_patient),
    (6, "needle approach apart from technique; notes in the tag history", _split_v6_approach),
    (7, "forwarding tasks (the outbox of issue 16)", _create_v7_forward_tables),
    # 8 and 9: numbers not used (reserved while several changes were written at once; gaps are allowed,
    # each migration only creates its own tables).
    (10, "worklist entries, performed procedure steps (MPPS), their instances", _create_v10_worklist_tables),
    (
        11,
        "bearer tokens of usarchive web (hashed secrets, roles, expiry, revocation)",
        _create_v11_web_tokens,
    ),
    (
        12,
        "sequence items kept for C-FIND sequence matching (procedure codes, request attributes, ...)",
        _create_v12_sequence_items,
    ),
]

#: The version an index has after :func:`migrate`.
LATEST_VERSION = MIGRATIONS[-1][0]


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_KEY})")


def current_version(connection: Connection) -> int:
    """The schema version recorded in the index (0 for an empty database)."""
    schema.schema_version.create(connection, checkfirst=True)
    found = connection.execute(select(func.max(schema.schema_version.c.version))).scalar()
    return int(found or 0)


def migrate(engine: Engine) -> int:
    """Bring the index at ``engine`` to :data:`LATEST_VERSION`.

    Returns
    -------
    int
        The version after migrating.

    Raises
    ------
    ArchiveError
        If the index is newer than this program.
    """
    for version, description, apply in MIGRATIONS:
        with write_transaction(engine) as connection:
            _lock(connection)
            current = current_version(connection)
            if current > LATEST_VERSION:
                raise ArchiveError(
                    f"index schema: expected version {LATEST_VERSION} or older, but the index is at "
                    f"version {current}; it was written by a newer usarchive: upgrade usarchive"
                )
            if current >= version:
                continue
            logger.info("migrating index to version %d: %s", version, description)
            apply(connection)
            connection.execute(
                insert(schema.schema_version).values(
                    version=version, description=description, applied_at=datetime.now(UTC)
                )
            )
    return LATEST_VERSION
