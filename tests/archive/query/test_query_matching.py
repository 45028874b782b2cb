"""The C-FIND / worklist / QIDO matcher on a small archive, on SQLite and PostgreSQL.

Four studies of three patients (one with a Japanese name in three component
groups), tagged by the built-in rules from their descriptions: A "L5 MBB left
OT" (2 series, 3 instances), B "L4 MBB right TT", C "L5 MBB right TT", D
"L4/5 MBB right OT". Every expected set below is written from that table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import part10_bytes, us_dataset
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from archive.archive import Archive
from archive.ingest import Origin
from archive.query import (
    PRIVATE_CREATOR,
    FindRequest,
    InformationModel,
    MatchSettings,
    QueryError,
    QueryFailure,
    find,
)
from archive.settings import ArchiveSettings

JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"


@dataclass(frozen=True)
class Sample:
    archive: Archive
    studies: dict[str, str]  # letter -> Study Instance UID
    series: dict[str, list[str]]


def _ingest(archive: Archive, **values: Any) -> None:
    archive.ingest(part10_bytes(us_dataset(**values)), origin=Origin("file"))


@pytest.fixture
def sample(tmp_path: Path, db_url: str) -> Iterator[Sample]:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as archive:
        studies = {letter: str(generate_uid()) for letter in "ABCDE"}
        series = {letter: [str(generate_uid()), str(generate_uid())] for letter in "ABCDE"}
        for number, series_uid in enumerate([series["A"][0], series["A"][0], series["A"][1]]):
            _ingest(
                archive,
                patient_id="P001",
                patient_name="Doe^Jane",
                study_uid=studies["A"],
                series_uid=series_uid,
                study_date=date(2024, 3, 5),
                description="L5 MBB left OT",
                seed=number,
                InstanceNumber=number + 1,
                AccessionNumber="ACC_1%",
            )
        _ingest(
            archive,
            patient_id="P002",
            patient_name="Roe^Rick",
            study_uid=studies["B"],
            series_uid=series["B"][0],
            study_date=date(2024, 3, 10),
            description="L4 MBB right TT",
            StudyTime="230000",
            AccessionNumber="ACC2",
        )
        _ingest(
            archive,
            patient_id="P003",
            patient_name=JAPANESE,
            study_uid=studies["C"],
            series_uid=series["C"][0],
            study_date=date(2024, 4, 1),
            description="L5 MBB right TT",
            StudyTime="003000",
            SpecificCharacterSet="ISO_IR 192",
        )
        _ingest(
            archive,
            patient_id="P001",
            patient_name="Doe^Jane",
            study_uid=studies["D"],
            series_uid=series["D"][0],
            study_date=date(2024, 5, 1),
            description="L4/5 MBB right OT",
        )
        _ingest(
            archive,
            patient_id="P004",
            patient_name="Poe^Edgar",
            study_uid=studies["E"],
            series_uid=series["E"][0],
            study_date=date(2024, 6, 1),
            description="photograph of the site",
            Modality="OT",
        )
        yield Sample(archive, studies, series)


def _identifier(level: str, **values: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _run(
    sample: Sample,
    identifier: Dataset,
    model: InformationModel = InformationModel.STUDY_ROOT,
    settings: MatchSettings | None = None,
    **options: bool,
) -> list[Dataset]:
    request = FindRequest.parse(identifier, model, **options)
    return list(find(sample.archive.engine, request, settings or MatchSettings(page_size=2)))


def _studies(sample: Sample, responses: list[Dataset]) -> set[str]:
    letters = {uid: letter for letter, uid in sample.studies.items()}
    found = [letters[str(ds.StudyInstanceUID)] for ds in responses]
    assert len(found) == len(set(found)), f"a study answered twice: {found}"
    return set(found)


def _study(sample: Sample, **values: Any) -> set[str]:
    values.setdefault("StudyInstanceUID", "")
    return _studies(sample, _run(sample, _identifier("STUDY", **values)))


def test_one_response_per_study_with_computed_keys(sample: Sample) -> None:
    responses = _run(
        sample,
        _identifier(
            "STUDY",
            StudyInstanceUID=sample.studies["A"],
            NumberOfStudyRelatedSeries="",
            NumberOfStudyRelatedInstances="",
            ModalitiesInStudy="",
            SOPClassesInStudy="",
            PatientName="",
            StudyDate="",
            ReferringPhysicianName="",
        ),
    )
    assert len(responses) == 1  # three instances, one study
    (ds,) = responses
    assert ds.NumberOfStudyRelatedSeries == 2
    assert ds.NumberOfStudyRelatedInstances == 3
    assert ds.ModalitiesInStudy == "US"
    assert ds.SOPClassesInStudy == "1.2.840.10008.5.1.4.1.1.3.1"
    assert ds.PatientName == "Doe^Jane"
    assert ds.StudyDate == "20240305"
    assert (
        "ReferringPhysicianName" in ds and not ds.ReferringPhysicianName
    )  # not indexed, header reads off: returned empty


def test_universal_single_and_uid_list(sample: Sample) -> None:
    assert _study(sample) == set("ABCDE")
    assert _study(sample, PatientID="P001") == {"A", "D"}
    uids = "\\".join([sample.studies["B"], sample.studies["D"], "1.2.3.999"])
    assert _study(sample, StudyInstanceUID=uids) == {"B", "D"}
    assert _study(sample, AccessionNumber="ACC2") == {"B"}


def test_wildcards_and_like_metacharacters_are_literal(sample: Sample) -> None:
    assert _study(sample, PatientName="Doe^*") == {"A", "D"}
    assert _study(sample, PatientName="R?e^Rick") == {"B"}
    assert _study(sample, AccessionNumber="ACC?1%") == {"A"}  # '?' is one character, '%' literal
    assert _study(sample, AccessionNumber="ACC?2%") == set()
    assert _study(sample, AccessionNumber="ACC_1%") == {"A"}
    assert _study(sample, AccessionNumber="ACC%") == set()  # not a SQL wildcard
    assert _study(sample, AccessionNumber="ACC*") == {"A", "B"}
    assert _study(sample, StudyDescription="*OT") == {"A", "D"}


def test_person_name_case_follows_the_setting(sample: Sample) -> None:
    assert _study(sample, PatientName="doe^jane") == {"A", "D"}
    assert _study(sample, PatientName="DOE*") == {"A", "D"}
    strict = MatchSettings(case_sensitive_pn=True)
    found = _run(sample, _identifier("STUDY", StudyInstanceUID="", PatientName="doe^jane"), settings=strict)
    assert _studies(sample, found) == set()
    found = _run(sample, _identifier("STUDY", StudyInstanceUID="", PatientName="Doe^J*"), settings=strict)
    assert _studies(sample, found) == {"A", "D"}
    # other text VRs stay case-sensitive
    assert _study(sample, StudyDescription="*ot") == set()


def test_person_name_component_groups(sample: Sample) -> None:
    assert _study(sample, PatientName="山田^太郎") == {"C"}
    assert _study(sample, PatientName="やまだ*") == {"C"}
    assert _study(sample, PatientName="yamada^tarou") == {"C"}
    assert _study(sample, PatientName=JAPANESE) == {"C"}


def test_date_and_time_ranges(sample: Sample) -> None:
    assert _study(sample, StudyDate="20240305-20240401") == {"A", "B", "C"}
    assert _study(sample, StudyDate="20240402-") == {"D", "E"}
    assert _study(sample, StudyDate="-20240305") == {"A"}
    assert _study(sample, StudyDate="20240310") == {"B"}
    assert _study(sample, StudyTime="10-11") == {"A", "D", "E"}
    assert _study(sample, StudyTime="-01") == {"C"}  # 00:30 is before 01:59:59
    assert _study(sample, StudyTime="23") == {"B"}


def test_combined_date_time_range(sample: Sample) -> None:
    identifier = _identifier(
        "STUDY", StudyInstanceUID="", StudyDate="20240310-20240401", StudyTime="2200-0100"
    )
    separate = _studies(sample, _run(sample, identifier))
    assert separate == set()  # 23:00 and 00:30 are not both in 22:00-01:00 as separate ranges
    combined = _studies(sample, _run(sample, identifier, combined_datetime=True))
    assert combined == {"B", "C"}  # 10 March 23:00 to 1 April 01:00


def test_invalid_values_are_refused_with_a_reason(sample: Sample) -> None:
    with pytest.raises(QueryError) as caught:
        _study(sample, StudyDate="2024-03")
    assert caught.value.failure is QueryFailure.INVALID_IDENTIFIER
    assert "YYYYMMDD" in str(caught.value)
    with pytest.raises(QueryError) as caught:
        _study(sample, StudyInstanceUID="1.2.*")
    assert "wildcard" in str(caught.value)
    with pytest.raises(QueryError) as caught:
        _study(sample, ReferringPhysicianName="Smith*")
    assert caught.value.failure is QueryFailure.UNSUPPORTED_KEY


def _procedure_identifier(level: str, **values: str) -> Dataset:
    ds = _identifier(level, StudyInstanceUID="")
    block = ds.private_block(0x0011, PRIVATE_CREATOR, create=True)
    for offset, name in ((0x01, "levels"), (0x02, "side"), (0x03, "technique"), (0x04, "approach")):
        block.add_new(offset, "LO", values.get(name, ""))
    return ds


def test_private_procedure_keys_match_and_return(sample: Sample) -> None:
    responses = _run(sample, _procedure_identifier("STUDY", levels="L5", technique="OT"))
    assert _studies(sample, responses) == {"A", "D"}
    by_study = {str(ds.StudyInstanceUID): ds for ds in responses}
    d = by_study[sample.studies["D"]]
    assert d[0x00110010].value == PRIVATE_CREATOR
    assert list(d[0x00111001].value) == ["L4", "L5"]
    assert d[0x00111003].value == "OT"
    assert d[0x00111002].value == "right"
    assert _studies(sample, _run(sample, _procedure_identifier("STUDY", levels="l5", technique="tt"))) == {
        "C"
    }
    assert _studies(sample, _run(sample, _procedure_identifier("STUDY", side="left"))) == {"A"}
    assert _studies(sample, _run(sample, _procedure_identifier("STUDY", levels="L3\\L4"))) == {"B", "D"}


def test_series_and_image_levels(sample: Sample) -> None:
    series = _run(
        sample,
        _identifier(
            "SERIES",
            StudyInstanceUID=sample.studies["A"],
            SeriesInstanceUID="",
            NumberOfSeriesRelatedInstances="",
        ),
    )
    counts = {str(ds.SeriesInstanceUID): int(ds.NumberOfSeriesRelatedInstances) for ds in series}
    assert counts == {sample.series["A"][0]: 2, sample.series["A"][1]: 1}
    images = _run(
        sample,
        _identifier(
            "IMAGE",
            StudyInstanceUID=sample.studies["A"],
            SeriesInstanceUID=sample.series["A"][0],
            SOPInstanceUID="",
            InstanceNumber="",
        ),
    )
    assert sorted(int(ds.InstanceNumber) for ds in images) == [1, 2]
    modality = _run(sample, _identifier("SERIES", SeriesInstanceUID="", Modality="OT"))
    assert [str(ds.SeriesInstanceUID) for ds in modality] == [sample.series["E"][0]]


def test_patient_level_counts_one_per_patient(sample: Sample) -> None:
    responses = _run(
        sample,
        _identifier(
            "PATIENT", PatientID="", NumberOfPatientRelatedStudies="", NumberOfPatientRelatedInstances=""
        ),
        InformationModel.PATIENT_ROOT,
    )
    counts = {
        str(ds.PatientID): (ds.NumberOfPatientRelatedStudies, ds.NumberOfPatientRelatedInstances)
        for ds in responses
    }
    assert counts == {"P001": (2, 4), "P002": (1, 1), "P003": (1, 1), "P004": (1, 1)}
    with pytest.raises(QueryError) as caught:
        _run(sample, _identifier("PATIENT", PatientID=""), InformationModel.STUDY_ROOT)
    assert caught.value.failure is QueryFailure.INVALID_IDENTIFIER


def test_computed_keys_at_the_levels_each_model_lists_them(sample: Sample) -> None:
    patient_counts = {
        "NumberOfPatientRelatedStudies": "",
        "NumberOfPatientRelatedSeries": "",
        "NumberOfPatientRelatedInstances": "",
    }
    keys = {"StudyInstanceUID": sample.studies["D"], **patient_counts, "NumberOfStudyRelatedSeries": ""}
    # Study Root: patient attributes are study attributes, the counts those of the study's patient
    (ds,) = _run(sample, _identifier("STUDY", **keys))
    assert (ds.NumberOfPatientRelatedStudies, ds.NumberOfPatientRelatedSeries) == (2, 3)
    assert (ds.NumberOfPatientRelatedInstances, ds.NumberOfStudyRelatedSeries) == (4, 1)
    # Patient Root: they are PATIENT keys (Table C.6-1), not STUDY keys (C.6-2): returned empty
    (ds,) = _run(sample, _identifier("STUDY", **keys), InformationModel.PATIENT_ROOT)
    assert ds.NumberOfStudyRelatedSeries == 1
    assert all(keyword in ds and ds[keyword].value in (None, "") for keyword in patient_counts)
    # Number of Series Related Instances at SERIES in both models; study counts are not SERIES keys
    for model in InformationModel:
        series = _run(
            sample,
            _identifier(
                "SERIES",
                StudyInstanceUID=sample.studies["A"],
                SeriesInstanceUID="",
                NumberOfSeriesRelatedInstances="",
                NumberOfStudyRelatedInstances="",
            ),
            model,
        )
        by_uid = {str(ds.SeriesInstanceUID): ds for ds in series}
        assert {uid: int(ds.NumberOfSeriesRelatedInstances) for uid, ds in by_uid.items()} == {
            sample.series["A"][0]: 2,
            sample.series["A"][1]: 1,
        }
        assert all(ds.NumberOfStudyRelatedInstances in (None, "") for ds in series)


def test_modalities_in_study_matches(sample: Sample) -> None:
    assert _study(sample, ModalitiesInStudy="OT") == {"E"}
    assert _study(sample, ModalitiesInStudy="OT\\US") == set("ABCDE")


def test_hierarchical_refuses_lower_keys_relational_matches_them(sample: Sample) -> None:
    with pytest.raises(QueryError) as caught:
        _study(sample, SeriesDescription="L4*")
    assert "relational" in str(caught.value)
    identifier = _identifier("STUDY", StudyInstanceUID="", SeriesDescription="L4*")
    assert _studies(sample, _run(sample, identifier, relational=True)) == {"B", "D"}


def test_result_limit_refuses_before_any_result(sample: Sample) -> None:
    with pytest.raises(QueryError) as caught:
        _run(sample, _identifier("STUDY", StudyInstanceUID=""), settings=MatchSettings(max_results=3))
    assert caught.value.failure is QueryFailure.TOO_MANY_MATCHES
    assert "more than 3" in str(caught.value)
    assert (
        len(_run(sample, _identifier("STUDY", StudyInstanceUID=""), settings=MatchSettings(max_results=5)))
        == 5
    )


def test_result_limit_counted_when_the_first_page_is_full(sample: Sample) -> None:
    identifier = _identifier("STUDY", StudyInstanceUID="")
    with pytest.raises(QueryError) as caught:
        _run(sample, identifier, settings=MatchSettings(max_results=3, page_size=2))
    assert caught.value.failure is QueryFailure.TOO_MANY_MATCHES
    assert len(_run(sample, identifier, settings=MatchSettings(max_results=5, page_size=2))) == 5


def test_header_keys_answered_from_the_stored_file_when_configured(sample: Sample) -> None:
    identifier = _identifier("STUDY", StudyInstanceUID=sample.studies["B"], InstitutionName="")
    request = FindRequest.parse(identifier, InformationModel.STUDY_ROOT)
    archive = sample.archive
    settings = MatchSettings(header_keys=True)
    (ds,) = find(archive.engine, request, settings, resolve_path=archive.store.absolute)
    assert "InstitutionName" in ds and not ds.InstitutionName  # the sample has none: still empty
    identifier = _identifier(
        "STUDY", StudyInstanceUID=sample.studies["B"], BodyPartExamined="", Manufacturer=""
    )
    (ds,) = find(archive.engine, FindRequest.parse(identifier, InformationModel.STUDY_ROOT), settings)
    assert "Manufacturer" in ds and not ds.Manufacturer  # a SERIES key at the STUDY level: empty


def test_response_character_set(sample: Sample) -> None:
    (ds,) = _run(sample, _identifier("STUDY", StudyInstanceUID=sample.studies["C"], PatientName=""))
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == JAPANESE
    (ds,) = _run(sample, _identifier("STUDY", StudyInstanceUID=sample.studies["B"], PatientName=""))
    assert "SpecificCharacterSet" not in ds
    identifier = _identifier(
        "STUDY",
        SpecificCharacterSet=["", "ISO 2022 IR 87"],
        StudyInstanceUID=sample.studies["C"],
        PatientName="",
    )
    (ds,) = _run(sample, identifier)
    assert list(ds.SpecificCharacterSet) == ["", "ISO 2022 IR 87"]


def test_results_stream_a_page_at_a_time(sample: Sample) -> None:
    from sqlalchemy import event

    statements: list[str] = []

    def remember(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = sample.archive.engine
    event.listen(engine, "before_cursor_execute", remember)
    try:
        request = FindRequest.parse(_identifier("STUDY", StudyInstanceUID=""), InformationModel.STUDY_ROOT)
        results = find(engine, request, MatchSettings(page_size=2))
        first = next(results)
        pages_read = sum("LIMIT" in s and "count" not in s.lower() for s in statements)
        assert pages_read == 1  # one page of 2 read so far, not all 5 studies
        rest = list(results)
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert len([first, *rest]) == 5
    pages = [s for s in statements if "LIMIT" in s and "count" not in s.lower()]
    assert len(pages) == 3  # 2 + 2 + 1 (a short page is the last)


def test_matching_instances_for_retrieve(sample: Sample) -> None:
    from archive.query import matching_instances

    uids = "\\".join([sample.studies["A"], sample.studies["B"]])
    request = FindRequest.parse(_identifier("STUDY", StudyInstanceUID=uids), InformationModel.STUDY_ROOT)
    found = list(matching_instances(sample.archive.engine, request, MatchSettings(page_size=1)))
    assert len(found) == 4  # A has 3 instances, B one
    assert len({ref.sop_instance_uid for ref in found}) == 4
    assert all(sample.archive.store.absolute(ref.path).is_file() for ref in found)
    series = FindRequest.parse(
        _identifier("SERIES", StudyInstanceUID=sample.studies["A"], SeriesInstanceUID=sample.series["A"][0]),
        InformationModel.STUDY_ROOT,
    )
    assert len(list(matching_instances(sample.archive.engine, series, MatchSettings()))) == 2
