"""Modality Worklist queries (PS3.4 K.6): the worklist's attribute map on the one matcher.

The matching itself is :func:`archive.query.matching.condition` (single
value, universal, wildcard, DA/TM ranges, UID lists, PN over every component
group and case-insensitive by default), as for C-FIND and QIDO-RS; this
module only maps the MWL attributes onto the columns of ``worklist_entry``
(:data:`TOP_KEYS`, and :data:`STEP_KEYS` inside the Scheduled Procedure Step
Sequence (0040,0100)), reads the identifier and builds one response per
matching entry.

The matching keys of the IHE Scheduled Workflow profile (RAD-5): Scheduled
Station AE Title, Scheduled Procedure Step Start Date and Time (ranges;
combined date-time when negotiated), Modality, Scheduled Performing
Physician's Name, Patient's Name, Patient ID, Accession Number, Requested
Procedure ID, Study Instance UID, Scheduled Procedure Step ID and Status.
Other attributes are return keys: the archive's value when it holds one
(:func:`archive.worklist.dataset.entry_attributes`), else empty. A value on
an attribute the archive cannot match is refused (0xC000) rather than
silently ignored, as in C-FIND.

Sequence matching (PS3.4 C.2.2.2.6) on the Requested Procedure Code Sequence
and, in the step item, the Scheduled Protocol Code Sequence: the entry's
codes are kept in ``worklist_item_value`` and matched by
:mod:`archive.query.sequences`, the code C-FIND uses on the instances' items;
the response then carries the matching codes only.

Status. Without a Scheduled Procedure Step Status value a query sees only
*scheduled*, unexpired entries (what a scanner picks from). With one
(``SCHEDULED``, ``STARTED``, ``COMPLETED``, ``DISCONTINUED``, ``CANCELED``)
it sees entries of those statuses, expired or not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from sqlalchemy import ColumnElement, Engine, and_, exists, false, func, literal, or_, select

from archive.index.engine import autocommit_reads
from archive.index.items import ItemSequence
from archive.query import MatchSettings, QueryError, QueryFailure, response_character_set
from archive.query.matching import combined_datetime_condition, condition
from archive.query.request import text_of
from archive.query.sequences import SequenceQuery, item_conditions, owner_items, parse_sequence
from archive.worklist import sql
from archive.worklist.dataset import HELD_TAGS, STEP_SEQUENCES, TOP_SEQUENCES, entry_attributes
from archive.worklist.model import EntryStatus, WorklistSettings
from archive.worklist.store import entry_of

_SPS_SEQUENCE = 0x00400100
_STATUS = 0x00400020
_DATE, _TIME = 0x00400002, 0x00400003


@dataclass(frozen=True)
class WorklistKey:
    """A matching key of the worklist: keyword, VR and the ``worklist_entry`` column."""

    keyword: str
    vr: str
    column: str


def _keys(rows: Sequence[tuple[int, str, str, str]]) -> dict[int, WorklistKey]:
    return {tag: WorklistKey(keyword, vr, column) for tag, keyword, vr, column in rows}


#: Top-level matching keys.
TOP_KEYS = _keys(
    [
        (0x00100010, "PatientName", "PN", "patient_name"),
        (0x00100020, "PatientID", "LO", "patient_id"),
        (0x00100030, "PatientBirthDate", "DA", "birth_date"),
        (0x00100040, "PatientSex", "CS", "sex"),
        (0x00080050, "AccessionNumber", "SH", "accession_number"),
        (0x00401001, "RequestedProcedureID", "SH", "requested_procedure_id"),
        (0x0020000D, "StudyInstanceUID", "UI", "study_instance_uid"),
    ]
)
#: Matching keys inside the Scheduled Procedure Step Sequence (status is handled apart).
STEP_KEYS = _keys(
    [
        (0x00400001, "ScheduledStationAETitle", "AE", "station_aet"),
        (_DATE, "ScheduledProcedureStepStartDate", "DA", "start_date"),
        (_TIME, "ScheduledProcedureStepStartTime", "TM", "start_time"),
        (0x00080060, "Modality", "CS", "modality"),
        (0x00400006, "ScheduledPerformingPhysicianName", "PN", "physician"),
        (0x00400009, "ScheduledProcedureStepID", "SH", "step_id"),
    ]
)
_IGNORED = frozenset({0x00080005, 0x00080201})  # Specific Character Set, Timezone Offset From UTC


@dataclass(frozen=True)
class Requested:
    """One attribute of the identifier: its tag, VR, value (text) and whether the archive holds it."""

    tag: int
    vr: str
    value: str
    key: WorklistKey | None
    sequence: SequenceQuery | None = None


@dataclass(frozen=True)
class WorklistQuery:
    """An MWL C-FIND identifier, read and checked.

    Attributes
    ----------
    top : tuple of Requested
        Top-level attributes, in the identifier's order.
    step : tuple of Requested or None
        The Scheduled Procedure Step Sequence item's attributes (``None``: the sequence not asked for).
    statuses : tuple of EntryStatus or None
        From Scheduled Procedure Step Status; ``None``: scheduled, unexpired entries only.
    character_set : tuple of str
    combined_datetime : bool
    """

    top: tuple[Requested, ...]
    step: tuple[Requested, ...] | None
    statuses: tuple[EntryStatus, ...] | None
    character_set: tuple[str, ...] = ()
    combined_datetime: bool = False

    @property
    def unsupported_keys(self) -> bool:
        """Whether a return key was asked that the archive does not hold (pending status 0xFF01)."""
        held_top, held_step = HELD_TAGS
        return any(r.tag not in held_top for r in self.top if r.tag != _SPS_SEQUENCE) or any(
            r.tag not in held_step for r in self.step or ()
        )

    @classmethod
    def parse(cls, identifier: Dataset, *, combined_datetime: bool = False) -> WorklistQuery:
        """Read an MWL identifier.

        Raises
        ------
        QueryError
            ``UNSUPPORTED_KEY`` for a value on an attribute the archive cannot
            match (or a second Scheduled Procedure Step item), ``INVALID_IDENTIFIER``
            for an undecodable value.
        """
        charset = _charset(identifier)
        encodings = convert_encodings(list(charset) or None)
        top = tuple(_read(identifier, TOP_KEYS, encodings, TOP_SEQUENCES))
        step: tuple[Requested, ...] | None = None
        statuses: tuple[EntryStatus, ...] | None = None
        if _SPS_SEQUENCE in identifier:
            items = identifier[_SPS_SEQUENCE].value or []
            if len(items) > 1:
                raise _unsupported("ScheduledProcedureStepSequence", "expected at most one item")
            step = tuple(_read(items[0], STEP_KEYS, encodings, STEP_SEQUENCES, status=True)) if items else ()
            status = next((r for r in step if r.tag == _STATUS), None)
            if status is not None and status.value.strip() not in ("", "*"):
                given = [v.strip() for v in status.value.split("\\") if v.strip()]
                statuses = tuple(s for s in (EntryStatus.from_dicom(v) for v in given) if s is not None)
        return cls(top, step, statuses, charset, combined_datetime)


def _charset(identifier: Dataset) -> tuple[str, ...]:
    value = identifier.get("SpecificCharacterSet")
    if value is None or value == "":
        return ()
    terms = list(value) if isinstance(value, (list, MultiValue)) else [str(value)]
    return tuple(str(term).strip() for term in terms)


def _unsupported(keyword: str, why: str) -> QueryError:
    return QueryError(
        QueryFailure.UNSUPPORTED_KEY,
        f"{keyword}: {why}; the worklist matches on the keys listed in docs/conformance.md",
    )


def _read(
    dataset: Dataset,
    keys: dict[int, WorklistKey],
    encodings: Sequence[str],
    sequences: Mapping[int, ItemSequence],
    *,
    status: bool = False,
) -> Iterator[Requested]:
    for element in dataset:
        tag = int(element.tag)
        if tag in _IGNORED or element.tag.group in (0x0000, 0x0002) or element.tag.is_private:
            continue
        kept = (
            parse_sequence(element, sequences, lambda item: _text(item, encodings))
            if element.VR == "SQ"
            else None
        )
        if kept is not None:
            yield Requested(tag, "SQ", "", None, kept)
            continue
        if element.VR == "SQ":
            if tag != _SPS_SEQUENCE and not _empty(element.value):
                raise _unsupported(element.keyword or str(element.tag), "sequence matching is not supported")
            yield Requested(tag, "SQ", "", None)
            continue
        value = _text(element, encodings)
        key = keys.get(tag)
        if key is None and not (status and tag == _STATUS) and value.strip() not in ("", "*"):
            raise _unsupported(element.keyword or str(element.tag), "the worklist cannot match on it")
        yield Requested(tag, element.VR, value, key)


def _text(element: DataElement, encodings: Sequence[str]) -> str:
    try:
        return text_of(element, encodings)
    except (UnicodeError, LookupError) as exc:
        raise QueryError(
            QueryFailure.INVALID_IDENTIFIER,
            f"{element.tag} {element.keyword}: value not decodable with {list(encodings)} ({exc})",
        ) from exc


def _empty(items: Any) -> bool:
    return all(all(el.VR == "SQ" or el.value in (None, "", b"") for el in item) for item in items or [])


def _conditions(
    query: WorklistQuery, match: MatchSettings, settings: WorklistSettings, dialect: str, now: datetime
) -> list[ColumnElement[bool]]:
    table = sql.worklist_entry
    parts: list[ColumnElement[bool]] = []
    step = query.step or ()
    skip: set[int] = set()
    if query.combined_datetime:
        date_raw = next((r.value for r in step if r.tag == _DATE), "")
        time_raw = next((r.value for r in step if r.tag == _TIME), "")
        combined = combined_datetime_condition(table.c.start_date, table.c.start_time, date_raw, time_raw)
        if combined is not None:
            parts.append(combined)
            skip = {_DATE, _TIME}
    for requested in (*query.top, *step):
        if requested.sequence is not None and requested.sequence.matched:
            item = sql.worklist_item_value.alias("wl_item")
            found_items = item_conditions(sql.worklist_item_value, item, requested.sequence, dialect)
            parts.append(exists(select(literal(1)).where(item.c.entry_pk == table.c.id, *found_items)))
        key = requested.key
        if key is None or requested.tag in skip:
            continue
        insensitive = key.vr == "PN" and not match.case_sensitive_pn
        found = condition(
            table.c[key.column],
            key.vr,
            requested.value,
            keyword=key.keyword,
            dialect=dialect,
            insensitive=insensitive,
        )
        if found is not None:
            parts.append(found)
    if query.statuses is None:
        cutoff = now - timedelta(hours=settings.expire_after_hours)
        parts.append(table.c.status == EntryStatus.SCHEDULED.value)
        parts.append(
            or_(
                table.c.start_date > cutoff.date(),
                and_(table.c.start_date == cutoff.date(), table.c.start_time >= cutoff.strftime("%H%M%S")),
            )
        )
    elif query.statuses:
        parts.append(table.c.status.in_([s.value for s in query.statuses]))
    else:
        parts.append(false())  # only status values we never give an entry
    return parts


def _value(source: Dataset, requested: Requested) -> DataElement:
    if requested.tag in source:
        return source[requested.tag]
    return DataElement(requested.tag, requested.vr, DicomSequence([]) if requested.vr == "SQ" else None)


def _kept(requested: Requested, items: Mapping[int, Mapping[int, DicomSequence]], pk: int) -> DataElement:
    return DataElement(requested.tag, "SQ", items.get(requested.tag, {}).get(pk, DicomSequence([])))


def _response(query: WorklistQuery, row: Any, items: Mapping[int, Mapping[int, DicomSequence]]) -> Dataset:
    top, step = entry_attributes(entry_of(row))
    response = Dataset()
    for requested in query.top:
        if requested.tag == _SPS_SEQUENCE:
            item = Dataset()
            for sub in query.step or ():
                item[sub.tag] = _kept(sub, items, int(row.id)) if sub.sequence else _value(step, sub)
            response[_SPS_SEQUENCE] = DataElement(_SPS_SEQUENCE, "SQ", DicomSequence([item]))
        elif requested.sequence is not None:
            response[requested.tag] = _kept(requested, items, int(row.id))
        else:
            response[requested.tag] = _value(top, requested)
    charset = response_character_set(query.character_set, response)
    if charset:
        response.SpecificCharacterSet = charset if len(charset) > 1 else charset[0]
    return response


def find_entries(
    engine: Engine,
    query: WorklistQuery,
    match: MatchSettings,
    settings: WorklistSettings,
    *,
    now: datetime | None = None,
) -> list[Dataset]:
    """The response identifiers of ``query``, one per matching entry, by start date and time.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The index.
    query : WorklistQuery
        The parsed identifier.
    match : MatchSettings
        Person Name case rule (the receiver's C-FIND setting).
    settings : WorklistSettings
        Expiry and result limit.
    now : datetime, optional
        Local time the expiry is counted from (default: now).

    Raises
    ------
    QueryError
        ``TOO_MANY_MATCHES`` (nothing returned) when more than
        ``settings.max_results`` entries match; ``INVALID_IDENTIFIER`` for a
        value invalid for its VR.
    """
    table = sql.worklist_entry
    with autocommit_reads(engine) as connection:
        parts = _conditions(query, match, settings, connection.dialect.name, now or datetime.now())
        ids = select(table.c.id).where(*parts).limit(settings.max_results + 1).subquery()
        if int(connection.execute(select(func.count()).select_from(ids)).scalar_one()) > settings.max_results:
            raise QueryError(
                QueryFailure.TOO_MANY_MATCHES,
                f"the worklist query matches more than {settings.max_results} entries "
                "([worklist] max_results); narrow it (station AE title, a date)",
            )
        rows = connection.execute(
            select(table).where(*parts).order_by(table.c.start_date, table.c.start_time, table.c.id)
        ).all()
        pks = [int(row.id) for row in rows]
        items = {
            r.tag: owner_items(connection, sql.worklist_item_value, pks, r.sequence)
            for r in (*query.top, *(query.step or ()))
            if r.sequence is not None and pks
        }
    return [_response(query, row, items) for row in rows]
