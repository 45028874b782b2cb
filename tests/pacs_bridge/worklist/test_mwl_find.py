"""Modality Worklist C-FIND with dcmtk ``findscu -W`` as the scanner (real peer), SQLite and PostgreSQL.

The query shapes scanners use: station AE title + today, modality + a date
range, a patient name wildcard, an accession number; only scheduled entries
come back, with the IHE Scheduled Workflow return keys, the codes and the
readable description, in the character set of the query (Chinese and Japanese
names).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from worklist_peers import SCANNER, mwl_find, with_value

from archive.archive import Archive
from archive.model import Approach, ProcedureType, Side, SpinalLevel, Technique
from archive.worklist.model import ScheduledProcedure, WorklistEntry
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer, PeerPermissions, Permission
from pacs_bridge.server import BridgeServer

NOW = datetime.now().replace(microsecond=0)
TODAY = NOW.strftime("%Y%m%d")
CHINESE = "张^伟"
JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"


def _procedure(accession: str, **changes: object) -> ScheduledProcedure:
    values: dict[str, object] = {
        "patient_id": f"PID-{accession}",
        "patient_name": "DOE^JANE",
        "birth_date": None,
        "sex": "F",
        "accession_number": accession,
        "start": NOW,
        "station_aet": "SCANNER1",
        "modality": "US",
        "procedure_type": ProcedureType.MEDIAL_BRANCH_BLOCK,
        "levels": (SpinalLevel.L4, SpinalLevel.L5),
        "side": Side.RIGHT,
        "technique": Technique.OT,
        "physician": "SMITH^ANNA",
    }
    values.update(changes)
    return ScheduledProcedure(**values)  # type: ignore[arg-type]


@pytest.fixture
def entries(archive: Archive) -> dict[str, WorklistEntry]:
    scheduled = archive.worklist.schedule(
        [
            _procedure("A1"),
            _procedure(
                "A2", start=NOW + timedelta(days=2), technique=Technique.TT, approach=Approach.IN_PLANE
            ),
            _procedure("A3", station_aet="OTHER", patient_name="ROE^RICHARD"),
            _procedure("A4", patient_name="DOERING^MAX"),  # cancelled below
            _procedure("A5", modality="CT", start=NOW + timedelta(days=1)),
            _procedure("A6", patient_name=CHINESE, station_aet="CN1"),
            _procedure("A7", patient_name=JAPANESE, station_aet="JP1"),
        ]
    )
    archive.worklist.cancel(scheduled[3].pk)
    return {entry.procedure.accession_number: entry for entry in scheduled}


@pytest.fixture
def server(entries: dict[str, WorklistEntry], scanner_server: BridgeServer) -> BridgeServer:
    """The scanner's receiver, ``entries`` scheduled before it starts."""
    return scanner_server


_STATION = "ScheduledProcedureStepSequence[0].ScheduledStationAETitle"
_DATE = "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate"
_MODALITY = "ScheduledProcedureStepSequence[0].Modality"


def test_station_and_today_returns_the_entry_with_its_return_keys(
    server: BridgeServer, entries: dict[str, WorklistEntry], tmp_path: Path
) -> None:
    keys = [
        f"{k}=SCANNER1" if k == _STATION else f"{k}={TODAY}" if k == _DATE else k for k in with_value("", "")
    ]
    result = mwl_find(server.port, keys, tmp_path / "f")
    assert result.accessions == ["A1"]  # not A2 (another day), A3 (another station), A4 (cancelled)
    (ds,) = result.responses
    entry = entries["A1"]
    assert ds.PatientName == "DOE^JANE" and ds.PatientID == "PID-A1" and ds.PatientSex == "F"
    assert ds.StudyInstanceUID == entry.study_instance_uid
    assert ds.RequestedProcedureID == entry.requested_procedure_id
    assert ds.RequestedProcedureDescription == "L4+L5 MBB right, OT (one puncture)"
    (step,) = ds.ScheduledProcedureStepSequence
    assert step.ScheduledStationAETitle == "SCANNER1" and step.Modality == "US"
    assert step.ScheduledProcedureStepStartDate == TODAY
    assert step.ScheduledProcedureStepStartTime == NOW.strftime("%H%M%S")
    assert step.ScheduledProcedureStepID == entry.step_id
    assert step.ScheduledProcedureStepDescription == "L4+L5 MBB right, OT (one puncture)"
    assert step.ScheduledPerformingPhysicianName == "SMITH^ANNA"
    codes = [(c.CodeValue, c.CodingSchemeDesignator) for c in step.ScheduledProtocolCodeSequence]
    assert codes == [
        ("MBB", "99USARCH"),
        ("11994002", "SCT"),
        ("49668003", "SCT"),
        ("24028007", "SCT"),
        ("OT", "99USARCH"),
    ]
    assert "ScheduledProcedureStepStatus" not in step  # not asked for, not returned


