"""The query tests use the archive tests' helpers (``ingest_helpers``) when run on their own."""

from __future__ import annotations

import sys
from pathlib import Path

_ARCHIVE_TESTS = str(Path(__file__).resolve().parent.parent)
if _ARCHIVE_TESTS not in sys.path:
    sys.path.insert(0, _ARCHIVE_TESTS)
