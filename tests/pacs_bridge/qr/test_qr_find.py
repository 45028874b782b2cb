"""C-FIND against ``usarchive``'s receiver with dcmtk ``findscu`` as the workstation (real peer, loopback).

The samples are the table of ``qr_samples.py``; every expected set is written
from that table. The server grants ``FINDER`` echo + find, and the scanner
``SCANNER`` echo + store only (the allow-list).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from qr_peers import FindResult, findscu
from qr_samples import CHINESE, JAPANESE, Samples, bulk_index

from archive.archive import Archive
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer, PeerPermissions, Permission
from pacs_bridge.server import BridgeServer

FINDER = PeerPermissions(AllowedPeer("FINDER"), frozenset({Permission.ECHO, Permission.FIND}))


@pytest.fixture
def find_server(
    start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings, samples: Samples
) -> BridgeServer:
    return start_bridge(bridge_settings, permissions=(FINDER,))


def _letters(samples: Samples, result: FindResult) -> list[str]:
    by_uid = {uid: letter for letter, uid in samples.studies.items()}
    assert result.ok, result.output
    return sorted(by_uid[str(ds.StudyInstanceUID)] for ds in result.responses)


def _study(server: BridgeServer, samples: Samples, tmp_path: Path, *keys: str) -> list[str]:
    result = findscu(server.port, ["0008,0052=STUDY", "0020,000D", *keys], tmp_path / "find")
    return _letters(samples, result)


def test_study_level_one_answer_per_study_with_counts(
    find_server: BridgeServer, samples: Samples, tmp_path: Path
) -> None:
    result = findscu(
        find_server.port,
        [
            "0008,0052=STUDY",
            f"0020,000D={samples.studies['A']}",
            "0020,1206",
            "0020,1208",
            "0008,0061",
            "0010,0010",
        ],
        tmp_path / "find",
    )
    assert _letters(samples, result) == ["A"]  # three instances, one answer
    (ds,) = result.responses
    assert (int(ds.NumberOfStudyRelatedSeries), int(ds.NumberOfStudyRelatedInstances)) == (2, 3)
    assert ds.ModalitiesInStudy == "US"
    assert ds.PatientName == "Doe^Jane"
    assert _study(find_server, samples, tmp_path) == ["A", "B", "C", "D", "E"]


def test_patient_root_levels(find_server: BridgeServer, samples: Samples, tmp_path: Path) -> None:
    result = findscu(
        find_server.port, ["0008,0052=PATIENT", "0010,0020", "0020,1200"], tmp_path / "f", model="-P"
    )
    assert result.ok, result.output
    counts = {str(ds.PatientID): int(ds.NumberOfPatientRelatedStudies) for ds in result.responses}
    assert counts == {"P001": 2, "P002": 1, "P003": 1, "P004": 1}
    assert len(result.responses) == 4
    result = findscu(
        find_server.port, ["0008,0052=STUDY", "0010,0020=P001", "0020,000D"], tmp_path / "f", model="-P"
    )
    assert _letters(samples, result) == ["A", "D"]


def test_series_and_image_levels(find_server: BridgeServer, samples: Samples, tmp_path: Path) -> None:
    result = findscu(
        find_server.port,
        ["0008,0052=SERIES", f"0020,000D={samples.studies['A']}", "0020,000E", "0020,1209", "0008,0060"],
        tmp_path / "f",
    )
    assert result.ok, result.output
    found = {str(ds.SeriesInstanceUID): int(ds.NumberOfSeriesRelatedInstances) for ds in result.responses}
    assert found == {samples.series["A"][0]: 2, samples.series["A"][1]: 1}
    result = findscu(
        find_server.port,
        [
            "0008,0052=IMAGE",
            f"0020,000D={samples.studies['A']}",
            f"0020,000E={samples.series['A'][0]}",
            "0008,0018",
            "0020,0013",
        ],
        tmp_path / "f",
    )
    assert sorted(str(ds.SOPInstanceUID) for ds in result.responses) == sorted(samples.instances["A"][:2])


def test_wildcard_date_range_uid_list_and_case(
    find_server: BridgeServer, samples: Samples, tmp_path: Path
) -> None:
    assert _study(find_server, samples, tmp_path, "0010,0010=doe*") == ["A", "D"]
    assert _study(find_server, samples, tmp_path, "0010,0010=R?E^RICK") == ["B"]
    assert _study(find_server, samples, tmp_path, "0008,0020=20240306-20240430") == ["B", "C"]
    assert _study(find_server, samples, tmp_path, "0008,0020=20240501-") == ["D", "E"]
    uids = "\\".join([samples.studies["B"], samples.studies["E"]])
    assert _study(find_server, samples, tmp_path, f"0020,000D={uids}") == ["B", "E"]
    assert _study(find_server, samples, tmp_path, "0008,1030=*OT") == ["A", "D"]
    assert _study(find_server, samples, tmp_path, "0008,1030=*ot") == []  # LO stays case-sensitive


def test_case_sensitive_names_by_setting(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    samples: Samples,
    tmp_path: Path,
) -> None:
    server = start_bridge(bridge_settings, permissions=(FINDER,), find_pn_case_sensitive=True)
    assert _study(server, samples, tmp_path, "0010,0010=doe*") == []
    assert _study(server, samples, tmp_path, "0010,0010=Doe*") == ["A", "D"]


def test_private_procedure_keys(find_server: BridgeServer, samples: Samples, tmp_path: Path) -> None:
    block = ["0011,0010=USARCHIVE 1.0", "0011,1001=L5", "0011,1003=OT", "0011,1002"]
    result = findscu(find_server.port, ["0008,0052=STUDY", "0020,000D", *block], tmp_path / "f")
    assert _letters(samples, result) == ["A", "D"]
    for ds in result.responses:
        assert ds[0x00110010].value == "USARCHIVE 1.0"
        levels = ds[0x00111001].value
        assert "L5" in (levels if isinstance(levels, str) else list(levels))
        assert ds[0x00111003].value == "OT"
    sides = {str(ds.StudyInstanceUID): ds[0x00111002].value for ds in result.responses}
    assert sides == {samples.studies["A"]: "left", samples.studies["D"]: "right"}
    tt = findscu(
        find_server.port,
        ["0008,0052=STUDY", "0020,000D", "0011,0010=USARCHIVE 1.0", "0011,1003=TT"],
        tmp_path / "f",
    )
    assert _letters(samples, tt) == ["B", "C"]


def _query_file(path: Path, charset: str | list[str], name: str) -> Path:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.PatientName = name
    ds.save_as(path, implicit_vr=False, little_endian=True)
    return path


@pytest.mark.parametrize(
    ("charset", "name", "letter"),
    [
        ("ISO_IR 192", "山田^太郎", "C"),
        ("ISO_IR 192", "王*", "E"),
        (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "C"),
        (["", "ISO 2022 IR 87"], "やまだ^たろう", "C"),
    ],
)
def test_non_ascii_names(
    find_server: BridgeServer,
    samples: Samples,
    tmp_path: Path,
    charset: str | list[str],
    name: str,
    letter: str,
) -> None:
    query = _query_file(tmp_path / "query.dcm", charset, name)
    raw = query.read_bytes()
    if isinstance(charset, list):
        assert b"\x1b$B" in raw  # the query really is ISO 2022 (JIS X 0208 escape), not UTF-8
    result = findscu(find_server.port, [], tmp_path / "f", query_file=query)
    assert _letters(samples, result) == [letter]
    (ds,) = result.responses
    expected = JAPANESE if letter == "C" else CHINESE
    assert str(ds.PatientName) == expected
    if isinstance(charset, list):
        assert list(ds.SpecificCharacterSet) == charset  # answered in the query's character set
    else:
        assert ds.SpecificCharacterSet == "ISO_IR 192"


def test_result_limit_refuses_with_a_clear_status(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    samples: Samples,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_bridge(bridge_settings, permissions=(FINDER,), find_max_results=4)
    with caplog.at_level(logging.INFO, logger="pacs_bridge"):
        result = findscu(server.port, ["0008,0052=STUDY", "0020,000D"], tmp_path / "f")
    assert result.responses == []  # nothing partial
    assert "Received Final Find Response (Refused: OutOfResources)" in result.output, result.output
    assert any("failed 0xA700" in r.getMessage() and "more than 4" in r.getMessage() for r in caplog.records)
    assert _study(server, samples, tmp_path, "0010,0020=P001") == ["A", "D"]


def test_cancel_stops_the_stream(
    find_server: BridgeServer, archive: Archive, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bulk_index(archive.engine, 900)
    with caplog.at_level(logging.INFO, logger="pacs_bridge"):
        result = findscu(
            find_server.port,
            ["0008,0052=STUDY", "0020,000D", "0010,0020=BULK*"],
            tmp_path / "f",
            extra=["--cancel", "3"],
        )
    assert result.ok, result.output
    assert 3 <= len(result.responses) < 900
    lines = [r.getMessage() for r in caplog.records if "C-FIND from FINDER" in r.getMessage()]
    assert len(lines) == 1 and lines[0].endswith("cancelled"), lines


def test_ae_without_find_rights_is_refused(
    find_server: BridgeServer, samples: Samples, tmp_path: Path
) -> None:
    # SCANNER is on the allow-list (echo + store): associated, but offered no FIND context.
    result = findscu(find_server.port, ["0008,0052=STUDY", "0020,000D"], tmp_path / "f", calling="SCANNER")
    assert result.process.returncode != 0
    assert "No Acceptable Presentation Contexts" in result.output, result.output
    assert result.responses == []
    # an AE in no table at all: association rejected (calling AE title not recognized)
    result = findscu(find_server.port, ["0008,0052=STUDY", "0020,000D"], tmp_path / "f", calling="STRANGER")
    assert result.process.returncode != 0
    assert "Called AE Title Not Recognized" not in result.output
    assert "Calling AE Title Not Recognized" in result.output, result.output


def test_one_log_line_per_query(
    find_server: BridgeServer, samples: Samples, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pacs_bridge"):
        _study(find_server, samples, tmp_path, "0010,0020=P001")
    lines = [r.getMessage() for r in caplog.records if "C-FIND from" in r.getMessage()]
    assert len(lines) == 1
    assert "study-root STUDY, 2 matches in" in lines[0] and lines[0].endswith("success")


def test_keys_outside_the_index_empty_or_from_the_header(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    samples: Samples,
    tmp_path: Path,
) -> None:
    keys = ["0008,0052=STUDY", f"0020,000D={samples.studies['B']}", "0008,0080", "0008,0090"]
    plain = start_bridge(bridge_settings, permissions=(FINDER,))
    result = findscu(plain.port, keys, tmp_path / "f")
    (ds,) = result.responses
    assert "InstitutionName" in ds and not ds.InstitutionName
    assert "Received Find Response 1 (Pending: WarningUnsupportedOptionalKeys)" in result.output, (
        result.output
    )
    with_headers = start_bridge(bridge_settings, permissions=(FINDER,), find_header_keys=True)
    result = findscu(with_headers.port, keys, tmp_path / "f")
    (ds,) = result.responses
    assert ds.InstitutionName == "Pain Clinic"
    assert str(ds.ReferringPhysicianName) == "Referring^Doctor"
    assert "Received Find Response 1 (Pending)" in result.output, result.output
    refused = findscu(plain.port, [*keys[:2], "0008,0080=Pain*"], tmp_path / "f")
    assert refused.responses == []
    assert "Unable to Process" in refused.output or "UnableToProcess" in refused.output, refused.output
