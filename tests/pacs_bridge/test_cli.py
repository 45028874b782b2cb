"""``usarchive serve`` as a process: closed by default, SIGTERM finishes in-flight stores, TLS."""

from __future__ import annotations

import io
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from bridge_helpers import (
    US_MULTIFRAME,
    USARCHIVE,
    dataset_bytes,
    echoscu,
    run,
    start_serve_process,
    storescu,
    wait_for,
    write_clip,
)
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF

from archive.archive import Archive
from archive.index.queries import Query
from archive.settings import ArchiveSettings
from pacs_bridge.config import BridgeSettings, TLSSettings
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network


def test_serve_refuses_to_start_without_allow_list(tmp_path: Path) -> None:
    result = run([USARCHIVE, "--data-dir", str(tmp_path / "data"), "serve", "--port", "0"], timeout_s=60)
    assert result.returncode != 0
    assert "--allow SCANNER_AE" in result.stderr
    assert "--allow-any" in result.stderr


def test_serve_stores_and_stops_on_sigterm_after_the_store_in_flight(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "serve.log"
    process, port = start_serve_process(data_dir, ["--allow", "SCANNER"], log_path=log)
    try:
        assert echoscu(port).returncode == 0
        clip = write_clip(tmp_path / "clip.dcm", frames=30, rows=240, cols=320)
        ae = AE(ae_title="SCANNER")
        ae.dimse_timeout = ae.acse_timeout = ae.network_timeout = 30
        ae.add_requested_context(US_MULTIFRAME)
        assoc = ae.associate("127.0.0.1", port, ae_title="USARCHIVE")
        assert assoc.is_established
        request = C_STORE()
        request.MessageID = 1
        request.AffectedSOPClassUID = US_MULTIFRAME
        request.AffectedSOPInstanceUID = str(make_dataset_uid(clip))
        request.Priority = 2
        request.DataSet = io.BytesIO(dataset_bytes(clip))
        message = C_STORE_RQ()
        message.primitive_to_message(request)
        primitives = list(message.encode_msg(assoc.accepted_contexts[0].context_id, 16384))

        def send(part: list[object]) -> None:
            for primitive in part:
                pdu = P_DATA_TF()
                pdu.from_primitive(primitive)
                assoc.dul.socket.send(pdu.encode())

        # Hand-made DIMSE traffic: pause the requestor's reactor as pynetdicom's own send_*()
        # do, or it takes our C-STORE response off the queue as "unexpected".
        assoc._reactor_checkpoint.clear()
        wait_for(lambda: assoc._is_paused, what="the association reactor to pause")
        half = len(primitives) // 2
        send(primitives[:half])
        spool_root = data_dir / "store" / ".tmp" / "pacs_bridge"
        wait_for(lambda: list(spool_root.rglob("*.dcm")), what="the clip to be streaming")
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: "finishing in-flight stores" in log.read_text(), what="SIGTERM to be noticed")
        assert process.poll() is None  # still waiting for our data set
        send(primitives[half:])
        _, response = assoc.dimse.get_msg(block=True)
        assoc._reactor_checkpoint.set()
        assert response is not None and response.Status == 0x0000
        assoc.release()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with Archive.open(ArchiveSettings(data_dir=data_dir)) as archive:
        [row] = archive.index.find(Query())
        assert dataset_bytes(archive.store.absolute(row.path)) == dataset_bytes(clip)
    text = log.read_text()
    assert "C-STORE from SCANNER@127.0.0.1:" in text and "status=0x0000" in text
    assert "association from SCANNER@127.0.0.1:" in text


def make_dataset_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_tls_with_dcmtk(
    certificates: Path,
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    archive: Archive,
    tmp_path: Path,
) -> None:
    d = certificates
    server = start_bridge(bridge_settings, tls=TLSSettings(d / "server.crt", d / "server.key", d / "ca.crt"))
    tls = ["+tls", str(d / "client.key"), str(d / "client.crt"), "+cf", str(d / "ca.crt")]
    assert echoscu(server.port, extra=tls).returncode == 0
    clip = write_clip(tmp_path / "tls.dcm", frames=3, seed=21)
    result = storescu(server.port, [clip], extra=tls)
    assert result.returncode == 0, result.stdout + result.stderr
    [row] = archive.index.find(Query())
    assert dataset_bytes(archive.store.absolute(row.path)) == dataset_bytes(clip)
    # Plain TCP to the TLS port fails; so does TLS without a client certificate (a CA is configured).
    assert echoscu(server.port).returncode != 0
    assert echoscu(server.port, extra=["+tla", "+cf", str(d / "ca.crt")]).returncode != 0
    assert echoscu(server.port, extra=tls).returncode == 0  # and the server still serves


def test_tls_anonymous_client_when_no_client_ca(
    certificates: Path, start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings
) -> None:
    d = certificates
    server = start_bridge(bridge_settings, tls=TLSSettings(d / "server.crt", d / "server.key"))
    assert echoscu(server.port, extra=["+tla", "+cf", str(d / "ca.crt")]).returncode == 0
