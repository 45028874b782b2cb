"""Kill importing processes at random points; the index must never name a file that is not there."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ingest_helpers import us_dataset, write_instance
from sqlalchemy import text

from archive.archive import Archive
from archive.ingest import IngestOutcome, Origin
from archive.settings import ArchiveSettings
from archive.store import hash_file
from archive.verify import verify

CHILD = Path(__file__).with_name("ingest_child.py")
KILLS = 30


def _inputs(directory: Path, count: int, first_seed: int) -> list[Path]:
    paths = []
    for i in range(first_seed, first_seed + count):
        big = i % 4 == 0  # some larger clips widen the window of a write in progress
        ds = us_dataset(frames=40 if big else 1, rows=160 if big else 16, columns=200 if big else 16, seed=i)
        paths.append(write_instance(directory, ds))
    return paths


def _wait_ready(process: subprocess.Popen[str], timeout_s: float = 120) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip() == "ready":
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"child exited with {process.returncode} before opening the archive")
    raise AssertionError("child did not open the archive in time")


@pytest.mark.slow
def test_killed_imports_never_leave_rows_without_files(tmp_path: Path, db_url: str) -> None:
    rng = random.Random(20240521)
    inputs: list[Path] = []
    data_dir = tmp_path / "data"
    kills = 0
    interrupted = 0
    for round_number in range(KILLS):
        fresh = _inputs(tmp_path / "in" / str(round_number), 6, first_seed=round_number * 6)
        batch = fresh + rng.sample(inputs, min(2, len(inputs)))
        inputs.extend(fresh)
        rng.shuffle(batch)
        process = subprocess.Popen(
            [sys.executable, str(CHILD), str(data_dir), db_url, *map(str, batch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            _wait_ready(process)
            time.sleep(rng.uniform(0.0, 0.25))  # the random kill point, not synchronisation
            process.send_signal(signal.SIGKILL)
            kills += process.wait(timeout=60) == -signal.SIGKILL
            assert process.stdout is not None
            interrupted += len(process.stdout.read().splitlines()) < len(batch)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if round_number % 10 == 9:
            _assert_every_row_has_its_file(data_dir, db_url)
    assert kills >= KILLS // 2, "most children must have been killed, not have finished"
    assert interrupted >= KILLS // 2, "most kills must land before the batch was done"
    _assert_every_row_has_its_file(data_dir, db_url)
    with Archive.open(ArchiveSettings(data_dir, db_url)) as archive:
        report = verify(archive, repair=True, stale_after_s=0)
        assert report.missing == [] and report.corrupt == []
        after = verify(archive)
        assert after.ok and after.orphans == [] and after.stale_temp_files == []
        if archive.engine.dialect.name == "sqlite":
            with archive.engine.connect() as connection:
                assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        # everything can still be imported afterwards, and nothing was lost
        outcomes = {archive.ingest(path, origin=Origin("file")).outcome for path in inputs}
        assert outcomes <= {IngestOutcome.STORED, IngestOutcome.DUPLICATE}
        assert len(list(archive.iter_index())) == len(inputs)


def _assert_every_row_has_its_file(data_dir: Path, db_url: str) -> None:
    with Archive.open(ArchiveSettings(data_dir, db_url)) as archive:
        for stored in archive.iter_index():
            path = archive.store.absolute(stored.path)
            assert path.is_file(), f"index row {stored.sop_instance_uid} has no file"
            assert hash_file(path) == (stored.sha256, stored.size), f"{stored.path} differs from its row"
