"""C-MOVE over TLS: requested on a TLS association, sub-operations to a dcmtk ``storescp +tls`` destination.

The requester is pynetdicom with a client certificate from the test CA (Debian's
dcmtk ``movescu`` has no TLS); ``usarchive`` presents its ``[tls]`` certificate
to the destination and trusts ``[tls] ca`` for the destination's (mutual TLS,
``pacs_bridge/tls.py``). A TLS socket never takes the fast sender (it writes
plain sockets only): pynetdicom's own ``send_c_store`` sends, with or without
``pynetdicom_patches``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bridge_helpers import dataset_bytes, echoscu
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless
from qr_helpers import (
    failed_uids,
    ingest,
    move,
    received_instances,
    storescp,
    storescp_tls,
    study_identifier,
    write_study,
)

from archive.archive import Archive
from archive.forward.config import Destination
from pacs_bridge import _pynetdicom_compat
from pacs_bridge.config import BridgeSettings, TLSSettings
from pacs_bridge.peers import PeerPermissions
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network

WS = "WS1"
SYNTAXES = [ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless, ImplicitVRLittleEndian]


@pytest.fixture
def serve_tls(start_bridge: Callable[..., BridgeServer], certificates: Path) -> Callable[..., BridgeServer]:
    """Start ``usarchive`` serving TLS (client certificates from the test CA required), WS1 may move."""
    d = certificates

    def start(destination: Destination, *, patches: bool = True) -> BridgeServer:
        settings = BridgeSettings(
            host="127.0.0.1",
            port=0,
            permissions=(PeerPermissions.parse(WS, ["echo", "move"]),),
            move_destinations=((WS, (destination.ae_title,)),),
            dimse_timeout_s=20.0,
            tls=TLSSettings(d / "server.crt", d / "server.key", d / "ca.crt"),
            pynetdicom_patches=patches,
        )
        return start_bridge(settings, destinations=(destination,))

    return start


def _requester_context(certificates: Path) -> ssl.SSLContext:
    """The workstation's TLS context: the test CA trusted, the client certificate presented."""
    context = ssl.create_default_context(cafile=certificates / "ca.crt")
    context.load_cert_chain(certificates / "client.crt", certificates / "client.key")
    return context


@pytest.fixture
def fast_send_answers(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What each ``fast_send_c_store`` call returned (``None``: the caller sent the stock way)."""
    answers: list[object] = []
    original = _pynetdicom_compat.fast_send_c_store

    def spy(*args: Any, **kwargs: Any) -> Any:
        answer = original(*args, **kwargs)
        answers.append(answer)
        return answer

    monkeypatch.setattr(_pynetdicom_compat, "fast_send_c_store", spy)
    return answers


def _echo_tls(port: int, certificates: Path) -> int:
    d = certificates
    tls = ["+tls", str(d / "client.key"), str(d / "client.crt"), "+cf", str(d / "ca.crt")]
    return echoscu(port, calling=WS, extra=tls).returncode


@pytest.mark.parametrize("patches", [True, False], ids=["patches-on", "patches-off"])
def test_move_over_tls_to_a_tls_storescp_sends_every_instance_byte_identical(
    archive: Archive,
    serve_tls: Callable[..., BridgeServer],
    certificates: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    fast_writes: list[Path],
    fast_send_answers: list[object],
    patches: bool,
) -> None:
    d = certificates
    files = write_study(tmp_path / "in", SYNTAXES)
    ingest(archive, files)
    ingest(archive, write_study(tmp_path / "other", [ExplicitVRLittleEndian]))  # must not be sent
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    tls_dest = storescp_tls(d / "server.crt", d / "server.key", d / "ca.crt")
    with storescp(tmp_path / "out", extra=["+xa", *tls_dest]) as dest_port:
        server = serve_tls(Destination("dest", "DEST", "127.0.0.1", dest_port, tls=True), patches=patches)
        assert _echo_tls(server.port, d) == 0  # the listener speaks TLS (dcmtk checks it)
        assert echoscu(server.port, calling=WS).returncode != 0  # and only TLS
        caplog.set_level(logging.INFO, logger="pacs_bridge")
        responses = move(
            server.port, study_identifier(study_uid), "DEST", calling=WS, ssl_context=_requester_context(d)
        )
        received = received_instances(tmp_path / "out")
    pending = [s for status, s, _ in responses if status == 0xFF00]
    assert [s.NumberOfCompletedSuboperations for s in pending] == [1, 2, 3]
    assert [s.NumberOfRemainingSuboperations for s in pending] == [3, 2, 1]
    status, final, _ = responses[-1]
    assert status == 0x0000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (4, 0)
    assert final.NumberOfWarningSuboperations == 0
    originals = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}
    assert set(received) == set(originals)
    for uid, path in originals.items():
        assert dataset_bytes(received[uid]) == dataset_bytes(path), f"{uid} differs"
        got = dcmread(received[uid], stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert got == dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    # Patches on or off, a TLS socket goes the stock way: the fast sender declined every
    # instance (None) and wrote nothing.
    assert fast_send_answers == [None] * len(files)
    assert fast_writes == []
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("C-MOVE from WS1")]
    assert len(lines) == 1 and "to DEST: completed 4, failed 0, warning 0" in lines[0], lines


def test_move_to_a_destination_with_an_untrusted_certificate_fails_every_suboperation(
    archive: Archive,
    serve_tls: Callable[..., BridgeServer],
    certificates: Path,
    self_signed_certificate: tuple[Path, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = certificates
    files = write_study(tmp_path / "in", [ExplicitVRLittleEndian, RLELossless])
    ingest(archive, files)
    study_uid = str(dcmread(files[0]).StudyInstanceUID)
    rogue_crt, rogue_key = self_signed_certificate  # for 127.0.0.1, but not from the test CA
    with storescp(tmp_path / "out", extra=["+xa", *storescp_tls(rogue_crt, rogue_key, d / "ca.crt")]) as port:
        server = serve_tls(Destination("rogue", "DEST", "127.0.0.1", port, tls=True, timeout_s=10.0))
        caplog.set_level(logging.INFO, logger="pacs_bridge")
        responses = move(
            server.port, study_identifier(study_uid), "DEST", calling=WS, ssl_context=_requester_context(d)
        )
        assert _echo_tls(server.port, d) == 0  # the server keeps serving
        assert list((tmp_path / "out").iterdir()) == []
    status, final, identifier = responses[-1]
    assert status == 0xA702
    assert (final.NumberOfFailedSuboperations, final.NumberOfCompletedSuboperations) == (2, 0)
    assert identifier is not None
    assert set(failed_uids(identifier)) == {
        str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files
    }
    # The Error Comment (an LO, 64 characters) says why first; the log line says it all.
    assert str(final.ErrorComment).startswith("TLS handshake failed: CERTIFICATE_VERIFY_FAILED: self-signed")
    handshake = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("pacs_bridge") and "TLS handshake with DEST@127.0.0.1" in r.getMessage()
    ]
    assert len(handshake) == 1, handshake
    assert f"TLS handshake with DEST@127.0.0.1:{port} failed: CERTIFICATE_VERIFY_FAILED" in handshake[0]
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("C-MOVE from WS1")]
    assert len(summary) == 1 and "completed 0, failed 2" in summary[0] and "0xA702" in summary[0], summary
