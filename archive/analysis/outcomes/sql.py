"""Index tables and writes for procedures' clinical outcomes (created by migration 3).

Tables
------
``procedure_outcome``
    One row per procedure, keyed by ``(study_instance_uid, side)``: VAS (0–10)
    and ODI (%) before, 1 hour and 2 weeks after (``NULL`` = not recorded),
    the adverse event (text), where the values came from (``source``:
    ``"import:<file>"`` or ``"user:<name>"``) and when they were last changed.
``outcome_history``
    Every change of an outcome: who/what (``source``), when, the values before
    (JSON, ``NULL`` for a new outcome) and after.

The CSV import (:meth:`archive.analysis.outcomes.store.OutcomeStore.import_csv`) reads
the file outside this module, matches each row to a study of the index and a
side it has a clip of (:mod:`archive.analysis.outcomes.match`), reports every bad
row by line in one pass, and writes through :func:`write_outcomes` in one
transaction, all or nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    update,
)

from archive.analysis.outcomes.model import SCORE_RANGES, Outcome
from archive.errors import ArchiveError
from archive.index import schema
from archive.index.engine import write_transaction
from archive.model import Side

logger = logging.getLogger(__name__)

_UID = 64

procedure_outcome = Table(
    "procedure_outcome",
    schema.metadata,
    Column("id", Integer, primary_key=True),
    Column("study_instance_uid", String(_UID), nullable=False),
    Column("side", String(16), nullable=False),
    *(Column(name, Float) for name in SCORE_RANGES),
    Column("adverse_event", Text),
    Column("source", String(300), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("study_instance_uid", "side", name="uq_procedure_outcome_study_side"),
)

outcome_history = Table(
    "outcome_history",
    schema.metadata,
    Column("id", Integer, primary_key=True),
    Column("study_instance_uid", String(_UID), nullable=False),
    Column("side", String(16), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("source", String(300), nullable=False),
    Column("old_values", Text),
    Column("new_values", Text, nullable=False),
    Index("ix_outcome_history_study", "study_instance_uid", "side", "id"),
)

#: The tables migration 3 creates.
OUTCOME_TABLES: tuple[Table, ...] = (procedure_outcome, outcome_history)

_VALUE_FIELDS = (*SCORE_RANGES, "adverse_event")


@dataclass(frozen=True)
class StoredOutcome:
    """An outcome as stored: the values, where they came from and when they were last changed."""

    outcome: Outcome
    source: str
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data (``updated_at`` as ISO 8601)."""
        return {
            **outcome_values(self.outcome),
            "source": self.source,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class OutcomeChange:
    """One change written: ``old`` is ``None`` for a new outcome."""

    study_uid: str
    side: Side
    changed_at: datetime
    source: str
    old: dict[str, Any] | None
    new: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "study_uid": self.study_uid,
            "side": self.side.value,
            "changed_at": self.changed_at.isoformat(),
            "source": self.source,
            "old": self.old,
            "new": self.new,
        }


def outcome_values(outcome: Outcome) -> dict[str, Any]:
    """``outcome`` as a JSON-ready dict: study_uid, side, the six scores and adverse_event."""
    values: dict[str, Any] = {"study_uid": outcome.study_uid, "side": outcome.side.value}
    values.update({name: getattr(outcome, name) for name in _VALUE_FIELDS})
    return values


