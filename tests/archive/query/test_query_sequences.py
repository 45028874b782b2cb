"""Sequence matching (PS3.4 C.2.2.2.6) on the kept sequence items, on SQLite and PostgreSQL.

Three studies: X has a Procedure Code "MBB-L5" (99USARCH) and a Referenced
Study; Y has two series, one whose instances carry Request Attributes
(Requested Procedure RP1, step SPS1, protocol codes L5 SNOMED 49668003 and
OT) and one with RP2 / SPS2 / protocol TT; Z carries no sequences. Every
expected set below is written from that description.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import part10_bytes, us_dataset
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid
from sqlalchemy import delete, insert, select

from archive.archive import Archive
from archive.index import items, schema
from archive.ingest import DuplicatePolicy, IngestOutcome, Origin
from archive.query import FindRequest, InformationModel, MatchSettings, QueryError, QueryFailure, find
from archive.settings import ArchiveSettings

REFERENCED = "1.2.3.4.5.6"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    ds = Dataset()
    ds.CodeValue, ds.CodingSchemeDesignator, ds.CodeMeaning = value, scheme, meaning
    return ds


def _request(rp: str, sps: str, codes: list[Dataset]) -> Dataset:
    ds = Dataset()
    ds.RequestedProcedureID = rp
    ds.ScheduledProcedureStepID = sps
    ds.ScheduledProtocolCodeSequence = DicomSequence(codes)
    return ds


@dataclass(frozen=True)
class Sample:
    archive: Archive
    studies: dict[str, str]
    series: dict[str, str]


@pytest.fixture
def sample(tmp_path: Path, db_url: str) -> Iterator[Sample]:
    studies = {letter: str(generate_uid()) for letter in "XYZ"}
    series = {name: str(generate_uid()) for name in ("X", "Y1", "Y2", "Z")}
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    referenced.ReferencedSOPInstanceUID = REFERENCED
    l5, ot, tt = (
        _code("49668003", "SCT", "L5 vertebra"),
        _code("OT", "99USARCH", "Two points via one puncture"),
        _code("TT", "99USARCH", "Two points via two punctures"),
    )
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as archive:
        rows: list[dict[str, Any]] = [
            {
                "study_uid": studies["X"],
                "series_uid": series["X"],
                "ProcedureCodeSequence": DicomSequence([_code("MBB-L5", "99USARCH", "MBB L5")]),
                "ReferencedStudySequence": DicomSequence([referenced]),
            },
            *(
                {
                    "study_uid": studies["Y"],
                    "series_uid": series["Y1"],
                    "seed": n,
                    "RequestAttributesSequence": DicomSequence([_request("RP1", "SPS1", [l5, ot])]),
                }
                for n in range(2)  # two instances with the same item: answered once
            ),
            {
                "study_uid": studies["Y"],
                "series_uid": series["Y2"],
                "RequestAttributesSequence": DicomSequence([_request("RP2", "SPS2", [tt])]),
            },
            {"study_uid": studies["Z"], "series_uid": series["Z"]},
        ]
        for values in rows:
            archive.ingest(part10_bytes(us_dataset(**values)), origin=Origin("file"))
        yield Sample(archive, studies, series)


def _identifier(level: str, **values: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _item(**values: Any) -> DicomSequence:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return DicomSequence([item])


def _run(sample: Sample, identifier: Dataset, **options: bool) -> list[Dataset]:
    request = FindRequest.parse(identifier, InformationModel.STUDY_ROOT, **options)
    return list(find(sample.archive.engine, request, MatchSettings(page_size=2)))


def _letters(sample: Sample, responses: list[Dataset], uids: dict[str, str], attr: str) -> set[str]:
    names = {uid: name for name, uid in uids.items()}
    return {names[str(ds[attr].value)] for ds in responses}


def test_procedure_code_sequence_matches_and_returns_the_item(sample: Sample) -> None:
    identifier = _identifier(
        "STUDY",
        StudyInstanceUID="",
        ProcedureCodeSequence=_item(CodeValue="MBB-*", CodingSchemeDesignator="", CodeMeaning=""),
    )
    (ds,) = _run(sample, identifier)
    assert ds.StudyInstanceUID == sample.studies["X"]
    (item,) = ds.ProcedureCodeSequence
    assert (item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning) == ("MBB-L5", "99USARCH", "MBB L5")
    # every non-empty key of the one item must match the same item
    both = _item(CodeValue="MBB-L5", CodingSchemeDesignator="SCT")
    assert _run(sample, _identifier("STUDY", StudyInstanceUID="", ProcedureCodeSequence=both)) == []
    # an empty item is a return key: every study answers, X with its item, the others with none
    responses = _run(
        sample, _identifier("STUDY", StudyInstanceUID="", ProcedureCodeSequence=_item(CodeValue=""))
    )
    by_study = {str(ds.StudyInstanceUID): len(ds.ProcedureCodeSequence) for ds in responses}
    assert by_study == {sample.studies["X"]: 1, sample.studies["Y"]: 0, sample.studies["Z"]: 0}


def test_referenced_study_sequence_uid_list(sample: Sample) -> None:
    seq = _item(ReferencedSOPInstanceUID=f"9.9\\{REFERENCED}", ReferencedSOPClassUID="")
    responses = _run(sample, _identifier("STUDY", StudyInstanceUID="", ReferencedStudySequence=seq))
    assert _letters(sample, responses, sample.studies, "StudyInstanceUID") == {"X"}


def test_request_attributes_at_series_level_with_nested_protocol_codes(sample: Sample) -> None:
    def series(**item: Any) -> set[str]:
        identifier = _identifier(
            "SERIES",
            StudyInstanceUID=sample.studies["Y"],
            SeriesInstanceUID="",
            RequestAttributesSequence=_item(**item),
        )
        return _letters(sample, _run(sample, identifier), sample.series, "SeriesInstanceUID")

    assert series(RequestedProcedureID="RP1") == {"Y1"}
    assert series(ScheduledProcedureStepID="SPS*") == {"Y1", "Y2"}
    assert series(ScheduledProtocolCodeSequence=_item(CodeValue="49668003")) == {"Y1"}
    assert series(ScheduledProtocolCodeSequence=_item(CodeValue="TT\\OT")) == {"Y1", "Y2"}
    # the nested key and the item's key must hold in the same item
    assert series(RequestedProcedureID="RP2", ScheduledProtocolCodeSequence=_item(CodeValue="OT")) == set()
    identifier = _identifier(
        "SERIES",
        StudyInstanceUID=sample.studies["Y"],
        SeriesInstanceUID=sample.series["Y1"],
        RequestAttributesSequence=_item(
            RequestedProcedureID="RP1",
            ScheduledProcedureStepID="",
            ScheduledProtocolCodeSequence=_item(CodeValue=""),
        ),
    )
    (ds,) = _run(sample, identifier)
    (item,) = ds.RequestAttributesSequence  # two instances, one item
    assert (item.RequestedProcedureID, item.ScheduledProcedureStepID) == ("RP1", "SPS1")
    assert [code.CodeValue for code in item.ScheduledProtocolCodeSequence] == ["49668003", "OT"]


def test_nested_protocol_codes_are_narrowed_to_the_matching_ones(sample: Sample) -> None:
    def request_items(level: str, codes: DicomSequence, **options: bool) -> list[Dataset]:
        identifier = _identifier(
            level,
            StudyInstanceUID=sample.studies["Y"],
            RequestAttributesSequence=_item(RequestedProcedureID="", ScheduledProtocolCodeSequence=codes),
        )
        if level == "SERIES":
            identifier.SeriesInstanceUID = sample.series["Y1"]
        (ds,) = _run(sample, identifier, **options)
        return list(ds.RequestAttributesSequence)

    # Y1's item has the codes 49668003 and OT: the one named, with the requested attributes only
    (item,) = request_items("SERIES", _item(CodeValue="OT", CodeMeaning=""))  # two instances, one item
    (code,) = item.ScheduledProtocolCodeSequence
    assert (code.CodeValue, code.CodeMeaning) == ("OT", "Two points via one puncture")
    assert "CodingSchemeDesignator" not in code
    (item,) = request_items("SERIES", _item(CodeValue="4966*", CodingSchemeDesignator="SCT"))
    assert [c.CodeValue for c in item.ScheduledProtocolCodeSequence] == ["49668003"]
    # a list across the study's two items: each item keeps its own matching codes
    found = request_items("STUDY", _item(CodeValue="TT\\OT"), relational=True)
    codes = {
        str(i.RequestedProcedureID): [c.CodeValue for c in i.ScheduledProtocolCodeSequence] for i in found
    }
    assert codes == {"RP1": ["OT"], "RP2": ["TT"]}
    # an empty nested key returns every code of the item
    (item,) = request_items("SERIES", _item(CodeValue=""))
    assert [c.CodeValue for c in item.ScheduledProtocolCodeSequence] == ["49668003", "OT"]


def test_hierarchical_and_relational_levels(sample: Sample) -> None:
    seq = _item(RequestedProcedureID="RP2")
    with pytest.raises(QueryError) as caught:
        _run(sample, _identifier("STUDY", StudyInstanceUID="", RequestAttributesSequence=seq))
    assert caught.value.failure is QueryFailure.INVALID_IDENTIFIER
    responses = _run(
        sample, _identifier("STUDY", StudyInstanceUID="", RequestAttributesSequence=seq), relational=True
    )
    assert _letters(sample, responses, sample.studies, "StudyInstanceUID") == {"Y"}


def test_values_the_index_does_not_keep_are_refused_naming_them(sample: Sample) -> None:
    with pytest.raises(QueryError) as caught:
        _run(sample, _identifier("STUDY", StudyInstanceUID="", ProcedureCodeSequence=_item(ContextUID="1.2")))
    assert caught.value.failure is QueryFailure.UNSUPPORTED_KEY
    assert "ProcedureCodeSequence > ContextUID" in str(caught.value)
    with pytest.raises(QueryError) as caught:
        _run(sample, _identifier("STUDY", StudyInstanceUID="", OtherPatientIDsSequence=_item(PatientID="P1")))
    assert caught.value.failure is QueryFailure.UNSUPPORTED_KEY
    assert "OtherPatientIDsSequence" in str(caught.value)
    two = DicomSequence([_item(CodeValue="A")[0], _item(CodeValue="B")[0]])
    with pytest.raises(QueryError) as caught:
        _run(sample, _identifier("STUDY", StudyInstanceUID="", ProcedureCodeSequence=two))
    assert "expected one item" in str(caught.value)


def test_backfill_reads_items_of_instances_indexed_before_migration_12(sample: Sample) -> None:
    engine = sample.archive.engine
    with engine.begin() as connection:
        connection.execute(delete(items.sequence_item_value))
        connection.execute(
            insert(items.sequence_item_pending).from_select(["instance_pk"], select(schema.instance.c.id))
        )
    seq = _item(CodeValue="MBB-L5")
    assert _run(sample, _identifier("STUDY", StudyInstanceUID="", ProcedureCodeSequence=seq)) == []
    assert items.backfill_items(engine, sample.archive.store.absolute) == 5
    (ds,) = _run(sample, _identifier("STUDY", StudyInstanceUID="", ProcedureCodeSequence=seq))
    assert ds.StudyInstanceUID == sample.studies["X"]
    with engine.connect() as connection:
        assert connection.execute(select(items.sequence_item_pending)).all() == []


def test_a_replaced_instance_matches_its_new_items_only(tmp_path: Path, db_url: str) -> None:
    settings = ArchiveSettings(tmp_path / "other", db_url, duplicate_policy=DuplicatePolicy.REPLACE)
    with Archive.open(settings) as archive:
        ds = us_dataset(ProcedureCodeSequence=DicomSequence([_code("OLD", "99USARCH", "old code")]))
        archive.ingest(part10_bytes(ds), origin=Origin("file"))
        ds.ProcedureCodeSequence = DicomSequence([_code("NEW", "99USARCH", "new code")])
        replaced = archive.ingest(part10_bytes(ds), origin=Origin("file"))
        assert replaced.outcome is IngestOutcome.REPLACED

        def codes(value: str) -> list[str]:
            identifier = _identifier(
                "STUDY", StudyInstanceUID="", ProcedureCodeSequence=_item(CodeValue=value, CodeMeaning="")
            )
            request = FindRequest.parse(identifier, InformationModel.STUDY_ROOT)
            found = find(archive.engine, request, MatchSettings())
            return [str(item.CodeMeaning) for response in found for item in response.ProcedureCodeSequence]

        assert codes("OLD") == []
        assert codes("NEW") == ["new code"]
