"""The index rows WADO-RS and STOW-RS need: the stored instances under a study, series or instance.

One query per request, joined down from ``study``; rows carry what the
retrieval paths need without opening a file (stored path, size, SHA-256,
transfer syntax, frames, rows, columns) and the UIDs of the hierarchy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from archive.index import schema
from archive.index.engine import autocommit_reads
from archive.web.errors import WebRequestError


@dataclass(frozen=True)
class StoredInstance:
    """One stored instance as the index has it."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    path: Path
    size: int
    sha256: str
    transfer_syntax: str
    frames: int | None
    rows: int | None
    columns: int | None
    photometric: str | None


def stored_instances(
    engine: Engine,
    store_root: Path,
    study: str,
    series: str | None = None,
    instance: str | None = None,
) -> list[StoredInstance]:
    """The instances under ``study`` (and ``series``, ``instance``), in series then instance order.

    Raises
    ------
    WebRequestError
        404 when nothing matches (naming what was asked).
    """
    st, se, it = schema.study, schema.series, schema.instance
    query = (
        select(
            st.c.study_instance_uid,
            se.c.series_instance_uid,
            it.c.sop_instance_uid,
            it.c.sop_class_uid,
            it.c.path,
            it.c.size,
            it.c.sha256,
            it.c.transfer_syntax,
            it.c.frames,
            it.c.rows,
            it.c.columns,
            it.c.photometric,
        )
        .select_from(st.join(se, se.c.study_pk == st.c.id).join(it, it.c.series_pk == se.c.id))
        .where(st.c.study_instance_uid == study)
        .order_by(se.c.series_number, se.c.id, it.c.instance_number, it.c.id)
    )
    if series is not None:
        query = query.where(se.c.series_instance_uid == series)
    if instance is not None:
        query = query.where(it.c.sop_instance_uid == instance)
    with autocommit_reads(engine) as connection:
        rows = connection.execute(query).all()
    if not rows:
        what = (
            f"study {study}"
            + (f", series {series}" if series else "")
            + (f", instance {instance}" if instance else "")
        )
        raise WebRequestError(404, f"{what}: not in the archive; QIDO-RS /studies lists what is")
    return [
        StoredInstance(
            study_uid=row.study_instance_uid,
            series_uid=row.series_instance_uid,
            sop_instance_uid=row.sop_instance_uid,
            sop_class_uid=row.sop_class_uid,
            path=store_root / row.path,
            size=int(row.size),
            sha256=row.sha256,
            transfer_syntax=row.transfer_syntax,
            frames=row.frames,
            rows=row.rows,
            columns=row.columns,
            photometric=row.photometric,
        )
        for row in rows
    ]
