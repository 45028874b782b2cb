"""C-MOVE SCP against real peers: dcmtk movescu and storescp, pynetdicom as SCU and as a slow destination."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bridge_helpers import dataset_bytes, echoscu, wait_for
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
)
from qr_helpers import (
    by_uid,
    failed_uids,
    free_port,
    held_destination,
    ingest,
    move,
    move_cancelled_at_first,
    movescu,
    storescp,
    study_identifier,
    write_study,
)

from archive.archive import Archive
from archive.forward.config import Destination
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer, PeerPermissions
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network

WS = "WS1"


def _settings() -> BridgeSettings:
    """WS1 may echo and move (to DEST, DOWN, SLOW); NOMOVE echo and store; OTHERWS move elsewhere."""
    return BridgeSettings(
        host="127.0.0.1",
        port=0,
        allow=(AllowedPeer("NOMOVE"),),
        permissions=(
            PeerPermissions.parse(WS, ["echo", "move"]),
            PeerPermissions.parse("OTHERWS", ["move"]),
        ),
        move_destinations=((WS, ("DEST", "DOWN", "SLOW")), ("OTHERWS", ("ELSEWHERE",))),
        dimse_timeout_s=20.0,
    )


@pytest.fixture
def serve(start_bridge: Callable[..., BridgeServer]) -> Callable[..., BridgeServer]:
    return lambda *destinations: start_bridge(_settings(), destinations=destinations)


def _move(
    port: int,
    identifier: Dataset,
    destination: str,
    *,
    calling: str = WS,
    model: Any = StudyRootQueryRetrieveInformationModelMove,
) -> list[tuple[int, Dataset, Dataset | None]]:
    return move(port, identifier, destination, calling=calling, model=model)


def test_movescu_to_storescp_sends_every_instance_byte_identical(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = write_study(
        tmp_path / "in", [ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless, ImplicitVRLittleEndian]
    )
    ingest(archive, files)
    other = write_study(tmp_path / "other", [ExplicitVRLittleEndian])  # another study: must not be sent
    ingest(archive, other)
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    with storescp(tmp_path / "out") as dest_port:
        server = serve(Destination("dest", "DEST", "127.0.0.1", dest_port))
        caplog.set_level(logging.INFO, logger="pacs_bridge")
        result = movescu(server.port, study_uid)
        assert result.returncode == 0, result.stderr
        assert "Success" in result.stdout + result.stderr
        received = by_uid((tmp_path / "out").iterdir())
    originals = by_uid(files)
    assert set(received) == set(originals)
    for uid, path in originals.items():
        assert dataset_bytes(received[uid]) == dataset_bytes(path), f"{uid} differs"
        meta = dcmread(received[uid], stop_before_pixels=True).file_meta
        assert meta.TransferSyntaxUID == dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("C-MOVE from WS1")]
    assert len(lines) == 1 and "to DEST: completed 4, failed 0, warning 0" in lines[0], lines


def test_patient_root_move_reports_pending_counts_then_success(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path
) -> None:
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian] * 3, patient_id="PR-7")
    ingest(archive, files)
    with storescp(tmp_path / "out") as dest_port:
        server = serve(Destination("dest", "DEST", "127.0.0.1", dest_port))
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "PATIENT"
        identifier.PatientID = "PR-7"
        responses = _move(server.port, identifier, "DEST", model=PatientRootQueryRetrieveInformationModelMove)
        assert len(by_uid((tmp_path / "out").iterdir())) == 3
    pending = [s for status, s, _ in responses if status == 0xFF00]
    assert [s.NumberOfRemainingSuboperations for s in pending] == [2, 1]
    assert [s.NumberOfCompletedSuboperations for s in pending] == [1, 2]
    status, final, _ = responses[-1]
    assert status == 0x0000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (3, 0)
    assert final.NumberOfWarningSuboperations == 0


def test_unknown_destination_is_refused_a801(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path
) -> None:
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian])
    ingest(archive, files)
    server = serve(Destination("dest", "DEST", "127.0.0.1", free_port()))
    uid = str(dcmread(files[0]).StudyInstanceUID)
    responses = _move(server.port, study_identifier(uid), "NOSUCHAE")
    assert [status for status, _, _ in responses] == [0xA801]
    assert "not in the destination table" in str(responses[0][1].ErrorComment)
    # a configured destination the calling AE may not move to is refused the same way
    responses = _move(server.port, study_identifier(uid), "DEST", calling="OTHERWS")
    assert [status for status, _, _ in responses] == [0xA801]
    assert "not allowed" in str(responses[0][1].ErrorComment)


def test_calling_ae_without_move_permission_is_refused_the_move_context(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path
) -> None:
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian])
    ingest(archive, files)
    with storescp(tmp_path / "out") as dest_port:
        server = serve(Destination("dest", "DEST", "127.0.0.1", dest_port))
        uid = str(dcmread(files[0]).StudyInstanceUID)
        ae = AE(ae_title="NOMOVE")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
        assert assoc.is_established  # it may echo and store
        refused = [
            cx
            for cx in assoc.rejected_contexts
            if cx.abstract_syntax == StudyRootQueryRetrieveInformationModelMove
        ]
        assert [cx.result in (0x01, 0x03) for cx in refused] == [True]  # refused at negotiation
        assoc.release()
        result = movescu(server.port, uid, calling="NOMOVE", verbose=False)
        assert result.returncode != 0
        assert not list((tmp_path / "out").iterdir())


def test_destination_down_fails_every_suboperation_and_the_server_keeps_serving(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path
) -> None:
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian, RLELossless])
    ingest(archive, files)
    server = serve(Destination("down", "DOWN", "127.0.0.1", free_port(), timeout_s=5.0))
    uid = str(dcmread(files[0]).StudyInstanceUID)
    responses = _move(server.port, study_identifier(uid), "DOWN")
    status, final, identifier = responses[-1]
    assert status == 0xA702
    assert (final.NumberOfFailedSuboperations, final.NumberOfCompletedSuboperations) == (2, 0)
    assert identifier is not None
    expected = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
    assert set(failed_uids(identifier)) == expected
    assert echoscu(server.port, calling=WS).returncode == 0


def test_bad_identifier_is_refused_a900(archive: Archive, serve: Callable[..., BridgeServer]) -> None:
    server = serve(Destination("dest", "DEST", "127.0.0.1", free_port()))
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.SeriesInstanceUID = "1.2.3"  # no Study Instance UID above it
    responses = _move(server.port, identifier, "DEST")
    assert [status for status, _, _ in responses] == [0xA900]
    assert "StudyInstanceUID" in str(responses[0][1].ErrorComment)


@pytest.mark.parametrize("transcode", [False, True])
def test_destination_refusing_the_files_syntax_gets_it_transcoded_only_when_allowed(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path, transcode: bool
) -> None:
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian, RLELossless, ImplicitVRLittleEndian])
    ingest(archive, files)
    uid = str(dcmread(files[0]).StudyInstanceUID)
    with storescp(tmp_path / "out", extra=["+xi"]) as dest_port:  # implicit VR little endian only
        server = serve(Destination("dest", "DEST", "127.0.0.1", dest_port, transcode=transcode))
        responses = _move(server.port, study_identifier(uid), "DEST")
        received = by_uid((tmp_path / "out").iterdir())
    status, final, identifier = responses[-1]
    originals = {str(dcmread(p).SOPInstanceUID): dcmread(p) for p in files}
    implicit = next(
        u for u, ds in originals.items() if ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    )
    if not transcode:
        assert status == 0xB000
        assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (1, 2)
        assert identifier is not None
        assert set(failed_uids(identifier)) == set(originals) - {implicit}
        assert set(received) == {implicit}
        return
    assert status == 0x0000 and final.NumberOfCompletedSuboperations == 3
    assert set(received) == set(originals)
    for uid_, path in received.items():
        got = dcmread(path)
        assert got.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        assert (got.pixel_array == originals[uid_].pixel_array).all(), "transcoding must be lossless"


def _stored_study(archive: Archive, tmp_path: Path, clips: int) -> str:
    """A study of ``clips`` explicit VR clips in ``archive``; its Study Instance UID."""
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian] * clips)
    ingest(archive, files)
    return str(dcmread(files[0]).StudyInstanceUID)


def test_cancel_mid_move_stops_and_reports_counts(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path
) -> None:
    uid = _stored_study(archive, tmp_path, 5)
    with held_destination("SLOW") as slow:
        server = serve(Destination("slow", "SLOW", "127.0.0.1", slow.port))
        statuses = move_cancelled_at_first(server, study_identifier(uid), slow, msg_id=7)
    status, final, _ = statuses[-1]
    assert status == 0xFE00
    assert final.NumberOfCompletedSuboperations == 1
    assert final.NumberOfRemainingSuboperations == 4
    assert final.NumberOfFailedSuboperations == 0
    assert len(slow.stored) == 1


def test_the_final_response_does_not_wait_for_the_destination_to_release(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path
) -> None:
    # The destination holds its A-RELEASE answer; the requester still gets its final response.
    uid = _stored_study(archive, tmp_path, 2)
    with held_destination("SLOW") as slow:
        slow.gate.set()  # stores are answered at once, the release is held
        slow.hold_release = True
        server = serve(Destination("slow", "SLOW", "127.0.0.1", slow.port))
        ae = AE(ae_title=WS)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
        assert assoc.is_established
        try:
            model = StudyRootQueryRetrieveInformationModelMove
            for status, _ in assoc.send_c_move(study_identifier(uid), "SLOW", model):
                if status.Status != 0xFF00:
                    assert status.Status == 0x0000
                    assert status.NumberOfCompletedSuboperations == 2
                    assert not slow.released.is_set(), "the final response waited for the release"
            assoc.release()  # answered while the destination's release is still held
            assert assoc.is_released
            assert not slow.released.is_set(), "our release waited for the destination's"
            slow.release_gate.set()
            assert slow.released.wait(20)
        finally:
            if assoc.is_established:
                assoc.release()
    assert len(slow.stored) == 2


def test_requester_gone_mid_move_stops_the_move_and_the_server_keeps_serving(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uid = _stored_study(archive, tmp_path, 5)
    caplog.set_level(logging.INFO, logger="pacs_bridge")
    with held_destination("SLOW") as slow:
        server = serve(Destination("slow", "SLOW", "127.0.0.1", slow.port))
        ae = AE(ae_title=WS)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
        assert assoc.is_established
        assoc.send_c_move(study_identifier(uid), "SLOW", StudyRootQueryRetrieveInformationModelMove)
        assert slow.first_arrived.wait(20)
        served = [a for a in server._ae.active_associations if a.is_acceptor]  # type: ignore[union-attr]
        assoc.abort()  # while the first sub-operation waits at the destination
        wait_for(
            lambda: all(a.acse.is_aborted() or not a.dul.is_alive() for a in served),
            what="the abort to arrive",
        )
        slow.gate.set()
        wait_for(
            lambda: any("C-MOVE from WS1" in r.getMessage() for r in caplog.records),
            what="the C-MOVE log line",
        )
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("C-MOVE from WS1"))
    assert "completed 1, failed 0, warning 0, remaining 4" in line, line
    assert "requester's association ended" in line
    assert len(slow.stored) == 1
    assert echoscu(server.port, calling=WS).returncode == 0
