"""Fixtures of the Query/Retrieve tests: the sample studies of ``qr_samples.py``, a spy on the fast sender."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from qr_samples import Samples, write_samples

from archive.archive import Archive
from archive.ingest import Origin
from pacs_bridge import pdata_writer


@pytest.fixture
def samples(archive: Archive, tmp_path: Path) -> Samples:
    """The sample studies written to ``tmp_path / "samples"`` and ingested into ``archive``."""
    written = write_samples(tmp_path / "samples")
    for path in written.files:
        archive.ingest(path, origin=Origin("file"))
    return written


@pytest.fixture
def fast_writes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the fast sender wrote (``pdata_writer.write_stored_message`` spied on)."""
    written: list[Path] = []
    original = pdata_writer.write_stored_message

    def spy(sock: Any, command: Any, path: Path, *args: Any) -> int:
        pdus = original(sock, command, path, *args)
        written.append(path)
        return pdus

    monkeypatch.setattr(pdata_writer, "write_stored_message", spy)
    return written
