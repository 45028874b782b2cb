"""A study, series or instance by its UID or a unique prefix of it (``usarchive show 1.2.826.0.1``)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from archive.index import schema

_i, _se, _st = schema.instance, schema.series, schema.study


class UnknownUidError(LookupError):
    """No study, series or instance UID is, or starts with, the text given."""


class AmbiguousUidError(LookupError):
    """Several UIDs start with the prefix given."""


#: UIDs a prefix lookup reads per level before calling the prefix ambiguous.
MAX_PREFIX_MATCHES = 4


def resolve_uid_prefix(connection: Connection, text: str) -> str:
    """The study, series or instance UID ``text`` names: itself, or the one UID it is a prefix of.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        Any connection to the index.
    text : str
        A whole UID or a unique prefix of one.

    Returns
    -------
    str

    Raises
    ------
    UnknownUidError
        If no UID starts with ``text``.
    AmbiguousUidError
        If several do; the message names some.
    """
    uid = text.strip()
    columns = (_i.c.sop_instance_uid, _se.c.series_instance_uid, _st.c.study_instance_uid)
    for column in columns:
        if connection.execute(select(column).where(column == uid).limit(1)).first() is not None:
            return uid
    like = uid.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    found: list[str] = []
    for column in columns:
        found += [
            str(v)
            for v in connection.execute(
                select(column).where(column.like(like, escape="\\")).limit(MAX_PREFIX_MATCHES)
            ).scalars()
        ]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UnknownUidError(
            f"{uid}: expected a study, series or instance UID (or a unique prefix), but none "
            "starts with it; list UIDs with usarchive find"
        )
    shown = ", ".join(found[:3])
    raise AmbiguousUidError(
        f"{uid}: expected a unique prefix, but several UIDs start with it ({shown}, ...); give more digits"
    )
