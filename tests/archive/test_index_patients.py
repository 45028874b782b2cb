"""Patient identity: instances keep their own patient attributes; conflicts are flagged, not re-attributed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import us_dataset, write_instance
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from archive.archive import Archive
from archive.index.queries import Query
from archive.ingest import IngestOutcome, Origin
from archive.settings import ArchiveSettings
from archive.verify import verify


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as opened:
        yield opened


def _ingest(archive: Archive, tmp_path: Path, datasets: list[Dataset], *, batch: bool) -> None:
    paths = [write_instance(tmp_path / "in", ds) for ds in datasets]
    if batch:
        results = archive.ingest_many(paths, origins=[Origin("file")] * len(paths))
    else:
        results = [archive.ingest(path, origin=Origin("file")) for path in paths]
    assert [r.outcome for r in results] == [IngestOutcome.STORED] * len(paths)


def _rows(archive: Archive) -> dict[str, dict[str, object]]:
    return {row.sop_instance_uid: row.to_json() for row in archive.index.find(Query(limit=100))}


@pytest.mark.parametrize("batch", [False, True], ids=["two-imports", "one-batch"])
@pytest.mark.parametrize("reverse", [False, True], ids=["p1-first", "p2-first"])
def test_study_with_two_patient_ids_is_flagged_everywhere(
    archive: Archive, tmp_path: Path, batch: bool, reverse: bool
) -> None:
    study = generate_uid()
    one = us_dataset(patient_id="P1", patient_name="Doe^Jane", study_uid=study, seed=1)
    two = us_dataset(patient_id="P2", patient_name="Roe^John", study_uid=study, seed=2)
    _ingest(archive, tmp_path, [two, one] if reverse else [one, two], batch=batch)

    rows = _rows(archive)
    assert (rows[one.SOPInstanceUID]["patient_id"], rows[one.SOPInstanceUID]["patient_name"]) == (
        "P1",
        "Doe^Jane",
    )
    assert (rows[two.SOPInstanceUID]["patient_id"], rows[two.SOPInstanceUID]["patient_name"]) == (
        "P2",
        "Roe^John",
    )
    expected = ["instances carry Patient IDs P1 (1), P2 (1)"]
    assert all(row["patient_conflict"] == expected for row in rows.values())

    shown_study = archive.index.show(study)
    assert shown_study is not None and shown_study.data["patient_conflict"] == expected
    shown = archive.index.show(str(two.SOPInstanceUID))
    assert shown is not None
    assert (shown.data["patient_id"], shown.data["patient_name"]) == ("P2", "Roe^John")
    assert shown.data["patient_conflict"] == expected

    report = verify(archive)
    assert report.ok, "a patient conflict is listed, not a fault of the store"
    assert report.patient_conflicts == [
        {"study_instance_uid": study, "kind": "patient-id", "detail": expected[0]}
    ]


@pytest.mark.parametrize("batch", [False, True], ids=["two-imports", "one-batch"])
@pytest.mark.parametrize("reverse", [False, True], ids=["jane-first", "janet-first"])
def test_a_patient_id_whose_name_changes_is_flagged_and_no_name_is_overwritten(
    archive: Archive, tmp_path: Path, batch: bool, reverse: bool
) -> None:
    first = us_dataset(patient_id="P7", patient_name="Doe^Jane", seed=3)
    second = us_dataset(patient_id="P7", patient_name="Doe^Janet", seed=4)
    other = us_dataset(patient_id="P8", patient_name="Poe^Ann", seed=5)
    _ingest(archive, tmp_path, [second, first, other] if reverse else [first, second, other], batch=batch)

    rows = _rows(archive)
    assert rows[first.SOPInstanceUID]["patient_name"] == "Doe^Jane"
    assert rows[second.SOPInstanceUID]["patient_name"] == "Doe^Janet"
    detail = "Patient ID P7 is received with Patient Names Doe^Jane (1), Doe^Janet (1)"
    assert rows[first.SOPInstanceUID]["patient_conflict"] == [detail]
    assert rows[second.SOPInstanceUID]["patient_conflict"] == [detail]
    assert rows[other.SOPInstanceUID]["patient_conflict"] == []
    listed = verify(archive).patient_conflicts
    assert sorted(c["study_instance_uid"] for c in listed) == sorted(
        [str(first.StudyInstanceUID), str(second.StudyInstanceUID)]
    )
    assert {c["kind"] for c in listed} == {"patient-name"}


def test_consistent_patients_are_not_flagged(archive: Archive, tmp_path: Path) -> None:
    study = generate_uid()
    datasets = [us_dataset(patient_id="P9", study_uid=study, seed=s) for s in (6, 7)]
    _ingest(archive, tmp_path, datasets, batch=False)
    assert all(row["patient_conflict"] == [] for row in _rows(archive).values())
    assert verify(archive).patient_conflicts == []


def test_migration_5_backfills_an_older_index_from_the_study_patient(tmp_path: Path, db_url: str) -> None:
    from sqlalchemy import text

    settings = ArchiveSettings(tmp_path / "data", db_url)
    ds = us_dataset(patient_id="P3", patient_name="Old^Index", seed=8)
    with Archive.open(settings) as archive:
        _ingest(archive, tmp_path, [ds], batch=False)
        with archive.engine.begin() as connection:  # the index as version 4 left it (6 re-runs, unchanged)
            connection.execute(text("ALTER TABLE instance DROP COLUMN patient_id"))
            connection.execute(text("ALTER TABLE instance DROP COLUMN patient_name"))
            connection.execute(text("DELETE FROM schema_version WHERE version >= 5"))
    with Archive.open(settings) as archive:
        row = archive.index.find(Query(limit=10))[0]
        assert (row.patient_id, row.patient_name, row.patient_conflict) == ("P3", "Old^Index", ())
