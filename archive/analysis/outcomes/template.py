"""The outcome template: a CSV of the archived procedures that still lack an outcome, to fill in.

One row per procedure (study × side of the archived clips) without a stored
outcome, with the identifiers clinic staff find the case by (patient ID, study
date, accession number, operator, station, read from the first clip's stored
header), its study UID and side, and empty score cells. The filled file is
imported as it is with ``usarchive outcome import``
(:meth:`archive.analysis.outcomes.store.OutcomeStore.import_csv`). Written atomically (temp,
fsync, rename).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

from archive.analysis.outcomes.model import ID_COLUMNS, TEMPLATE_COLUMNS
from archive.analysis.outcomes.sql import outcomes_for
from archive.fsutil import fsync_directory, fsync_file
from archive.index.queries import InstanceRow, Query

if TYPE_CHECKING:
    from archive.archive import Archive

logger = logging.getLogger(__name__)

_EVERY = 10**9


def _ids(archive: Archive, row: InstanceRow) -> dict[str, str]:
    from archive.analysis.audit.gather import case_ids

    try:
        dataset = pydicom.dcmread(archive.store.absolute(row.path), stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        logger.warning("outcome template: %s header unreadable: %s", row.sop_instance_uid, exc)
        return {
            "patient_id": row.patient_id,
            "study_date": row.study_date.isoformat() if row.study_date else "",
        }
    ids = case_ids(dataset).to_dict()
    return {name: str(ids[name] or "") for name in ID_COLUMNS}


def template_rows(archive: Archive) -> list[dict[str, str]]:
    """The procedures without an outcome, as template rows (by study date, then study UID and side).

    Parameters
    ----------
    archive : Archive
        An open archive.

    Returns
    -------
    list of dict
        Keys :data:`archive.analysis.outcomes.model.TEMPLATE_COLUMNS`; scores empty.
    """
    done = {(o.study_uid, o.side.value) for o in outcomes_for(archive.engine)}
    first: dict[tuple[str, str], InstanceRow] = {}
    for row in sorted(archive.index.find(Query(limit=_EVERY)), key=lambda r: r.sop_instance_uid):
        if row.side is None:
            continue
        key = (row.study_instance_uid, row.side)
        if key not in done:
            first.setdefault(key, row)
    rows: list[dict[str, str]] = []
    for (study_uid, side), clip in first.items():
        values = dict.fromkeys(TEMPLATE_COLUMNS, "")
        values.update(_ids(archive, clip))
        values.update(study_uid=study_uid, side=side)
        rows.append(values)
    rows.sort(key=lambda r: (r["study_date"], r["study_uid"], r["side"]))
    return rows


def write_template(archive: Archive, path: Path) -> int:
    """Write the template of :func:`template_rows` to ``path`` atomically; the number of rows.

    Parameters
    ----------
    archive : Archive
        An open archive.
    path : Path
        The CSV to write (UTF-8); replaced if it exists.

    Returns
    -------
    int
        Rows written (procedures lacking an outcome).
    """
    rows = template_rows(archive)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(TEMPLATE_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    temp = path.with_name(f".{path.name}.part")
    temp.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    fsync_file(temp)
    temp.replace(path)
    fsync_directory(path.parent)
    logger.info("outcome template: %d procedures without outcome written to %s", len(rows), path)
    return len(rows)


__all__ = ["template_rows", "write_template"]
