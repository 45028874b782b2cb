"""Spool files and directories: write errors absorbed, stale directories swept, aborted files deleted."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import threading
from pathlib import Path

import pytest

from pacs_bridge.spool import SpoolDirectory, SpoolFile


def test_write_error_is_recorded_and_the_partial_data_dropped(tmp_path: Path) -> None:
    spool = SpoolFile(tmp_path / "x.dcm", owner=None)
    spool.write(b"a" * 100)
    spool.flush()
    spool._fail(OSError(errno.ENOSPC, "No space left on device"))
    assert spool.write(b"more") == 4  # accepted and discarded: the stream keeps being read
    spool.flush()
    spool.close()
    assert spool.out_of_space
    assert (tmp_path / "x.dcm").stat().st_size == 0


def test_stale_directories_are_swept_live_ones_kept(tmp_path: Path) -> None:
    live = SpoolDirectory(tmp_path)
    dead = tmp_path / "pacs_bridge" / "otherhost-1-deadbeef"
    dead.mkdir()
    (dead / ".lock").write_bytes(b"")
    (dead / "tmp123.dcm").write_bytes(b"partial")
    second = SpoolDirectory(tmp_path)
    assert not dead.exists()
    assert live.path.exists() and second.path.exists()
    live.close()
    second.close()
    assert list((tmp_path / "pacs_bridge").iterdir()) == []


def test_discard_deletes_only_the_files_of_the_ended_association(tmp_path: Path) -> None:
    directory = SpoolDirectory(tmp_path)
    first, second = object(), object()
    mine = directory.create(first)
    other = directory.create(second)
    mine.write(b"partial clip")
    assert directory.busy
    assert directory.discard(first) == 1
    assert not Path(mine.name).exists()
    assert Path(other.name).exists() and directory.lookup(other.name) is other
    directory.release(other.name)
    assert not directory.busy
    directory.close()


@pytest.mark.parametrize("sizes", [[132, 200, 5_000], [132, 300_000] + [131_072] * 80 + [17]])
def test_seal_returns_the_sha256_of_exactly_the_bytes_in_the_file(tmp_path: Path, sizes: list[int]) -> None:
    # The second case passes the inline part, so the worker thread hashes the rest in batches.
    spool = SpoolFile(tmp_path / "x.dcm", owner=None)
    rng = random.Random(5)
    for size in sizes:
        spool.write(rng.randbytes(size))
        spool.flush()
    digest = spool.seal()
    spool.close()  # pynetdicom closes the file again after the handler
    assert digest == hashlib.sha256((tmp_path / "x.dcm").read_bytes()).hexdigest()
    assert not [t for t in threading.enumerate() if t.name == "usarchive-sha256"]


def test_seal_after_a_write_error_gives_no_digest(tmp_path: Path) -> None:
    spool = SpoolFile(tmp_path / "x.dcm", owner=None)
    spool.write(b"a" * 3_000_000)
    spool._fail(OSError(errno.ENOSPC, "No space left on device"))
    assert spool.seal() is None
    assert not [t for t in threading.enumerate() if t.name == "usarchive-sha256"]


def test_discarding_an_unfinished_data_set_stops_its_hashing(tmp_path: Path) -> None:
    directory = SpoolDirectory(tmp_path)
    owner = object()
    spool = directory.create(owner)
    spool.write(b"b" * 6_000_000)  # past the inline part: a hashing thread runs
    assert directory.discard(owner) == 1
    assert not [t for t in threading.enumerate() if t.name == "usarchive-sha256"]
    directory.close()


def test_writeback_is_started_every_8_mib_over_contiguous_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def record(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append((offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", record)
    spool = SpoolFile(tmp_path / "x.dcm", owner=None)
    chunk = random.Random(9).randbytes(131_072)
    for _ in range(160):  # 20 MiB
        spool.write(chunk)
        spool.flush()
    digest = spool.seal()
    assert [(offset, advice) for offset, _, advice in calls] == [
        (0, os.POSIX_FADV_DONTNEED),
        (8 * 1024 * 1024, os.POSIX_FADV_DONTNEED),
    ]
    assert all(length == 8 * 1024 * 1024 for _, length, _ in calls)
    data = (tmp_path / "x.dcm").read_bytes()
    assert data == chunk * 160 and digest == hashlib.sha256(data).hexdigest()


def test_flush_and_close_after_seal_are_harmless(tmp_path: Path) -> None:
    spool = SpoolFile(tmp_path / "x.dcm", owner=None)
    spool.write(b"abc")
    assert spool.seal() == hashlib.sha256(b"abc").hexdigest()
    spool.flush()  # pynetdicom's file interface may still be used after the handler
    spool.close()
    assert spool.error is None and (tmp_path / "x.dcm").read_bytes() == b"abc"
