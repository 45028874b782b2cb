"""The association loop that waits for DIMSE messages (pacs_bridge.reactor)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from bridge_helpers import US_MULTIFRAME, wait_for, write_clip
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from archive.archive import Archive
from archive.index.queries import Query
from pacs_bridge.reactor import use_waiting_reactor, waiting_reactor
from pacs_bridge.server import BridgeServer

pytestmark = pytest.mark.network


def test_accepted_associations_run_the_waiting_loop_and_serve_every_message(
    bridge: BridgeServer, archive: Archive, tmp_path: Path
) -> None:
    scanner = AE(ae_title="SCANNER")
    scanner.add_requested_context(US_MULTIFRAME, ExplicitVRLittleEndian)
    assoc = scanner.associate("127.0.0.1", bridge.port, ae_title="USARCHIVE")
    assert assoc.is_established
    try:
        server_side = bridge._ae.active_associations if bridge._ae is not None else []
        assert len(server_side) == 1
        loop = server_side[0]._run_reactor
        assert loop.__func__ is not Association._run_reactor  # pynetdicom's sleeping loop is replaced
        clips = [write_clip(tmp_path / f"c{n}.dcm", seed=n, frames=2) for n in range(5)]
        statuses = [assoc.send_c_store(path).Status for path in clips]
    finally:
        assoc.release()
    assert statuses == [0x0000] * 5
    assert assoc.is_released
    wait_for(lambda: bridge.active_associations == 0, what="the released association to end")
    assert len(archive.index.find(Query())) == 5


def test_an_association_without_pynetdicom_internals_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"pin pynetdicom 3\.x or adapt"):
        use_waiting_reactor(SimpleNamespace(dimse=SimpleNamespace()))


def test_the_loop_ends_when_the_dul_thread_has_died() -> None:
    # A loop with nothing to serve checks the DUL thread after each wait and stops when it is gone.
    killed: list[bool] = []
    acse = SimpleNamespace(is_release_requested=lambda: False, is_aborted=lambda *_: False)
    assoc = SimpleNamespace(
        dimse=SimpleNamespace(msg_queue=queue.Queue()),
        _kill=False,
        _is_paused=False,
        _reactor_checkpoint=SimpleNamespace(wait=lambda: True, is_set=lambda: True),
        is_established=True,
        acse=acse,
        dul=SimpleNamespace(is_alive=lambda: False, to_user_queue=queue.Queue()),
        kill=lambda: killed.append(True),
    )
    waiting_reactor(assoc, 0.001, threading.Event())
    assert killed == [True]


class _RacingCheckpoint:
    """Set; a sender clears it in the instant after the loop's first wait has returned."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.event.set()
        self.raced = False

    def wait(self) -> bool:
        self.event.wait()
        if not self.raced:
            self.raced = True
            self.event.clear()  # the sender's clear, while the loop still reports _is_paused
        return True

    def is_set(self) -> bool:
        return self.event.is_set()


def test_a_sender_that_pauses_the_loop_just_after_its_wait_keeps_its_response() -> None:
    served: list[object] = []
    messages: queue.Queue[tuple[int, object]] = queue.Queue()
    messages.put((1, "the response a sender waits for"))
    checkpoint = _RacingCheckpoint()
    acse = SimpleNamespace(is_release_requested=lambda: False, is_aborted=lambda *_: False)
    assoc = SimpleNamespace(
        dimse=SimpleNamespace(msg_queue=messages),
        _kill=False,
        _is_paused=False,
        _reactor_checkpoint=checkpoint,
        _serve_request=lambda msg, context_id: served.append(msg),
        is_established=True,
        acse=acse,
        dul=SimpleNamespace(is_alive=lambda: False, to_user_queue=queue.Queue()),
        kill=lambda: None,
    )
    loop = threading.Thread(target=waiting_reactor, args=(assoc, 0.001, threading.Event()), daemon=True)
    loop.start()
    wait_for(lambda: checkpoint.raced and assoc._is_paused, what="the loop to pause again")
    assert served == [], "the paused loop took the sender's response off the queue"
    assert messages.qsize() == 1
    checkpoint.event.set()  # the sender is done: the loop runs on
    loop.join(timeout=10)
    assert not loop.is_alive()


