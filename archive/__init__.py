"""usarchive's archive: storage, index, domain model and everything derived.

``archive`` depends on neither ``pacs_bridge`` nor ``annotator``; both depend on
it. Heavy modules are imported lazily by their users, so ``import archive`` is
cheap.
"""

from __future__ import annotations

from archive.errors import ArchiveError, CalibrationError, TimingError
from archive.model import ProcedureType, ReviewStatus, Side, SpinalLevel, Technique

__all__ = [
    "ArchiveError",
    "CalibrationError",
    "ProcedureType",
    "ReviewStatus",
    "Side",
    "SpinalLevel",
    "Technique",
    "TimingError",
]
__version__ = "0.1.0"
