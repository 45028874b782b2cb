"""The identifier of a C-MOVE / C-GET read into unique keys, and what is refused (0xA900)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from archive.index.retrieve import RetrieveKeys, RetrieveLevel
from pacs_bridge.qr.identifier import IdentifierError, InformationModel, retrieve_keys


def _ds(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_study_root_levels() -> None:
    assert retrieve_keys(
        _ds(QueryRetrieveLevel="STUDY", StudyInstanceUID=["1.2", "1.3"]), InformationModel.STUDY_ROOT
    ) == RetrieveKeys(RetrieveLevel.STUDY, study_uids=("1.2", "1.3"))
    assert retrieve_keys(
        _ds(
            QueryRetrieveLevel="IMAGE", StudyInstanceUID="1.2", SeriesInstanceUID="1.2.1", SOPInstanceUID="9"
        ),
        InformationModel.STUDY_ROOT,
    ) == RetrieveKeys(
        RetrieveLevel.IMAGE, study_uids=("1.2",), series_uids=("1.2.1",), sop_instance_uids=("9",)
    )


def test_patient_root_needs_one_patient_id() -> None:
    keys = retrieve_keys(_ds(QueryRetrieveLevel="PATIENT", PatientID="P1"), InformationModel.PATIENT_ROOT)
    assert keys == RetrieveKeys(RetrieveLevel.PATIENT, patient_id="P1")
    with pytest.raises(IdentifierError, match="Patient ID: expected one value"):
        retrieve_keys(_ds(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2"), InformationModel.PATIENT_ROOT)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "Query/Retrieve Level: expected one of STUDY, SERIES, IMAGE"),
        ({"QueryRetrieveLevel": "PATIENT", "PatientID": "P"}, "expected one of STUDY, SERIES, IMAGE"),
        ({"QueryRetrieveLevel": "STUDY"}, "StudyInstanceUID: expected a unique key"),
        ({"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": "1.2.1"}, "StudyInstanceUID: expected"),
        (
            {
                "QueryRetrieveLevel": "SERIES",
                "StudyInstanceUID": ["1.2", "1.3"],
                "SeriesInstanceUID": "1.2.1",
            },
            "StudyInstanceUID: expected a single UID above the SERIES level, but got 2",
        ),
    ],
)
def test_refused_identifiers_say_what_is_wrong(values: dict[str, object], message: str) -> None:
    with pytest.raises(IdentifierError, match=message):
        retrieve_keys(_ds(**values), InformationModel.STUDY_ROOT)
