"""Orthanc (Debian package) as the workstation: it finds a study in usarchive and pulls it by C-MOVE.

Orthanc's REST ``/modalities/{us}/query`` sends our C-FIND, ``/queries/{id}/retrieve``
then asks us to C-MOVE the answers to Orthanc itself; ``/modalities/{us}/move`` does
the C-MOVE alone. Orthanc keeps what it received as sent, so its files' data sets
must be byte-identical to the ones the archive stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bridge_helpers import dataset_bytes
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless
from qr_helpers import ingest, write_study
from support.orthanc import OrthancServer, available
from support.orthanc import dataset_bytes as orthanc_dataset_bytes

from archive.archive import Archive
from archive.forward.config import Destination
from archive.index.queries import Query
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import PeerPermissions
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network


@pytest.fixture
def workstation(
    archive: Archive, orthanc_factory: Callable[..., OrthancServer]
) -> Iterator[tuple[OrthancServer, BridgeServer]]:
    why = available()
    if why is not None:
        pytest.fail(why)
    orthanc = orthanc_factory("workstation")
    settings = BridgeSettings(
        host="127.0.0.1",
        port=0,
        permissions=(PeerPermissions.parse("ORTHANC", ["echo", "find", "move"]),),
        move_destinations=(("ORTHANC", ("ORTHANC",)),),
        dimse_timeout_s=20.0,
    )
    destination = Destination("workstation", "ORTHANC", "127.0.0.1", orthanc.dicom_port, timeout_s=10.0)
    with BridgeServer(settings, archive, destinations={"workstation": destination}) as server:
        orthanc.client.put_modality("us", "USARCHIVE", "127.0.0.1", server.port)
        yield orthanc, server


def _assert_identical(archive: Archive, orthanc: OrthancServer, sop_uids: set[str]) -> None:
    assert set(orthanc.client.sop_instance_uids()) == sop_uids
    stored = {row.sop_instance_uid: row for row in archive.index.find(Query(limit=100))}
    for uid in sop_uids:
        orthanc_id = orthanc.client.find_instance(uid)
        assert orthanc_id is not None
        ours = archive.store.absolute(stored[uid].path)
        assert orthanc_dataset_bytes(orthanc.client.instance_file(orthanc_id)) == dataset_bytes(ours), uid


def test_orthanc_queries_then_retrieves_a_study_byte_identical(
    archive: Archive, workstation: tuple[OrthancServer, BridgeServer], tmp_path: Path
) -> None:
    orthanc, _ = workstation
    files = write_study(
        tmp_path / "in", [ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless], patient_id="WS-1"
    )
    ingest(archive, files)
    ingest(archive, write_study(tmp_path / "other", [ImplicitVRLittleEndian], patient_id="WS-2"))
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    query = orthanc.client.post_json(
        "/modalities/us/query", {"Level": "Study", "Query": {"PatientID": "WS-1", "StudyInstanceUID": ""}}
    )
    answers = orthanc.client.get_json(f"/queries/{query['ID']}/answers?expand")
    assert [a["0020,000d"]["Value"] for a in answers] == [study_uid]
    orthanc.client.post_json(
        f"/queries/{query['ID']}/retrieve", {"TargetAet": "ORTHANC", "Synchronous": True}
    )
    _assert_identical(archive, orthanc, {str(dcmread(p).SOPInstanceUID) for p in files})


def test_orthanc_moves_one_series(
    archive: Archive, workstation: tuple[OrthancServer, BridgeServer], tmp_path: Path
) -> None:
    orthanc, _ = workstation
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian, RLELossless], series_per_instance=True)
    ingest(archive, files)
    first = dcmread(files[0])
    orthanc.client.post_json(
        "/modalities/us/move",
        {
            "Level": "Series",
            "Resources": [
                {
                    "StudyInstanceUID": str(first.StudyInstanceUID),
                    "SeriesInstanceUID": str(first.SeriesInstanceUID),
                }
            ],
            "TargetAet": "ORTHANC",
            "Synchronous": True,
        },
    )
    _assert_identical(archive, orthanc, {str(first.SOPInstanceUID)})
