"""Verification of the store against the index (``usarchive verify [--repair]``).

Checks, for every indexed instance, that its file exists and that its SHA-256
and size equal what the index recorded (*missing*, *corrupt*), and looks for
``*.dcm`` files in the store that no index row names (*orphans*: what a process
killed between placing a file and committing its row leaves behind), and for
temp files left in ``store/.tmp``. It also lists the studies whose instances
disagree on the patient (:mod:`archive.index.patients`); they are data for a
person to resolve, not a fault of the store, and do not make the report fail.
Last, it lists the instances that match a forwarding route but have no task
toward its destination (*unrouted*, :mod:`archive.forward.coverage`): the
outbox makes that impossible for instances received while the route existed,
so it means a route added or changed later, or a re-tagged instance.

``repair`` never deletes data it cannot account for:

- an orphan is ingested again with ``move=True``: it is renamed to its place
  in the store's layout (wherever it lay) and indexed; if the
  index already holds the same data set for its SOP Instance UID it is a
  redundant copy and is removed; if it is rejected (conflict, invalid) it is
  moved to ``store/.orphans/`` for a person to look at;
- temp files older than ``stale_after_s`` are removed (younger ones may belong
  to an ingest running in another process);
- unrouted instances get their missing forwarding tasks (they will be sent);
- missing and corrupt files cannot be repaired here; they are reported (restore
  them from a backup) and make the report fail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archive.archive import Archive
from archive.ingest import IngestOutcome, Origin
from archive.store import hash_file

logger = logging.getLogger(__name__)

#: Temp files younger than this (seconds) are left alone by ``repair``.
DEFAULT_STALE_AFTER_S = 3600.0


@dataclass
class VerifyReport:
    """What :func:`verify` found and did; ``ok`` is false when a problem remains."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    stale_temp_files: list[str] = field(default_factory=list)
    repaired: list[dict[str, str]] = field(default_factory=list)
    repair: bool = False
    #: Studies whose instances disagree on the patient: listed for a person, never an error of the store.
    patient_conflicts: list[dict[str, str]] = field(default_factory=list)
    #: SOP Instance UIDs that match a forwarding route and have no task toward its destination.
    unrouted: list[str] = field(default_factory=list)
    #: Instances a COMPLETED MPPS lists that the archive never received (made, not sent): listed, for a
    #: person to fetch from the scanner; the store itself is not at fault, so ``ok`` does not change.
    not_received: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No missing or corrupt files, and no orphans, temp files or unrouted instances left unrepaired."""
        if self.missing or self.corrupt:
            return False
        return self.repair or not (self.orphans or self.stale_temp_files or self.unrouted)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (see docs/json-output.md)."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "orphans": self.orphans,
            "stale_temp_files": self.stale_temp_files,
            "repaired": self.repaired,
            "patient_conflicts": self.patient_conflicts,
            "unrouted": self.unrouted,
            "not_received": self.not_received,
        }


def verify(
    archive: Archive,
    *,
    repair: bool = False,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Re-hash every indexed file and look for files the index does not know.

    Parameters
    ----------
    archive : Archive
        The open archive.
    repair : bool
        Index or set aside orphans and remove stale temp files (see module docstring).
    stale_after_s : float
        Age in seconds after which a temp file counts as left over.
    progress : callable, optional
        Called with each indexed file's size in bytes once it is checked (a progress bar).

    Returns
    -------
    VerifyReport
        Paths are store-relative (POSIX).
    """
    report = VerifyReport(repair=repair)
    indexed: set[str] = set()
    for stored in archive.index.iter_index():
        report.checked += 1
        indexed.add(stored.path)
        path = archive.store.absolute(stored.path)
        if progress is not None:
            progress(stored.size)
        try:
            digest, size = hash_file(path)
        except FileNotFoundError:
            report.missing.append(stored.path)
            logger.error("missing: %s (%s)", stored.path, stored.sop_instance_uid)
            continue
        if (digest, size) != (stored.sha256, stored.size):
            report.corrupt.append(stored.path)
            logger.error(
                "corrupt: %s (%s): sha256 differs from the index", stored.path, stored.sop_instance_uid
            )
    report.orphans = [p for p in archive.store.iter_instance_files() if p not in indexed]
    now = time.time()
    report.stale_temp_files = [
        p.relative_to(archive.store.root).as_posix()
        for p in archive.store.stale_temp_files()
        if now - p.stat().st_mtime >= stale_after_s
    ]
    if repair:
        _repair(archive, report)
    report.unrouted = archive.forward.unrouted()
    for uid in report.unrouted:
        logger.error("unrouted: %s matches a forwarding route but has no task", uid)
    if repair and report.unrouted:
        queued = archive.forward.queue_unrouted()
        report.repaired.append(
            {
                "path": "",
                "action": f"queued {queued} missing forwarding task(s) "
                f"for {len(report.unrouted)} instance(s)",
            }
        )
    report.patient_conflicts = [conflict.to_json() for conflict in archive.index.patient_conflicts()]
    for conflict in report.patient_conflicts:
        logger.warning("patient conflict in study %s: %s", conflict["study_instance_uid"], conflict["detail"])
    report.not_received = [
        {"mpps": mpps, "sop_instance_uid": uid} for mpps, uid in archive.worklist.all_unsent_instances()
    ]
    for item in report.not_received:
        logger.warning("not received: %s (listed by MPPS %s)", item["sop_instance_uid"], item["mpps"])
    return report


def _repair(archive: Archive, report: VerifyReport) -> None:
    for relative in report.orphans:
        path = archive.store.absolute(relative)
        result = archive.ingest(path, origin=Origin("file", path=str(path)), move=True)
        if result.outcome in (IngestOutcome.STORED, IngestOutcome.REPLACED) and result.path is not None:
            placed = result.path.relative_to(archive.store.root).as_posix()
            action = "indexed" if placed == relative else f"moved to {placed} and indexed"
        elif result.outcome is IngestOutcome.DUPLICATE and result.path != path:
            archive.store.remove(relative)
            action = "removed redundant copy of an indexed instance"
        else:
            kept = archive.store.set_aside(path)
            action = f"set aside at {kept.relative_to(archive.store.root).as_posix()}: {result.reason}"
        report.repaired.append({"path": relative, "action": action})
        logger.info("orphan %s: %s", relative, action)
    for relative in report.stale_temp_files:
        archive.store.absolute(relative).unlink(missing_ok=True)
        report.repaired.append({"path": relative, "action": "removed stale temp file"})
