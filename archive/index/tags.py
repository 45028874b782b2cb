"""Hand-set procedure attributes (``usarchive tag``), which always win over the rules.

A value set here gets the source ``user:<name>``; ingest's rules never
overwrite a field whose source is a user (see
:func:`archive.index.writes.apply_classification`). Every change is appended
to ``tag_history``: who, when, the attribute, old value → new value (levels as
a comma-separated list in anatomical order, empty string for none) and the
note given with it.

Clearing an attribute (``tag --clear technique``) puts back what the rules
derive from the stored header now, with the source ``rule``, so a later
re-ingest may change it again; the clear is recorded in the history like any
other change, by the user who cleared it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from archive.errors import ArchiveError
from archive.index import schema
from archive.index.describe import instance_pks_under
from archive.index.writes import RULE_SOURCE, sync_level_technique, write_levels
from archive.model import Approach, ProcedureType, Side, SpinalLevel, Technique, sort_levels

#: Attributes ``tag --clear`` returns to the rule-derived value (CLI name → column name).
CLEARABLE: dict[str, str] = {
    "level": "levels",
    "side": "side",
    "technique": "technique",
    "approach": "approach",
    "procedure": "procedure_type",
}
_SCALARS = ("side", "technique", "approach", "procedure_type")
#: The value a scalar attribute has when the rules find nothing.
_RULE_DEFAULTS = {"technique": Technique.UNKNOWN.value, "approach": Approach.UNKNOWN.value}


@dataclass(frozen=True)
class TagEdit:
    """The attributes to set; ``None`` leaves one unchanged (``levels=()`` sets no levels).

    ``clear`` names attributes (column names: ``levels``, ``side``,
    ``technique``, ``approach``, ``procedure_type``) to return to the
    rule-derived value; one attribute cannot be both set and cleared.
    """

    levels: tuple[SpinalLevel, ...] | None = None
    side: Side | None = None
    technique: Technique | None = None
    approach: Approach | None = None
    procedure_type: ProcedureType | None = None
    clear: frozenset[str] = frozenset()

    def is_empty(self) -> bool:
        """Whether nothing would be set or cleared."""
        values = (self.levels, self.side, self.technique, self.approach, self.procedure_type)
        return all(v is None for v in values) and not self.clear

    def check(self) -> None:
        """Raise :class:`ArchiveError` if the edit sets nothing or both sets and clears one attribute."""
        if self.is_empty():
            raise ArchiveError(
                "tag: expected at least one of --level, --side, --technique, --approach, --procedure "
                "or --clear; got none"
            )
        unknown = sorted(self.clear - set(CLEARABLE.values()))
        if unknown:
            raise ArchiveError(
                f"tag: cannot clear {', '.join(unknown)}; expected some of {', '.join(CLEARABLE)}"
            )
        both = sorted(name for name in self.clear if getattr(self, name) is not None)
        if both:
            raise ArchiveError(
                f"tag: {', '.join(both)} is both set and cleared; give either a value or --clear"
            )


@dataclass(frozen=True)
class TagChange:
    """One recorded change of one attribute of one instance."""

    sop_instance_uid: str
    attribute: str
    old_value: str | None
    new_value: str | None
    changed_by: str
    changed_at: datetime
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (time as ISO 8601)."""
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "attribute": self.attribute,
            "old_value": self.old_value,
            "new_value": self.new_value,
            "changed_by": self.changed_by,
            "changed_at": self.changed_at.isoformat(),
            "note": self.note,
        }


def _levels_text(levels: tuple[SpinalLevel, ...]) -> str:
    return ",".join(level.value for level in sort_levels(list(levels)))


def _derived_source(derived: Any, name: str) -> str:
    """Where a cleared field's value comes from: the rules, or the worklist entry (``worklist:<entry>``)."""
    sources: Mapping[str, str] = getattr(derived, "sources", None) or {}
    return str(sources.get(name, RULE_SOURCE))


def _rule_value(derived: Any, name: str) -> tuple[str | None, str | None]:
    """The value (and provenance) the rules give attribute ``name``; ``derived`` may be ``None``."""
    member = getattr(derived, name, None) if derived is not None else None
    value = str(member.value) if member is not None else _RULE_DEFAULTS.get(name)
    provenance: Mapping[str, str] = getattr(derived, "provenance", None) or {}
    return value, provenance.get(name)


def _current_levels(connection: Connection, pk: int) -> tuple[SpinalLevel, ...]:
    return tuple(
        SpinalLevel(level)
        for level in connection.execute(
            select(schema.instance_level.c.level).where(schema.instance_level.c.instance_pk == pk)
        ).scalars()
    )


def _tag_instance(
    connection: Connection,
    pk: int,
    edit: TagEdit,
    source: str,
    note: str | None,
    now: datetime,
    derived: Any = None,
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
    for name in _SCALARS:
        member = getattr(edit, name)
        new: str | None
        new_source: str | None
        detail: str | None
        if member is not None:
            new, new_source, detail = member.value, source, note
        elif name in edit.clear:
            new, detail = _rule_value(derived, name)
            new_source = _derived_source(derived, name) if new is not None else None
        else:
            continue
        old = getattr(row, name)
        if old != new or getattr(row, f"{name}_source") != new_source:
            values.update({name: new, f"{name}_source": new_source, f"{name}_detail": detail})
            changes.append((name, old, new))
    if "levels" in edit.clear:
        derived_levels = tuple(getattr(derived, "levels", ()) or ())
        current_levels = _current_levels(connection, pk)
        provenance: Mapping[str, str] = getattr(derived, "provenance", None) or {}
        levels_source = _derived_source(derived, "levels") if derived_levels else None
        old_text, new_text = _levels_text(current_levels), _levels_text(derived_levels)
        if old_text != new_text or row.levels_source != levels_source:
            write_levels(
                connection, pk, derived_levels, levels_source or RULE_SOURCE, provenance.get("levels"), now
            )
            values["levels_source"] = levels_source
            changes.append(("levels", old_text, new_text))
    if edit.levels is not None:
        current = _current_levels(connection, pk)
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
    connection: Connection,
    uid: str,
    edit: TagEdit,
    *,
    user: str,
    note: str | None,
    now: datetime,
    derived: Mapping[int, Any] | None = None,
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
        Stored as the detail of the new values and with each change in the history.
    now : datetime
        UTC.
    derived : mapping of int to Classification, optional
        What the rules derive now for each instance id (needed when
        ``edit.clear`` names attributes; an instance missing here, or mapped
        to ``None``, clears to "nothing found").

    Returns
    -------
    list of TagChange

    Raises
    ------
    ArchiveError
        If nothing in the index has ``uid``, or ``edit`` sets and clears nothing.
    """
    edit.check()
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
        found = (derived or {}).get(pk)
        for attribute, old, new in _tag_instance(connection, pk, edit, source, note, now, found):
            recorded_note = note
            if attribute in edit.clear:
                cleared = "cleared: back to the rule-derived value"
                recorded_note = f"{cleared}; {note}" if note else cleared
            connection.execute(
                schema.tag_history.insert().values(
                    instance_pk=pk,
                    attribute=attribute,
                    old_value=old,
                    new_value=new,
                    changed_by=source,
                    changed_at=now,
                    note=recorded_note,
                )
            )
            recorded.append(TagChange(uids[pk], attribute, old, new, source, now, recorded_note))
    return recorded
