from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from ingest_helpers import bare_bytes, part10_bytes, us_dataset, write_instance
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from sqlalchemy import func, select

from archive.archive import Archive
from archive.dicom_header import IMPLEMENTATION_CLASS_UID
from archive.index import schema
from archive.index.migrations import MIGRATIONS
from archive.ingest import CommitCheck, IngestOutcome, Origin, RejectCode
from archive.settings import ArchiveSettings
from archive.verify import verify

FILE = Origin("file", path="test")
MISSING = RejectCode.MISSING_ATTRIBUTE
INVALID = RejectCode.INVALID_UID


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as opened:
        yield opened


def _row_count(archive: Archive) -> int:
    with archive.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(schema.instance)).scalar_one())


def _store_files(archive: Archive) -> list[str]:
    return archive.store.iter_instance_files()


def _staging_is_empty(archive: Archive) -> bool:
    return archive.store.stale_temp_files() == []


def test_stores_bytes_exactly_and_records_facts(archive: Archive, tmp_path: Path) -> None:
    ds = us_dataset(frames=3, rows=6, columns=7)
    path = write_instance(tmp_path / "in", ds)
    result = archive.ingest(path, origin=Origin("file", path=str(path)))
    assert result.outcome is IngestOutcome.STORED, result.reason
    assert result.path is not None and result.path.read_bytes() == path.read_bytes()
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.size == path.stat().st_size
    with archive.engine.connect() as connection:
        row = connection.execute(select(schema.instance)).one()
    assert row.sop_instance_uid == ds.SOPInstanceUID
    assert (row.frames, row.rows, row.columns, row.photometric) == (3, 6, 7, "MONOCHROME2")
    assert row.transfer_syntax == ExplicitVRLittleEndian
    assert row.frame_time_ms == pytest.approx(33.3)
    assert row.calibrated is False and row.row_spacing_mm is None
    assert row.source_kind == "file" and row.source_path == str(path)
    assert archive.store.absolute(row.path) == result.path
    assert _staging_is_empty(archive)


def test_identical_bytes_again_is_duplicate(archive: Archive, tmp_path: Path) -> None:
    path = write_instance(tmp_path, us_dataset())
    first = archive.ingest(path, origin=FILE)
    again = archive.ingest(path.read_bytes(), origin=FILE)
    assert again.outcome is IngestOutcome.DUPLICATE
    assert again.reason == "identical bytes already stored"
    assert again.path == first.path
    assert _row_count(archive) == 1
    assert len(_store_files(archive)) == 1
    assert _staging_is_empty(archive)


def test_different_bytes_keep_first_by_default(archive: Archive) -> None:
    ds = us_dataset(seed=1)
    first_bytes = part10_bytes(ds)
    archive.ingest(first_bytes, origin=FILE)
    ds.PatientName = "Changed^Name"
    result = archive.ingest(part10_bytes(ds), origin=FILE)
    assert result.outcome is IngestOutcome.REJECTED
    assert result.code is RejectCode.CONFLICT
    assert result.reason is not None and "keep-first" in result.reason and ds.SOPInstanceUID in result.reason
    stored = _store_files(archive)
    assert len(stored) == 1 and archive.store.absolute(stored[0]).read_bytes() == first_bytes
    assert _staging_is_empty(archive)


def test_replace_policy_keeps_old_file_recoverable(tmp_path: Path, db_url: str) -> None:
    settings = ArchiveSettings(tmp_path / "data", db_url, duplicate_policy="replace")
    with Archive.open(settings) as archive:
        ds = us_dataset(seed=2)
        old = part10_bytes(ds)
        archive.ingest(old, origin=FILE)
        ds.PatientName = "Changed^Name"
        new = part10_bytes(ds)
        result = archive.ingest(new, origin=Origin("network", calling_ae="SCANNER", address="127.0.0.1:1"))
        assert result.outcome is IngestOutcome.REPLACED, result.reason
        assert result.path is not None and result.path.read_bytes() == new
        assert _row_count(archive) == 1
        with archive.engine.connect() as connection:
            event = connection.execute(select(schema.instance_history)).one()
            row = connection.execute(select(schema.instance)).one()
        assert archive.store.absolute(event.kept_path).read_bytes() == old
        assert event.old_sha256 == hashlib.sha256(old).hexdigest()
        assert row.sha256 == hashlib.sha256(new).hexdigest() and row.calling_ae == "SCANNER"
        assert _store_files(archive) == [row.path]
        assert archive.check_commitment(ds.SOPClassUID, ds.SOPInstanceUID) is CommitCheck.COMMITTED