def test_a_release_handed_over_by_the_dul_ends_the_loop_without_waiting_out_its_wait() -> None:
    # The loop waits up to a minute for a DIMSE message; the release primitive's put wakes it.
    to_user: queue.Queue[str] = queue.Queue()
    messages: queue.Queue[tuple[int, object]] = queue.Queue()
    released: list[bool] = []
    wake = threading.Event()
    acse = SimpleNamespace(
        is_release_requested=lambda: not to_user.empty() and bool(to_user.get()),
        is_aborted=lambda *_: False,
        send_release=lambda is_response: released.append(is_response),
    )
    assoc = SimpleNamespace(
        dimse=SimpleNamespace(msg_queue=messages),
        _kill=False,
        _is_paused=False,
        _reactor_checkpoint=SimpleNamespace(wait=lambda: True, is_set=lambda: True),
        is_established=True,
        acse=acse,
        dul=SimpleNamespace(is_alive=lambda: True, to_user_queue=to_user),
        kill=lambda: released.append(False),
        get_handlers=lambda _event: [],
    )
    from pacs_bridge import reactor

    reactor._set_after_put(to_user, wake)
    reactor._set_after_put(messages, wake)
    loop = threading.Thread(target=waiting_reactor, args=(assoc, 60.0, wake), daemon=True)
    loop.start()
    wait_for(lambda: assoc._is_paused is False and not wake.is_set(), what="the loop to wait")
    to_user.put("A-RELEASE")
    loop.join(timeout=10)
    assert not loop.is_alive(), "the release did not wake the loop"
    assert released == [True, False], "the loop answered the release, then ended the association"


class _LookedAtQueue(queue.Queue[tuple[int, object]]):
    """A queue that counts the loop's looks (``get_nowait``)."""

    looks = 0

    def get_nowait(self) -> tuple[int, object]:
        self.looks += 1
        return super().get_nowait()


def test_a_sender_pausing_the_loop_is_answered_without_waiting_out_the_wait() -> None:
    # As send_c_store does on a requested association: clear the checkpoint, wait for _is_paused.
    to_user: queue.Queue[str] = queue.Queue()
    acse = SimpleNamespace(
        is_release_requested=lambda: not to_user.empty() and bool(to_user.get()),
        is_aborted=lambda *_: False,
        send_release=lambda is_response: None,
    )
    messages = _LookedAtQueue()
    assoc = SimpleNamespace(
        dimse=SimpleNamespace(msg_queue=messages),
        _run_reactor=None,
        _kill=False,
        _is_paused=False,
        _reactor_checkpoint=threading.Event(),
        _serve_request=lambda msg, context_id: None,
        is_established=True,
        acse=acse,
        dul=SimpleNamespace(is_alive=lambda: True, to_user_queue=to_user, idle_timer_expired=lambda: False),
        kill=lambda: None,
        get_handlers=lambda _event: [],
    )
    assoc._reactor_checkpoint.set()
    use_waiting_reactor(assoc, wait_s=60.0)
    loop = threading.Thread(target=assoc._run_reactor, daemon=True)
    loop.start()
    messages.put((1, "a request"))
    # Served, then found the queue empty again: the loop is at (or in) its 60 s wait.
    wait_for(lambda: messages.looks >= 2, what="the loop to wait again")
    assoc._reactor_checkpoint.clear()
    wait_for(lambda: assoc._is_paused, what="the loop to pause", timeout_s=10.0)
    assoc._reactor_checkpoint.set()
    to_user.put("A-RELEASE")
    loop.join(timeout=10)
    assert not loop.is_alive()
