"""The technique copied onto level rows (schema version 4) and the read path of ``find``."""

from __future__ import annotations

from pathlib import Path

from ingest_helpers import part10_bytes, us_dataset
from sqlalchemy import delete, inspect, select, text

from archive.archive import Archive
from archive.index import schema
from archive.index.queries import Query
from archive.ingest import Origin
from archive.model import SpinalLevel, Technique
from archive.settings import ArchiveSettings

FILE = Origin("file")
_lvl, _proc = schema.instance_level, schema.instance_procedure


def _copies(archive: Archive) -> list[tuple[str, str | None, str | None]]:
    """(level, technique on the level row, technique of the instance) for every level row."""
    statement = (
        select(_lvl.c.level, _lvl.c.technique, _proc.c.technique)
        .join(_proc, _proc.c.instance_pk == _lvl.c.instance_pk)
        .order_by(_lvl.c.instance_pk, _lvl.c.level)
    )
    with archive.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(statement)]


def _assert_copies_agree(archive: Archive) -> None:
    rows = _copies(archive)
    assert rows, "the test needs level rows"
    assert all(copy == original for _, copy, original in rows), rows


def _uids(archive: Archive, level: SpinalLevel, technique: Technique) -> set[str]:
    return {row.sop_instance_uid for row in archive.index.find(Query(levels=(level,), technique=technique))}


def test_level_rows_follow_the_technique_through_ingest_tag_and_replacement(
    tmp_path: Path, db_url: str
) -> None:
    settings = ArchiveSettings(tmp_path / "data", db_url, duplicate_policy="replace")
    with Archive.open(settings) as archive:
        clip = us_dataset(description="L4/5 MBB right OT")
        other = us_dataset(description="L4 MBB left TT", seed=1)
        for ds in (clip, other):
            archive.ingest(part10_bytes(ds), origin=FILE)
        _assert_copies_agree(archive)
        assert _uids(archive, SpinalLevel.L4, Technique.OT) == {clip.SOPInstanceUID}
        assert _uids(archive, SpinalLevel.L5, Technique.OT) == {clip.SOPInstanceUID}
        assert _uids(archive, SpinalLevel.L4, Technique.TT) == {other.SOPInstanceUID}

        # A person corrects the technique: every level row follows.
        archive.index.tag(clip.SOPInstanceUID, user="ann", technique=Technique.TT)
        _assert_copies_agree(archive)
        assert _uids(archive, SpinalLevel.L5, Technique.TT) == {clip.SOPInstanceUID}
        assert _uids(archive, SpinalLevel.L5, Technique.OT) == set()

        # New levels take the current technique.
        archive.index.tag(other.SOPInstanceUID, user="ann", levels=(SpinalLevel.L3, SpinalLevel.S1))
        _assert_copies_agree(archive)
        assert _uids(archive, SpinalLevel.S1, Technique.TT) == {other.SOPInstanceUID}

        # A replacement re-runs the rules: the technique changes (rule-set) while the
        # person's levels stay, and the level rows still follow.
        replacement = us_dataset(
            description="L4 MBB left OT",
            seed=2,
            sop_uid=other.SOPInstanceUID,
            study_uid=other.StudyInstanceUID,
            series_uid=other.SeriesInstanceUID,
        )
        archive.ingest(part10_bytes(replacement), origin=FILE)
        _assert_copies_agree(archive)
        assert _uids(archive, SpinalLevel.S1, Technique.OT) == {other.SOPInstanceUID}
        assert _uids(archive, SpinalLevel.L4, Technique.OT) == set(), "the person's levels were kept"


def test_version_4_fills_the_copy_on_an_index_made_before_it(tmp_path: Path, db_url: str) -> None:
    settings = ArchiveSettings(tmp_path / "data", db_url)
    clips = [us_dataset(description=f"L5 MBB right {t}", seed=i) for i, t in enumerate(("OT", "TT", "OT"))]
    with Archive.open(settings) as archive:
        for ds in clips:
            archive.ingest(part10_bytes(ds), origin=FILE)
        # Turn the index back into what version 3 made.
        with archive.engine.begin() as connection:
            connection.execute(text("DROP INDEX ix_instance_level_technique"))
            connection.execute(text("ALTER TABLE instance_level DROP COLUMN technique"))
            connection.execute(delete(schema.schema_version).where(schema.schema_version.c.version >= 4))
        columns = {column["name"] for column in inspect(archive.engine).get_columns("instance_level")}
        assert "technique" not in columns
    with Archive.open(settings) as archive:
        _assert_copies_agree(archive)
        indexes = {index["name"] for index in inspect(archive.engine).get_indexes("instance_level")}
        assert "ix_instance_level_technique" in indexes
        assert _uids(archive, SpinalLevel.L5, Technique.OT) == {
            clips[0].SOPInstanceUID,
            clips[2].SOPInstanceUID,
        }


def test_find_returns_every_level_of_each_row_in_anatomical_order(tmp_path: Path, db_url: str) -> None:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as archive:
        three = us_dataset(description="L5-S1 and L3/4 MBB right OT")
        none = us_dataset(description="shoulder", seed=1)
        for ds in (three, none):
            archive.ingest(part10_bytes(ds), origin=FILE)
        rows = {row.sop_instance_uid: row.levels for row in archive.index.find(Query())}
        assert rows[three.SOPInstanceUID] == ("L3", "L4", "L5", "S1")
        assert rows[none.SOPInstanceUID] == ()


def test_reads_end_with_commit_so_prepared_statements_survive(tmp_path: Path, db_url: str) -> None:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as archive:
        archive.ingest(part10_bytes(us_dataset()), origin=FILE)
        query = Query(levels=(SpinalLevel.L5,), technique=Technique.OT)
        for _ in range(8):  # psycopg prepares a statement on its 5th execution
            assert len(archive.index.find(query)) == 1
        if archive.engine.dialect.name == "postgresql":
            with archive.engine.connect() as connection:
                prepared = connection.execute(
                    text(
                        "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%instance_level%'"
                    )
                ).scalar_one()
            assert prepared >= 1, "a rolled-back read would have dropped psycopg's prepared statements"
