"""The worklist and MPPS tests run on SQLite and PostgreSQL: the archive fixture takes ``db_url``."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.settings import ArchiveSettings


@pytest.fixture
def archive_settings(tmp_path: Path, db_url: str) -> ArchiveSettings:
    return ArchiveSettings(data_dir=tmp_path / "data", db_url=db_url)
