"""Sequence matching (PS3.4 C.2.2.2.6) on kept sequence items, for C-FIND, the worklist and QIDO-RS.

A sequence key has one item. An entity matches when *one of its items*
matches every key of that item with a value (each key matched as any other:
:func:`archive.query.matching.condition`, so single value, wildcard, list);
a key without value only asks for the attribute to be returned. A sequence
inside the item (the Scheduled Protocol Code Sequence of a Request
Attributes item) is matched the same way against the nested items of that
one item. The responses carry the matching items (all items when the key
had no value), each with the requested attributes only, and inside each the
nested items that match the nested key (all of them when it had no value).

The items are rows of an item-value table of the shape of
:data:`archive.index.items.sequence_item_value` (one row per kept value:
owner, sequence, item, nested sequence and item, tag, value): the instances'
(Q/R, QIDO) and the worklist entries' (``worklist_item_value``). Which
sequences and attributes a table keeps is a map of
:class:`~archive.index.items.ItemSequence`; a value on any other attribute
of the item is refused (0xC000) naming it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from sqlalchemy import ColumnElement, Table, exists, literal, select

from archive.index.items import ItemSequence
from archive.query.errors import QueryError, QueryFailure
from archive.query.matching import condition, values_of

_NAMES = itertools.count()


@dataclass(frozen=True)
class ItemKey:
    """One attribute of the query's item: tag, keyword, VR, value (``""``: return only), kept by the index."""

    tag: int
    keyword: str
    vr: str
    value: str
    kept: bool

    @property
    def matched(self) -> bool:
        """Whether the value takes part in matching."""
        return self.kept and values_of(self.value) is not None


@dataclass(frozen=True)
class SequenceQuery:
    """A sequence key of an identifier: its kept definition, its item's keys, the nested sequences asked.

    Attributes
    ----------
    sequence : ItemSequence
    keys : tuple of ItemKey
        The item's attributes in the identifier's order.
    nested : tuple of SequenceQuery
        Sequences inside the item (their ``nested`` is empty).
    every_attribute : bool
        The key had no item: every kept attribute is requested (PS3.4 C.2.2.2.6), and
        returned when the item has a value.
    """

    sequence: ItemSequence
    keys: tuple[ItemKey, ...]
    nested: tuple[SequenceQuery, ...] = ()
    every_attribute: bool = False

    @property
    def matched(self) -> bool:
        """Whether any key of the item (or of a nested item) has a value to match."""
        return any(key.matched for key in self.keys) or any(n.matched for n in self.nested)


def _refused(path: str, why: str) -> QueryError:
    return QueryError(
        QueryFailure.UNSUPPORTED_KEY,
        f"{path}: {why}; leave its value empty to have it returned, or match on a kept attribute "
        "(see docs/conformance.md, Sequence matching)",
    )


def parse_sequence(
    element: DataElement,
    sequences: Mapping[int, ItemSequence],
    text_of: Any,
) -> SequenceQuery | None:
    """Read a sequence element of an identifier; ``None`` when ``sequences`` does not keep it.

    Parameters
    ----------
    element : DataElement
        The SQ element.
    sequences : mapping of int to ItemSequence
        The kept sequences (by tag) of the table that answers.
    text_of : callable
        ``DataElement → str``, the value as text (decoded with the identifier's character set).

    Raises
    ------
    QueryError
        ``UNSUPPORTED_KEY`` for more than one item, or a value on an attribute the index does not keep.
    """
    sequence = sequences.get(int(element.tag))
    if sequence is None:
        return None
    return _parse(sequence, list(element.value or []), sequence.keyword, text_of)


def _parse(sequence: ItemSequence, items: list[Dataset], path: str, text_of: Any) -> SequenceQuery:
    if len(items) > 1:
        raise _refused(path, f"expected one item in a sequence key (PS3.4 C.2.2.2.6), but got {len(items)}")
    if not items:  # no item: every attribute of the sequence is requested
        every = tuple(ItemKey(tag, kw, vr, "", True) for tag, (kw, vr) in sequence.attributes.items())
        every_nested = tuple(
            _parse(n, [], f"{path} > {n.keyword}", text_of) for n in sequence.nested.values()
        )
        return SequenceQuery(sequence, every, every_nested, every_attribute=True)
    keys: list[ItemKey] = []
    nested: list[SequenceQuery] = []
    for element in items[0]:
        tag = int(element.tag)
        name = f"{path} > {element.keyword or element.tag}"
        if element.VR == "SQ":
            inner = sequence.nested.get(tag)
            if inner is None:
                if any(len(item) for item in element.value or []):
                    raise _refused(name, "sequence matching inside this item is not supported")
                keys.append(ItemKey(tag, element.keyword, "SQ", "", False))
            else:
                nested.append(_parse(inner, list(element.value or []), name, text_of))
            continue
        value = text_of(element)
        kept = sequence.attributes.get(tag)
        if kept is None and values_of(value) is not None:
            raise _refused(name, "the index does not keep this attribute of the item, so cannot match on it")
        keyword, vr = kept or (element.keyword, element.VR)
        keys.append(ItemKey(tag, keyword, vr, value, kept is not None))
    return SequenceQuery(sequence, tuple(keys), tuple(nested))


