"""Shared set-up of the annotator tests.

* Makes the helper module ``clip_files`` importable.
* ``archive``: an empty archive in the test's temporary directory, with the
  reviewer ``alice`` set in the environment (the widget asks nobody).
* Qt binding: PyQt6 (the ``annotator`` extra). PySide6 6.12 on Python 3.11
  was dropped because its signal path decrements ``None``'s reference count
  about 50 times per ``dims.set_current_step`` of a shown viewer, which aborts
  the interpreter ("Fatal Python error: none_dealloc") after a few thousand
  frame steps: a crash a reviewer would meet in a long session.
  ``test_no_reference_leak_on_none`` in ``test_viewer.py`` guards it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from archive.archive import Archive
from archive.settings import ArchiveSettings

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Archive]:
    """An empty archive; the configured reviewer is ``alice`` (as ``[review] reviewer`` would set)."""
    monkeypatch.delenv("USARCHIVE_REVIEWER", raising=False)
    with Archive.open(ArchiveSettings(tmp_path / "data", reviewer="alice")) as opened:
        yield opened
