"""The fast C-STORE sender under real peers: PDU sizes, a destination that goes away, C-CANCEL, C-GET."""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bridge_helpers import dataset_bytes, echoscu, port_open, run, wait_for
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove
from qr_helpers import free_port, ingest

from archive.archive import Archive
from archive.forward.config import Destination
from pacs_bridge import pdata_writer
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import PeerPermissions
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network

WS = "WS1"


def _settings(*, patches: bool = True) -> BridgeSettings:
    return BridgeSettings(
        host="127.0.0.1",
        port=0,
        permissions=(PeerPermissions.parse(WS, ["echo", "move", "get"]),),
        move_destinations=((WS, ("DEST",)),),
        dimse_timeout_s=20.0,
        pynetdicom_patches=patches,
    )


@pytest.fixture
def serve(archive: Archive) -> Iterator[Callable[..., BridgeServer]]:
    servers: list[BridgeServer] = []

    def start(destination: Destination | None = None, *, patches: bool = True) -> BridgeServer:
        destinations = {destination.name: destination} if destination is not None else {}
        server = BridgeServer(_settings(patches=patches), archive, destinations=destinations)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(drain_timeout_s=5.0)


def _clips(directory: Path, frames: list[int]) -> list[Path]:
    """One study of uncompressed 8-bit clips of 320×241 (an odd row count: odd data set lengths)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    study, series = generate_uid(), generate_uid()
    paths = []
    for index, count in enumerate(frames):
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName, ds.Modality, ds.InstanceNumber = "FAST", "Fast^Send", "US", index + 1
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 241, 320, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.NumberOfFrames, ds.FrameTime, ds.FrameIncrementPointer = count, 33.3, 0x00181063
        ds.PixelData = rng.integers(0, 256, size=count * 241 * 320 + (count % 2), dtype=np.uint8).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _movescu(port: int, study_uid: str, *extra: str) -> subprocess.CompletedProcess[str]:
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"]
    return run(
        [
            "movescu",
            "-v",
            "-S",
            "-aet",
            WS,
            "-aec",
            "USARCHIVE",
            "-aem",
            "DEST",
            *extra,
            *keys,
            "127.0.0.1",
            str(port),
        ]
    )


def _by_uid(paths: Any) -> dict[str, Path]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths if p.is_file()}


def _sockets() -> int:
    """Socket descriptors this process holds."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile
            count += str(fd.readlink()).startswith("socket:")
    return count


class _Storescp:
    """dcmtk storescp with a given maximum PDU, which the test may kill."""

    def __init__(self, output: Path, max_pdu: int):
        output.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                "storescp",
                "-aet",
                "DEST",
                "-od",
                str(output),
                "+B",
                "+xa",
                "-pdu",
                str(max_pdu),
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            lambda: port_open("127.0.0.1", self.port) or self.process.poll() is not None, what="storescp"
        )
        assert self.process.poll() is None, "storescp did not start"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.mark.parametrize("max_pdu", [4096 + 6, 16384, 131072])
def test_move_by_the_fast_sender_is_byte_identical_at_every_pdu_size(
    archive: Archive,
    serve: Callable[..., BridgeServer],
    tmp_path: Path,
    fast_writes: list[Path],
    max_pdu: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = _clips(tmp_path / "in", [1, 3, 60])  # 77 KB, 231 KB, 4.6 MB: more than one read block
    ingest(archive, files)
    dest = _Storescp(tmp_path / "out", max_pdu)
    caplog.set_level(logging.INFO, logger="pacs_bridge")
    try:
        server = serve(Destination("dest", "DEST", "127.0.0.1", dest.port))
        result = _movescu(server.port, str(dcmread(files[0]).StudyInstanceUID))
    finally:
        dest.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    received, originals = _by_uid((tmp_path / "out").iterdir()), _by_uid(files)
    assert set(received) == set(originals)
    for uid, path in originals.items():
        assert dataset_bytes(received[uid]) == dataset_bytes(path), f"{uid} differs"
    assert len(fast_writes) == len(files), "every sub-operation went out by the fast sender"
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("C-MOVE from WS1"))
    assert "completed 3, failed 0, warning 0" in line, line


def test_with_the_patches_off_the_stock_sender_is_used(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path, fast_writes: list[Path]
) -> None:
    files = _clips(tmp_path / "in", [2, 5])
    ingest(archive, files)
    dest = _Storescp(tmp_path / "out", 16384)
    try:
        server = serve(Destination("dest", "DEST", "127.0.0.1", dest.port), patches=False)
        result = _movescu(server.port, str(dcmread(files[0]).StudyInstanceUID))
    finally:
        dest.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    received = _by_uid((tmp_path / "out").iterdir())
    assert {u: dataset_bytes(p) for u, p in received.items()} == {
        u: dataset_bytes(p) for u, p in _by_uid(files).items()
    }
    assert fast_writes == []


