"""Outcome storage in the index: migration 3, all-or-nothing import, set with history."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select

from archive.analysis.outcomes.sql import (
    OUTCOME_TABLES,
    load_history,
    load_outcomes,
    outcomes_for,
    set_outcome,
)
from archive.analysis.outcomes.store import OutcomeStore
from archive.errors import ArchiveError, OutcomeImportError
from archive.index import schema
from archive.index.engine import create_index_engine, write_transaction
from archive.index.migrations import LATEST_VERSION, migrate
from archive.model import Side

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
        for n, uid in enumerate(KNOWN):
            study = connection.execute(
                schema.study.insert().values(study_instance_uid=uid, patient_pk=patient)
            ).inserted_primary_key[0]
            series = connection.execute(
                schema.series.insert().values(series_instance_uid=f"{uid}.1", study_pk=study)
            ).inserted_primary_key[0]
            for k, side in enumerate(("left", "right")):  # a clip of each side: two procedures
                instance = connection.execute(
                    schema.instance.insert().values(
                        sop_instance_uid=f"{uid}.1.{k + 1}",
                        sop_class_uid="1.2.840.10008.5.1.4.1.1.3.1",
                        series_pk=series,
                        path=f"clip{n}{k}.dcm",
                        size=1,
                        sha256="0" * 64,
                        transfer_syntax="1.2.840.10008.1.2.1",
                        received_at=datetime.now(UTC),
                        source_kind="file",
                        calibrated=False,
                        sort_date=date(2024, 1, 1),
                    )
                ).inserted_primary_key[0]
                connection.execute(
                    schema.instance_procedure.insert().values(
                        instance_pk=instance, side=side, updated_at=datetime.now(UTC)
                    )
                )
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
    with pytest.raises(ArchiveError, match=r"has a clip of \(left, right\), but got bilateral"):
        set_outcome(engine, KNOWN[0], Side.BILATERAL, {"vas_pre": 5.0}, source="user:ann")
    assert outcomes_for(engine) == []


TEMPLATE = "patient_id,study_date,accession_number,operator,station," + HEADER


def test_import_reports_every_problem_in_one_pass(engine: Engine, tmp_path: Path) -> None:
    with write_transaction(engine) as connection:
        connection.execute(
            schema.study.update()
            .where(schema.study.c.study_instance_uid == KNOWN[1])
            .values(accession_number="ACC-2", study_date=date(2024, 1, 2))
        )
    unknown = "1.2.826.0.1.3680043.10.543.99"
    path = tmp_path / "filled.csv"
    path.write_text(
        TEMPLATE
        + f",,,,,{KNOWN[0]},bilateral,8,4,3,50,30,20,\n"  # line 2: no bilateral clip
        + ",,ACC-2,Dr A,EDGE,,R,8,4,3,50,30,20,\n"  # line 3: by accession, fine
        + ",,ACC-9,,,,R,8,4,3,50,30,20,\n"  # line 4: unknown accession
        + f",,,,,{unknown},L,5,4,3,30,20,10,\n"  # line 5: unknown study
        + ",,,,,,L,11,4,3,30,20,10,\n"  # line 6: no key and a bad score
        + "P1,2024-01-02,,,,,L,8,4,3,50,30,20,\n"  # line 7: by patient + date, fine
        + ",,ACC-2,,,,right,8,4,3,50,30,20,\n"  # line 8: same procedure as line 3
    )
    with pytest.raises(OutcomeImportError) as caught:
        OutcomeStore(engine).import_csv(path)
    problems = dict(caught.value.problems)
    assert sorted(problems) == [2, 4, 5, 6, 8]
    assert "side the study" in problems[2] and "(left, right), but got bilateral" in problems[2]
    assert "accession number 'ACC-9'" in problems[4]
    assert f"no study {unknown}" in problems[5]
    assert "none of them" in problems[6] and "vas_pre" in problems[6]
    assert "already on line 3" in problems[8]
    assert outcomes_for(engine) == []

    path.write_text(
        TEMPLATE + ",,ACC-2,Dr A,EDGE,,R,8,4,3,50,30,20,\n" + "P1,20240102,,,,,L,8,4,3,50,30,20,\n"
    )
    OutcomeStore(engine).import_csv(path)
    assert {(o.study_uid, o.side) for o in outcomes_for(engine)} == {
        (KNOWN[1], Side.RIGHT),
        (KNOWN[1], Side.LEFT),
    }
