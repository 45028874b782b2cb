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

    def _abort_nonblocking(self) -> None:  # what pynetdicom's trigger swaps in around handlers
        raise AssertionError("aborted")

    _abort_blocking = _abort_nonblocking


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


def _responses() -> dict[str, Any]:
    """Response primitives of every kind the quick path encodes, with and without optional fields."""
    from io import BytesIO

    from pynetdicom.dimse_primitives import C_ECHO, C_MOVE, C_STORE

    found = _pending_response()
    found.MessageID = 7  # set by pynetdicom's SCP, not part of a response's command set
    found.Identifier = BytesIO(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY " * 40)
    final = _pending_response()
    final.Status = 0x0000
    failed = _pending_response()
    failed.Status = 0xA900
    failed.ErrorComment = "Query/Retrieve Level: expected STUDY"
    empty = _pending_response()
    empty.Identifier = BytesIO(b"")
    stored = C_STORE()
    stored.MessageIDBeingRespondedTo = 3
    stored.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    stored.AffectedSOPInstanceUID = "1.2.3.4.5"
    stored.Status = 0x0000
    echoed = C_ECHO()
    echoed.MessageIDBeingRespondedTo = 65535
    echoed.AffectedSOPClassUID = "1.2.840.10008.1.1"
    echoed.Status = 0x0000
    moving = C_MOVE()
    moving.MessageIDBeingRespondedTo = 2
    moving.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.2"
    moving.Status = 0xFF00
    moving.NumberOfRemainingSuboperations = 9
    moving.NumberOfCompletedSuboperations = 1
    moving.NumberOfFailedSuboperations = 0
    moving.NumberOfWarningSuboperations = 0
    return {
        "find pending": found,
        "find success": final,
        "find failure": failed,
        "find empty identifier": empty,
        "store": stored,
        "echo": echoed,
        "move pending": moving,
    }


def _pynetdicoms_pdus(primitive: Any, context_id: int, max_pdu: int) -> list[bytes]:
    from pynetdicom.dimse import _RSP_TO_MESSAGE
    from pynetdicom.pdu import P_DATA_TF

    message = _RSP_TO_MESSAGE[primitive.__class__]()
    message.primitive_to_message(primitive)
    return [P_DATA_TF(p).encode() for p in message.encode_msg(context_id, max_pdu)]


@pytest.mark.parametrize("max_pdu", [0, 16384, 64], ids=["unlimited", "16 KB", "tiny: fragments"])
@pytest.mark.parametrize("kind", list(_responses()))
def test_quick_responses_are_pynetdicoms_pdus(kind: str, max_pdu: int) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assoc = _association(ours)
        assoc.dimse.maximum_pdu_size = max_pdu
        quick = direct_send._quick_pdus(assoc, _responses()[kind], 5)
        assert quick is not None, "declined"
        assert quick == _pynetdicoms_pdus(_responses()[kind], 5, max_pdu)
        if max_pdu == 64:
            assoc.dimse.maximum_pdu_size = 0
            whole = direct_send._quick_pdus(assoc, _responses()[kind], 5)
            assert whole is not None and len(quick) > len(whole), "not fragmented"


def test_a_response_with_an_element_the_quick_path_does_not_write_is_pynetdicoms() -> None:
    response = _pending_response()
    response.Status = 0xA900
    response.OffendingElement = [0x00100020]
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert direct_send._quick_pdus(_association(ours), response, 1) is None


def test_an_observed_dimse_sent_event_keeps_pynetdicoms_message(caplog: pytest.LogCaptureFixture) -> None:
    from pynetdicom._handlers import standard_dimse_sent_handler

    seen: list[object] = []

    def watcher(event: Any) -> None:
        seen.append(event.message)

    ours, theirs = socket.socketpair()
    with ours, theirs:
        assoc = _association(ours)
        marked = compat.ignores_c_responses(lambda event: None)
        assoc.get_handlers = lambda _event: [(standard_dimse_sent_handler, None), (marked, None)]
        assert direct_send._quick_pdus(assoc, _pending_response(), 1) is not None
        with caplog.at_level("DEBUG", logger="pynetdicom"):
            assert direct_send._quick_pdus(assoc, _pending_response(), 1) is None, "pynetdicom's debug log"
        assoc.get_handlers = lambda _event: [(watcher, None)]
        assert direct_send._quick_pdus(assoc, _pending_response(), 1) is None
        assert direct_send._send_direct(assoc, compat.SendGuard(), _pending_response(), 1)
    assert len(seen) == 1, "the watcher saw the message"