def _same_item(row: Any, item: Any, *, nested: bool) -> list[ColumnElement[bool]]:
    owner = item.c.keys()[1]  # the owner column: second of the table's shape
    parts = [row.c[owner] == item.c[owner], row.c.sequence == item.c.sequence, row.c.item == item.c.item]
    if nested:
        parts += [row.c.nested == item.c.nested, row.c.nested_item == item.c.nested_item]
    else:
        parts.append(row.c.nested == 0)
    return parts


def _key_conditions(
    table: Table, item: Any, keys: Sequence[ItemKey], dialect: str, *, nested: bool
) -> list[ColumnElement[bool]]:
    parts: list[ColumnElement[bool]] = []
    for key in keys:
        if not key.matched:
            continue
        row = table.alias(f"sq_v{next(_NAMES)}")
        found = condition(row.c.value, key.vr, key.value, keyword=key.keyword, dialect=dialect)
        if found is not None:
            parts.append(
                exists(
                    select(literal(1)).where(
                        *_same_item(row, item, nested=nested), row.c.tag == key.tag, found
                    )
                )
            )
    return parts


def item_conditions(table: Table, item: Any, query: SequenceQuery, dialect: str) -> list[ColumnElement[bool]]:
    """Conditions that ``item`` (an alias of ``table`` for any row of one item) matches ``query``.

    Parameters
    ----------
    table : Table
        The item-value table.
    item : alias of table
        Any row of the item in question (``sequence`` = the query's, ``nested`` = 0).
    query : SequenceQuery
        The sequence key of the identifier.
    dialect : str
        ``connection.dialect.name``.
    """
    parts = [
        item.c.sequence == query.sequence.tag,
        *_key_conditions(table, item, query.keys, dialect, nested=False),
    ]
    for inner in query.nested:
        if not inner.matched:
            continue
        owner = item.c.keys()[1]
        row = table.alias(f"sq_n{next(_NAMES)}")
        same = [row.c[owner] == item.c[owner], row.c.sequence == item.c.sequence, row.c.item == item.c.item]
        inner_parts = _key_conditions(table, row, inner.keys, dialect, nested=True)
        parts.append(
            exists(select(literal(1)).where(*same, row.c.nested == inner.sequence.tag, *inner_parts))
        )
    return parts


@dataclass
class KeptItem:
    """The kept values of one item: its own, and its nested sequences' items."""

    values: dict[int, str]
    nested: dict[int, list[dict[int, str]]]

    def signature(self) -> tuple[Any, ...]:
        """What makes two items the same (items repeated in several instances are answered once)."""
        return (
            tuple(sorted(self.values.items())),
            tuple(
                sorted(
                    (tag, tuple(tuple(sorted(i.items())) for i in items))
                    for tag, items in self.nested.items()
                )
            ),
        )


#: Per nested sequence tag, the ``(owner, item, nested item)`` of the nested items to return.
NestedMatches = Mapping[int, set[tuple[int, int, int]]]


def kept_items(
    rows: Iterable[Any], nested_matches: NestedMatches | None = None
) -> dict[tuple[int, int], KeptItem]:
    """``(owner, item)`` → its values, from rows ``(owner, item, nested, nested_item, tag, value)``.

    Parameters
    ----------
    rows : iterable of rows
        The item-value rows of one sequence.
    nested_matches : mapping of int to set of (int, int, int), optional
        For a nested sequence whose key had a value (:func:`nested_item_matches`): the nested
        items that match it; its other items are left out. Nested sequences not in it are
        kept whole.
    """
    narrowed = nested_matches or {}
    items: dict[tuple[int, int], KeptItem] = {}
    nested: dict[tuple[int, int], dict[int, dict[int, dict[int, str]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict))
    )
    for owner, number, inner, inner_number, tag, value in rows:
        key = (int(owner), int(number))
        item = items.setdefault(key, KeptItem({}, {}))
        if inner:
            matching = narrowed.get(int(inner))
            if matching is not None and (*key, int(inner_number)) not in matching:
                continue
            nested[key][int(inner)][int(inner_number)][int(tag)] = str(value)
        else:
            item.values[int(tag)] = str(value)
    for key, by_tag in nested.items():
        items[key].nested = {
            tag: [by_number[n] for n in sorted(by_number)] for tag, by_number in by_tag.items()
        }
    return items


