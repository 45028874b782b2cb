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

With ``limits``, PDUs are read by :class:`pacs_bridge.pdu_guard.PduReader`
(declared lengths checked before anything is read, deadlines on every read,
PDVs checked against the accepted contexts); a violation, and the ARTIM
window running out before the A-ASSOCIATE-RQ arrived, abort the association.
However the loop ends (release, abort, a violation, an unexpected error),
the connection's socket is closed and ``on_exit`` is called, so nothing the
association held (its descriptor, its spool files) outlives it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from pynetdicom.pdu import A_ABORT_RQ

from pacs_bridge import _pynetdicom_compat
from pacs_bridge.pdu_guard import PduLimits, PduReader, PeerTimeoutError, PeerViolationError

LOGGER = logging.getLogger(__name__)

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
    "_read_pdu_data",
    "_decode_pdu",
    "_recv_pdu",
)


def use_waiting_dul(
    assoc: Any,
    wait_s: float = DEFAULT_WAIT_S,
    *,
    limits: PduLimits | None = None,
    on_exit: Callable[[Any], None] | None = None,
) -> None:
    """Make the DUL thread of ``assoc`` wait for its socket or a PDU to send instead of sleeping.

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        An association whose DUL thread has not started yet.
    wait_s : float
        Longest wait when nothing arrives and nothing is to be sent, in seconds.
    limits : PduLimits or None
        Read PDUs within these limits (:mod:`pacs_bridge.pdu_guard`); ``None``
        keeps pynetdicom's unbounded reader.
    on_exit : callable or None
        Called with ``assoc`` when the loop has ended and the socket is closed.

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

    reader = PduReader(dul, limits, time.monotonic()) if limits is not None else None
    if reader is not None:
        _pynetdicom_compat.replace_pdu_reader(dul, reader.read_pdu)

    def run() -> None:
        try:
            waiting_dul_reactor(dul, wake_read, wait_s, reader)
        finally:
            wake_read.close()
            wake_write.close()
            close_transport(dul)
            if on_exit is not None:
                try:
                    on_exit(assoc)
                except Exception:
                    LOGGER.exception("cleaning up after an association failed")

    dul.send_pdu = send_and_wake
    dul.kill_dul = kill_and_wake
    _pynetdicom_compat.replace_dul_loop(dul, run)


def close_transport(dul: Any) -> None:
    """Shut down and close the association's socket, whatever state it is in (idempotent).

    pynetdicom's own close skips ``close()`` when ``shutdown()`` fails (a peer
    that already reset the connection), which leaves the descriptor open.
    """
    association_socket = dul.socket
    raw = getattr(association_socket, "socket", None) if association_socket is not None else None
    if raw is None:
        return
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        raw.close()
    with contextlib.suppress(AttributeError):
        association_socket.socket = None
        association_socket._is_connected = False


def _peer(dul: Any) -> str:
    requestor = dul.assoc.requestor
    title = str(getattr(requestor, "ae_title", "") or "").strip() or "?"
    return f"{title}@{requestor.address}:{requestor.port}"


def _abort(dul: Any, reason: int, why: str) -> None:
    """Send an A-ABORT (service provider, ``reason``), bypassing the state machine, and stop the loop."""
    LOGGER.warning("aborting the association with %s: %s", _peer(dul), why)
    abort_pdu = A_ABORT_RQ()
    abort_pdu.source = 0x02
    abort_pdu.reason_diagnostic = reason
    raw = getattr(dul.socket, "socket", None) if dul.socket is not None else None
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.settimeout(1.0)  # a peer that does not read must not hold the loop
            raw.sendall(abort_pdu.encode())
    dul.assoc.is_aborted = True
    dul.assoc.is_established = False
    dul.assoc._kill = True
    dul._kill_thread = True


def waiting_dul_reactor(
    dul: Any, wake: socket.socket, wait_s: float, reader: PduReader | None = None
) -> None:
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
    reader : PduReader or None
        The bounded reader installed as the DUL's ``_read_pdu_data``, whose
        ARTIM window is checked every pass.
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
        if reader is not None and reader.artim_expired():
            LOGGER.warning(
                "closing the connection from %s: no A-ASSOCIATE-RQ within associate_timeout_s", _peer(dul)
            )
            dul._kill_thread = True
            return
        try:
            # One of: encode and send a queued primitive, or receive and decode a PDU.
            if dul._process_recv_primitive():
                pass
            elif dul._is_transport_event():
                dul._idle_timer.restart()
        except PeerTimeoutError as exc:
            if reader is not None and not reader.associated:
                LOGGER.warning("closing the connection from %s: %s", _peer(dul), exc)
                dul._kill_thread = True
                return
            _abort(dul, exc.reason, str(exc))
            return
        except PeerViolationError as exc:
            _abort(dul, exc.reason, str(exc))
            return
        except Exception as exc:
            # As pynetdicom does: bypass the state machine, which the error may have left inconsistent.
            LOGGER.error("unexpected error in the DUL loop of %s", _peer(dul), exc_info=exc)
            _abort(dul, 0x00, f"{type(exc).__name__}: {exc}")
            return
        try:
            event = dul.event_queue.get(block=False)
        except queue.Empty:
            idle = True
            continue
        try:
            dul.state_machine.do_action(event)
        except Exception as exc:
            # A bit-flipped command set fails in pynetdicom's decoder, inside the state machine.
            LOGGER.error("unexpected error handling %s from %s", event, _peer(dul), exc_info=exc)
            _abort(dul, 0x00, f"{type(exc).__name__}: {exc}")
            return
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
