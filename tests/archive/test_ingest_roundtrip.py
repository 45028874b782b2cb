"""Every pydicom test file and every sample clip goes in and comes back byte for byte."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files

from archive.archive import Archive, Query
from archive.duplicates import compare_data_sets
from archive.ingest import IngestOutcome, Origin, RejectCode
from archive.settings import ArchiveSettings

#: pydicom test files that are not acceptable instances, and why (the archive must say so).
EXPECTED_REJECTIONS: dict[str, RejectCode] = {
    "rtstruct.dcm": RejectCode.NOT_DICOM,  # no preamble / file meta
    "ExplVR_BigEndNoMeta.dcm": RejectCode.NOT_DICOM,
    "ExplVR_LitEndNoMeta.dcm": RejectCode.NOT_DICOM,
    "no_meta.dcm": RejectCode.NOT_DICOM,
    "JPEGLSNearLossless_08.dcm": RejectCode.MISSING_ATTRIBUTE,  # no Study Instance UID
    "JPEGLSNearLossless_16.dcm": RejectCode.MISSING_ATTRIBUTE,
    "SC_rgb_jls_lossy_sample.dcm": RejectCode.MISSING_ATTRIBUTE,
    "SC_rgb_jls_lossy_line.dcm": RejectCode.MISSING_ATTRIBUTE,
    "UN_sequence.dcm": RejectCode.MISSING_ATTRIBUTE,  # no SOP Class UID
    "no_meta_group_length.dcm": RejectCode.MISSING_ATTRIBUTE,
    "nested_priv_SQ.dcm": RejectCode.MISSING_ATTRIBUTE,
    "priv_SQ.dcm": RejectCode.MISSING_ATTRIBUTE,
    "empty_charset_LEI.dcm": RejectCode.MISSING_ATTRIBUTE,
    "meta_missing_tsyntax.dcm": RejectCode.MISSING_ATTRIBUTE,
    "SC_rgb_jpeg.dcm": RejectCode.TRUNCATED,  # implicit VR data under an explicit-VR transfer syntax
    "rtplan_truncated.dcm": RejectCode.TRUNCATED,
    "MR_truncated.dcm": RejectCode.TRUNCATED,
}


_NOT_DICOM_SUFFIXES = {".txt", ".json", ".icc", ".gz", ".dump", ""}


def _pydicom_files() -> list[Path]:
    return sorted(Path(f) for f in get_testdata_files() if Path(f).is_file())


def _expected_rejection(path: Path) -> RejectCode | None:
    if path.name in EXPECTED_REJECTIONS:
        return EXPECTED_REJECTIONS[path.name]
    if path.name.startswith("DICOMDIR"):
        return RejectCode.MISSING_ATTRIBUTE  # a media directory, not an instance: no SOP Class UID
    if path.suffix in _NOT_DICOM_SUFFIXES and path.name.upper().startswith("README"):
        return RejectCode.NOT_DICOM
    if path.suffix in _NOT_DICOM_SUFFIXES - {""}:
        return RejectCode.NOT_DICOM
    return None


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    # "replace" so that the many pydicom files sharing one SOP Instance UID in
    # different transfer syntaxes are each stored in turn and compared.
    settings = ArchiveSettings(tmp_path / "data", db_url, duplicate_policy="replace")
    with Archive.open(settings) as opened:
        yield opened


def test_pydicom_test_files_round_trip(archive: Archive) -> None:
    files = _pydicom_files()
    assert len(files) > 100
    syntaxes_in: set[str] = set()
    syntaxes_stored: set[str] = set()
    for path in files:
        result = archive.ingest(path, origin=Origin("file", path=str(path)))
        expected = _expected_rejection(path)
        if expected is not None:
            assert result.outcome is IngestOutcome.REJECTED, path.name
            assert result.code is expected, (path.name, result.reason)
            continue
        syntaxes_in.add(str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID))
        assert result.outcome in (IngestOutcome.STORED, IngestOutcome.REPLACED, IngestOutcome.DUPLICATE), (
            path.name,
            result.reason,
        )
        assert result.path is not None, path.name
        if result.outcome is IngestOutcome.DUPLICATE:
            # the same data set is already stored, possibly in another encoding (liver_expb_1frame:
            # 8-bit pixels, big endian, equal element by element to liver_1frame): kept as stored
            assert compare_data_sets(result.path, path).same, (path.name, result.reason)
            continue
        assert result.path.read_bytes() == path.read_bytes(), path.name
        syntaxes_stored.add(
            str(pydicom.dcmread(result.path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        )
    assert syntaxes_stored == syntaxes_in
    assert len(syntaxes_stored) >= 10
    assert not archive.store.stale_temp_files()


def test_sample_clips_round_trip_and_are_found(archive: Archive, sample_dir: Path) -> None:
    clips = sorted(sample_dir.glob("*.dcm"))
    assert len(clips) >= 6, "sample_dicom/ must hold the committed sample clips"
    for clip in clips:
        result = archive.ingest(clip, origin=Origin("file", path=str(clip)))
        assert result.outcome is IngestOutcome.STORED, (clip.name, result.reason)
        assert result.path is not None
        assert (
            hashlib.sha256(result.path.read_bytes()).hexdigest()
            == hashlib.sha256(clip.read_bytes()).hexdigest()
        )
    rows = archive.index.find(Query())
    assert len(rows) == len(clips)
    for row in rows:
        ds = pydicom.dcmread(archive.store.absolute(row.path), stop_before_pixels=True)
        assert row.sop_instance_uid == ds.SOPInstanceUID
        by_patient = archive.index.find(Query(patient=row.patient_id))
        assert row.sop_instance_uid in {r.sop_instance_uid for r in by_patient}
        if row.study_date is not None:
            by_date = archive.index.find(Query(date_from=row.study_date, date_to=row.study_date))
            assert row.sop_instance_uid in {r.sop_instance_uid for r in by_date}
        if row.modality:
            assert row.sop_instance_uid in {
                r.sop_instance_uid for r in archive.index.find(Query(modality=row.modality))
            }
