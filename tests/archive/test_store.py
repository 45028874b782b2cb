from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from archive.store import FileStore, hash_file, relative_path, safe_component


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
