"""Read queries on the index about one UID and the whole index: describe a UID, statistics.

:func:`describe_uid` answers ``usarchive show`` for a study, series or
instance; :func:`stats` counts what the index holds (``usarchive stats``);
:func:`instance_pks_under` lists the instances a UID denotes. Finding
instances by filters is :mod:`archive.index.queries`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from archive.index import schema
from archive.index.patients import conflicting_studies
from archive.index.queries import as_utc
from archive.model import SpinalLevel

_p, _st, _se, _i = schema.patient, schema.study, schema.series, schema.instance
_proc, _lvl = schema.instance_procedure, schema.instance_level


def _plain(row: Any, drop: Sequence[str] = ()) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in row._mapping.items():
        if key in drop:
            continue
        if isinstance(value, datetime):
            value = as_utc(value)
        result[key] = value.isoformat() if isinstance(value, (date, datetime)) else value
    return result


@dataclass(frozen=True)
class UidDescription:
    """What ``show`` found for a UID: its kind and a JSON-ready description."""

    kind: str  # "study", "series" or "instance"
    data: dict[str, Any] = field(default_factory=dict)


def _instance_detail(connection: Connection, pk: int) -> dict[str, Any]:
    row = connection.execute(select(_i).where(_i.c.id == pk)).one()
    detail = _plain(row, drop=("id", "series_pk"))
    procedure = connection.execute(select(_proc).where(_proc.c.instance_pk == pk)).first()
    detail["procedure"] = _plain(procedure, drop=("instance_pk",)) if procedure is not None else None
    detail["levels"] = [
        _plain(level, drop=("instance_pk",))
        for level in connection.execute(select(_lvl).where(_lvl.c.instance_pk == pk))
    ]
    detail["levels"].sort(key=lambda item: SpinalLevel(item["level"]).ordinal)
    detail["tag_history"] = [
        _plain(change, drop=("id", "instance_pk"))
        for change in connection.execute(
            select(schema.tag_history)
            .where(schema.tag_history.c.instance_pk == pk)
            .order_by(schema.tag_history.c.id)
        )
    ]
    detail["file_history"] = [
        _plain(event, drop=("id",))
        for event in connection.execute(
            select(schema.instance_history)
            .where(schema.instance_history.c.sop_instance_uid == row.sop_instance_uid)
            .order_by(schema.instance_history.c.id)
        )
    ]
    return detail


def _series_detail(connection: Connection, pk: int, *, with_instances: bool) -> dict[str, Any]:
    row = connection.execute(select(_se).where(_se.c.id == pk)).one()
    detail = _plain(row, drop=("id", "study_pk"))
    uids = connection.execute(
        select(_i.c.sop_instance_uid).where(_i.c.series_pk == pk).order_by(_i.c.instance_number, _i.c.id)
    ).scalars()
    detail["instances"] = list(uids)
    if with_instances:
        detail["instance_details"] = [
            _instance_detail(connection, ipk)
            for ipk in connection.execute(
                select(_i.c.id).where(_i.c.series_pk == pk).order_by(_i.c.id)
            ).scalars()
        ]
    return detail


def _study_detail(connection: Connection, pk: int) -> dict[str, Any]:
    row = connection.execute(select(_st).where(_st.c.id == pk)).one()
    detail = _plain(row, drop=("id", "patient_pk"))
    patient = connection.execute(select(_p).where(_p.c.id == row.patient_pk)).one()
    detail["patient"] = _plain(patient, drop=("id",))
    detail["series"] = [
        _series_detail(connection, spk, with_instances=False)
        for spk in connection.execute(
            select(_se.c.id).where(_se.c.study_pk == pk).order_by(_se.c.id)
        ).scalars()
    ]
    return detail


def describe_uid(connection: Connection, uid: str) -> UidDescription | None:
    """Describe the study, series or instance with this UID; ``None`` if the index has none."""
    pk = connection.execute(select(_st.c.id).where(_st.c.study_instance_uid == uid)).scalar()
    if pk is not None:
        study_detail = _study_detail(connection, pk)
        study_detail["patient_conflict"] = conflicting_studies(connection, [uid]).get(uid, [])
        return UidDescription("study", study_detail)
    pk = connection.execute(select(_se.c.id).where(_se.c.series_instance_uid == uid)).scalar()
    if pk is not None:
        return UidDescription("series", _series_detail(connection, pk, with_instances=True))
    pk = connection.execute(select(_i.c.id).where(_i.c.sop_instance_uid == uid)).scalar()
    if pk is not None:
        detail = _instance_detail(connection, pk)
        context = connection.execute(
            select(_se.c.series_instance_uid, _st.c.study_instance_uid, _p.c.patient_id, _p.c.name)
            .select_from(_i)
            .join(_se, _se.c.id == _i.c.series_pk)
            .join(_st, _st.c.id == _se.c.study_pk)
            .join(_p, _p.c.id == _st.c.patient_pk)
            .where(_i.c.id == pk)
        ).one()
        detail.update(
            series_instance_uid=context.series_instance_uid,
            study_instance_uid=context.study_instance_uid,
            patient_id=detail.get("patient_id", context.patient_id),
            patient_name=detail.get("patient_name", context.name),
            study_patient_id=context.patient_id,
            study_patient_name=context.name,
            patient_conflict=conflicting_studies(connection, [context.study_instance_uid]).get(
                context.study_instance_uid, []
            ),
        )
        return UidDescription("instance", detail)
    return None


def instance_pks_under(connection: Connection, uid: str) -> list[int]:
    """Ids of the instances a UID denotes: all of a study or series, or the instance itself."""
    by_instance = select(_i.c.id).where(_i.c.sop_instance_uid == uid)
    by_series = select(_i.c.id).join(_se, _se.c.id == _i.c.series_pk).where(_se.c.series_instance_uid == uid)
    by_study = (
        select(_i.c.id)
        .join(_se, _se.c.id == _i.c.series_pk)
        .join(_st, _st.c.id == _se.c.study_pk)
        .where(_st.c.study_instance_uid == uid)
    )
    for statement in (by_instance, by_series, by_study):
        pks = [int(pk) for pk in connection.execute(statement.order_by(_i.c.id)).scalars()]
        if pks:
            return pks
    return []


def _counts(connection: Connection, column: Any, source: Any = None) -> dict[str, int]:
    statement = select(column, func.count()).group_by(column)
    if source is not None:
        statement = statement.select_from(source)
    return {str(key) if key is not None else "": int(count) for key, count in connection.execute(statement)}


def stats(connection: Connection) -> dict[str, Any]:
    """Counts and sizes of the archive, and counts by procedure attribute (JSON-ready)."""
    total_bytes = connection.execute(select(func.coalesce(func.sum(_i.c.size), 0))).scalar_one()
    dates = connection.execute(select(func.min(_st.c.study_date), func.max(_st.c.study_date))).one()
    return {
        "patients": connection.execute(select(func.count()).select_from(_p)).scalar_one(),
        "studies": connection.execute(select(func.count()).select_from(_st)).scalar_one(),
        "series": connection.execute(select(func.count()).select_from(_se)).scalar_one(),
        "instances": connection.execute(select(func.count()).select_from(_i)).scalar_one(),
        "bytes": int(total_bytes),
        "frames": int(connection.execute(select(func.coalesce(func.sum(_i.c.frames), 0))).scalar_one()),
        "calibrated_instances": connection.execute(
            select(func.count()).select_from(_i).where(_i.c.calibrated.is_(True))
        ).scalar_one(),
        "study_date_min": dates[0].isoformat() if dates[0] else None,
        "study_date_max": dates[1].isoformat() if dates[1] else None,
        "by_level": _counts(connection, _lvl.c.level),
        "by_side": _counts(connection, _proc.c.side),
        "by_technique": _counts(connection, _proc.c.technique),
        "by_approach": _counts(connection, _proc.c.approach),
        "by_procedure_type": _counts(connection, _proc.c.procedure_type),
        "by_modality": _counts(connection, _se.c.modality, _i.join(_se, _se.c.id == _i.c.series_pk)),
        "by_transfer_syntax": _counts(connection, _i.c.transfer_syntax),
    }
