"""C-FIND responses written by the association's own thread (pacs_bridge._pynetdicom_compat.direct_send)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]
from qr_samples import Samples

from pacs_bridge import _pynetdicom_compat as compat
from pacs_bridge._pynetdicom_compat import direct_send
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer, PeerPermissions, Permission
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network

FINDER = PeerPermissions(AllowedPeer("FINDER"), frozenset({Permission.ECHO, Permission.FIND}))


def _study_query() -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    identifier.PatientID = ""
    return identifier


def test_every_c_find_response_is_written_by_the_association_thread_not_queued(
    start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings, samples: Samples
) -> None:
    server = start_bridge(bridge_settings, permissions=(FINDER,))
    ae = AE(ae_title="FINDER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
    assert assoc.is_established
    try:
        served = [a for a in server._ae.active_associations if a.is_acceptor]  # type: ignore[union-attr]
        assert len(served) == 1
        queued: list[object] = []
        send_pdu = served[0].dul.send_pdu

        def counting(primitive: Any) -> None:
            if isinstance(primitive, P_DATA):
                queued.append(primitive)
            send_pdu(primitive)

        served[0].dul.send_pdu = counting
        model = StudyRootQueryRetrieveInformationModelFind
        responses = list(assoc.send_c_find(_study_query(), model))
    finally:
        assoc.release()
    statuses = [int(status.Status) for status, _ in responses]
    found = {str(identifier.StudyInstanceUID) for _, identifier in responses if identifier is not None}
    assert statuses == [0xFF00] * len(samples.studies) + [0x0000]
    assert found == set(samples.studies.values())
    assert queued == [], "responses went through the DUL thread's queue"


class _Assoc(SimpleNamespace):
    """Just what ``_send_direct`` touches of an association, on one end of a socket pair."""

    def get_handlers(self, _event: Any) -> list[Any]:
        return []


def _association(sock: socket.socket, state: str = "Sta6") -> _Assoc:
    dul = SimpleNamespace(
        socket=SimpleNamespace(socket=sock),
        state_machine=SimpleNamespace(current_state=state),
        is_alive=lambda: True,
    )
    dimse = SimpleNamespace(maximum_pdu_size=16384)
    return _Assoc(dul=dul, dimse=dimse, network_timeout=5.0, dimse_timeout=5.0, is_established=True)


def _pending_response() -> C_FIND:
    response = C_FIND()
    response.MessageIDBeingRespondedTo = 1
    response.AffectedSOPClassUID = StudyRootQueryRetrieveInformationModelFind
    response.Status = 0xFF00
    return response


def test_outside_data_transfer_the_stock_send_is_used() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        guard = compat.SendGuard()
        assert not direct_send._send_direct(_association(ours, "Sta13"), guard, _pending_response(), 1)
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(1)  # nothing written


def test_a_write_that_fails_part_way_ends_the_association() -> None:
    ours, theirs = socket.socketpair()
    theirs.close()  # the peer is gone: the write fails
    with ours:
        guard = compat.SendGuard()
        assoc = _association(ours)
        assert direct_send._send_direct(assoc, guard, _pending_response(), 1)  # handled: never sent
        assert guard.broken
        # A broken stream is left to the stock send, whose DUL thread finds the connection closed.
        assert not direct_send._send_direct(assoc, guard, _pending_response(), 1)


def test_direct_writes_wait_for_what_the_dul_thread_still_has_to_write() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        guard = compat.SendGuard()
        guard.pending = 1  # one P-DATA still queued to the DUL thread
        sent = threading.Event()

        def send() -> None:
            direct_send._send_direct(_association(ours), guard, _pending_response(), 1)
            sent.set()

        writer = threading.Thread(target=send, daemon=True)
        writer.start()
        assert not sent.wait(0.2), "wrote before the DUL thread's PDU"
        with guard.lock:
            guard.pending = 0  # the DUL thread wrote it
            guard.lock.notify_all()
        assert sent.wait(10)
        writer.join(10)
        header = theirs.recv(6)
        assert header[0] == 0x04  # a P-DATA-TF PDU
