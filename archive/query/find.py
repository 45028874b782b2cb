"""Running a :class:`~archive.query.request.FindRequest`: response identifiers, one per entity.

:func:`find` is the one way in for C-FIND (and the worklist and QIDO-RS to
come): it checks the result limit with a bounded count (no response is sent
for a query over the limit: a partial list would look complete), then reads
matching entities a page at a time (:class:`~archive.query.sql.CompiledQuery`)
and yields one ``Dataset`` per entity, built from the row, the computed keys
of the page (one grouped query per requested computed key), the procedure
values of the page and, when configured, the stored header of one instance
per entity for keys the index does not hold.

Responses carry the requested attributes in the identifier's order, empty
when the archive has no value, our private block when a procedure key was
asked, and a Specific Character Set: the query's when it can encode every
value (else ISO_IR 192), none when every value is ASCII and the query named
none.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
import pydicom.config
from pydicom.charset import convert_encodings, encode_string
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag
from sqlalchemy import Engine, select

from archive.index import schema
from archive.index.engine import autocommit_reads
from archive.index.items import sequence_item_value
from archive.model import SpinalLevel, sort_levels
from archive.query.errors import QueryError, QueryFailure
from archive.query.keys import PRIVATE_CREATOR, PRIVATE_GROUP, KeyKind, Level, computed_level
from archive.query.matching import MatchSettings
from archive.query.request import FindRequest, RequestedKey
from archive.query.sequences import SequenceQuery, kept_items, nested_item_matches, response_items
from archive.query.sql import (
    CompiledQuery,
    computed_query,
    entity_of_instance,
    procedure_value_query,
    representative_instances,
    sequence_item_query,
    sequence_value_query,
)

logger = logging.getLogger(__name__)

_RETRIEVE_AE_TITLE = 0x00080054
_INSTANCE_AVAILABILITY = 0x00080056
#: The private creator element written when the request had no block of ours (``(0011,0010)``).
_DEFAULT_BLOCK = 0x10


@dataclass
class _Page:
    """What one page of entities needs besides its rows."""

    computed: dict[str, dict[int, Any]]
    procedure: dict[str, dict[int, list[str]]]
    headers: dict[int, Dataset]
    sequences: dict[int, dict[int, DicomSequence]]


def _format(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    if isinstance(value, bool):
        return int(value)
    return value


def count_matches(engine: Engine, request: FindRequest, settings: MatchSettings) -> int:
    """How many entities match, counted up to ``settings.max_results + 1``."""
    with autocommit_reads(engine) as connection:
        compiled = CompiledQuery(request, settings, connection.dialect.name)
        return int(connection.execute(compiled.count_at_most(settings.max_results + 1)).scalar_one())


def matching_ids(engine: Engine, request: FindRequest, settings: MatchSettings) -> Iterator[int]:
    """Ids of the matching entities (rows of the level's table), a page at a time, in order.

    For C-MOVE / C-GET: the instances to send are those under these entities.
    """
    after = 0
    while True:
        with autocommit_reads(engine) as connection:
            compiled = CompiledQuery(request, settings, connection.dialect.name)
            rows = connection.execute(compiled.page(after, settings.page_size)).all()
        if not rows:
            return
        for row in rows:
            yield int(row.entity_pk)
        if len(rows) < settings.page_size:
            return
        after = int(rows[-1].entity_pk)


@dataclass(frozen=True)
class InstanceRef:
    """A stored instance a retrieve (C-MOVE, C-GET) sends."""

    sop_class_uid: str
    sop_instance_uid: str
    path: str
    transfer_syntax: str
    size: int


def matching_instances(
    engine: Engine, request: FindRequest, settings: MatchSettings
) -> Iterator[InstanceRef]:
    """Every stored instance under the entities ``request`` matches, a page of entities at a time.

    For C-MOVE / C-GET: the same matching as C-FIND at the request's level
    (a STUDY-level identifier with a list of Study Instance UIDs gives every
    instance of those studies), in index order.
    """
    clause, entity = entity_of_instance(request.level)
    i = schema.instance
    columns = (i.c.sop_class_uid, i.c.sop_instance_uid, i.c.path, i.c.transfer_syntax, i.c.size)
    batch: list[int] = []
    for pk in [*matching_ids(engine, request, settings), None]:
        if pk is not None:
            batch.append(pk)
            if len(batch) < settings.page_size:
                continue
        if not batch:
            return
        with autocommit_reads(engine) as connection:
            statement = select(*columns).select_from(clause).where(entity.in_(batch)).order_by(i.c.id)
            rows = connection.execute(statement).all()
        for row in rows:
            yield InstanceRef(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]))
        batch = []


def find(
    engine: Engine,
    request: FindRequest,
    settings: MatchSettings,
    *,
    resolve_path: Callable[[str], Path] | None = None,
    retrieve_aet: str | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    window: tuple[int, int] | None = None,
) -> Iterator[Dataset]:
    """The response identifiers of ``request``, one per matching entity, in index order.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The index.
    request : FindRequest
        The parsed query.
    settings : MatchSettings
        Case rules, limit, page size, header reads.
    resolve_path : callable, optional
        Relative stored path → absolute path (``FileStore.absolute``); needed
        for ``settings.header_keys``.
    retrieve_aet : str, optional
        Returned as Retrieve AE Title when requested.
    cancelled : callable
        Checked before each page is read; ``True`` ends the iteration.
    window : (int, int), optional
        ``(offset, limit)``: skip the first ``offset`` matching entities and yield at most
        ``limit`` (QIDO-RS paging). No query is refused for matching too many; the caller
        bounds ``limit``.

    Yields
    ------
    pydicom.dataset.Dataset

    Raises
    ------
    QueryError
        ``TOO_MANY_MATCHES`` (before anything is yielded) when more than
        ``settings.max_results`` entities match; the errors of
        :mod:`archive.query.matching` for invalid values.
    """
    after, remaining = 0, -1
    limited = window is None  # the result limit is checked on the first page, before anything is yielded
    if window is not None:
        offset, remaining = window
        if offset > 0:
            with autocommit_reads(engine) as connection:
                compiled = CompiledQuery(request, settings, connection.dialect.name)
                found = connection.execute(compiled.ids().offset(offset - 1).limit(1)).scalar()
            if found is None:
                return
            after = int(found)
    while remaining != 0 and not cancelled():
        size = settings.page_size if remaining < 0 else min(settings.page_size, remaining)
        with autocommit_reads(engine) as connection:
            compiled = CompiledQuery(request, settings, connection.dialect.name)
            rows = connection.execute(compiled.page(after, size)).all()
            if not rows:
                return
            if limited:
                # A short first page is every match: no counting query (most queries, e.g. by Patient ID).
                total = len(rows) if len(rows) < size else count_matches(engine, request, settings)
                _check_limit(total, request, settings)
                limited = False
            pks = [int(row.entity_pk) for row in rows]
            page = _page_extras(connection, request, pks, settings, resolve_path)
        for row in rows:
            yield _response(request, compiled, row, page, retrieve_aet)
        if len(rows) < settings.page_size:
            return
        after = pks[-1]
        if remaining > 0:
            remaining -= len(rows)


def _check_limit(total: int, request: FindRequest, settings: MatchSettings) -> None:
    if total > settings.max_results:
        raise QueryError(
            QueryFailure.TOO_MANY_MATCHES,
            f"the query matches more than {settings.max_results} {request.level.value.lower()} entities "
            "(the archive's max_results); narrow it (a Patient ID, a date range) or raise "
            "find_max_results",
        )


def _page_extras(
    connection: Any,
    request: FindRequest,
    pks: Sequence[int],
    settings: MatchSettings,
    resolve_path: Callable[[str], Path] | None,
) -> _Page:
    level = request.level
    computed: dict[str, dict[int, Any]] = {}
    procedure_keys = []
    wanted_headers: list[int] = []
    for rk in request.keys:
        key = rk.key
        if key is None:
            if rk.tag not in (_RETRIEVE_AE_TITLE, _INSTANCE_AVAILABILITY):
                wanted_headers.append(rk.tag)
        elif (
            key.kind is KeyKind.COMPUTED
            and computed_level(key, request.model) is level
            and key.keyword not in computed
        ):
            statement, is_list = computed_query(key.keyword, pks, level)
            values: dict[int, Any] = defaultdict(list) if is_list else {}
            for entity, value in connection.execute(statement):
                if is_list:
                    values[int(entity)].append(str(value))
                else:
                    values[int(entity)] = int(value)
            computed[key.keyword] = values
        elif key.kind is KeyKind.PROCEDURE:
            procedure_keys.append(key)
    procedure: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for statement in procedure_value_query(level, pks, procedure_keys):
        for entity, value, name in connection.execute(statement):
            procedure[name][int(entity)].append(str(value))
    headers: dict[int, Dataset] = {}
    if wanted_headers and settings.header_keys and resolve_path is not None:
        headers = _read_headers(connection, level, pks, wanted_headers, resolve_path)
    sequences = {
        rk.tag: _sequence_items(connection, level, pks, rk.sequence)
        for rk in request.keys
        if rk.sequence is not None and _answered(request, rk)
    }
    return _Page(computed, procedure, headers, sequences)


def _answered(request: FindRequest, rk: RequestedKey) -> bool:
    """A kept sequence is answered at its level and below, and above it in a relational query."""
    assert rk.key is not None
    return request.relational or rk.key.level.depth <= request.level.depth


def _sequence_items(
    connection: Any, level: Level, pks: Sequence[int], query: SequenceQuery
) -> dict[int, DicomSequence]:
    matches = connection.execute(sequence_item_query(level, pks, query, connection.dialect.name)).all()
    if not matches:
        return {}
    instance_pks = sorted({int(row[1]) for row in matches})
    narrowed = nested_item_matches(connection, sequence_item_value, instance_pks, query)
    kept = kept_items(connection.execute(sequence_value_query(instance_pks, query.sequence.tag)), narrowed)
    by_entity: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for entity, instance_pk, item in matches:
        by_entity[int(entity)].append((int(instance_pk), int(item)))
    return {
        entity: response_items(query, [kept[pair] for pair in sorted(pairs) if pair in kept])
        for entity, pairs in by_entity.items()
    }


def _read_headers(
    connection: Any,
    level: Level,
    pks: Sequence[int],
    tags: Sequence[int],
    resolve_path: Callable[[str], Path],
) -> dict[int, Dataset]:
    headers: dict[int, Dataset] = {}
    for entity, path in connection.execute(representative_instances(level, pks)).all():
        try:
            headers[int(entity)] = pydicom.dcmread(
                resolve_path(str(path)), stop_before_pixels=True, specific_tags=[0x00080005, *tags]
            )
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            logger.warning("query: header of %s not readable (%s); its keys are returned empty", path, exc)
    return headers


def _procedure_values(name: str, values: list[str]) -> list[str]:
    if name == "levels":
        known = [SpinalLevel(value) for value in values if value in SpinalLevel.__members__]
        return [str(level) for level in sort_levels(known)] + sorted(
            {value for value in values if value not in SpinalLevel.__members__}
        )
    return sorted(set(values))


def _put(dataset: Dataset, tag: int, vr: str, value: Any) -> None:
    """Add one element, skipping pydicom's per-value validation (values come from the index: typed)."""
    dataset[tag] = DataElement(BaseTag(tag), vr, value, validation_mode=pydicom.config.IGNORE)


def _response(
    request: FindRequest, compiled: CompiledQuery, row: Any, page: _Page, retrieve_aet: str | None
) -> Dataset:
    entity = int(row.entity_pk)
    response = Dataset()
    response.QueryRetrieveLevel = request.level.value
    private = False
    block = request.private_block or _DEFAULT_BLOCK
    for rk in request.keys:
        key = rk.key
        if key is not None and key.kind is KeyKind.PROCEDURE:
            private = True
            values = _procedure_values(key.keyword, page.procedure.get(key.keyword, {}).get(entity, []))
            _put(response, (PRIVATE_GROUP << 16) | (block << 8) | (rk.tag & 0xFF), "LO", values or None)
        elif rk.tag in compiled.columns:
            _put(response, rk.tag, rk.vr, _format(getattr(row, f"k{rk.tag:08x}")))
        elif key is not None and key.keyword in page.computed:
            _put(
                response, rk.tag, key.vr, page.computed[key.keyword].get(entity, [] if key.vr != "IS" else 0)
            )
        elif rk.sequence is not None:
            items = page.sequences.get(rk.tag, {}).get(entity)
            response.add_new(rk.tag, "SQ", items if items is not None else DicomSequence([]))
        elif rk.tag == _RETRIEVE_AE_TITLE:
            _put(response, rk.tag, "AE", retrieve_aet)
        elif rk.tag == _INSTANCE_AVAILABILITY:
            _put(response, rk.tag, "CS", "ONLINE")
        elif key is None:
            _from_header(response, rk, page.headers.get(entity))
        else:  # a key below the level, or a computed key of another level
            _put(response, rk.tag, rk.vr, None)
    if private:
        _put(response, (PRIVATE_GROUP << 16) | block, "LO", PRIVATE_CREATOR)
    charset = response_character_set(request.character_set, response)
    if charset:
        response.SpecificCharacterSet = charset if len(charset) > 1 else charset[0]
    return response


def _from_header(response: Dataset, rk: RequestedKey, header: Dataset | None) -> None:
    if header is not None and rk.tag in header:
        response[rk.tag] = header[rk.tag]
        return
    response.add_new(rk.tag, rk.vr, DicomSequence([]) if rk.vr == "SQ" else None)


def _texts(dataset: Dataset) -> Iterator[str]:
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                yield from _texts(item)
        elif isinstance(element.value, str):
            yield element.value
        elif element.VR == "PN" and element.value is not None:
            yield str(element.value)
        elif isinstance(element.value, (list, tuple)) or type(element.value).__name__ == "MultiValue":
            yield from (str(item) for item in element.value)


def _encodable(texts: Sequence[str], charset: Sequence[str]) -> bool:
    try:
        encodings = convert_encodings(list(charset))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for text in texts:
                encode_string(text, encodings)
    except (UnicodeError, LookupError, UserWarning, ValueError):
        return False
    return True


def response_character_set(requested: Sequence[str], response: Dataset) -> list[str]:
    """The Specific Character Set of a response: the query's if it can encode it, else ISO_IR 192.

    Returns
    -------
    list of str
        Empty when every value is ASCII and the query named no character set.
    """
    texts = [text for text in _texts(response) if text]
    ascii_only = all(text.isascii() for text in texts)
    if ascii_only:
        return list(requested)
    if requested and _encodable(texts, requested):
        return list(requested)
    return ["ISO_IR 192"]