def _outcome(row: Any) -> Outcome:
    return Outcome(
        study_uid=row.study_instance_uid,
        side=Side(row.side),
        **{name: getattr(row, name) for name in _VALUE_FIELDS},
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def known_studies(connection: Connection, study_uids: Iterable[str]) -> set[str]:
    """Those of ``study_uids`` that the index has a study for."""
    wanted = sorted(set(study_uids))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = connection.execute(
            select(schema.study.c.study_instance_uid).where(schema.study.c.study_instance_uid.in_(chunk))
        )
        found.update(r.study_instance_uid for r in rows)
    return found


def write_outcomes(
    connection: Connection, outcomes: Iterable[Outcome], *, source: str, now: datetime
) -> list[OutcomeChange]:
    """Insert or replace outcomes, recording each change in ``outcome_history``.

    Run inside a write transaction. An outcome equal to the stored one is not
    written and not recorded.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        In a write transaction.
    outcomes : iterable of Outcome
        At most one per (study, side).
    source : str
        Where the values come from, e.g. ``"import:outcomes.csv"`` or ``"user:alice"``.
    now : datetime
        Time stamp of the changes (UTC).

    Returns
    -------
    list of OutcomeChange
        The changes written, in input order.
    """
    table = procedure_outcome
    changes: list[OutcomeChange] = []
    for outcome in outcomes:
        key = (table.c.study_instance_uid == outcome.study_uid) & (table.c.side == outcome.side.value)
        row = connection.execute(select(table).where(key)).first()
        new = outcome_values(outcome)
        columns = {name: getattr(outcome, name) for name in _VALUE_FIELDS}
        old: dict[str, Any] | None = None
        if row is None:
            connection.execute(
                insert(table).values(
                    study_instance_uid=outcome.study_uid,
                    side=outcome.side.value,
                    source=source,
                    updated_at=now,
                    **columns,
                )
            )
        else:
            old = outcome_values(_outcome(row))
            if old == new:
                continue
            connection.execute(update(table).where(key).values(source=source, updated_at=now, **columns))
        connection.execute(
            insert(outcome_history).values(
                study_instance_uid=outcome.study_uid,
                side=outcome.side.value,
                changed_at=now,
                source=source,
                old_values=None if old is None else json.dumps(old, sort_keys=True),
                new_values=json.dumps(new, sort_keys=True),
            )
        )
        changes.append(OutcomeChange(outcome.study_uid, outcome.side, now, source, old, new))
    return changes


def load_outcomes(connection: Connection, study_uid: str | None = None) -> list[StoredOutcome]:
    """Stored outcomes (of one study, or all), ordered by study UID and side."""
    table = procedure_outcome
    query = select(table).order_by(table.c.study_instance_uid, table.c.side)
    if study_uid is not None:
        query = query.where(table.c.study_instance_uid == study_uid)
    return [StoredOutcome(_outcome(r), r.source, _aware(r.updated_at)) for r in connection.execute(query)]


def load_history(connection: Connection, study_uid: str) -> list[OutcomeChange]:
    """Every recorded change of the outcomes of ``study_uid``, oldest first."""
    table = outcome_history
    rows = connection.execute(
        select(table).where(table.c.study_instance_uid == study_uid).order_by(table.c.id)
    )
    return [
        OutcomeChange(
            r.study_instance_uid,
            Side(r.side),
            _aware(r.changed_at),
            r.source,
            None if r.old_values is None else json.loads(r.old_values),
            json.loads(r.new_values),
        )
        for r in rows
    ]


def set_outcome(
    engine: Engine, study_uid: str, side: Side, values: dict[str, Any], *, source: str
) -> tuple[Outcome, OutcomeChange | None]:
    """Set some values of one procedure's outcome; values not given keep what is stored.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The index.
    study_uid : str
        A study in the index.
    side : Side
        Side of the procedure.
    values : dict
        Field name (``vas_pre`` … ``odi_2w``, ``adverse_event``) to value;
        ``None`` clears a field.
    source : str
        Recorded as the values' source, e.g. ``"user:alice"``.

    Returns
    -------
    outcome : Outcome
        The outcome now stored.
    change : OutcomeChange or None
        The change written, ``None`` when nothing changed.

    Raises
    ------
    ArchiveError
        If the study is not in the index.
    ValueError
        If a field name is unknown or a value out of range.
    """
    unknown_fields = sorted(set(values) - set(_VALUE_FIELDS))
    if unknown_fields:
        raise ValueError(
            f"outcome fields: expected some of {', '.join(_VALUE_FIELDS)}, "
            f"but got {', '.join(unknown_fields)}"
        )
    with write_transaction(engine) as connection:
        if not known_studies(connection, [study_uid]):
            raise ArchiveError(
                f"outcome: expected a study in the archive, but there is no study {study_uid}; "
                "import its clips first or correct the UID"
            )
        from archive.analysis.outcomes.match import clip_sides

        sides = clip_sides(connection, study_uid)
        if side.value not in sides:
            raise ArchiveError(
                f"outcome: expected a side study {study_uid} has a clip of "
                f"({', '.join(sorted(sides)) or 'no side recorded'}), but got {side.value}; correct "
                "--side, or tag the clips' side (usarchive tag --side)"
            )
        stored = load_outcomes(connection, study_uid)
        current = next((s.outcome for s in stored if s.outcome.side is side), Outcome(study_uid, side))
        merged = {f.name: getattr(current, f.name) for f in fields(Outcome)}
        merged.update(values)
        outcome = Outcome(**merged)
        changes = write_outcomes(connection, [outcome], source=source, now=datetime.now(UTC))
    return outcome, (changes[0] if changes else None)


def outcomes_for(engine: Engine, study_uids: Iterable[str] | None = None) -> list[Outcome]:
    """Stored outcomes of ``study_uids`` (all when ``None``)."""
    with engine.connect() as connection:
        stored = load_outcomes(connection)
    if study_uids is None:
        return [s.outcome for s in stored]
    wanted = set(study_uids)
    return [s.outcome for s in stored if s.outcome.study_uid in wanted]
