"""Ingest with a header the caller already read, and the index statements of one new instance."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import bare_bytes, part10_bytes, us_dataset
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import Table, event, select

from archive.archive import Archive
from archive.dicom_header import read_header
from archive.index import schema
from archive.ingest import IngestOutcome, Origin, RejectCode
from archive.settings import ArchiveSettings

NETWORK = Origin("network", calling_ae="SCANNER", address="10.0.0.2:104", called_ae="USARCHIVE")
#: Columns that differ between two instances by construction (keys, UIDs, paths, digests, times).
_OWN_COLUMNS = ("pk", "_uid", "path", "sha256", "_at")


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as opened:
        yield opened


def _spooled(archive: Archive, name: str, payload: bytes) -> Path:
    path = archive.staging_dir / name
    path.write_bytes(payload)
    return path


def _shared_values(archive: Archive, table: Table) -> list[dict[str, Any]]:
    """Rows of ``table`` in the order written, without the columns that identify them."""
    with archive.engine.connect() as connection:
        rows = connection.execute(select(table).order_by(*table.primary_key.columns)).mappings().all()
    return [
        {
            key: value
            for key, value in row.items()
            if key != "id" and not any(part in key for part in _OWN_COLUMNS)
        }
        for row in rows
    ]


def test_caller_header_indexes_exactly_what_ingest_would(archive: Archive) -> None:
    # Two instances alike but for their UIDs (of equal length), each in its own study and series:
    # one parsed by ingest, one given with the header the caller read.
    payloads = [
        part10_bytes(
            us_dataset(
                frames=1,
                study_uid=f"1.2.826.0.1.{n}.1",
                series_uid=f"1.2.826.0.1.{n}.2",
                sop_uid=f"1.2.826.0.1.{n}.3",
                description="L4/5 MBB right OT",
            )
        )
        for n in (1, 2)
    ]
    own = archive.ingest(_spooled(archive, "own.dcm", payloads[0]), origin=NETWORK, move=True)
    given_path = _spooled(archive, "given.dcm", payloads[1])
    given = archive.ingest(given_path, origin=NETWORK, move=True, header=read_header(given_path))
    assert own.outcome is given.outcome is IngestOutcome.STORED
    assert given.path is not None and given.path.read_bytes() == payloads[1]
    assert given.sha256 == hashlib.sha256(payloads[1]).hexdigest()
    for table in (
        schema.study,
        schema.series,
        schema.instance,
        schema.instance_procedure,
        schema.instance_level,
    ):
        rows = _shared_values(archive, table)
        half = len(rows) // 2
        assert rows and rows[:half] == rows[half:], table.name
    assert _shared_values(archive, schema.instance_level) != []  # the description names a level


def test_header_is_refused_with_bytes_or_a_bare_dataset(archive: Archive) -> None:
    payload = part10_bytes(us_dataset())
    header = read_header(_spooled(archive, "a.dcm", payload))
    with pytest.raises(ValueError, match="header applies to a Part 10 file given by path"):
        archive.ingest(payload, origin=NETWORK, header=header)
    bare = _spooled(archive, "bare.dcm", bare_bytes(us_dataset()))
    with pytest.raises(ValueError, match="header applies to a Part 10 file given by path"):
        archive.ingest(bare, origin=NETWORK, transfer_syntax=ExplicitVRLittleEndian, header=header)
    assert bare.exists()


def test_without_a_header_ingest_still_rejects_a_bad_file(archive: Archive) -> None:
    payload = part10_bytes(us_dataset())
    result = archive.ingest(_spooled(archive, "cut.dcm", payload[:-5]), origin=NETWORK, move=True)
    assert result.outcome is IngestOutcome.REJECTED and result.code is RejectCode.TRUNCATED


def test_a_new_instance_in_a_known_series_takes_three_statements(archive: Archive) -> None:
    # The index work of one instance: the instance row and its two classification rows, in one
    # write transaction (BEGIN IMMEDIATE on SQLite). No lookups there: the series is known from the
    # previous instance, and the claim itself tells a new UID from a taken one. Before it, outside
    # the write lock, one indexed read looks for the instance's worklist entry (issue 18).
    study, series = "1.2.826.0.1.9.1", "1.2.826.0.1.9.2"
    first = us_dataset(frames=1, study_uid=study, series_uid=series, sop_uid="1.2.826.0.1.9.3")
    second = us_dataset(frames=1, study_uid=study, series_uid=series, sop_uid="1.2.826.0.1.9.4")
    assert archive.ingest(part10_bytes(first), origin=NETWORK).outcome is IngestOutcome.STORED
    statements: list[str] = []

    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()[:3]).upper())

    event.listen(archive.engine, "before_cursor_execute", record)
    try:
        result = archive.ingest(part10_bytes(second), origin=NETWORK)
    finally:
        event.remove(archive.engine, "before_cursor_execute", record)
    assert result.outcome is IngestOutcome.STORED
    writes = [s for s in statements if not s.startswith(("BEGIN", "SAVEPOINT", "RELEASE"))]
    assert writes[0].startswith("SELECT WORKLIST_ENTRY."), statements
    assert writes[1:] == [
        "INSERT INTO INSTANCE",
        "INSERT INTO INSTANCE_PROCEDURE",
        "INSERT INTO INSTANCE_LEVEL",
    ], statements


def test_a_given_header_is_not_read_again(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _spooled(archive, "spooled.dcm", part10_bytes(us_dataset()))
    header = read_header(path)

    def no_second_parse(path: Path) -> None:
        raise AssertionError(f"read_header({path}) called although the caller gave the header")

    monkeypatch.setattr("archive.archive.read_header", no_second_parse)
    result = archive.ingest(path, origin=NETWORK, move=True, header=header)
    assert result.outcome is IngestOutcome.STORED and result.sop_instance_uid == header.sop_instance_uid
