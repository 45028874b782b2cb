from __future__ import annotations

import hashlib
import random
import re
import threading
from pathlib import Path

import pytest

from archive.store import FileStore, StreamingSha256, hash_file, relative_path, safe_component


@pytest.mark.parametrize(
    "uid",
    ["../../etc/passwd", "a/b", "..", ".", "1.2/../3", "x" * 200, "1.2.3\x00", "", "/abs", "0" * 65],
)
def test_unsafe_uids_become_hashed_names(uid: str) -> None:
    name = safe_component(uid)
    assert re.fullmatch(r"x[0-9a-f]{32}", name)
    assert name != safe_component(uid + "1")


def test_plain_uid_is_kept() -> None:
    assert safe_component("1.2.840.10008.5.1.4.1.1.3.1") == "1.2.840.10008.5.1.4.1.1.3.1"


def test_relative_path_stays_inside_store(tmp_path: Path) -> None:
    relative = relative_path("../..", "/etc", "../passwd")
    resolved = (tmp_path / relative).resolve()
    assert resolved.is_relative_to(tmp_path)
    assert len(Path(relative).parts) == 4
    bucket, study, _series, name = Path(relative).parts
    assert bucket == hashlib.sha256(study.encode()).hexdigest()[:2]
    assert name.endswith(".dcm") and not name.startswith(".")


def test_replacement_path_differs_from_first() -> None:
    first = relative_path("1.2", "1.3", "1.4")
    second = relative_path("1.2", "1.3", "1.4", sha256="ab" * 32)
    assert first != second
    assert second.endswith("1.4." + "ab" * 8 + ".dcm")


def test_stage_and_place_keep_bytes(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    payload = bytes(range(256)) * 5000
    staged = store.stage_stream([payload[:10]], None)
    assert staged.owned and staged.path.parent == store.staging_dir
    source = tmp_path / "in.bin"
    source.write_bytes(payload)
    staged = store.stage_file(source, move=False)
    assert staged.sha256 == hashlib.sha256(payload).hexdigest()
    assert staged.size == len(payload)
    final = store.place(staged, "aa/1/2/3.dcm")
    assert final.read_bytes() == payload
    assert source.exists(), "a copy must leave the source in place"
    assert hash_file(final) == (staged.sha256, staged.size)


def test_move_renames_caller_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    source = store.staging_dir / "incoming.dcm"
    source.write_bytes(b"abc")
    staged = store.stage_file(source, move=True)
    assert not staged.owned and staged.path == source
    final = store.place(staged, "bb/1/2/3.dcm")
    assert not source.exists()
    assert final.read_bytes() == b"abc"


def test_preserve_keeps_old_bytes(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    store.place(store.stage_stream([b"old"], None), "cc/1/2/3.dcm")
    kept = store.preserve("cc/1/2/3.dcm", "20240101T000000Z")
    store.remove("cc/1/2/3.dcm")
    assert kept.startswith(".replaced/")
    assert store.absolute(kept).read_bytes() == b"old"
    assert store.iter_instance_files() == []


def test_iter_instance_files_skips_hidden_directories(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    store.place(store.stage_stream([b"x"], None), "dd/1/2/3.dcm")
    (store.staging_dir / "left.dcm").write_bytes(b"y")
    assert store.iter_instance_files() == ["dd/1/2/3.dcm"]


def test_large_copy_is_hashed_correctly_on_the_worker(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    payload = random.Random(3).randbytes(9 * 1024 * 1024 + 13)  # past the background threshold
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    staged = store.stage_file(source, move=False)
    assert staged.sha256 == hashlib.sha256(payload).hexdigest()
    assert staged.size == len(payload)


@pytest.mark.parametrize(
    ("inline_bytes", "sizes"),
    [
        (0, [700_000] * 20),
        (10, [5, 3, 700_000, 2] * 5),
        (1_000_000, [600_000, 600_000, 100, 5_000_000, 7] * 4),  # small blocks after the inline part
        (1 << 30, [700_000] * 20),
    ],
)
def test_streaming_sha256_matches_hashlib_whatever_the_split(inline_bytes: int, sizes: list[int]) -> None:
    rng = random.Random(inline_bytes)
    blocks: list[bytes | bytearray | memoryview] = [rng.randbytes(size) for size in sizes]
    blocks[3] = bytearray(blocks[3])
    blocks[7] = memoryview(bytes(blocks[7]))
    digest = StreamingSha256(inline_bytes=inline_bytes)
    for block in blocks:
        digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(b"".join(bytes(b) for b in blocks)).hexdigest()
    assert digest.hexdigest() == hashlib.sha256(b"".join(bytes(b) for b in blocks)).hexdigest()  # stable
    with pytest.raises(RuntimeError, match="already final"):
        digest.update(b"late")


def test_streaming_sha256_abandon_stops_its_worker() -> None:
    digest = StreamingSha256(inline_bytes=0)
    digest.update(b"x" * (5 * 1024 * 1024))
    assert [t for t in threading.enumerate() if t.name == "usarchive-sha256"]
    digest.abandon()
    assert not [t for t in threading.enumerate() if t.name == "usarchive-sha256"]


def test_move_with_a_caller_digest_does_not_read_the_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    source = store.staging_dir / "incoming.dcm"
    source.write_bytes(b"abc")
    claimed = hashlib.sha256(b"something else").hexdigest()
    staged = store.stage_file(source, move=True, sha256=claimed)
    assert (staged.sha256, staged.size) == (claimed, 3), "the caller's digest is trusted as given"
    copied = store.stage_file(source, move=False, sha256=claimed)
    assert copied.sha256 == hashlib.sha256(b"abc").hexdigest(), "a copy carries the digest of what it copied"
    store.discard(copied)


def test_an_interrupt_removes_the_temp_files_staged_in_the_block(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    with pytest.raises(KeyboardInterrupt), store.temps_removed_on_interrupt():
        store.stage_stream([b"one"], None)
        kept = store.stage_stream([b"placed"], None)
        placed = store.place(kept, "a/b.dcm")
        raise KeyboardInterrupt  # e.g. after staging, before the caller holds the staged file
    assert list(store.staging_dir.iterdir()) == []
    assert placed.read_bytes() == b"placed", "a placed file is left alone"
    # an ordinary exception is the caller's to handle: its staged file stays for it to discard
    with pytest.raises(ValueError), store.temps_removed_on_interrupt():
        staged = store.stage_stream([b"two"], None)
        raise ValueError("the caller's")
    assert staged.path.exists()
    store.discard(staged)
    # outside a block nothing is tracked
    outside = store.stage_stream([b"three"], None)
    assert outside.path.exists() and list(store.staging_dir.iterdir()) == [outside.path]
