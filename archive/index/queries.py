"""Read queries on the index: find instances by filters (one UID and statistics: describe.py).

``find`` filters are combined with AND; within ``levels`` an instance matches
when it has *any* of the given levels. Results are ordered by study date
(newest first, unknown last), then newest archived first, and limited
(default :data:`DEFAULT_LIMIT`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Connection, Select, and_, bindparam, case, func, literal, or_, select

from archive.index import schema
from archive.index.patients import conflicting_studies
from archive.model import Approach, ProcedureType, ReviewStatus, Side, SpinalLevel, Technique
from archive.review.sql import review_filter

#: Rows returned by :func:`find` unless the query says otherwise.
DEFAULT_LIMIT = 1000

_p, _st, _se, _i = schema.patient, schema.study, schema.series, schema.instance
_proc, _lvl = schema.instance_procedure, schema.instance_level
_LEVEL_ORDER = {level.value: position for position, level in enumerate(SpinalLevel)}


@dataclass(frozen=True)
class Query:
    """Filters of :func:`find`; ``None`` / empty means "any".

    Attributes
    ----------
    patient : str, optional
        Patient ID or name (``Family^Given``), case-insensitive; ``*`` matches any run of
        characters and ``?`` one character (:func:`patient_condition`).
    accession : str, optional
        Accession Number of the study, exactly.
    levels : tuple of SpinalLevel
        Instances with any of these levels.
    side, technique, approach, procedure_type : optional
    date_from, date_to : date, optional
        Inclusive range of the study date.
    modality : str, optional
        Series modality, e.g. ``"US"``.
    review_status : ReviewStatus, optional
        Instances with a reviewer's annotation in this review status.
    reviewer : str, optional
        Instances this reviewer has annotated (with ``review_status``: the
        same reviewer's annotation must be in that status).
    limit : int
        At most this many rows.
    """

    patient: str | None = None
    accession: str | None = None
    levels: tuple[SpinalLevel, ...] = ()
    side: Side | None = None
    technique: Technique | None = None
    approach: Approach | None = None
    procedure_type: ProcedureType | None = None
    date_from: date | None = None
    date_to: date | None = None
    modality: str | None = None
    review_status: ReviewStatus | None = None
    reviewer: str | None = None
    limit: int = DEFAULT_LIMIT


class InstanceRow(NamedTuple):
    """One instance as :func:`find` reports it (the JSON of ``usarchive find``).

    A named tuple rather than a dataclass: ``find`` builds a hundred of these
    per page, and a tuple is built in a quarter of the time of a frozen
    dataclass of 21 fields.
    """

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    patient_name: str | None
    study_date: date | None
    modality: str | None
    levels: tuple[str, ...]
    side: str | None
    technique: str | None
    approach: str | None
    procedure_type: str | None
    frames: int | None
    rows: int | None
    columns: int | None
    transfer_syntax: str
    calibrated: bool
    path: str
    size: int
    sha256: str
    received_at: datetime
    #: What disagrees about the patient of its study (see archive.index.patients); empty when nothing.
    patient_conflict: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (dates as ISO 8601 strings); see docs/json-output.md."""
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "study_date": self.study_date.isoformat() if self.study_date else None,
            "modality": self.modality,
            "levels": list(self.levels),
            "side": self.side,
            "technique": self.technique,
            "approach": self.approach,
            "procedure_type": self.procedure_type,
            "frames": self.frames,
            "rows": self.rows,
            "columns": self.columns,
            "transfer_syntax": self.transfer_syntax,
            "calibrated": self.calibrated,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "received_at": as_utc(self.received_at).isoformat(),
            "patient_conflict": list(self.patient_conflict),
        }