def test_bare_dataset_gets_file_meta_and_keeps_dataset_bytes(archive: Archive) -> None:
    ds = us_dataset()
    body = bare_bytes(ds, ImplicitVRLittleEndian)
    origin = Origin("network", calling_ae="ECHO1", address="127.0.0.1:4242", called_ae="USARCHIVE")
    result = archive.ingest(body, origin=origin, transfer_syntax=ImplicitVRLittleEndian)
    assert result.outcome is IngestOutcome.STORED, result.reason
    assert result.path is not None
    stored = result.path.read_bytes()
    assert stored.endswith(body)
    read = pydicom.dcmread(result.path)
    assert read.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert read.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert read.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert read.file_meta.SourceApplicationEntityTitle == "ECHO1"
    assert read.PixelData == ds.PixelData


def test_bare_dataset_from_file_with_move_keeps_caller_file(archive: Archive) -> None:
    source = archive.staging_dir / "incoming.raw"
    source.write_bytes(bare_bytes(us_dataset()))
    result = archive.ingest(source, origin=FILE, transfer_syntax=ExplicitVRLittleEndian, move=True)
    assert result.outcome is IngestOutcome.STORED
    assert source.exists(), "a bare dataset is copied behind new file meta, the caller removes its file"


def test_move_renames_part10_file(archive: Archive) -> None:
    source = archive.staging_dir / "incoming.dcm"
    payload = part10_bytes(us_dataset())
    source.write_bytes(payload)
    result = archive.ingest(source, origin=FILE, move=True)
    assert result.outcome is IngestOutcome.STORED
    assert not source.exists()
    assert result.path is not None and result.path.read_bytes() == payload


def _truncated() -> bytes:
    return part10_bytes(us_dataset())[:-37]


def _lying_pixel_length() -> bytes:
    data = bytearray(part10_bytes(us_dataset(frames=1, rows=4, columns=4)))
    index = data.rindex(b"\xe0\x7f\x10\x00OB\x00\x00")
    data[index + 8 : index + 12] = (10_000).to_bytes(4, "little")
    return bytes(data)


def _lying_header_length() -> bytes:
    data = bytearray(part10_bytes(us_dataset()))
    index = data.index(b"\x10\x00\x10\x00PN")  # PatientName, 2-byte length
    data[index + 6 : index + 8] = (60_000).to_bytes(2, "little")
    return bytes(data)


def _missing(keyword: str) -> bytes:
    ds = us_dataset()
    delattr(ds, keyword)
    return part10_bytes(ds)


def _bad_uid(keyword: str, value: str) -> bytes:
    ds = us_dataset()
    setattr(ds, keyword, value)
    return part10_bytes(ds)


def _unknown_syntax() -> bytes:
    data = part10_bytes(us_dataset())
    return data.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.9\x00", 1)


