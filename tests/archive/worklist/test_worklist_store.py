"""The worklist domain: scheduling, codes, statuses, CSV import, matching; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from worklist_samples import procedure

from archive.archive import Archive
from archive.model import Approach, SpinalLevel, Technique
from archive.query import MatchSettings, QueryError
from archive.settings import ArchiveSettings
from archive.worklist.dataset import HELD_TAGS, entry_attributes, request_attributes
from archive.worklist.errors import WorklistError, WorklistImportError
from archive.worklist.model import EntryStatus, WorklistSettings
from archive.worklist.query import WorklistQuery, find_entries


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Archive:
    opened = Archive.open(ArchiveSettings(tmp_path / "data", db_url))
    yield opened
    opened.close()


def test_an_entry_gets_unique_identifiers_codes_and_a_readable_description(archive: Archive) -> None:
    first, second = archive.worklist.schedule([procedure(), procedure(accession="ACC002")])
    assert (
        first.study_instance_uid.startswith("2.25.") and first.study_instance_uid != second.study_instance_uid
    )
    assert len(first.requested_procedure_id) <= 16 and len(first.step_id) <= 16
    assert first.step_id != second.step_id and first.requested_procedure_id != second.requested_procedure_id
    assert first.procedure.description == "L4+L5 MBB right, OT (one puncture)"
    codes = [(c.value, c.scheme) for c in first.procedure.protocol_codes]
    assert codes == [
        ("MBB", "99USARCH"),
        ("11994002", "SCT"),
        ("49668003", "SCT"),
        ("24028007", "SCT"),
        ("OT", "99USARCH"),
    ]
    assert first.status is EntryStatus.SCHEDULED
    again = archive.worklist.get(first.pk)
    assert again == first


def test_the_attribute_lists_name_what_entry_attributes_fills(archive: Archive) -> None:
    (entry,) = archive.worklist.schedule([procedure(approach=Approach.IN_PLANE)])
    top, step = entry_attributes(entry)
    assert {int(e.tag) for e in top} == HELD_TAGS[0]
    assert {int(e.tag) for e in step} == HELD_TAGS[1]
    item = request_attributes(entry)
    assert item.ScheduledProcedureStepID == entry.step_id
    assert item.RequestedProcedureDescription == "L4+L5 MBB right, OT (one puncture), in-plane"
    assert [c.CodeValue for c in item.ScheduledProtocolCodeSequence][-1] == "IN-PLANE"


def test_cancel_and_complete_refuse_a_final_entry(archive: Archive) -> None:
    a, b = archive.worklist.schedule([procedure(), procedure(accession="ACC002")])
    assert archive.worklist.cancel(a.pk, "patient unwell").status is EntryStatus.CANCELLED
    assert archive.worklist.get(a.pk).note == "patient unwell"
    with pytest.raises(WorklistError, match=r"expected an entry that is scheduled .* but it is cancelled"):
        archive.worklist.complete(a.pk)
    assert archive.worklist.complete(b.pk).status is EntryStatus.COMPLETED
    with pytest.raises(WorklistError, match="but it is completed"):
        archive.worklist.cancel(b.pk)
    with pytest.raises(WorklistError, match="there is none"):
        archive.worklist.get(999)


def test_entry_for_prefers_the_step_id_and_ignores_a_shared_accession(archive: Archive) -> None:
    a, b = archive.worklist.schedule([procedure(accession="SAME"), procedure(accession="SAME")])
    store = archive.worklist
    assert store.entry_for(accession_numbers=["SAME"]) is None  # ambiguous
    assert store.entry_for(step_ids=[b.step_id], accession_numbers=["SAME"]) == b
    assert store.entry_for(requested_procedure_ids=[a.requested_procedure_id]) == a
    assert store.entry_for(study_instance_uid=b.study_instance_uid) == b
    assert store.entry_for(study_instance_uid="1.2.3") is None
    store.cancel(a.pk)
    assert store.entry_for(step_ids=[a.step_id]) is None


def test_csv_import_is_all_or_nothing_with_errors_by_line(archive: Archive, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(
        "patient_id,patient_name,birth_date,sex,accession,date,time,station_aet,procedure,levels,side,technique\n"
        "P1,DOE^JANE,19610304,F,A1,2026-12-02,09:30,SCANNER1,medial branch block,L4+L5,right,OT\n"
        "P2,山田^太郎,,M,A2,20261202,1000,SCANNER1,medial branch block,L3,L,TT\n",
        encoding="utf-8",
    )
    entries = archive.worklist.import_csv(good)
    assert [e.procedure.levels for e in entries] == [(SpinalLevel.L4, SpinalLevel.L5), (SpinalLevel.L3,)]
    assert entries[1].procedure.technique is Technique.TT and entries[1].procedure.patient_name == "山田^太郎"
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "patient_id,patient_name,accession,date,time,station_aet,procedure,levels,side\n"
        "P3,DOE^J,A3,2026-12-02,09:30,SCANNER1,medial branch block,L4,right\n"
        "P4,DOE^K,A4,2026-13-02,09:30,SCANNER1,medial branch block,L9,up\n"
        ",DOE^K,A5,2026-12-02,09:30,SCANNER1,medial branch block,L4,right\n",
        encoding="utf-8",
    )
    with pytest.raises(WorklistImportError) as caught:
        archive.worklist.import_csv(bad)
    lines = [line for line, _ in caught.value.problems]
    assert lines == [3, 4]
    text = str(caught.value)
    assert "date: expected a date" in text and "levels" in text and "side" in text and "patient_id" in text
    assert len(archive.worklist.entries()) == 2  # nothing of bad.csv


def _query(**step: str) -> Dataset:
    identifier = Dataset()
    identifier.PatientName = ""
    identifier.AccessionNumber = ""
    item = Dataset()
    for keyword, value in step.items():
        setattr(item, keyword, value)
    identifier.ScheduledProcedureStepSequence = [item]
    return identifier


def test_mwl_matching_station_dates_status_and_expiry(archive: Archive) -> None:
    now = datetime(2026, 12, 2, 12, 0)
    old = now - timedelta(hours=30)
    a, b, c, _ = archive.worklist.schedule(
        [
            procedure(start=now, station="SCANNER1"),
            procedure(start=now + timedelta(days=1), station="SCANNER1", accession="A2"),
            procedure(start=old, station="SCANNER1", accession="A3"),
            procedure(start=now, station="OTHER", accession="A4"),
        ]
    )
    match, settings = MatchSettings(), WorklistSettings(expire_after_hours=24)

    def accessions(identifier: Dataset) -> list[str]:
        return [
            r.AccessionNumber
            for r in find_entries(archive.engine, WorklistQuery.parse(identifier), match, settings, now=now)
        ]

    today = _query(ScheduledStationAETitle="SCANNER1", ScheduledProcedureStepStartDate="20261202")
    assert accessions(today) == ["ACC001"]
    week = _query(ScheduledStationAETitle="SCANNER1", ScheduledProcedureStepStartDate="20261130-20261208")
    assert accessions(week) == ["ACC001", "A2"]  # A3 expired (30 h past its start)
    asked = _query(ScheduledStationAETitle="SCANNER1", ScheduledProcedureStepStatus="SCHEDULED")
    assert accessions(asked) == ["A3", "ACC001", "A2"]  # asked for by status: expired too
    archive.worklist.complete(a.pk)
    assert accessions(today) == []
    assert accessions(_query(ScheduledProcedureStepStatus="COMPLETED")) == ["ACC001"]
    wildcard = Dataset()
    wildcard.PatientName = "doe*"
    wildcard.AccessionNumber = "A?"
    assert [
        r.AccessionNumber
        for r in find_entries(archive.engine, WorklistQuery.parse(wildcard), match, settings, now=now)
    ] == ["A4", "A2"]  # by start
    limited = WorklistSettings(max_results=1)
    with pytest.raises(QueryError, match="more than 1 entries"):
        find_entries(archive.engine, WorklistQuery.parse(asked), match, limited, now=now)
    unknown = _query(ScheduledStationName="ROOM1")
    with pytest.raises(QueryError, match="ScheduledStationName: the worklist cannot match on it"):
        WorklistQuery.parse(unknown)
    assert b.pk and c.pk
