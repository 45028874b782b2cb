"""The computed keys of PS3.4 C.3.4 through dcmtk ``findscu``, at every level each model lists them.

Expected counts are computed here from the sample files themselves (read
with pydicom), not from the index: per patient the studies, series and
instances; per study the series, instances, modalities and SOP classes; per
series the instances.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from qr_peers import findscu
from qr_samples import Samples

from archive.archive import Archive
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer, PeerPermissions, Permission
from pacs_bridge.server import BridgeServer

FINDER = PeerPermissions(AllowedPeer("FINDER"), frozenset({Permission.ECHO, Permission.FIND}))
_PATIENT_COUNTS = ("0020,1200", "0020,1202", "0020,1204")  # studies, series, instances of the patient
_STUDY_KEYS = ("0020,1206", "0020,1208", "0008,0061", "0008,0062")


@dataclass
class Truth:
    """Counts from the files."""

    patient_studies: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    patient_series: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    patient_instances: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    study_patient: dict[str, str] = field(default_factory=dict)
    study_series: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    study_instances: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    study_modalities: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    study_classes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    series_instances: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def _truth(files: list[Path]) -> Truth:
    truth = Truth()
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        patient, study, series = str(ds.PatientID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        sop = str(ds.SOPInstanceUID)
        truth.patient_studies[patient].add(study)
        truth.patient_series[patient].add(series)
        truth.patient_instances[patient].add(sop)
        truth.study_patient[study] = patient
        truth.study_series[study].add(series)
        truth.study_instances[study].add(sop)
        truth.study_modalities[study].add(str(ds.Modality))
        truth.study_classes[study].add(str(ds.SOPClassUID))
        truth.series_instances[series].add(sop)
    return truth


@pytest.fixture
def find_server(
    start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings, samples: Samples
) -> BridgeServer:
    return start_bridge(bridge_settings, permissions=(FINDER,))


def _values(value: object) -> set[str]:
    if value is None or value == "":
        return set()
    return {str(v) for v in value} if isinstance(value, (list, pydicom.multival.MultiValue)) else {str(value)}


def test_study_root_study_level_answers_patient_and_study_counts(
    find_server: BridgeServer, samples: Samples, archive: Archive, tmp_path: Path
) -> None:
    truth = _truth(samples.files)
    keys = ["0008,0052=STUDY", "0020,000D", "0010,0020", *_PATIENT_COUNTS, *_STUDY_KEYS]
    result = findscu(find_server.port, keys, tmp_path / "f")
    assert result.ok, result.output
    assert len(result.responses) == len(truth.study_patient)
    for ds in result.responses:
        study = str(ds.StudyInstanceUID)
        patient = truth.study_patient[study]
        assert str(ds.PatientID) == patient
        assert int(ds.NumberOfPatientRelatedStudies) == len(truth.patient_studies[patient])
        assert int(ds.NumberOfPatientRelatedSeries) == len(truth.patient_series[patient])
        assert int(ds.NumberOfPatientRelatedInstances) == len(truth.patient_instances[patient])
        assert int(ds.NumberOfStudyRelatedSeries) == len(truth.study_series[study])
        assert int(ds.NumberOfStudyRelatedInstances) == len(truth.study_instances[study])
        assert _values(ds.ModalitiesInStudy) == truth.study_modalities[study]
        assert _values(ds.SOPClassesInStudy) == truth.study_classes[study]
    # P001 has two studies: both answer the same patient counts
    assert len(truth.patient_studies["P001"]) == 2


def test_patient_root_answers_each_count_at_its_own_level(
    find_server: BridgeServer, samples: Samples, tmp_path: Path
) -> None:
    truth = _truth(samples.files)
    patients = findscu(
        find_server.port, ["0008,0052=PATIENT", "0010,0020", *_PATIENT_COUNTS], tmp_path / "f", model="-P"
    )
    assert patients.ok, patients.output
    got = {
        str(ds.PatientID): (
            int(ds.NumberOfPatientRelatedStudies),
            int(ds.NumberOfPatientRelatedSeries),
            int(ds.NumberOfPatientRelatedInstances),
        )
        for ds in patients.responses
    }
    assert got == {
        patient: (len(studies), len(truth.patient_series[patient]), len(truth.patient_instances[patient]))
        for patient, studies in truth.patient_studies.items()
    }
    # at STUDY in the Patient Root model the patient counts are not keys (Table C.6-2): returned empty
    studies = findscu(
        find_server.port,
        ["0008,0052=STUDY", "0010,0020=P001", "0020,000D", *_PATIENT_COUNTS, *_STUDY_KEYS],
        tmp_path / "f",
        model="-P",
    )
    assert studies.ok, studies.output
    assert {str(ds.StudyInstanceUID) for ds in studies.responses} == truth.patient_studies["P001"]
    for ds in studies.responses:
        study = str(ds.StudyInstanceUID)
        assert int(ds.NumberOfStudyRelatedInstances) == len(truth.study_instances[study])
        assert int(ds.NumberOfStudyRelatedSeries) == len(truth.study_series[study])
        assert all(not ds[tag].value for tag in (0x00201200, 0x00201202, 0x00201204))
    # Number of Series Related Instances at SERIES, in both models
    for model in ("-P", "-S"):
        for study, series_uids in truth.study_series.items():
            series = findscu(
                find_server.port,
                [
                    "0008,0052=SERIES",
                    f"0010,0020={truth.study_patient[study]}",
                    f"0020,000D={study}",
                    "0020,000E",
                    "0020,1209",
                ],
                tmp_path / "f",
                model=model,
            )
            assert series.ok, series.output
            assert {
                str(ds.SeriesInstanceUID): int(ds.NumberOfSeriesRelatedInstances) for ds in series.responses
            } == {uid: len(truth.series_instances[uid]) for uid in series_uids}
