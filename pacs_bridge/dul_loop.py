"""A DUL loop that waits on its socket and its send queue instead of sleeping between passes.

pynetdicom 3.x runs each association's upper layer (DUL) in a thread whose
loop (``DULServiceProvider.run_reactor``) does one thing per pass: send one
queued primitive, or read one PDU, then run one state-machine event. A pass
that found nothing sleeps ``_run_loop_delay`` (1 ms) before it looks again.
So a request that arrives while the loop sleeps, and a response that the
association thread queues while it sleeps, each wait up to that long: a
C-STORE of a single image crosses it twice, about 2 ms of the ~10 ms the
receiver spends on such an instance.

:func:`use_waiting_dul` gives one association a loop that is pynetdicom
3.0's own, pass for pass (ARTIM timer, send before receive, one event per
pass, the abort on an unexpected error), except that the sleep becomes one
``select`` on the connection's socket and a wake-up socket, of at most
``wait_s``. A socket pair is written to when the association queues a primitive to
send (``send_pdu``) or stops the loop (``kill_dul``), so the loop wakes as
soon as data arrives or a PDU is to be sent. What nothing signals (the ARTIM
timer expiring, the socket closed by another thread) is noticed after at
most ``wait_s``, as before.

It must be installed before the DUL thread starts: from an ``EVT_CONN_OPEN``
handler, which pynetdicom triggers for an accepted connection just before it
starts the association.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
from typing import Any

from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.utils import make_target

LOGGER = logging.getLogger("pynetdicom.dul")

#: pynetdicom's own sleep between passes that found nothing (``_run_loop_delay``).
DEFAULT_WAIT_S = 0.001
_PYNETDICOM_ATTRIBUTES = (
    "send_pdu",
    "kill_dul",
    "_process_recv_primitive",
    "_is_transport_event",
    "_idle_timer",
    "_kill_thread",
    "_target",
    "artim_timer",
    "event_queue",
    "to_provider_queue",
    "state_machine",
)


def use_waiting_dul(assoc: Any, wait_s: float = DEFAULT_WAIT_S) -> None:
    """Make the DUL thread of ``assoc`` wait for its socket or a PDU to send instead of sleeping.

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        An association whose DUL thread has not started yet.
    wait_s : float
        Longest wait when nothing arrives and nothing is to be sent, in seconds.

    Raises
    ------
    RuntimeError
        If the DUL thread has already started, or the DUL lacks the pynetdicom
        3.x internals the loop uses.
    """
    dul = assoc.dul
    missing = [name for name in _PYNETDICOM_ATTRIBUTES if not hasattr(dul, name)]
    if missing:
        raise RuntimeError(
            f"pynetdicom's DULServiceProvider lacks {', '.join(missing)}: this pynetdicom version runs its "
            "loop differently; pin pynetdicom 3.x or adapt pacs_bridge.dul_loop"
        )
    if dul.is_alive():
        raise RuntimeError("the DUL thread is already running: install the loop from EVT_CONN_OPEN")
    # A socket pair, not a pipe: once closed, a late wake-up fails on the object instead of writing
    # to whatever file reuses the descriptor number.
    wake_read, wake_write = socket.socketpair()
    wake_read.setblocking(False)
    wake_write.setblocking(False)
    send_pdu, kill_dul = dul.send_pdu, dul.kill_dul

    def wake() -> None:
        # Full: the loop is woken already. Closed: the loop has ended.
        with contextlib.suppress(OSError):
            wake_write.send(b"\0")

    def send_and_wake(primitive: Any) -> None:
        send_pdu(primitive)
        wake()

    def kill_and_wake() -> None:
        kill_dul()
        wake()

    def run() -> None:
        try:
            waiting_dul_reactor(dul, wake_read, wait_s)
        finally:
            wake_read.close()
            wake_write.close()

    dul.send_pdu = send_and_wake
    dul.kill_dul = kill_and_wake
    # Thread.run calls _target, which pynetdicom set to its own run_reactor when it made the DUL.
    dul._target = make_target(run)


def waiting_dul_reactor(dul: Any, wake: socket.socket, wait_s: float) -> None:
    """Run the DUL loop of pynetdicom 3.0 (``DULServiceProvider.run_reactor``), its sleep made a wait.

    Parameters
    ----------
    dul : pynetdicom.dul.DULServiceProvider
        The association's DUL.
    wake : socket.socket
        Non-blocking read end of a socket pair written to whenever a primitive
        is queued to be sent or the loop is to stop.
    wait_s : float
        Longest wait per pass that found nothing to do.
    """
    dul._idle_timer.start()
    idle = False
    while True:
        if not dul.assoc._dul_ready.is_set():
            # The association waits for this before it starts; pynetdicom pauses here too.
            dul.assoc._dul_ready.set()
            idle = True
        if idle:
            _wait(dul, wake, wait_s)
        if dul._kill_thread:
            break
        # The ARTIM timer first, so its event is queued ahead of any other of this pass.
        if dul.artim_timer.expired:
            dul.event_queue.put("Evt18")
        try:
            # One of: encode and send a queued primitive, or receive and decode a PDU.
            if dul._process_recv_primitive():
                pass
            elif dul._is_transport_event():
                dul._idle_timer.restart()
        except Exception as exc:
            LOGGER.error("Exception in DUL.run(), aborting association")
            LOGGER.exception(exc)
            # As pynetdicom does: bypass the state machine, which the error may have left inconsistent.
            abort_pdu = A_ABORT_RQ()
            abort_pdu.source = 0x02
            abort_pdu.reason_diagnostic = 0x00
            dul.socket.send(abort_pdu.encode())
            dul.assoc.is_aborted = True
            dul.assoc.is_established = False
            dul.assoc._kill = True
            dul._kill_thread = True
            return
        try:
            event = dul.event_queue.get(block=False)
        except queue.Empty:
            idle = True
            continue
        dul.state_machine.do_action(event)
        idle = False


def _wait(dul: Any, wake: socket.socket, wait_s: float) -> None:
    """Wait until the connection is readable, ``wake`` is written to, or ``wait_s`` has passed."""
    if not dul.to_provider_queue.empty() or not dul.event_queue.empty():
        return
    association_socket = dul.socket
    raw = getattr(association_socket, "socket", None) if association_socket is not None else None
    watched: list[Any] = [wake]
    if raw is not None:
        if isinstance(raw, ssl.SSLSocket) and raw.pending():
            return  # decrypted bytes already buffered, which select cannot see
        watched.append(raw)
    try:
        ready, _, _ = select.select(watched, [], [], wait_s)
    except (OSError, ValueError):
        # The socket was closed under us (by another thread): the next pass finds out.
        ready = [wake]
    if wake in ready:
        with contextlib.suppress(OSError):  # BlockingIOError once drained
            while wake.recv(4096):
                pass
