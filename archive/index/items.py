"""Sequence items the index keeps for query matching (PS3.4 C.2.2.2.6), created by migration 12.

:data:`SEQUENCES` names the sequences and, inside each item, the attributes
kept (all text VRs: SH, LO, UI; one nested code sequence at most). Each kept
value is one row of ``sequence_item_value``: the instance, the sequence's
tag and item number, the nested sequence's tag and item number (``0, 0``
for an attribute of the item itself), the attribute's tag and its value.
One item is the rows sharing ``(instance_pk, sequence, item)``, so "an item
matches every key" is a condition on rows of one item
(:mod:`archive.query.sequences`).

Written at ingest, in the transaction that indexes the instance
(:func:`write_items`; a replaced instance's rows are rewritten). Instances
indexed before migration 12 are listed in ``sequence_item_pending`` by the
migration and read once, header only, when an archive is next opened
(:func:`backfill_items`: one header read per instance; until then they match
no sequence key).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    delete,
    insert,
    select,
)

from archive.index import schema
from archive.index.engine import autocommit_reads, write_transaction

logger = logging.getLogger(__name__)

_VALUE_WIDTH = 324
_BACKFILL_BATCH = 500


@dataclass(frozen=True)
class ItemSequence:
    """A sequence whose items the index keeps.

    Attributes
    ----------
    keyword : str
    tag : int
    level : str
        The query level it belongs to (``"STUDY"``, ``"SERIES"``).
    attributes : dict of int to (str, str)
        Tag → (keyword, VR) of the attributes kept in each item.
    nested : dict of int to ItemSequence
        A sequence inside the item, with its own attributes (no deeper nesting).
    """

    keyword: str
    tag: int
    level: str
    attributes: dict[int, tuple[str, str]]
    nested: dict[int, ItemSequence] = field(default_factory=dict)


_CODE = {
    0x00080100: ("CodeValue", "SH"),
    0x00080102: ("CodingSchemeDesignator", "SH"),
    0x00080103: ("CodingSchemeVersion", "SH"),
    0x00080104: ("CodeMeaning", "LO"),
}
_SCHEDULED_PROTOCOL = ItemSequence("ScheduledProtocolCodeSequence", 0x00400008, "SERIES", _CODE)


def code_sequence(keyword: str, tag: int, level: str = "") -> ItemSequence:
    """A code sequence (Code Value, Coding Scheme Designator and Version, Code Meaning) kept by a table."""
    return ItemSequence(keyword, tag, level, _CODE)


#: The sequences kept, by tag.
SEQUENCES: dict[int, ItemSequence] = {
    s.tag: s
    for s in (
        ItemSequence("ProcedureCodeSequence", 0x00081032, "STUDY", _CODE),
        ItemSequence(
            "ReferencedStudySequence",
            0x00081110,
            "STUDY",
            {0x00081150: ("ReferencedSOPClassUID", "UI"), 0x00081155: ("ReferencedSOPInstanceUID", "UI")},
        ),
        ItemSequence(
            "RequestAttributesSequence",
            0x00400275,
            "SERIES",
            {
                0x00401001: ("RequestedProcedureID", "SH"),
                0x00321060: ("RequestedProcedureDescription", "LO"),
                0x00400009: ("ScheduledProcedureStepID", "SH"),
                0x00400007: ("ScheduledProcedureStepDescription", "LO"),
                0x00080050: ("AccessionNumber", "SH"),
                0x0020000D: ("StudyInstanceUID", "UI"),
            },
            {_SCHEDULED_PROTOCOL.tag: _SCHEDULED_PROTOCOL},
        ),
    )
}


def _item_value_table(name: str, owner: str, owner_fk: str) -> Table:
    return Table(
        name,
        schema.metadata,
        Column("id", Integer, primary_key=True),
        Column(owner, Integer, ForeignKey(owner_fk, ondelete="CASCADE"), nullable=False),
        Column("sequence", Integer, nullable=False),
        Column("item", Integer, nullable=False),
        Column("nested", Integer, nullable=False),
        Column("nested_item", Integer, nullable=False),
        Column("tag", Integer, nullable=False),
        Column("value", String(_VALUE_WIDTH), nullable=False),
        Index(f"ix_{name}_match", "sequence", "tag", "value"),
        Index(f"ix_{name}_owner", owner, "sequence", "item"),
    )


#: The kept values of instances' sequence items.
sequence_item_value = _item_value_table("sequence_item_value", "instance_pk", "instance.id")
#: Instances indexed before migration 12 whose items are not read yet.
sequence_item_pending = Table(
    "sequence_item_pending",
    schema.metadata,
    Column("instance_pk", Integer, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True),
)
#: Created by migration 12, in this order.
ITEM_TABLES = (sequence_item_value, sequence_item_pending)


def make_item_value_table(name: str, owner: str, owner_fk: str) -> Table:
    """A table of the same shape for another owner (the worklist's entries: ``worklist_item_value``)."""
    return _item_value_table(name, owner, owner_fk)


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).strip()[:_VALUE_WIDTH]