def test_modality_and_a_date_range(server: BridgeServer, tmp_path: Path) -> None:
    span = f"{TODAY}-{(NOW + timedelta(days=3)).strftime('%Y%m%d')}"
    us = [f"{k}=US" if k == _MODALITY else f"{k}={span}" if k == _DATE else k for k in with_value("", "")]
    assert sorted(mwl_find(server.port, us, tmp_path / "f").accessions) == ["A1", "A2", "A3", "A6", "A7"]
    ct = [f"{k}=CT" if k == _MODALITY else f"{k}={span}" if k == _DATE else k for k in with_value("", "")]
    assert mwl_find(server.port, ct, tmp_path / "f").accessions == ["A5"]
    later = [
        f"{k}=US"
        if k == _MODALITY
        else f"{k}={(NOW + timedelta(days=1)).strftime('%Y%m%d')}-"
        if k == _DATE
        else k
        for k in with_value("", "")
    ]
    assert mwl_find(server.port, later, tmp_path / "f").accessions == ["A2"]


def test_patient_name_wildcard_and_accession(server: BridgeServer, tmp_path: Path) -> None:
    # DOE* matches DOE^JANE (A1, A2, A5) and DOERING^MAX, which is cancelled; case-insensitive as configured.
    by_name = mwl_find(server.port, with_value("PatientName", "doe*"), tmp_path / "f")
    assert sorted(by_name.accessions) == ["A1", "A2", "A5"]
    assert mwl_find(server.port, with_value("AccessionNumber", "A3"), tmp_path / "f").accessions == ["A3"]
    assert mwl_find(server.port, with_value("AccessionNumber", "A4"), tmp_path / "f").accessions == []
    asked = [
        *with_value("AccessionNumber", "A4"),
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus=CANCELED",
    ]
    cancelled = mwl_find(server.port, asked, tmp_path / "f")
    assert cancelled.accessions == ["A4"]
    assert cancelled.responses[0].ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "CANCELED"


def _query_file(path: Path, charset: str | list[str], name: str) -> Path:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.AccessionNumber = ""
    item = Dataset()
    item.ScheduledStationAETitle = ""
    item.ScheduledProcedureStepDescription = ""
    ds.ScheduledProcedureStepSequence = [item]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=False, little_endian=True, implicit_vr=False)
    return path


@pytest.mark.parametrize(
    ("charset", "query", "accession", "station"),
    [
        ("ISO_IR 192", CHINESE, "A6", "CN1"),
        ("GB18030", "张*", "A6", "CN1"),
        (["", "ISO 2022 IR 87"], "*=山田^太郎=*", "A7", "JP1"),
        ("ISO 2022 IR 87", "Yamada^Tarou", "A7", "JP1"),
    ],
)
def test_names_in_other_scripts_in_the_query_character_set(
    server: BridgeServer, tmp_path: Path, charset: str | list[str], query: str, accession: str, station: str
) -> None:
    path = _query_file(tmp_path / "query.dcm", charset, query)
    result = mwl_find(server.port, [], tmp_path / "f", query_file=path)
    assert result.accessions == [accession]
    (ds,) = result.responses
    expected = CHINESE if accession == "A6" else JAPANESE
    assert str(ds.PatientName) == expected
    assert ds.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == station
    assert ds.SpecificCharacterSet  # the response names its character set


def test_an_ae_without_the_worklist_permission_is_refused_the_context(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    tmp_path: Path,
    entries: dict[str, WorklistEntry],
) -> None:
    storer = PeerPermissions(AllowedPeer("STORER"), frozenset({Permission.ECHO, Permission.STORE}))
    server = start_bridge(bridge_settings, permissions=(SCANNER, storer))
    refused = mwl_find(server.port, with_value("AccessionNumber", "A1"), tmp_path / "f", calling="STORER")
    assert not refused.ok and refused.responses == []
    assert mwl_find(server.port, with_value("AccessionNumber", "A1"), tmp_path / "f").accessions == ["A1"]


def test_a_value_on_a_key_the_worklist_cannot_match_is_refused(server: BridgeServer, tmp_path: Path) -> None:
    result = mwl_find(
        server.port,
        [*with_value("", ""), "ScheduledProcedureStepSequence[0].ScheduledStationName=ROOM1"],
        tmp_path / "f",
    )
    assert result.responses == []
    assert "Failed: UnableToProcess" in result.output