BAD_INPUTS = {
    "empty": (lambda: b"", RejectCode.NOT_DICOM, "not one"),
    "text": (lambda: b"hello, this is not DICOM\n" * 20, RejectCode.NOT_DICOM, "preamble"),
    "truncated": (_truncated, RejectCode.TRUNCATED, "truncated"),
    "pixel length lies": (_lying_pixel_length, RejectCode.TRUNCATED, "(7FE0,0010)"),
    "header length lies": (_lying_header_length, RejectCode.TRUNCATED, "(0010,0010)"),
    "no SOP instance UID": (lambda: _missing("SOPInstanceUID"), MISSING, "SOPInstanceUID"),
    "no study UID": (lambda: _missing("StudyInstanceUID"), MISSING, "StudyInstanceUID"),
    "no series UID": (lambda: _missing("SeriesInstanceUID"), MISSING, "SeriesInstanceUID"),
    "no SOP class": (lambda: _missing("SOPClassUID"), MISSING, "SOPClassUID"),
    "UID with slash": (lambda: _bad_uid("SOPInstanceUID", "1.2/../../x"), INVALID, "1.2/../../x"),
    "UID with dots": (lambda: _bad_uid("StudyInstanceUID", ".."), INVALID, "StudyInstanceUID"),
    "series UID letters": (lambda: _bad_uid("SeriesInstanceUID", "abc"), INVALID, "'abc'"),
    "unknown transfer syntax": (_unknown_syntax, RejectCode.UNKNOWN_TRANSFER_SYNTAX, "1.2.840.10008.1.2.9"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_with_reason_and_leaves_nothing(archive: Archive, name: str) -> None:
    build, code, fragment = BAD_INPUTS[name]
    result = archive.ingest(build(), origin=FILE)
    assert result.outcome is IngestOutcome.REJECTED
    assert result.code is code, result.reason
    assert result.reason is not None and fragment in result.reason
    assert _row_count(archive) == 0
    assert _store_files(archive) == []
    assert _staging_is_empty(archive)


def test_bad_file_path_is_rejected_and_left_alone(archive: Archive, tmp_path: Path) -> None:
    path = tmp_path / "bad.dcm"
    path.write_bytes(_truncated())
    result = archive.ingest(path, origin=FILE, move=True)
    assert result.code is RejectCode.TRUNCATED
    assert path.exists()
    missing = archive.ingest(tmp_path / "nope.dcm", origin=FILE)
    assert missing.code is RejectCode.NOT_DICOM


def test_bare_dataset_without_uids_is_rejected(archive: Archive) -> None:
    ds = us_dataset()
    del ds.SOPInstanceUID
    result = archive.ingest(bare_bytes(ds), origin=FILE, transfer_syntax=ExplicitVRLittleEndian)
    assert result.code is RejectCode.MISSING_ATTRIBUTE
    unknown = archive.ingest(bare_bytes(us_dataset()), origin=FILE, transfer_syntax="1.2.3.4")
    assert unknown.code is RejectCode.UNKNOWN_TRANSFER_SYNTAX
    assert _store_files(archive) == [] and _staging_is_empty(archive)


def test_check_commitment(archive: Archive) -> None:
    ds = us_dataset()
    result = archive.ingest(part10_bytes(ds), origin=FILE)
    assert archive.check_commitment(ds.SOPClassUID, ds.SOPInstanceUID) is CommitCheck.COMMITTED
    assert archive.check_commitment(ds.SOPClassUID, "1.2.3.4") is CommitCheck.NO_SUCH_INSTANCE
    other_class = "1.2.840.10008.5.1.4.1.1.7"
    assert archive.check_commitment(other_class, ds.SOPInstanceUID) is CommitCheck.CLASS_MISMATCH
    assert result.path is not None
    result.path.write_bytes(b"tampered")
    assert archive.check_commitment(ds.SOPClassUID, ds.SOPInstanceUID) is CommitCheck.HASH_MISMATCH


def test_rules_classify_at_ingest(archive: Archive) -> None:
    ds = us_dataset(description="L4/5 MBB right OT")
    archive.ingest(part10_bytes(ds), origin=FILE)
    with archive.engine.connect() as connection:
        procedure = connection.execute(select(schema.instance_procedure)).one()
        level_table = schema.instance_level
        levels = connection.execute(select(level_table.c.level, level_table.c.source)).all()
    assert procedure.technique == "OT" and procedure.technique_source == "rule"
    assert procedure.technique_detail
    assert procedure.side == "right"
    assert sorted(level for level, _ in levels) == ["L4", "L5"]
    assert {source for _, source in levels} == {"rule"}


def test_rules_failure_never_loses_the_instance(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    import archive.rules as rules

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("rules bug")

    monkeypatch.setattr(rules, "classify", broken)
    result = archive.ingest(part10_bytes(us_dataset()), origin=FILE)
    assert result.outcome is IngestOutcome.STORED
    with archive.engine.connect() as connection:
        procedure = connection.execute(select(schema.instance_procedure)).one()
    assert procedure.technique == "unknown" and procedure.side is None


def test_reopen_is_idempotent(tmp_path: Path, db_url: str) -> None:
    settings = ArchiveSettings(tmp_path / "data", db_url)
    with Archive.open(settings) as first:
        first.ingest(part10_bytes(us_dataset()), origin=FILE)
    with Archive.open(settings) as second, second.engine.connect() as connection:
        versions = connection.execute(select(schema.schema_version.c.version)).scalars().all()
        assert versions == [version for version, _, _ in MIGRATIONS]
        assert _row_count(second) == 1


def test_source_bytes_io_is_not_supported_type(archive: Archive) -> None:
    with pytest.raises(AttributeError):
        archive.ingest(io.BytesIO(b"x"), origin=FILE)  # type: ignore[arg-type]


def test_ingest_many_matches_single_ingest_outcomes(archive: Archive, tmp_path: Path) -> None:
    stored_first = us_dataset(seed=5)
    archive.ingest(part10_bytes(stored_first), origin=FILE)
    conflicting = us_dataset(sop_uid=stored_first.SOPInstanceUID, seed=6)
    good = [us_dataset(seed=10 + i) for i in range(5)]
    paths = [write_instance(tmp_path / "batch", ds) for ds in good]
    twice = paths[0]
    bad = tmp_path / "batch" / "bad.dcm"
    bad.write_bytes(_truncated())
    conflict_path = tmp_path / "batch" / "conflict.dcm"
    conflict_path.write_bytes(part10_bytes(conflicting))
    sources = [*paths, twice, bad, conflict_path]
    results = archive.ingest_many(sources, origins=[Origin("file", path=str(p)) for p in sources])
    outcomes = [(r.outcome, r.code) for r in results]
    assert outcomes == [(IngestOutcome.STORED, None)] * 5 + [
        (IngestOutcome.DUPLICATE, None),
        (IngestOutcome.REJECTED, RejectCode.TRUNCATED),
        (IngestOutcome.REJECTED, RejectCode.CONFLICT),
    ]
    for path, result in zip(paths, results, strict=False):
        assert result.path is not None and result.path.read_bytes() == path.read_bytes()
    assert _row_count(archive) == 6
    assert _staging_is_empty(archive)
    assert all(
        archive.check_commitment(ds.SOPClassUID, ds.SOPInstanceUID) is CommitCheck.COMMITTED for ds in good
    )


def test_ingest_many_falls_back_to_single_ingest(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import archive.archive as archive_module

    def failing_sync(_paths: object) -> None:
        raise OSError(5, "simulated I/O error while syncing directories")

    monkeypatch.setattr(archive_module, "sync_directories", failing_sync)
    sources = [write_instance(tmp_path / "fb", us_dataset(seed=40 + i)) for i in range(3)]
    results = archive.ingest_many(sources, origins=[FILE] * 3)
    assert [r.outcome for r in results] == [IngestOutcome.STORED] * 3
    assert _row_count(archive) == 3
    assert sorted(_store_files(archive)) == sorted(
        r.path.relative_to(archive.store.root).as_posix() for r in results if r.path
    )
    assert _staging_is_empty(archive)


def test_caller_digest_of_a_moved_file_is_recorded_without_rehashing(archive: Archive) -> None:
    source = archive.staging_dir / "spooled.dcm"
    payload = part10_bytes(us_dataset())
    source.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    result = archive.ingest(source, origin=FILE, move=True, sha256=digest)
    assert result.outcome is IngestOutcome.STORED
    assert result.sha256 == digest and result.size == len(payload)
    assert result.path is not None and result.path.read_bytes() == payload
    assert verify(archive).ok


def test_wrong_caller_digest_of_a_moved_file_is_trusted_and_verify_catches_it(archive: Archive) -> None:
    # The digest is trusted (the file is not re-read); verify, which re-hashes, is the independent check.
    source = archive.staging_dir / "spooled.dcm"
    source.write_bytes(part10_bytes(us_dataset()))
    wrong = hashlib.sha256(b"not these bytes").hexdigest()
    result = archive.ingest(source, origin=FILE, move=True, sha256=wrong)
    assert result.outcome is IngestOutcome.STORED and result.sha256 == wrong
    report = verify(archive)
    assert not report.ok and len(report.corrupt) == 1


def test_wrong_caller_digest_of_a_copied_file_is_rejected(archive: Archive, tmp_path: Path) -> None:
    source = tmp_path / "outside.dcm"
    payload = part10_bytes(us_dataset())
    source.write_bytes(payload)
    wrong = hashlib.sha256(b"not these bytes").hexdigest()
    result = archive.ingest(source, origin=FILE, sha256=wrong)
    assert result.outcome is IngestOutcome.REJECTED and result.code is RejectCode.STORAGE_ERROR
    assert result.reason is not None and "send it again" in result.reason
    assert _row_count(archive) == 0 and _store_files(archive) == [] and _staging_is_empty(archive)
    assert source.read_bytes() == payload
    right = archive.ingest(source, origin=FILE, sha256=hashlib.sha256(payload).hexdigest())
    assert right.outcome is IngestOutcome.STORED


@pytest.mark.parametrize(
    ("sha256", "bare", "message"),
    [
        ("abc", False, "64 lowercase hex digits"),
        ("A" * 64, False, "64 lowercase hex digits"),
        ("a" * 64, True, "omit it for bytes or a bare dataset"),
    ],
)
def test_unusable_caller_digest_is_a_programming_error(
    archive: Archive, sha256: str, bare: bool, message: str
) -> None:
    source = archive.staging_dir / "spooled.dcm"
    source.write_bytes(bare_bytes(us_dataset()) if bare else part10_bytes(us_dataset()))
    syntax = ExplicitVRLittleEndian if bare else None
    with pytest.raises(ValueError, match=message):
        archive.ingest(source, origin=FILE, move=True, transfer_syntax=syntax, sha256=sha256)
    assert source.exists() and _row_count(archive) == 0