def test_destination_killed_mid_transfer_fails_the_rest_without_leaking_or_crashing(
    archive: Archive,
    serve: Callable[..., BridgeServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = _clips(tmp_path / "in", [2, 150, 2])  # the second is 11.6 MB: killed after its first block
    ingest(archive, files)
    dest = _Storescp(tmp_path / "out", 16384)
    messages: list[Any] = []
    original = pdata_writer._Writer.write

    def write(self: Any, buffers: list[Any]) -> None:
        original(self, buffers)
        if self not in messages:
            messages.append(self)  # one writer per message
        if len(messages) == 2 and dest.process.poll() is None:
            dest.stop()  # the second file's first block is out, the rest is not

    monkeypatch.setattr(pdata_writer._Writer, "write", write)
    caplog.set_level(logging.INFO, logger="pacs_bridge")
    try:
        server = serve(Destination("dest", "DEST", "127.0.0.1", dest.port))
        before = _sockets()
        result = _movescu(server.port, str(dcmread(files[0]).StudyInstanceUID))
    finally:
        dest.stop()
    assert "SubOperationsCompleteOneOrMoreFailures" in result.stdout + result.stderr, result.stderr
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("C-MOVE from WS1"))
    assert "completed 1, failed 2, warning 0, remaining 0" in line, line
    wait_for(lambda: _sockets() <= before, what="the destination's socket to be closed")
    assert echoscu(server.port, calling=WS).returncode == 0, "the server still serves"


def test_destination_aborting_mid_transfer_fails_the_rest(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = _clips(tmp_path / "in", [2, 150, 2])
    ingest(archive, files)
    received_pdus: list[int] = []

    def on_pdu(event: Any) -> None:
        if isinstance(event.pdu, P_DATA_TF):
            received_pdus.append(1)
            if len(received_pdus) == 20:  # a few PDUs into the second file's 11.6 MB
                event.assoc.abort(block=False)

    dest_ae = AE(ae_title="DEST")
    dest_ae.supported_contexts = AllStoragePresentationContexts
    dest_ae.maximum_pdu_size = 16384
    handlers = [(evt.EVT_PDU_RECV, on_pdu), (evt.EVT_C_STORE, lambda event: 0x0000)]
    dest_server = dest_ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    caplog.set_level(logging.INFO, logger="pacs_bridge")
    try:
        server = serve(Destination("dest", "DEST", "127.0.0.1", dest_server.server_address[1]))
        before = _sockets()
        result = _movescu(server.port, str(dcmread(files[0]).StudyInstanceUID))
        line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("C-MOVE from WS1"))
        wait_for(lambda: _sockets() <= before, what="the destination's sockets to be closed")
    finally:
        dest_ae.shutdown()
    assert "SubOperationsCompleteOneOrMoreFailures" in result.stdout + result.stderr, result.stderr
    assert "completed 1, failed 2, warning 0, remaining 0" in line, line
    assert echoscu(server.port, calling=WS).returncode == 0


def test_cancel_mid_move_is_honoured_by_the_fast_sender(
    archive: Archive, serve: Callable[..., BridgeServer], tmp_path: Path, fast_writes: list[Path]
) -> None:
    files = _clips(tmp_path / "in", [3, 3, 3, 3])
    ingest(archive, files)
    first_arrived, gate = threading.Event(), threading.Event()
    stored: list[str] = []

    def on_store(event: Any) -> int:
        stored.append(str(event.request.AffectedSOPInstanceUID))
        first_arrived.set()
        gate.wait(20)
        return 0x0000

    dest_ae = AE(ae_title="DEST")
    dest_ae.supported_contexts = AllStoragePresentationContexts
    dest_server = dest_ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        server = serve(Destination("dest", "DEST", "127.0.0.1", dest_server.server_address[1]))
        ae = AE(ae_title=WS)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
        assert assoc.is_established
        identifier = Dataset()
        identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = (
            "STUDY",
            str(dcmread(files[0]).StudyInstanceUID),
        )
        responses = assoc.send_c_move(
            identifier, "DEST", StudyRootQueryRetrieveInformationModelMove, msg_id=9
        )
        assert first_arrived.wait(20)
        assoc.send_c_cancel(9, assoc.accepted_contexts[0].context_id)
        served = [a for a in server._ae.active_associations if a.is_acceptor]  # type: ignore[union-attr]
        wait_for(lambda: any(9 in a.dimse.cancel_req for a in served), what="the C-CANCEL to arrive")
        gate.set()
        statuses = [(int(s.Status), s) for s, _ in responses]
        assoc.release()
    finally:
        gate.set()
        dest_ae.shutdown()
    status, final = statuses[-1]
    assert status == 0xFE00
    assert (final.NumberOfCompletedSuboperations, final.NumberOfRemainingSuboperations) == (1, 3)
    assert len(stored) == 1 and len(fast_writes) == 1


@pytest.mark.parametrize("max_pdu", [4096 + 6, 131072])
def test_get_by_the_fast_sender_is_byte_identical(
    archive: Archive,
    serve: Callable[..., BridgeServer],
    tmp_path: Path,
    fast_writes: list[Path],
    max_pdu: int,
) -> None:
    files = _clips(tmp_path / "in", [1, 60, 4])
    ingest(archive, files)
    server = serve()
    out = tmp_path / "out"
    out.mkdir()
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={dcmread(files[0]).StudyInstanceUID}"]
    args = [
        "getscu",
        "-v",
        "-S",
        "-aet",
        WS,
        "-aec",
        "USARCHIVE",
        "-od",
        str(out),
        "+B",
        "-pdu",
        str(max_pdu),
    ]
    result = run([*args, *keys, "127.0.0.1", str(server.port)])
    assert result.returncode == 0, result.stdout + result.stderr
    received, originals = _by_uid(out.iterdir()), _by_uid(files)
    assert set(received) == set(originals)
    for uid, path in originals.items():
        assert dataset_bytes(received[uid]) == dataset_bytes(path), f"{uid} differs"
    assert len(fast_writes) == len(files)
