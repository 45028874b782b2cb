"""Outcome storage in the index: migration 3, all-or-nothing import, set with history."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select

from archive.errors import ArchiveError, OutcomeImportError
from archive.index import schema
from archive.index.engine import create_index_engine, write_transaction
from archive.index.migrations import LATEST_VERSION, migrate
from archive.index.outcomes import (
    OUTCOME_TABLES,
    load_history,
    load_outcomes,
    outcomes_for,
    set_outcome,
)
from archive.model import Side
from archive.outcomes_store import OutcomeStore

KNOWN = ("1.2.826.0.1.3680043.10.543.1", "1.2.826.0.1.3680043.10.543.2")
HEADER = "study_uid,side,vas_pre,vas_1h,vas_2w,odi_pre,odi_1h,odi_2w,adverse_event\n"


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = create_index_engine(db_url)
    migrate(engine)
    with write_transaction(engine) as connection:
        patient = connection.execute(
            schema.patient.insert().values(patient_id="P1", issuer="")
        ).inserted_primary_key[0]
        for uid in KNOWN:
            connection.execute(schema.study.insert().values(study_instance_uid=uid, patient_pk=patient))
    yield engine
    engine.dispose()


def test_migration_3_creates_the_outcome_tables(engine: Engine) -> None:
    assert LATEST_VERSION >= 3
    with engine.connect() as connection:
        versions = connection.execute(select(schema.schema_version.c.version)).scalars().all()
    assert 3 in versions
    assert {t.name for t in OUTCOME_TABLES} <= set(inspect(engine).get_table_names())


def test_import_writes_every_row_and_records_history(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    path.write_text(HEADER + f"{KNOWN[0]},R,8,4,3,50,30,20,\n{KNOWN[1]},left,6,,2,40,,22,nerve irritation\n")
    changes = OutcomeStore(engine).import_csv(path)
    assert [(c.study_uid, c.side, c.old) for c in changes] == [
        (KNOWN[0], Side.RIGHT, None),
        (KNOWN[1], Side.LEFT, None),
    ]
    stored = outcomes_for(engine)
    assert {(o.study_uid, o.side, o.vas_1h, o.adverse_event) for o in stored} == {
        (KNOWN[0], Side.RIGHT, 4.0, None),
        (KNOWN[1], Side.LEFT, None, "nerve irritation"),
    }
    # importing the same file again changes nothing
    assert OutcomeStore(engine).import_csv(path) == []
    with engine.connect() as connection:
        assert load_outcomes(connection, KNOWN[0])[0].source == "import:outcomes.csv"


def test_import_refuses_unknown_studies_by_line_and_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    unknown = "1.2.826.0.1.3680043.10.543.99"
    path.write_text(HEADER + f"{KNOWN[0]},R,8,4,3,50,30,20,\n\n{unknown},L,5,4,3,30,20,10,\n")
    with pytest.raises(OutcomeImportError) as caught:
        OutcomeStore(engine).import_csv(path)
    assert caught.value.problems == (
        (
            4,
            f"study_uid: expected a study in the archive, but there is no study {unknown}; "
            "import its clips first or correct the UID",
        ),
    )
    assert outcomes_for(engine) == []


def test_import_refuses_bad_rows_before_touching_the_index(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    path.write_text(HEADER + f"{KNOWN[0]},R,8,4,3,50,30,20,\n{KNOWN[1]},R,11,4,3,50,30,20,\n")
    with pytest.raises(OutcomeImportError) as caught:
        OutcomeStore(engine).import_csv(path)
    assert [line for line, _ in caught.value.problems] == [3]
    assert outcomes_for(engine) == []


def test_set_merges_values_and_keeps_history(engine: Engine) -> None:
    first, change = set_outcome(
        engine, KNOWN[0], Side.RIGHT, {"vas_pre": 7.0, "odi_pre": 44.0}, source="user:ann"
    )
    assert change is not None and change.old is None and first.vas_2w is None
    second, change = set_outcome(engine, KNOWN[0], Side.RIGHT, {"vas_2w": 3.0}, source="user:bob")
    assert (second.vas_pre, second.odi_pre, second.vas_2w) == (7.0, 44.0, 3.0)
    assert change is not None and change.old is not None and change.old["vas_2w"] is None
    unchanged, none = set_outcome(engine, KNOWN[0], Side.RIGHT, {"vas_2w": 3.0}, source="user:bob")
    assert none is None and unchanged == second
    with engine.connect() as connection:
        history = load_history(connection, KNOWN[0])
    assert [h.source for h in history] == ["user:ann", "user:bob"]
    assert history[1].new["vas_2w"] == 3.0


def test_set_refuses_unknown_study_and_bad_values(engine: Engine) -> None:
    with pytest.raises(ArchiveError, match=r"no study 1\.2\.3"):
        set_outcome(engine, "1.2.3", Side.LEFT, {"vas_pre": 5.0}, source="user:ann")
    with pytest.raises(ValueError, match="vas_pre"):
        set_outcome(engine, KNOWN[0], Side.LEFT, {"vas_pre": 12.0}, source="user:ann")
    with pytest.raises(ValueError, match="pain"):
        set_outcome(engine, KNOWN[0], Side.LEFT, {"pain": 1.0}, source="user:ann")
    assert outcomes_for(engine) == []
