"""An offered SOP Instance UID that is already stored: duplicate, conflict or replacement.

Identical bytes are a ``DUPLICATE`` and change nothing. Different bytes follow
:class:`~archive.ingest.DuplicatePolicy`: ``keep-first`` rejects the offer as a
``CONFLICT``; ``replace`` places the new file under a name of its own, keeps the
old one under ``store/.replaced`` and records a ``replaced`` event, all inside
the caller's write transaction (see :mod:`archive.archive`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archive.dicom_header import InstanceHeader
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
        ``DUPLICATE`` (nothing placed) or ``REPLACED`` (new file placed; the old
        path to remove after the commit when it differs).

    Raises
    ------
    IngestRejectedError
        ``CONFLICT`` when the bytes differ and the policy is ``keep-first``.
    """
    header, staged, origin = item.header, item.staged, item.origin
    stored_path = store.absolute(existing.path)
    if existing.sha256 == staged.sha256:
        result = instance_result(IngestOutcome.DUPLICATE, header, staged, stored_path)
        return Decision(replace(result, reason="identical bytes already stored"), placed=False)
    if policy is DuplicatePolicy.KEEP_FIRST:
        raise IngestRejectedError(
            RejectCode.CONFLICT,
            f"SOP Instance UID {header.sop_instance_uid} is already stored with different content "
            f"(stored sha256 {existing.sha256[:12]}…, offered {staged.sha256[:12]}…); the archive keeps "
            "the first version (duplicate_policy = keep-first): give the new object its own SOP "
            "Instance UID, or set duplicate_policy = replace to replace it",
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
