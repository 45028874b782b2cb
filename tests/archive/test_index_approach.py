"""Technique and needle approach apart (schema version 6), tag notes in the history, ``tag --clear``."""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest_helpers import part10_bytes, us_dataset
from sqlalchemy import delete, inspect, select, text

from archive.archive import Archive
from archive.errors import ArchiveError
from archive.index import schema
from archive.index.queries import Query
from archive.ingest import Origin
from archive.model import Approach, Side, SpinalLevel, Technique
from archive.settings import ArchiveSettings

FILE = Origin("file")
_proc, _lvl, _hist = schema.instance_procedure, schema.instance_level, schema.tag_history


def _procedure(archive: Archive, sop_uid: str) -> dict[str, object]:
    statement = (
        select(_proc)
        .join(schema.instance, schema.instance.c.id == _proc.c.instance_pk)
        .where(schema.instance.c.sop_instance_uid == sop_uid)
    )
    with archive.engine.connect() as connection:
        return dict(connection.execute(statement).one()._mapping)


def _history(archive: Archive, sop_uid: str) -> list[tuple[str, str | None, str | None, str, str | None]]:
    statement = (
        select(_hist.c.attribute, _hist.c.old_value, _hist.c.new_value, _hist.c.changed_by, _hist.c.note)
        .join(schema.instance, schema.instance.c.id == _hist.c.instance_pk)
        .where(schema.instance.c.sop_instance_uid == sop_uid)
        .order_by(_hist.c.id)
    )
    with archive.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(statement)]  # type: ignore[misc]


def _back_to_version_4(archive: Archive, technique_of: dict[str, str]) -> None:
    """Make the index what version 4 left: no approach columns, approach values in technique."""
    with archive.engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_procedure_approach"))
        for column in ("approach", "approach_source", "approach_detail"):
            connection.execute(text(f"ALTER TABLE instance_procedure DROP COLUMN {column}"))
        connection.execute(text("ALTER TABLE tag_history DROP COLUMN note"))
        connection.execute(delete(schema.schema_version).where(schema.schema_version.c.version >= 5))
        for sop_uid, technique in technique_of.items():
            by_uid = select(schema.instance.c.id).where(schema.instance.c.sop_instance_uid == sop_uid)
            pk = connection.execute(by_uid).scalar_one()
            connection.execute(
                text(
                    "UPDATE instance_procedure SET technique = :t, technique_source = 'rule', "
                    "technique_detail = :d WHERE instance_pk = :pk"
                ),
                {"t": technique, "d": f"old rule said {technique}", "pk": pk},
            )
            connection.execute(
                text("UPDATE instance_level SET technique = :t WHERE instance_pk = :pk"),
                {"t": technique, "pk": pk},
            )
    columns = {column["name"] for column in inspect(archive.engine).get_columns("instance_procedure")}
    assert "approach" not in columns


def test_version_6_moves_in_plane_and_out_of_plane_to_approach_with_history(
    tmp_path: Path, db_url: str
) -> None:
    settings = ArchiveSettings(tmp_path / "data", db_url)
    ip = us_dataset(description="L4 MBB right", seed=1)
    oop = us_dataset(description="L5 MBB right", seed=2)
    tt = us_dataset(description="L4 MBB left", seed=3)
    with Archive.open(settings) as archive:
        for ds in (ip, oop, tt):
            archive.ingest(part10_bytes(ds), origin=FILE)
        _back_to_version_4(
            archive,
            {ip.SOPInstanceUID: "in-plane", oop.SOPInstanceUID: "out-of-plane", tt.SOPInstanceUID: "TT"},
        )
    with Archive.open(settings) as archive:
        with archive.engine.connect() as connection:
            versions = connection.execute(select(schema.schema_version.c.version)).scalars().all()
        assert 6 in versions
        for ds, approach in ((ip, "in-plane"), (oop, "out-of-plane")):
            row = _procedure(archive, ds.SOPInstanceUID)
            assert (row["technique"], row["approach"]) == ("unknown", approach)
            assert row["approach_source"] == "rule"
            assert row["approach_detail"] == f"old rule said {approach}"
            history = _history(archive, ds.SOPInstanceUID)
            assert [h[:4] for h in history] == [
                ("technique", approach, "unknown", "migration:6"),
                ("approach", None, approach, "migration:6"),
            ]
            assert all("needle approach" in str(h[4]) for h in history)
        untouched = _procedure(archive, tt.SOPInstanceUID)
        assert (untouched["technique"], untouched["approach"]) == ("TT", "unknown")
        assert _history(archive, tt.SOPInstanceUID) == []
        with archive.engine.connect() as connection:
            copies = set(connection.execute(select(_lvl.c.technique)).scalars())
        assert copies == {"unknown", "TT"}, "the level rows' technique copy follows"
        found = archive.index.find(Query(approach=Approach.OUT_OF_PLANE))
        assert [row.sop_instance_uid for row in found] == [oop.SOPInstanceUID]
        assert found[0].approach == "out-of-plane"
        assert archive.index.stats()["by_approach"] == {"in-plane": 1, "out-of-plane": 1, "unknown": 1}


