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


def _read_results(process: subprocess.Popen[str], count: int) -> int:
    """Read up to ``count`` result lines from the child; return how many arrived."""
    assert process.stdout is not None
    read = 0
    while read < count:
        if not process.stdout.readline():
            break
        read += 1
    return read


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
            # The kill point is chosen by progress, not by the clock, so a faster ingest
            # cannot finish every batch before the signal: wait for a random number of
            # results, then kill within the next few milliseconds of work.
            done = _read_results(process, rng.randrange(len(batch)))
            time.sleep(rng.uniform(0.0, 0.01))  # the random kill point inside the next file
            process.send_signal(signal.SIGKILL)
            kills += process.wait(timeout=60) == -signal.SIGKILL
            assert process.stdout is not None
            done += len(process.stdout.read().splitlines())
            interrupted += done < len(batch)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if round_number % 10 == 9:
            _assert_every_row_has_its_file(data_dir, db_url)
    assert kills >= KILLS // 2, f"most children must have been killed, not have finished ({kills}/{KILLS})"
    assert interrupted >= KILLS // 2, f"most kills must land mid-batch ({interrupted}/{KILLS})"
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
        assert len(list(archive.index.iter_index())) == len(inputs)


def _assert_every_row_has_its_file(data_dir: Path, db_url: str) -> None:
    with Archive.open(ArchiveSettings(data_dir, db_url)) as archive:
        for stored in archive.index.iter_index():
            path = archive.store.absolute(stored.path)
            assert path.is_file(), f"index row {stored.sop_instance_uid} has no file"
            assert hash_file(path) == (stored.sha256, stored.size), f"{stored.path} differs from its row"
