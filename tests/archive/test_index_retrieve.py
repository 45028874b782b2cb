"""The instances a retrieve names, by the unique keys of its level (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import us_dataset, write_instance
from pydicom.uid import generate_uid

from archive.archive import Archive
from archive.index.retrieve import RetrieveKeys, RetrieveLevel
from archive.ingest import IngestOutcome, Origin
from archive.settings import ArchiveSettings


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as opened:
        yield opened


@pytest.fixture
def layout(archive: Archive, tmp_path: Path) -> dict[str, list[str]]:
    """Patient A: study 1 (series a: 3 instances, series b: 1), study 2 (1); patient B: study 3 (1)."""
    study1, study2, study3 = generate_uid(), generate_uid(), generate_uid()
    series_a, series_b = generate_uid(), generate_uid()
    plan = [
        ("A", study1, series_a, 3),
        ("A", study1, series_b, 1),
        ("A", study2, generate_uid(), 1),
        ("B", study3, generate_uid(), 1),
    ]
    uids: dict[str, list[str]] = {"study1": [], "series_a": [], "study2": [], "A": [], "B": []}
    for patient, study, series, count in plan:
        # instance numbers descending, to check the order is by instance number, not arrival
        for number in range(count, 0, -1):
            ds = us_dataset(patient_id=patient, study_uid=study, series_uid=series)
            ds.InstanceNumber = number
            path = write_instance(tmp_path / "in", ds)
            result = archive.ingest(path, origin=Origin("file", path=str(path)))
            assert result.outcome is IngestOutcome.STORED
            uids[patient].append(str(ds.SOPInstanceUID))
            if study == study1:
                uids["study1"].append(str(ds.SOPInstanceUID))
            if series == series_a:
                uids["series_a"].insert(0, str(ds.SOPInstanceUID))
            if study == study2:
                uids["study2"].append(str(ds.SOPInstanceUID))
    uids["keys"] = [study1, study2, study3, series_a, series_b]
    return uids


def _uids(archive: Archive, keys: RetrieveKeys, limit: int = 100) -> list[str]:
    return [item.sop_instance_uid for item in archive.index.retrievable(keys, limit=limit)]


def test_study_level_with_a_uid_list(archive: Archive, layout: dict[str, list[str]]) -> None:
    study1, study2, *_ = layout["keys"]
    found = _uids(archive, RetrieveKeys(RetrieveLevel.STUDY, study_uids=(study1, study2)))
    assert sorted(found) == sorted(layout["study1"] + layout["study2"])
    assert _uids(archive, RetrieveKeys(RetrieveLevel.STUDY, study_uids=("1.2.3.4.404",))) == []


def test_series_level_in_instance_number_order(archive: Archive, layout: dict[str, list[str]]) -> None:
    study1, _, _, series_a, _ = layout["keys"]
    keys = RetrieveKeys(RetrieveLevel.SERIES, study_uids=(study1,), series_uids=(series_a,))
    assert _uids(archive, keys) == layout["series_a"]
    # a series under another study does not match
    other = RetrieveKeys(RetrieveLevel.SERIES, study_uids=(layout["keys"][1],), series_uids=(series_a,))
    assert _uids(archive, other) == []


def test_image_level_and_patient_root(archive: Archive, layout: dict[str, list[str]]) -> None:
    study1, _, _, series_a, _ = layout["keys"]
    wanted = layout["series_a"][1]
    keys = RetrieveKeys(
        RetrieveLevel.IMAGE, study_uids=(study1,), series_uids=(series_a,), sop_instance_uids=(wanted,)
    )
    (item,) = archive.index.retrievable(keys, limit=10)
    assert item.sop_instance_uid == wanted
    assert Path(item.path).is_file() and Path(item.path).stat().st_size == item.size
    assert _uids(archive, RetrieveKeys(RetrieveLevel.PATIENT, patient_id="B")) == layout["B"]
    # Patient ID restricts a study-level retrieve too (Patient Root)
    wrong_patient = RetrieveKeys(RetrieveLevel.STUDY, patient_id="B", study_uids=(study1,))
    assert _uids(archive, wrong_patient) == []


def test_limit(archive: Archive, layout: dict[str, list[str]]) -> None:
    assert len(_uids(archive, RetrieveKeys(RetrieveLevel.PATIENT, patient_id="A"), limit=2)) == 2
