"""Spool files and directories: write errors absorbed, stale directories swept, aborted files deleted."""

from __future__ import annotations

import errno
from pathlib import Path

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
