"""Our procedure attributes in WADO-RS ``/metadata``: the private block C-FIND and QIDO-RS answer.

Spinal levels, side, technique, needle approach and procedure type of each
instance, from the index (never the file: they change when a user tags a
clip, the file does not), in the private block of creator
:data:`~archive.query.PRIVATE_CREATOR` in group :data:`~archive.query.PRIVATE_GROUP`
(``(0011,0010) LO "USARCHIVE 1.0"``, elements ``(0011,1001)`` to
``(0011,1005)``, all LO; spinal levels multi-valued in anatomical order),
as in docs/conformance.md section 5. An element the index has no value for
is present and empty (``{"vr": "LO"}``), as C-FIND returns an asked key.

The block is the one the stored header already reserves for our creator, or
else the first free one (``0x10`` unless the file uses group 0x0011 for
another creator); our elements in the file, if any, are replaced by the
index's values.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, Select, select

from archive.index import schema
from archive.index.engine import autocommit_reads
from archive.model import SpinalLevel, sort_levels
from archive.query import PRIVATE_CREATOR, PRIVATE_GROUP, PROCEDURE_ELEMENTS

#: Procedure values of one instance: name in :data:`PROCEDURE_ELEMENTS` → values.
ProcedureValues = dict[str, list[str]]

_COLUMNS = ("side", "technique", "approach", "procedure_type")


def _scoped(query: Select[Any], study: str, series: str | None, instance: str | None) -> Select[Any]:
    st, se, it = schema.study, schema.series, schema.instance
    query = query.where(st.c.study_instance_uid == study)
    if series is not None:
        query = query.where(se.c.series_instance_uid == series)
    if instance is not None:
        query = query.where(it.c.sop_instance_uid == instance)
    return query


def _ordered_levels(values: list[str]) -> list[str]:
    known = [SpinalLevel(value) for value in values if value in SpinalLevel.__members__]
    unknown = sorted({value for value in values if value not in SpinalLevel.__members__})
    return [str(level) for level in sort_levels(known)] + unknown


def procedure_values(
    engine: Engine, study: str, series: str | None = None, instance: str | None = None
) -> dict[str, ProcedureValues]:
    """The procedure values of the instances under ``study`` (and ``series``, ``instance``).

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The index.
    study, series, instance : str
        The UIDs of the WADO-RS path.

    Returns
    -------
    dict
        SOP Instance UID → :data:`ProcedureValues` (two queries, whatever the number of
        instances); an instance without any value is absent.
    """
    st, se, it = schema.study, schema.series, schema.instance
    proc, lv = schema.instance_procedure, schema.instance_level
    hierarchy = st.join(se, se.c.study_pk == st.c.id).join(it, it.c.series_pk == se.c.id)
    found: dict[str, ProcedureValues] = defaultdict(dict)
    rows = _scoped(
        select(it.c.sop_instance_uid, *(proc.c[name] for name in _COLUMNS)).select_from(
            hierarchy.join(proc, proc.c.instance_pk == it.c.id)
        ),
        study,
        series,
        instance,
    )
    levels = _scoped(
        select(it.c.sop_instance_uid, lv.c.level).select_from(
            hierarchy.join(lv, lv.c.instance_pk == it.c.id)
        ),
        study,
        series,
        instance,
    )
    with autocommit_reads(engine) as connection:
        for row in connection.execute(rows).all():
            for name in _COLUMNS:
                value = row._mapping[proc.c[name]]
                if value is not None:
                    found[row.sop_instance_uid][name] = [str(value)]
        by_instance: dict[str, list[str]] = defaultdict(list)
        for uid, level in connection.execute(levels).all():
            by_instance[uid].append(str(level))
    for uid, values in by_instance.items():
        found[uid]["levels"] = _ordered_levels(values)
    return dict(found)


def _block(document: dict[str, Any]) -> int:
    """The block (high byte of the element) our creator has in ``document``, or the first free one."""
    used = set()
    group = f"{PRIVATE_GROUP:04X}"
    for block in range(0x10, 0x100):
        creator = document.get(f"{group}00{block:02X}")
        if creator is None:
            continue
        if creator.get("Value") == [PRIVATE_CREATOR]:
            return block
        used.add(block)
    return min(set(range(0x10, 0x100)) - used)


def with_procedure(document: dict[str, Any], values: ProcedureValues) -> dict[str, Any]:
    """``document`` (DICOM JSON of one instance) with the private procedure block of ``values``.

    Parameters
    ----------
    document : dict
        Not changed (its nested values are shared with the result, not modified).
    values : ProcedureValues
        From :func:`procedure_values`; missing names give empty elements.

    Returns
    -------
    dict
        A new document, keys in tag order.
    """
    block = _block(document)
    group = f"{PRIVATE_GROUP:04X}"
    ours = f"{group}{block:02X}"
    result = {tag: value for tag, value in document.items() if not tag.startswith(ours)}
    result[f"{group}00{block:02X}"] = {"vr": "LO", "Value": [PRIVATE_CREATOR]}
    for name, element in PROCEDURE_ELEMENTS.items():
        element_json: dict[str, Any] = {"vr": "LO"}
        if values.get(name):
            element_json["Value"] = list(values[name])
        result[f"{ours}{element:02X}"] = element_json
    return dict(sorted(result.items()))


__all__ = ["ProcedureValues", "procedure_values", "with_procedure"]
