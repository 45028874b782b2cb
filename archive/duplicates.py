"""An offered SOP Instance UID that is already stored: duplicate, conflict or replacement.

Duplicates are judged on the *data set*, everything after the File Meta
Information: a receiver writes its own file meta (implementation UID, source
AE title), so the same object imported from a USB export and later sent by the
scanner differs in its file bytes but not in its data set. The same data set
again is a ``DUPLICATE`` and changes nothing (the receiver answers Success).
In the same transfer syntax the data sets are compared byte for byte (SHA-256
of the bytes after the file meta); in two different uncompressed transfer
syntaxes they are compared element by element after parsing; a compressed
data set in another transfer syntax than the stored one always counts as
different.

A different data set follows :class:`~archive.ingest.DuplicatePolicy`:
``keep-first`` rejects the offer as a ``CONFLICT`` (the reason names the
attributes that differ); ``replace`` places the new file under a name of its
own, keeps the old one under ``store/.replaced`` and records a ``replaced``
event, all inside the caller's write transaction (see :mod:`archive.archive`).
The comparison reads both files only when their bytes differ, i.e. only for an
offered instance whose UID is already stored.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from archive.dicom_header import InstanceHeader, dataset_start
from archive.index.items import write_items
from archive.index.writes import (
    StoredInstance,
    apply_classification,
    record_instance_event,
    update_instance,
    upsert_hierarchy,
)
from archive.ingest import (
    DuplicatePolicy,
    IngestOutcome,
    IngestRejectedError,
    IngestResult,
    Origin,
    RejectCode,
)
from archive.store import FileStore, StagedFile, relative_path

if TYPE_CHECKING:
    from archive.rules import Classification

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """An offered instance staged, validated and classified, ready for the index."""

    header: InstanceHeader
    staged: StagedFile
    origin: Origin
    classification: Classification | None
    sync: bool = True


@dataclass(frozen=True)
class Decision:
    """What the index transaction decided for one :class:`Prepared` instance."""

    result: IngestResult
    placed: bool
    remove_after_commit: str | None = None
    series: tuple[str, int, date] | None = None  # (UID, id, sort_date) to remember after commit


def instance_result(
    outcome: IngestOutcome, header: InstanceHeader, staged: StagedFile, path: Path
) -> IngestResult:
    """The :class:`IngestResult` of an instance that is (or already was) in the store at ``path``."""
    return IngestResult(
        outcome=outcome,
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        sha256=staged.sha256,
        size=staged.size,
        path=path,
    )


_CHUNK = 1024 * 1024
#: Attributes named in a conflict reason before "and N more".
_NAMED_DIFFERENCES = 4


@dataclass(frozen=True)
class DataSetComparison:
    """Whether a stored and an offered file hold the same data set, and what differs if not.

    Attributes
    ----------
    same : bool
    detail : str
        How they were compared and, when different, what differs.
    """

    same: bool
    detail: str


def _tail_sha256(path: Path, start: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        handle.seek(start)
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _element_name(ds: Dataset, tag: Any) -> str:
    element = ds[tag]
    name = element.name if element.keyword else "private element"
    return f"{name} ({element.tag.group:04X},{element.tag.element:04X})"


def _differing(stored: Dataset, offered: Dataset) -> list[str]:
    """Names of the top-level elements (file meta excluded) whose presence or value differs."""
    names: list[str] = []
    for tag in sorted(set(stored.keys()) | set(offered.keys())):
        if tag.group == 0x0002:
            continue
        if tag not in stored or tag not in offered:
            where = "offered" if tag in offered else "stored"
            names.append(f"{_element_name(offered if tag in offered else stored, tag)} only in the {where}")
        elif stored[tag].value != offered[tag].value:
            names.append(_element_name(offered, tag))
    return names


def _describe(names: list[str], what: str) -> str:
    if not names:
        return what
    shown = ", ".join(names[:_NAMED_DIFFERENCES])
    more = len(names) - _NAMED_DIFFERENCES
    return f"{shown}{f' and {more} more' if more > 0 else ''} differ"


def compare_data_sets(stored: Path, offered: Path) -> DataSetComparison:
    """Compare the data sets (everything after the File Meta Information) of two Part 10 files.

    Parameters
    ----------
    stored, offered : Path
        Validated Part 10 files (the stored instance and the staged offer).

    Returns
    -------
    DataSetComparison
        ``same`` when the data sets are equal (see the module docstring for how
        different transfer syntaxes are compared).
    """
    stored_ts, stored_start = dataset_start(stored)
    offered_ts, offered_start = dataset_start(offered)
    if stored_ts == offered_ts:
        stored_length = stored.stat().st_size - stored_start
        offered_length = offered.stat().st_size - offered_start
        if stored_length == offered_length and _tail_sha256(stored, stored_start) == _tail_sha256(
            offered, offered_start
        ):
            return DataSetComparison(True, "the same data set (only the File Meta Information differs)")
        header_names = _differing(
            pydicom.dcmread(stored, stop_before_pixels=True, defer_size="1 MB"),
            pydicom.dcmread(offered, stop_before_pixels=True, defer_size="1 MB"),
        )
        return DataSetComparison(
            False, _describe(header_names, "the attributes before Pixel Data are equal; Pixel Data differs")
        )
    syntaxes = f"stored in transfer syntax {stored_ts}, offered in {offered_ts}"
    native = all(
        not UID(ts).is_compressed and ts != DeflatedExplicitVRLittleEndian for ts in (stored_ts, offered_ts)
    )
    if not native:
        return DataSetComparison(
            False, f"{syntaxes}; a compressed data set is only compared in its own syntax"
        )
    names = _differing(pydicom.dcmread(stored), pydicom.dcmread(offered))
    if not names:
        return DataSetComparison(True, f"the same data set ({syntaxes}; equal element by element)")
    return DataSetComparison(False, f"{syntaxes}; {_describe(names, '')}")


def resolve_existing(
    connection: Any,
    store: FileStore,
    policy: DuplicatePolicy,
    item: Prepared,
    existing: StoredInstance,
    values: dict[str, Any],
) -> Decision:
    """Decide for an offered instance whose SOP Instance UID already has a row.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        The caller's open write transaction.
    store : FileStore
        Where the stored file is and the replacement goes.
    policy : DuplicatePolicy
        What different bytes under the same UID do.
    item : Prepared
        The offered instance.
    existing : StoredInstance
        The row already stored under its SOP Instance UID.
    values : dict
        Instance row values of the offered instance (path, size, hashes, origin, header columns).

    Returns
    -------
    Decision
        ``DUPLICATE`` (the same data set: nothing placed) or ``REPLACED`` (new
        file placed; the old path to remove after the commit when it differs).

    Raises
    ------
    IngestRejectedError
        ``CONFLICT`` when the data sets differ and the policy is ``keep-first``.
    """
    header, staged, origin = item.header, item.staged, item.origin
    stored_path = store.absolute(existing.path)
    if existing.sha256 == staged.sha256:
        result = instance_result(IngestOutcome.DUPLICATE, header, staged, stored_path)
        return Decision(replace(result, reason="identical bytes already stored"), placed=False)
    comparison = compare_data_sets(stored_path, staged.path)
    if comparison.same:
        result = instance_result(IngestOutcome.DUPLICATE, header, staged, stored_path)
        reason = f"{comparison.detail} is already stored; the stored file is kept"
        return Decision(replace(result, reason=reason), placed=False)
    if policy is DuplicatePolicy.KEEP_FIRST:
        raise IngestRejectedError(
            RejectCode.CONFLICT,
            f"SOP Instance UID {header.sop_instance_uid} is already stored with a different data set "
            f"({comparison.detail}); the archive keeps the first version (duplicate_policy = "
            "keep-first): give the new object its own SOP Instance UID, or set duplicate_policy = "
            "replace to replace it.",
            sop_instance_uid=header.sop_instance_uid,
            sop_class_uid=header.sop_class_uid,
        )
    now = datetime.now(UTC)
    new_relative = relative_path(
        header.study_instance_uid,
        header.series_instance_uid,
        header.sop_instance_uid,
        sha256=staged.sha256,
    )
    kept = store.preserve(existing.path, now.strftime("%Y%m%dT%H%M%S%fZ"))
    series_pk, sort_date = upsert_hierarchy(
        connection, header.dataset, header.study_instance_uid, header.series_instance_uid
    )
    final = store.place(staged, new_relative, sync=item.sync)
    update_instance(
        connection,
        existing.pk,
        {**values, "path": new_relative, "series_pk": series_pk, "sort_date": sort_date},
    )
    apply_classification(connection, existing.pk, item.classification, now)
    write_items(connection, existing.pk, header.dataset, replace=True)
    record_instance_event(
        connection,
        {
            "sop_instance_uid": header.sop_instance_uid,
            "event": "replaced",
            "old_path": existing.path,
            "kept_path": kept,
            "old_sha256": existing.sha256,
            "new_sha256": staged.sha256,
            "origin": origin.describe(),
            "at": now,
        },
    )
    logger.info("replaced %s; old file kept at %s", header.sop_instance_uid, kept)
    result = instance_result(IngestOutcome.REPLACED, header, staged, final)
    reason = f"replaced the stored version (sha256 {existing.sha256[:12]}…), kept at {kept}"
    return Decision(
        replace(result, reason=reason),
        placed=True,
        remove_after_commit=existing.path if existing.path != new_relative else None,
    )
