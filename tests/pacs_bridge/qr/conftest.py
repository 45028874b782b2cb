"""Fixtures of the Query/Retrieve tests: the sample studies of ``qr_samples.py`` in the test's archive."""

from __future__ import annotations

from pathlib import Path

import pytest
from qr_samples import Samples, write_samples

from archive.archive import Archive
from archive.ingest import Origin


@pytest.fixture
def samples(archive: Archive, tmp_path: Path) -> Samples:
    """The sample studies written to ``tmp_path / "samples"`` and ingested into ``archive``."""
    written = write_samples(tmp_path / "samples")
    for path in written.files:
        archive.ingest(path, origin=Origin("file"))
    return written
