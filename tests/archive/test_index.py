from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from ingest_helpers import part10_bytes, us_dataset
from sqlalchemy import insert, inspect, select

from archive.archive import Archive
from archive.errors import ArchiveError
from archive.index import schema
from archive.index.engine import create_index_engine, normalise_url
from archive.index.facts import parse_da
from archive.index.migrations import LATEST_VERSION, MIGRATIONS, migrate
from archive.index.queries import Query
from archive.ingest import Origin
from archive.model import ProcedureType, Side, SpinalLevel, Technique
from archive.settings import ArchiveSettings

FILE = Origin("file")


def test_normalise_url() -> None:
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:////x/i.sqlite") == "sqlite:////x/i.sqlite"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20240305", date(2024, 3, 5)),
        ("2024.03.05", date(2024, 3, 5)),
        ("20241305", None),
        ("", None),
        ("abc", None),
    ],
)
def test_parse_da(text: str, expected: date | None) -> None:
    assert parse_da(text) == expected


def test_migrate_creates_schema_and_is_idempotent(db_url: str) -> None:
    engine = create_index_engine(db_url)
    try:
        assert migrate(engine) == LATEST_VERSION
        assert migrate(engine) == LATEST_VERSION
        tables = set(inspect(engine).get_table_names())
        assert set(schema.metadata.tables) <= tables
        with engine.connect() as connection:
            versions = connection.execute(select(schema.schema_version.c.version)).scalars().all()
        assert versions == [version for version, _, _ in MIGRATIONS]
        if engine.dialect.name == "sqlite":
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        engine.dispose()


def test_index_from_newer_program_is_refused(db_url: str) -> None:
    engine = create_index_engine(db_url)
    try:
        migrate(engine)
        with engine.begin() as connection:
            connection.execute(
                insert(schema.schema_version).values(
                    version=LATEST_VERSION + 1, description="future", applied_at=datetime.now(UTC)
                )
            )
        with pytest.raises(ArchiveError, match="newer usarchive"):
            migrate(engine)
    finally:
        engine.dispose()


def test_queries_and_tags_through_archive(tmp_path: Path, db_url: str) -> None:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as archive:
        first = us_dataset(patient_id="A1", patient_name="Smith^Ann", description="L4/5 MBB left TT")
        later = us_dataset(patient_id="A1", study_date=date(2025, 1, 1), description="unknown")
        other = us_dataset(patient_id="B2", study_date=date(2020, 1, 1), description="S1 epidural bilateral")
        for ds in (first, later, other):
            archive.ingest(part10_bytes(ds), origin=FILE)
        rows = archive.index.find(Query())
        assert [row.sop_instance_uid for row in rows] == [
            later.SOPInstanceUID,
            first.SOPInstanceUID,
            other.SOPInstanceUID,
        ], "newest study first"
        by_name = {r.sop_instance_uid for r in archive.index.find(Query(patient="Smith^Ann"))}
        assert by_name == {first.SOPInstanceUID, later.SOPInstanceUID}, "one patient A1, first name kept"
        assert len(archive.index.find(Query(patient="A1", limit=1))) == 1
        assert archive.index.find(Query(levels=(SpinalLevel.S1,), side=Side.BILATERAL))[0].levels == ("S1",)
        assert archive.index.find(Query(procedure_type=ProcedureType.MEDIAL_BRANCH_BLOCK))[0].levels == (
            "L4",
            "L5",
        )
        changes = archive.index.tag(first.SOPInstanceUID, user="ann", levels=(), technique=Technique.OT)
        assert {(c.attribute, c.old_value, c.new_value) for c in changes} == {
            ("technique", "TT", "OT"),
            ("levels", "L4,L5", ""),
        }
        assert archive.index.tag(first.SOPInstanceUID, user="ann", technique=Technique.OT) == []
        assert archive.index.find(Query(levels=(SpinalLevel.L4,))) == []
        shown = archive.index.show(first.SOPInstanceUID)
        assert shown is not None and shown.data["procedure"]["levels_source"] == "user:ann"
        with pytest.raises(ArchiveError, match="at least one"):
            archive.index.tag(first.SOPInstanceUID, user="ann")
        stats = archive.index.stats()
        assert (
            stats["by_technique"] == {"OT": 1, "unknown": 1, "other": 1} or stats["by_technique"]["OT"] == 1
        )
        assert stats["study_date_min"] == "2020-01-01" and stats["study_date_max"] == "2025-01-01"


def test_unknown_study_date_sorts_last_and_never_matches_a_date_range(tmp_path: Path, db_url: str) -> None:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as archive:
        undated = us_dataset(description="L5 OT")
        del undated.StudyDate
        dated = us_dataset(study_date=date(2001, 1, 1), description="L5 OT")
        for ds in (undated, dated):
            archive.ingest(part10_bytes(ds), origin=FILE)
        for query in (Query(), Query(levels=(SpinalLevel.L5,)), Query(technique=Technique.OT)):
            rows = archive.index.find(query)
            assert [r.sop_instance_uid for r in rows] == [dated.SOPInstanceUID, undated.SOPInstanceUID]
            assert rows[1].study_date is None
        for query in (
            Query(date_to=date(2030, 1, 1)),
            Query(levels=(SpinalLevel.L5,), date_to=date(2030, 1, 1)),
        ):
            assert [r.sop_instance_uid for r in archive.index.find(query)] == [dated.SOPInstanceUID]
