"""Duplicates are judged on the data set (after the File Meta Information), not the file bytes."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import bare_bytes, part10_bytes, us_dataset
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from archive.archive import Archive
from archive.ingest import DuplicatePolicy, IngestOutcome, Origin, RejectCode
from archive.settings import ArchiveSettings

FILE = Origin("file", path="usb/IMG0001")
NETWORK = Origin("network", calling_ae="SCANNER", address="127.0.0.1:1", called_ae="USARCHIVE")


def _sent(ds: Dataset, transfer_syntax: UID = ExplicitVRLittleEndian) -> bytes:
    """The data set alone (no file meta), as a network peer sends it."""
    bare = copy.deepcopy(ds)
    if "file_meta" in bare.__dict__:
        del bare.file_meta
    body = bare_bytes(bare, transfer_syntax)
    assert body[:2] != b"\x02\x00", "no file meta in a bare data set"
    return body


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as opened:
        yield opened


def test_same_data_set_behind_other_file_meta_is_a_duplicate(archive: Archive) -> None:
    ds = us_dataset(seed=3)
    imported = part10_bytes(ds)
    first = archive.ingest(imported, origin=FILE)
    assert first.outcome is IngestOutcome.STORED
    # what the receiver stores: its own file meta (implementation UID, source AE) before the same data set
    again = archive.ingest(_sent(ds), origin=NETWORK, transfer_syntax=ExplicitVRLittleEndian)
    assert again.outcome is IngestOutcome.DUPLICATE, again.reason
    assert again.sha256 != first.sha256, "the file bytes differ"
    assert again.reason == (
        "the same data set (only the File Meta Information differs) is already stored; "
        "the stored file is kept"
    )
    assert again.path == first.path and first.path is not None and first.path.read_bytes() == imported
    assert archive.store.iter_instance_files() == [archive.store.iter_instance_files()[0]]


def test_same_data_set_in_another_uncompressed_syntax_is_a_duplicate(archive: Archive) -> None:
    ds = us_dataset(seed=4)
    archive.ingest(part10_bytes(ds), origin=FILE)
    body = _sent(ds, ImplicitVRLittleEndian)
    again = archive.ingest(body, origin=NETWORK, transfer_syntax=ImplicitVRLittleEndian)
    assert again.outcome is IngestOutcome.DUPLICATE, again.reason
    assert again.reason is not None and "equal element by element" in again.reason


def test_different_data_set_is_a_conflict_with_the_whole_reason(archive: Archive) -> None:
    ds = us_dataset(seed=5, description="L4/5 MBB right OT")
    archive.ingest(part10_bytes(ds), origin=FILE)
    ds.SeriesDescription = "L3/4 MBB left TT"
    result = archive.ingest(_sent(ds), origin=NETWORK, transfer_syntax=ExplicitVRLittleEndian)
    assert result.outcome is IngestOutcome.REJECTED and result.code is RejectCode.CONFLICT
    assert result.reason == (
        f"SOP Instance UID {ds.SOPInstanceUID} is already stored with a different data set "
        "(Series Description (0008,103E) differ); the archive keeps the first version "
        "(duplicate_policy = keep-first): give the new object its own SOP Instance UID, or set "
        "duplicate_policy = replace to replace it."
    )


def test_different_pixels_only_are_named(archive: Archive) -> None:
    ds = us_dataset(seed=6)
    archive.ingest(part10_bytes(ds), origin=FILE)
    other = us_dataset(
        seed=7, sop_uid=ds.SOPInstanceUID, study_uid=ds.StudyInstanceUID, series_uid=ds.SeriesInstanceUID
    )
    result = archive.ingest(part10_bytes(other), origin=FILE)
    assert result.code is RejectCode.CONFLICT
    assert result.reason is not None
    assert "(the attributes before Pixel Data are equal; Pixel Data differs)" in result.reason


def test_compressed_data_set_in_another_syntax_is_a_conflict(archive: Archive) -> None:
    ds = us_dataset(seed=8, frames=2)
    archive.ingest(part10_bytes(ds), origin=FILE)
    ds.compress(RLELossless, generate_instance_uid=False)
    result = archive.ingest(part10_bytes(ds, RLELossless), origin=FILE)
    assert result.code is RejectCode.CONFLICT
    assert result.reason is not None
    assert f"stored in transfer syntax {ExplicitVRLittleEndian}, offered in {RLELossless}" in result.reason


def test_replace_policy_does_not_replace_the_same_data_set(tmp_path: Path, db_url: str) -> None:
    settings = ArchiveSettings(tmp_path / "data", db_url, duplicate_policy=DuplicatePolicy.REPLACE)
    with Archive.open(settings) as archive:
        ds = us_dataset(seed=9)
        first = archive.ingest(part10_bytes(ds), origin=FILE)
        again = archive.ingest(_sent(ds), origin=NETWORK, transfer_syntax=ExplicitVRLittleEndian)
        assert again.outcome is IngestOutcome.DUPLICATE
        assert again.path == first.path
        ds.PatientName = "Other^Name"
        replaced = archive.ingest(part10_bytes(ds), origin=FILE)
        assert replaced.outcome is IngestOutcome.REPLACED