def as_utc(moment: datetime) -> datetime:
    """``moment`` with UTC attached when the database returned it naive (SQLite stores UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _find_columns() -> list[Any]:
    return [
        _i.c.id,
        _i.c.sop_instance_uid,
        _i.c.sop_class_uid,
        _se.c.series_instance_uid,
        _st.c.study_instance_uid,
        # The instance's own values; a row written without them (not by ingest) shows its study's.
        func.coalesce(_i.c.patient_id, _p.c.patient_id).label("patient_id"),
        case((_i.c.patient_id.is_(None), _p.c.name), else_=_i.c.patient_name).label("patient_name"),
        _st.c.study_date,
        _se.c.modality,
        _proc.c.side,
        _proc.c.technique,
        _proc.c.approach,
        _proc.c.procedure_type,
        _i.c.frames,
        _i.c.rows,
        _i.c.columns,
        _i.c.transfer_syntax,
        _i.c.calibrated,
        _i.c.path,
        _i.c.size,
        _i.c.sha256,
        _i.c.received_at,
        _levels_column(),
    ]


def _levels_column() -> Any:
    """The instance's levels joined by commas, read in the same statement (no second round trip).

    A correlated subquery on ``instance_level``'s primary key; the order of the
    aggregate is not defined, so :func:`_split_levels` sorts anatomically.
    """
    inner = _lvl.alias("row_levels")
    return (
        select(func.aggregate_strings(inner.c.level, ","))
        .where(inner.c.instance_pk == _i.c.id)
        .scalar_subquery()
        .label("levels")
    )


def _split_levels(joined: str | None) -> tuple[str, ...]:
    if not joined:
        return ()
    return tuple(sorted(joined.split(","), key=_LEVEL_ORDER.__getitem__))


#: The columns of a ``find`` row, built once (constructing them is a third of a call's client time).
_FIND_COLUMNS = _find_columns()


class _Shape(NamedTuple):
    """Which filters a query uses (not their values): one ``find`` statement per shape."""

    levels: int  # 0, 1, or 2 for "several"
    patient: bool
    accession: bool
    side: bool
    technique: bool
    approach: bool
    procedure_type: bool
    date_from: bool
    date_to: bool
    modality: bool
    review_status: bool
    reviewer: bool
    limit: int


def _shape(query: Query, patient_pks: list[int] | None) -> _Shape:
    return _Shape(
        levels=min(len(query.levels), 2),
        patient=patient_pks is not None,
        accession=query.accession is not None,
        side=query.side is not None,
        technique=query.technique is not None,
        approach=query.approach is not None,
        procedure_type=query.procedure_type is not None,
        date_from=query.date_from is not None,
        date_to=query.date_to is not None,
        modality=bool(query.modality),
        review_status=query.review_status is not None,
        reviewer=query.reviewer is not None,
        limit=query.limit,
    )


def _find_parameters(query: Query, patient_pks: list[int] | None) -> dict[str, Any]:
    """The values bound into the statement of ``query``'s shape (names as in :func:`_statement_of`)."""
    values: dict[str, Any] = {}
    if len(query.levels) == 1:
        values["level"] = query.levels[0].value
    elif query.levels:
        values["levels"] = [level.value for level in query.levels]
    if patient_pks is not None:
        values["patient_pks"] = patient_pks
    for name in ("side", "technique", "approach", "procedure_type", "review_status"):
        chosen = getattr(query, name)
        if chosen is not None:
            values[name] = chosen.value
    for name in ("date_from", "date_to", "reviewer"):
        if getattr(query, name) is not None:
            values[name] = getattr(query, name)
    if query.modality:
        values["modality"] = query.modality
    if query.accession is not None:
        values["accession"] = query.accession
    return values


@lru_cache(maxsize=512)
def _statement_of(shape: _Shape) -> Select[Any]:
    """The SELECT for every query of this shape, shaped so an index yields rows already in order.

    Values are bound parameters (see :func:`_find_parameters`), so a shape's
    statement is built once per process (building it is a millisecond, a
    fifth of a PostgreSQL call's client time). With exactly one level the
    scan is driven by ``instance_level``'s index ``(level, technique,
    sort_date, instance_pk)``; otherwise by ``instance``'s ``(sort_date,
    id)``. Either way the order is newest study first, then newest archived
    first.
    """
    if shape.levels == 1:
        statement = select(*_FIND_COLUMNS).select_from(_lvl).join(_i, _i.c.id == _lvl.c.instance_pk)
        conditions: list[Any] = [_lvl.c.level == bindparam("level")]
        if shape.technique:
            # The copy on instance_level: the scan reads only matching rows, in order.
            conditions.append(_lvl.c.technique == bindparam("technique"))
        sort_date, order_id = _lvl.c.sort_date, _lvl.c.instance_pk
    else:
        statement = select(*_FIND_COLUMNS).select_from(_i)
        conditions = []
        if shape.levels:
            conditions.append(
                select(_lvl.c.instance_pk)
                .where(_lvl.c.instance_pk == _i.c.id, _lvl.c.level.in_(bindparam("levels", expanding=True)))
                .exists()
            )
        sort_date, order_id = _i.c.sort_date, _i.c.id
    statement = (
        statement.join(_se, _se.c.id == _i.c.series_pk)
        .join(_st, _st.c.id == _se.c.study_pk)
        .join(_p, _p.c.id == _st.c.patient_pk)
        .outerjoin(_proc, _proc.c.instance_pk == _i.c.id)
    )
    if shape.patient:
        conditions.append(_st.c.patient_pk.in_(bindparam("patient_pks", expanding=True)))
    if shape.accession:
        conditions.append(_st.c.accession_number == bindparam("accession"))
    if shape.side:
        conditions.append(_proc.c.side == bindparam("side"))
    if shape.technique and shape.levels != 1:  # else matched on the level rows' copy
        conditions.append(_proc.c.technique == bindparam("technique"))
    if shape.approach:
        conditions.append(_proc.c.approach == bindparam("approach"))
    if shape.procedure_type:
        conditions.append(_proc.c.procedure_type == bindparam("procedure_type"))
    if shape.date_from or shape.date_to:
        conditions.append(sort_date > schema.SORT_DATE_UNKNOWN)
    if shape.date_from:
        conditions.append(sort_date >= bindparam("date_from"))
    if shape.date_to:
        conditions.append(sort_date <= bindparam("date_to"))
    if shape.modality:
        conditions.append(_se.c.modality == bindparam("modality"))
    if shape.review_status or shape.reviewer:
        conditions.append(
            review_filter(
                _i.c.id,
                status=bindparam("review_status") if shape.review_status else None,
                reviewer=bindparam("reviewer") if shape.reviewer else None,
            )
        )
    if conditions:
        statement = statement.where(and_(*conditions))
    # The page size is written into the SQL rather than bound: PostgreSQL then keeps
    # one generic plan per statement shape (psycopg prepares repeated statements), while a
    # bound LIMIT makes it plan every call afresh.
    page = literal(shape.limit, literal_execute=True)
    return statement.order_by(sort_date.desc(), order_id.desc()).limit(page)


