"""The DUL loop that waits on its socket and send queue (pacs_bridge.dul_loop)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from bridge_helpers import US_MULTIFRAME, storescu, wait_for, write_clip
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification

import pacs_bridge.server
from archive.archive import Archive
from archive.index.queries import Query
from pacs_bridge.config import BridgeSettings
from pacs_bridge.dul_loop import use_waiting_dul
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network

#: Far longer than any test may take: a loop that waited it out instead of waking would hang.
HOUR_S = 3600.0


@pytest.fixture
def hour_wait_server() -> Iterator[tuple[AE, int]]:
    """A plain pynetdicom SCP whose associations get the waiting DUL loop with a one-hour wait."""
    ae = AE(ae_title="WAITING")
    ae.add_supported_context(Verification)
    ae.add_supported_context(US_MULTIFRAME, ExplicitVRLittleEndian)
    handlers = [
        (evt.EVT_CONN_OPEN, lambda event: use_waiting_dul(event.assoc, HOUR_S)),
        (evt.EVT_C_STORE, lambda event: 0x0000),
    ]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    try:
        yield ae, server.server_address[1]
    finally:
        ae.shutdown()


def _scu() -> AE:
    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    ae.add_requested_context(Verification)
    ae.add_requested_context(US_MULTIFRAME, ExplicitVRLittleEndian)
    return ae


def test_requests_and_responses_wake_the_loop_at_once(
    hour_wait_server: tuple[AE, int], tmp_path: Path
) -> None:
    # With pynetdicom's own loop sleeping an hour between idle passes, the association request
    # would time out; the waiting loop wakes for every PDU that arrives and every one to send.
    server, port = hour_wait_server
    assoc = _scu().associate("127.0.0.1", port, ae_title="WAITING")
    assert assoc.is_established
    clips = [write_clip(tmp_path / f"c{n}.dcm", seed=n, frames=2) for n in range(5)]
    statuses = [assoc.send_c_store(path).Status for path in clips]
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert statuses == [0x0000] * 5
    assert assoc.is_released
    wait_for(lambda: not server.active_associations, what="the released association to end")


def _established(server: AE, port: int) -> Association:
    """An association to ``server``, once both ends have it up."""
    assoc = _scu().associate("127.0.0.1", port, ae_title="WAITING")
    assert assoc.is_established
    wait_for(lambda: len(server.active_associations) == 1, what="the association to be up")
    return assoc


def test_an_abort_from_the_peer_ends_the_association(hour_wait_server: tuple[AE, int]) -> None:
    assoc = _established(*hour_wait_server)
    server, _ = hour_wait_server
    assoc.abort()
    wait_for(lambda: not server.active_associations, what="the aborted association to end")


def test_shutting_down_ends_an_idle_association(hour_wait_server: tuple[AE, int]) -> None:
    # The server aborts its open associations: the A-ABORT it queues wakes the idle loop.
    assoc = _established(*hour_wait_server)
    server, _ = hour_wait_server
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    stopper.join(timeout=30)
    assert not stopper.is_alive(), "shutdown hung on an idle association"
    wait_for(lambda: assoc.is_aborted, what="the SCU to see the abort")


def test_the_bridge_gives_every_connection_the_loop_with_its_poll_interval(
    start_bridge: Callable[..., BridgeServer],
    bridge_settings: BridgeSettings,
    archive: Archive,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    def recording(assoc: Any, wait_s: float, **kwargs: Any) -> None:
        waits.append(wait_s)
        assert kwargs["limits"] is not None, "the bridge reads PDUs within limits"
        use_waiting_dul(assoc, wait_s, **kwargs)

    monkeypatch.setattr(pacs_bridge.server, "use_waiting_dul", recording)
    server = start_bridge(bridge_settings, poll_interval_ms=0.5)
    clips = [write_clip(tmp_path / f"c{n}.dcm", seed=n, frames=2) for n in range(3)]
    result = storescu(server.port, clips)
    assert result.returncode == 0, result.stderr
    assert waits and all(wait == 0.0005 for wait in waits)
    assert len(archive.index.find(Query())) == 3


def test_a_dul_without_pynetdicom_internals_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"pin pynetdicom 3\.x or adapt"):
        use_waiting_dul(SimpleNamespace(dul=SimpleNamespace()))


def test_a_running_dul_is_refused(hour_wait_server: tuple[AE, int]) -> None:
    _, port = hour_wait_server
    assoc = _scu().associate("127.0.0.1", port, ae_title="WAITING")
    try:
        assert assoc.is_established
        with pytest.raises(RuntimeError, match="install the loop from EVT_CONN_OPEN"):
            use_waiting_dul(assoc)
    finally:
        assoc.release()
