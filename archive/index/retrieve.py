"""The instances a retrieve (C-MOVE, C-GET) names, by the unique keys of its level.

PS3.4 C.4.2.2.1 / C.4.3.2.1: a hierarchical retrieve identifies what to send by
the unique key of its level and of every level above it (Patient ID, Study
Instance UID, Series Instance UID, SOP Instance UID); the key of the
retrieve level may be a list of UIDs. :func:`retrievable_instances` answers
exactly that from the index, without reading any file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from sqlalchemy import Connection, select

from archive.index import schema

_p, _st, _se, _i = schema.patient, schema.study, schema.series, schema.instance


class RetrieveLevel(StrEnum):
    """Query/Retrieve Level (0008,0052) of a retrieve."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


@dataclass(frozen=True)
class RetrieveKeys:
    """The unique keys of a retrieve identifier; empty means "not given".

    Attributes
    ----------
    level : RetrieveLevel
    patient_id : str or None
        Patient ID (Patient Root model; required at PATIENT level).
    study_uids, series_uids, sop_instance_uids : tuple of str
        UID lists of the levels at and above ``level``.
    """

    level: RetrieveLevel
    patient_id: str | None = None
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    sop_instance_uids: tuple[str, ...] = ()


class RetrievableInstance(NamedTuple):
    """One stored instance to send: what the C-STORE needs and where its file is.

    ``path`` is relative to the archive's store (``Archive.retrievable`` makes it absolute).
    """

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: str
    size: int


def retrievable_instances(
    connection: Connection, keys: RetrieveKeys, limit: int
) -> list[RetrievableInstance]:
    """Instances matching ``keys``, in study, series and instance-number order, at most ``limit``.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        A read connection to the index.
    keys : RetrieveKeys
        Every key given restricts the match (AND); a UID list matches any of its UIDs.
    limit : int
        At most this many rows (the caller asks one more than it accepts, to detect too many).

    Returns
    -------
    list of RetrievableInstance
    """
    statement = (
        select(_i.c.sop_instance_uid, _i.c.sop_class_uid, _i.c.transfer_syntax, _i.c.path, _i.c.size)
        .join(_se, _se.c.id == _i.c.series_pk)
        .join(_st, _st.c.id == _se.c.study_pk)
    )
    if keys.patient_id is not None:
        statement = statement.join(_p, _p.c.id == _st.c.patient_pk).where(_p.c.patient_id == keys.patient_id)
    if keys.study_uids:
        statement = statement.where(_st.c.study_instance_uid.in_(keys.study_uids))
    if keys.series_uids:
        statement = statement.where(_se.c.series_instance_uid.in_(keys.series_uids))
    if keys.sop_instance_uids:
        statement = statement.where(_i.c.sop_instance_uid.in_(keys.sop_instance_uids))
    statement = statement.order_by(_st.c.id, _se.c.id, _i.c.instance_number, _i.c.id).limit(limit)
    return [RetrievableInstance(*row) for row in connection.execute(statement)]
