"""Hand-set procedure attributes (``usarchive tag``), which always win over the rules.

A value set here gets the source ``user:<name>``; ingest's rules never
overwrite a field whose source is a user (see
:func:`archive.index.writes.apply_classification`). Every change is appended
to ``tag_history``: who, when, the attribute, old value → new value (levels as
a comma-separated list in anatomical order, empty string for none).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from archive.errors import ArchiveError
from archive.index import schema
from archive.index.queries import instance_pks_under
from archive.index.writes import sync_level_technique, write_levels
from archive.model import ProcedureType, Side, SpinalLevel, Technique, sort_levels


@dataclass(frozen=True)
class TagEdit:
    """The attributes to set; ``None`` leaves one unchanged (``levels=()`` clears levels)."""

    levels: tuple[SpinalLevel, ...] | None = None
    side: Side | None = None
    technique: Technique | None = None
    procedure_type: ProcedureType | None = None

    def is_empty(self) -> bool:
        """Whether nothing would be set."""
        return all(v is None for v in (self.levels, self.side, self.technique, self.procedure_type))


@dataclass(frozen=True)
class TagChange:
    """One recorded change of one attribute of one instance."""

    sop_instance_uid: str
    attribute: str
    old_value: str | None
    new_value: str | None
    changed_by: str
    changed_at: datetime

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (time as ISO 8601)."""
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "attribute": self.attribute,
            "old_value": self.old_value,
            "new_value": self.new_value,
            "changed_by": self.changed_by,
            "changed_at": self.changed_at.isoformat(),
        }


def _levels_text(levels: tuple[SpinalLevel, ...]) -> str:
    return ",".join(level.value for level in sort_levels(list(levels)))


def _tag_instance(
    connection: Connection, pk: int, edit: TagEdit, source: str, note: str | None, now: datetime
) -> list[tuple[str, str | None, str | None]]:
    table = schema.instance_procedure
    row = connection.execute(select(table).where(table.c.instance_pk == pk)).first()
    if row is None:
        connection.execute(
            table.insert().values(instance_pk=pk, technique=Technique.UNKNOWN.value, updated_at=now)
        )
        row = connection.execute(select(table).where(table.c.instance_pk == pk)).one()
    changes: list[tuple[str, str | None, str | None]] = []
    values: dict[str, Any] = {}
    for name, member in (
        ("side", edit.side),
        ("technique", edit.technique),
        ("procedure_type", edit.procedure_type),
    ):
        if member is None:
            continue
        old = getattr(row, name)
        if old != member.value or getattr(row, f"{name}_source") != source:
            values.update({name: member.value, f"{name}_source": source, f"{name}_detail": note})
            changes.append((name, old, member.value))
    if edit.levels is not None:
        current = tuple(
            SpinalLevel(level)
            for level in connection.execute(
                select(schema.instance_level.c.level).where(schema.instance_level.c.instance_pk == pk)
            ).scalars()
        )
        old_text, new_text = _levels_text(current), _levels_text(edit.levels)
        if old_text != new_text or row.levels_source != source:
            write_levels(connection, pk, edit.levels, source, note, now)
            values["levels_source"] = source
            changes.append(("levels", old_text, new_text))
    if values:
        connection.execute(update(table).where(table.c.instance_pk == pk).values(updated_at=now, **values))
        if "technique" in values:
            sync_level_technique(connection, pk)
    return changes


def tag_uid(
    connection: Connection, uid: str, edit: TagEdit, *, user: str, note: str | None, now: datetime
) -> list[TagChange]:
    """Set attributes on every instance of a study, series or instance UID, recording history.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        Inside a write transaction.
    uid : str
        Study, series or SOP Instance UID.
    edit : TagEdit
        What to set.
    user : str
        Recorded as ``user:<user>``.
    note : str, optional
        Stored as the detail of the new values.
    now : datetime
        UTC.

    Returns
    -------
    list of TagChange

    Raises
    ------
    ArchiveError
        If nothing in the index has ``uid``, or ``edit`` sets nothing.
    """
    if edit.is_empty():
        raise ArchiveError(
            "tag: expected at least one of --level, --side, --technique, --procedure; got none"
        )
    pks = instance_pks_under(connection, uid)
    if not pks:
        raise ArchiveError(
            f"tag: expected a study, series or SOP instance UID in the index, but {uid!r} is none of "
            "them; list UIDs with 'usarchive find'"
        )
    source = f"user:{user}"
    table = schema.instance
    statement = select(table.c.id, table.c.sop_instance_uid).where(table.c.id.in_(pks))
    uids: dict[int, str] = {int(pk): str(sop) for pk, sop in connection.execute(statement)}
    recorded: list[TagChange] = []
    for pk in pks:
        for attribute, old, new in _tag_instance(connection, pk, edit, source, note, now):
            connection.execute(
                schema.tag_history.insert().values(
                    instance_pk=pk,
                    attribute=attribute,
                    old_value=old,
                    new_value=new,
                    changed_by=source,
                    changed_at=now,
                )
            )
            recorded.append(TagChange(uids[pk], attribute, old, new, source, now))
    return recorded
