"""The fast C-STORE sender under real peers: PDU sizes, a destination that goes away, C-CANCEL, C-GET."""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bridge_helpers import dataset_bytes, echoscu, port_open, wait_for
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.pdu import P_DATA_TF
from qr_helpers import (
    by_uid,
    free_port,
    getscu,
    held_destination,
    ingest,
    move_cancelled_at_first,
    movescu,
    study_identifier,
)

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
def serve(start_bridge: Callable[..., BridgeServer]) -> Callable[..., BridgeServer]:
    def serve_to(destination: Destination | None = None, *, patches: bool = True) -> BridgeServer:
        return start_bridge(
            _settings(patches=patches), destinations=[] if destination is None else [destination]
        )

    return serve_to


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
        result = movescu(server.port, str(dcmread(files[0]).StudyInstanceUID))
    finally:
        dest.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    received, originals = by_uid((tmp_path / "out").iterdir()), by_uid(files)
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
        result = movescu(server.port, str(dcmread(files[0]).StudyInstanceUID))
    finally:
        dest.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    received = by_uid((tmp_path / "out").iterdir())
    assert {u: dataset_bytes(p) for u, p in received.items()} == {
        u: dataset_bytes(p) for u, p in by_uid(files).items()
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
        result = movescu(server.port, str(dcmread(files[0]).StudyInstanceUID))
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
        result = movescu(server.port, str(dcmread(files[0]).StudyInstanceUID))
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
    with held_destination("DEST") as dest:
        server = serve(Destination("dest", "DEST", "127.0.0.1", dest.port))
        identifier = study_identifier(str(dcmread(files[0]).StudyInstanceUID))
        statuses = move_cancelled_at_first(server, identifier, dest, msg_id=9)
    status, final, _ = statuses[-1]
    assert status == 0xFE00
    assert (final.NumberOfCompletedSuboperations, final.NumberOfRemainingSuboperations) == (1, 3)
    assert len(dest.stored) == 1 and len(fast_writes) == 1


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
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    result = getscu(server.port, study_uid, out, calling=WS, extra=["-pdu", str(max_pdu)])
    assert result.returncode == 0, result.stdout + result.stderr
    received, originals = by_uid(out.iterdir()), by_uid(files)
    assert set(received) == set(originals)
    for uid, path in originals.items():
        assert dataset_bytes(received[uid]) == dataset_bytes(path), f"{uid} differs"
    assert len(fast_writes) == len(files)