def nested_item_matches(
    connection: Any, table: Table, owners: Sequence[int], query: SequenceQuery
) -> dict[int, set[tuple[int, int, int]]]:
    """The nested items of ``owners`` that match the nested keys of ``query`` that have a value.

    A response's item carries only these of its nested items (PS3.4 C.2.2.2.6: the
    matching items); a nested key without value returns every nested item, so it is
    not in the result. Matched by the same conditions as :func:`item_conditions`.

    Returns
    -------
    dict of int to set of (int, int, int)
        Nested sequence tag → ``(owner, item, nested item)`` of its matching items.
    """
    owner = table.c.keys()[1]
    found: dict[int, set[tuple[int, int, int]]] = {}
    for inner in query.nested:
        if not inner.matched:
            continue
        row = table.alias(f"sq_m{next(_NAMES)}")
        parts = _key_conditions(table, row, inner.keys, connection.dialect.name, nested=True)
        statement = (
            select(row.c[owner], row.c.item, row.c.nested_item)
            .where(
                row.c[owner].in_(owners),
                row.c.sequence == query.sequence.tag,
                row.c.nested == inner.sequence.tag,
                *parts,
            )
            .distinct()
        )
        found[inner.sequence.tag] = {(int(o), int(i), int(n)) for o, i, n in connection.execute(statement)}
    return found


def response_items(query: SequenceQuery, items: Iterable[KeptItem]) -> DicomSequence:
    """The response's sequence: each distinct item with the query's attributes, in the query's order."""
    seen: set[tuple[Any, ...]] = set()
    out: list[Dataset] = []
    for item in items:
        signature = item.signature()
        if signature in seen:
            continue
        seen.add(signature)
        out.append(_item_dataset(query, item.values, item.nested))
    return DicomSequence(out)


def _item_dataset(
    query: SequenceQuery, values: dict[int, str], nested: dict[int, list[dict[int, str]]]
) -> Dataset:
    ds = Dataset()
    for key in query.keys:
        if query.every_attribute and key.tag not in values:
            continue
        if key.vr == "SQ":
            ds.add_new(key.tag, "SQ", DicomSequence([]))
        else:
            ds.add_new(key.tag, key.vr, values.get(key.tag) if key.kept else None)
    for inner in query.nested:
        inner_items = [_item_dataset(inner, v, {}) for v in nested.get(inner.sequence.tag, [])]
        ds.add_new(inner.sequence.tag, "SQ", DicomSequence(inner_items))
    return ds


def owner_items(
    connection: Any, table: Table, owners: Sequence[int], query: SequenceQuery
) -> dict[int, DicomSequence]:
    """The response sequence of each owner (a row of the table the items belong to) of ``owners``.

    For a table whose owner is the entity answered (the worklist's entries): the
    items matching ``query`` (all its items when it has no value to match), their
    nested items narrowed to the matching ones.
    """
    owner = table.c[table.c.keys()[1]]
    item = table.alias("so_item")
    found = (
        item_conditions(table, item, query, connection.dialect.name)
        if query.matched
        else [item.c.sequence == query.sequence.tag]
    )
    item_owner = item.c[table.c.keys()[1]]
    pairs = connection.execute(
        select(item_owner, item.c.item).where(item_owner.in_(owners), *found).distinct()
    ).all()
    if not pairs:
        return {}
    answered = sorted({int(p[0]) for p in pairs})
    rows = connection.execute(
        select(owner, table.c.item, table.c.nested, table.c.nested_item, table.c.tag, table.c.value).where(
            owner.in_(answered), table.c.sequence == query.sequence.tag
        )
    )
    kept = kept_items(rows, nested_item_matches(connection, table, answered, query))
    by_owner: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for entity, number in pairs:
        by_owner[int(entity)].append((int(entity), int(number)))
    return {
        entity: response_items(query, [kept[pair] for pair in sorted(found_pairs) if pair in kept])
        for entity, found_pairs in by_owner.items()
    }