def _values(item: Dataset, attributes: dict[int, tuple[str, str]]) -> Iterator[tuple[int, str]]:
    for tag in attributes:
        try:
            element = item.get(tag)
            text = "" if element is None or element.value is None else _text(element.value)
        except Exception:  # a malformed value must never lose an instance
            continue
        if text:
            yield tag, text


def item_values(
    dataset: Dataset, sequences: Mapping[int, ItemSequence] = SEQUENCES
) -> list[dict[str, int | str]]:
    """The rows of every kept value of ``dataset``'s ``sequences`` (without the owner column)."""
    rows: list[dict[str, int | str]] = []
    for sequence in sequences.values():
        try:
            element = dataset.get(sequence.tag)
            items: list[Dataset] = [] if element is None else list(element.value or [])
        except Exception:
            continue
        for number, item in enumerate(items, start=1):
            base = {"sequence": sequence.tag, "item": number, "nested": 0, "nested_item": 0}
            rows += [{**base, "tag": tag, "value": text} for tag, text in _values(item, sequence.attributes)]
            for nested in sequence.nested.values():
                inner = item.get(nested.tag)
                for inner_number, inner_item in enumerate(list(inner.value or []) if inner else [], start=1):
                    where = {**base, "nested": nested.tag, "nested_item": inner_number}
                    rows += [
                        {**where, "tag": tag, "value": text}
                        for tag, text in _values(inner_item, nested.attributes)
                    ]
    return rows


def write_items(connection: Connection, instance_pk: int, dataset: Dataset, *, replace: bool = False) -> None:
    """Keep the sequence values of ``dataset`` for instance ``instance_pk`` (``replace``: drop old ones)."""
    table = sequence_item_value
    if replace:
        connection.execute(delete(table).where(table.c.instance_pk == instance_pk))
    rows = item_values(dataset)
    if rows:
        connection.execute(insert(sequence_item_value), [{**row, "instance_pk": instance_pk} for row in rows])


def backfill_items(engine: Engine, resolve_path: Callable[[str], Path]) -> int:
    """Read the sequence items of the instances migration 12 listed as pending; how many were read.

    One header read per instance (``specific_tags`` of :data:`SEQUENCES`), in
    batches, each batch in its own transaction. An unreadable file is logged
    and leaves no rows (its instance matches no sequence key).
    """
    done = 0
    tags = [0x00080005, *SEQUENCES]
    while True:
        with autocommit_reads(engine) as connection:
            pending = connection.execute(
                select(sequence_item_pending.c.instance_pk, schema.instance.c.path)
                .join(schema.instance, schema.instance.c.id == sequence_item_pending.c.instance_pk)
                .order_by(sequence_item_pending.c.instance_pk)
                .limit(_BACKFILL_BATCH)
            ).all()
        if not pending:
            if done:
                logger.info("sequence items: read from %d stored headers", done)
            return done
        headers: dict[int, Dataset] = {}
        for pk, path in pending:
            try:
                headers[int(pk)] = pydicom.dcmread(
                    resolve_path(str(path)), stop_before_pixels=True, specific_tags=tags
                )
            except (OSError, pydicom.errors.InvalidDicomError) as exc:
                logger.warning("sequence items: %s not readable (%s); it matches no sequence key", path, exc)
        with write_transaction(engine) as connection:
            for pk, dataset in headers.items():
                write_items(connection, pk, dataset, replace=True)
            ids = [int(pk) for pk, _ in pending]
            connection.execute(
                delete(sequence_item_pending).where(sequence_item_pending.c.instance_pk.in_(ids))
            )
        done += len(pending)
