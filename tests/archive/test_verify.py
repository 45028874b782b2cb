"""verify --repair moves strays into the layout; an interrupted import leaves nothing to report."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import part10_bytes, us_dataset, write_instance

from archive.archive import Archive
from archive.ingest import IngestOutcome, Origin
from archive.settings import ArchiveSettings
from archive.store import FileStore, relative_path
from archive.verify import verify

CHILD = Path(__file__).with_name("ingest_child.py")


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as opened:
        yield opened


def test_repair_moves_a_stray_file_into_the_layout(archive: Archive) -> None:
    ds = us_dataset(seed=21)
    stray = archive.store.root / "ab" / "copied-by-hand.dcm"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(part10_bytes(ds))
    report = verify(archive, repair=True)
    expected = relative_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert report.repaired == [
        {"path": "ab/copied-by-hand.dcm", "action": f"moved to {expected} and indexed"}
    ]
    assert not stray.exists()
    assert archive.store.iter_instance_files() == [expected]
    assert [row.path for row in archive.index.iter_index()] == [expected]
    assert verify(archive).ok


def _interrupt_after_placing(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C arrives right after a file is renamed into place, before the transaction commits."""
    place = FileStore.place

    def place_then_interrupt(self: FileStore, *args: Any, **kwargs: Any) -> Path:
        place(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(FileStore, "place", place_then_interrupt)


@pytest.mark.parametrize("many", [False, True], ids=["ingest", "ingest_many"])
def test_ctrl_c_between_placing_and_commit_leaves_nothing_to_report(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, many: bool
) -> None:
    sources = [write_instance(tmp_path / "in", us_dataset(seed=30 + i)) for i in range(3)]
    before = [p.read_bytes() for p in sources]
    _interrupt_after_placing(archive, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        if many:
            archive.ingest_many(sources, origins=[Origin("file")] * len(sources))
        else:
            archive.ingest(sources[0], origin=Origin("file"))
    monkeypatch.undo()
    report = verify(archive, stale_after_s=0)
    assert report.ok and report.orphans == [] and report.stale_temp_files == [], report.to_json()
    assert archive.store.iter_instance_files() == []
    assert [p.read_bytes() for p in sources] == before
    assert archive.ingest(sources[0], origin=Origin("file")).outcome is IngestOutcome.STORED


def test_ctrl_c_on_a_moved_file_gives_it_back(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    source = archive.staging_dir / "spooled.dcm"
    source.write_bytes(part10_bytes(us_dataset(seed=40)))
    _interrupt_after_placing(archive, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        archive.ingest(source, origin=Origin("file"), move=True)
    assert source.exists(), "the caller's file is back where it was"
    assert archive.store.iter_instance_files() == []


@pytest.mark.slow
def test_sigint_during_real_imports_leaves_nothing_for_verify(tmp_path: Path, db_url: str) -> None:
    data_dir = tmp_path / "data"
    for round_number in range(4):
        sources = [
            write_instance(tmp_path / "in" / str(round_number), us_dataset(seed=100 * round_number + i))
            for i in range(12)
        ]
        process = subprocess.Popen(
            [sys.executable, str(CHILD), str(data_dir), db_url, "--group", "3", *map(str, sources)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
            for _ in range(round_number * 2):  # interrupt after a varying number of results
                process.stdout.readline()
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        with Archive.open(ArchiveSettings(data_dir, db_url)) as archive:
            report = verify(archive, stale_after_s=0)
        assert report.ok and report.orphans == [] and report.stale_temp_files == [], report.to_json()