def _find_statement(query: Query, patient_pks: list[int] | None) -> tuple[Select[Any], dict[str, Any]]:
    """The SELECT for ``query`` and the values to execute it with."""
    return _statement_of(_shape(query, patient_pks)), _find_parameters(query, patient_pks)


def _like(pattern: str) -> str:
    """A ``*``/``?`` wildcard pattern as a LIKE pattern (backslash escapes), lower-cased."""
    escaped = pattern.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def patient_condition(pattern: str) -> Any:
    """Patients whose ID or name matches ``pattern``: case-insensitive, ``*`` and ``?`` wildcards.

    Parameters
    ----------
    pattern : str
        E.g. ``"ab-1*"``, ``"m?ller^*"`` or an exact ID in any case.

    Returns
    -------
    SQLAlchemy condition on the ``patient`` table.
    """
    columns = (func.lower(_p.c.patient_id), func.lower(_p.c.name))
    if "*" in pattern or "?" in pattern:
        like = _like(pattern)
        return or_(*(column.like(like, escape="\\") for column in columns))
    return or_(*(column == pattern.lower() for column in columns))


def find(connection: Connection, query: Query) -> list[InstanceRow]:
    """Instances matching ``query``.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        Any connection to the index.
    query : Query
        The filters.

    Returns
    -------
    list of InstanceRow
        At most ``query.limit`` rows.
    """
    patient_pks: list[int] | None = None
    if query.patient:
        patient_pks = [
            int(pk)
            for pk in connection.execute(select(_p.c.id).where(patient_condition(query.patient))).scalars()
        ]
        if not patient_pks:
            return []
    statement, parameters = _find_statement(query, patient_pks)
    rows = connection.execute(statement, parameters).all()
    # Positional unpacking in the order of _FIND_COLUMNS: this loop is most of find's client time.
    found = [
        InstanceRow(
            sop_instance_uid=sop,
            sop_class_uid=sop_class,
            series_instance_uid=series_uid,
            study_instance_uid=study_uid,
            patient_id=patient_id,
            patient_name=patient_name,
            study_date=study_date,
            modality=modality,
            levels=_split_levels(levels),
            side=side,
            technique=technique,
            approach=approach,
            procedure_type=procedure_type,
            frames=frames,
            rows=n_rows,
            columns=n_columns,
            transfer_syntax=transfer_syntax,
            calibrated=bool(calibrated),
            path=path,
            size=int(size),
            sha256=sha256,
            received_at=received_at,
        )
        for (
            _pk,
            sop,
            sop_class,
            series_uid,
            study_uid,
            patient_id,
            patient_name,
            study_date,
            modality,
            side,
            technique,
            approach,
            procedure_type,
            frames,
            n_rows,
            n_columns,
            transfer_syntax,
            calibrated,
            path,
            size,
            sha256,
            received_at,
            levels,
        ) in rows
    ]
    if not found:
        return found
    conflicts = conflicting_studies(connection, {row.study_instance_uid for row in found})
    if not conflicts:
        return found
    return [
        row._replace(patient_conflict=tuple(conflicts[row.study_instance_uid]))
        if row.study_instance_uid in conflicts
        else row
        for row in found
    ]