def test_rules_set_technique_and_approach_apart_and_find_filters_both(tmp_path: Path, db_url: str) -> None:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as archive:
        ot_ip = us_dataset(description="L5 MBB right OT in-plane", seed=1)
        tt_oop = us_dataset(description="L5 MBB right TT OOP", seed=2)
        for ds in (ot_ip, tt_oop):
            archive.ingest(part10_bytes(ds), origin=FILE)
        row = _procedure(archive, ot_ip.SOPInstanceUID)
        assert (row["technique"], row["approach"], row["approach_source"]) == ("OT", "in-plane", "rule")
        assert "approach-in-plane" in str(row["approach_detail"])

        def uids(**filters: object) -> set[str]:
            return {r.sop_instance_uid for r in archive.index.find(Query(**filters))}  # type: ignore[arg-type]

        assert uids(approach=Approach.IN_PLANE) == {ot_ip.SOPInstanceUID}
        assert uids(technique=Technique.TT, approach=Approach.OUT_OF_PLANE) == {tt_oop.SOPInstanceUID}
        assert uids(levels=(SpinalLevel.L5,), technique=Technique.OT, approach=Approach.OUT_OF_PLANE) == set()


def test_tag_notes_are_kept_in_the_history_and_clear_returns_to_the_rules(
    tmp_path: Path, db_url: str
) -> None:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as archive:
        ds = us_dataset(description="L4/5 MBB right OT in-plane")
        uid = ds.SOPInstanceUID
        archive.ingest(part10_bytes(ds), origin=FILE)
        archive.index.tag(uid, user="ann", technique=Technique.TT, note="operator said two punctures")
        archive.index.tag(uid, user="ann", side=Side.LEFT, levels=(SpinalLevel.L3,), note="second look")
        archive.index.tag(uid, user="bob", approach=Approach.OUT_OF_PLANE)
        assert _history(archive, uid) == [
            ("technique", "OT", "TT", "user:ann", "operator said two punctures"),
            ("side", "right", "left", "user:ann", "second look"),
            ("levels", "L4,L5", "L3", "user:ann", "second look"),
            ("approach", "in-plane", "out-of-plane", "user:bob", None),
        ]
        # The first note survives the next tag.
        assert _procedure(archive, uid)["technique_detail"] == "operator said two punctures"

        changes = archive.index.tag(
            uid, user="cy", clear=frozenset({"technique", "levels", "approach"}), note="wrong clip"
        )
        assert {(c.attribute, c.old_value, c.new_value) for c in changes} == {
            ("technique", "TT", "OT"),
            ("levels", "L3", "L4,L5"),
            ("approach", "out-of-plane", "in-plane"),
        }
        row = _procedure(archive, uid)
        assert (row["technique"], row["technique_source"], row["approach_source"]) == ("OT", "rule", "rule")
        assert "technique-ot" in str(row["technique_detail"])
        assert row["side"] == "left" and row["side_source"] == "user:ann", "side was not cleared"
        assert row["levels_source"] == "rule"
        cleared = _history(archive, uid)[-3:]
        assert {h[3] for h in cleared} == {"user:cy"}
        assert {h[4] for h in cleared} == {"cleared: back to the rule-derived value; wrong clip"}
        # Cleared values are the rules' again: a re-ingest may change them, the user's side stays.
        assert archive.index.tag(uid, user="cy", clear=frozenset({"technique"})) == []


def test_tag_refuses_setting_and_clearing_one_attribute(tmp_path: Path, db_url: str) -> None:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as archive:
        ds = us_dataset()
        archive.ingest(part10_bytes(ds), origin=FILE)
        with pytest.raises(ArchiveError, match="technique is both set and cleared"):
            archive.index.tag(
                ds.SOPInstanceUID, user="a", technique=Technique.TT, clear=frozenset({"technique"})
            )
        with pytest.raises(ArchiveError, match="expected at least one of"):
            archive.index.tag(ds.SOPInstanceUID, user="a")
