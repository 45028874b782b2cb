"""send_dataset against a real pynetdicom storage SCP on a free loopback port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import highdicom as hd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE, StoragePresentationContexts, evt

from archive.analysis.metrics import clip_metrics
from archive.calibration import Calibration
from archive.errors import SendError
from archive.model import SpinalLevel
from archive.phantom import ClipSpec, GroundTruth, write_clip
from archive.phantom.to_annotation import annotation_from_truth
from archive.research.export.send import STATUS_SUCCESS, parse_destination, send_dataset
from archive.research.export.sr import build_measurement_report
from archive.timing import frame_times

SCP_AE = "ARCHIVE_SCP"


@dataclass
class StorageSCP:
    port: int
    received: list[Dataset] = field(default_factory=list)
    calling_aes: list[str] = field(default_factory=list)
    status: int = 0x0000
    #: when set, the store handler waits for this event before answering (a stalled peer)
    stall: threading.Event | None = None


@pytest.fixture
def scp() -> Iterator[StorageSCP]:
    ae = AE(ae_title=SCP_AE)
    ae.supported_contexts = StoragePresentationContexts
    ae.require_called_aet = True
    state = StorageSCP(port=0)

    def handle_store(event: Any) -> int:
        state.received.append(event.dataset)
        state.calling_aes.append(event.assoc.requestor.ae_title)
        if state.stall is not None:
            state.stall.wait(timeout=30.0)
        return state.status

    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    assert server is not None
    state.port = server.server_address[1]
    try:
        yield state
    finally:
        if state.stall is not None:
            state.stall.set()
        server.shutdown()


def small_instance() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Phantom^Send"
    ds.PatientID = "SEND-1"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_store_succeeds_and_the_peer_gets_the_instance(scp: StorageSCP) -> None:
    ds = small_instance()
    status = send_dataset(ds, SCP_AE, "127.0.0.1", scp.port, calling_ae="USARCHIVE_TEST")
    assert status == STATUS_SUCCESS
    assert len(scp.received) == 1
    got = scp.received[0]
    assert (got.SOPInstanceUID, got.PatientID, str(got.PatientName)) == (
        ds.SOPInstanceUID,
        "SEND-1",
        "Phantom^Send",
    )
    assert scp.calling_aes == ["USARCHIVE_TEST"]


def test_measurement_report_is_stored(scp: StorageSCP, tmp_path: Path) -> None:
    spec = replace(ClipSpec(rows=160, cols=200, frames=12, frame_time_ms=50.0), level=SpinalLevel.L5)
    dcm_path, json_path = write_clip(spec, tmp_path, 7, stem="clip")
    header = dcmread(dcm_path, stop_before_pixels=True)
    annotation = annotation_from_truth(GroundTruth.read(json_path), "reviewer.b")
    metrics = clip_metrics(annotation, Calibration.from_dataset(header), frame_times(header))
    report = build_measurement_report(header, annotation, metrics)
    assert send_dataset(report, SCP_AE, "127.0.0.1", scp.port) == STATUS_SUCCESS
    got = scp.received[0]
    assert got.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"
    assert got.SOPInstanceUID == report.SOPInstanceUID
    sent_values = measurement_values(report)
    assert len(sent_values) == 3  # tip-to-target, spread area, needle angle
    assert measurement_values(got) == sent_values


def measurement_values(ds: Dataset) -> list[tuple[str, float]]:
    content = hd.sr.ComprehensiveSR.from_dataset(ds).content
    assert isinstance(content, hd.sr.MeasurementReport)
    return [
        (str(group.tracking_identifier), float(m.value))
        for group in content.get_planar_roi_measurement_groups()
        for m in group.get_measurements()
    ]


def test_failure_status_of_the_peer_is_returned(scp: StorageSCP) -> None:
    scp.status = 0xA700  # out of resources
    assert send_dataset(small_instance(), SCP_AE, "127.0.0.1", scp.port) == 0xA700


def test_peer_that_never_answers_the_store_is_an_error(scp: StorageSCP) -> None:
    scp.stall = threading.Event()
    with pytest.raises(SendError, match="expected a response status"):
        send_dataset(small_instance(), SCP_AE, "127.0.0.1", scp.port, timeout_s=1.0)
    assert len(scp.received) == 1  # the peer got it but did not answer in time


def test_wrong_called_ae_title_is_an_error(scp: StorageSCP) -> None:
    with pytest.raises(SendError, match="rejected"):
        send_dataset(small_instance(), "NOT_THE_SCP", "127.0.0.1", scp.port)
    assert scp.received == []


def test_sop_class_the_peer_does_not_store_is_an_error(scp: StorageSCP) -> None:
    ds = small_instance()
    ds.SOPClassUID = "1.2.826.0.1.3680043.8.498.999"  # a private, unknown storage class
    with pytest.raises(SendError, match="accepted none"):
        send_dataset(ds, SCP_AE, "127.0.0.1", scp.port)


def test_closed_port_is_an_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SendError, match="expected an association"):
        send_dataset(small_instance(), SCP_AE, "127.0.0.1", port, timeout_s=5.0)


def test_dataset_without_uids_is_refused() -> None:
    with pytest.raises(SendError, match="SOPClassUID"):
        send_dataset(Dataset(), SCP_AE, "127.0.0.1", 104)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PACS@10.0.0.5:104", ("PACS", "10.0.0.5", 104)),
        (" ORTHANC@localhost:4242 ", ("ORTHANC", "localhost", 4242)),
        ("PACS@[::1]:11112", ("PACS", "::1", 11112)),
    ],
)
def test_parse_destination(text: str, expected: tuple[str, str, int]) -> None:
    assert parse_destination(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PACS10.0.0.5:104", "AE@host:port"),
        ("PACS@10.0.0.5", "AE@host:port"),
        ("@host:104", "AE@host:port"),
        ("PACS@host:0", "port"),
        ("PACS@host:http", "port"),
        ("A_VERY_LONG_AE_TITLE@host:104", "16 characters"),
    ],
)
def test_parse_destination_refuses_malformed_text(text: str, message: str) -> None:
    with pytest.raises(SendError, match=message):
        parse_destination(text)
