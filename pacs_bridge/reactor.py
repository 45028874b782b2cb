"""An association loop that waits for the next DIMSE message instead of sleeping before looking.

pynetdicom 3.x's acceptor loop (``Association._run_reactor``) sleeps a fixed
1 ms at the top of every pass and then looks for a decoded DIMSE message
without waiting (``dimse.get_msg(block=False)``). A sender that sends the next
C-STORE as soon as it has the previous response (every scanner, dcmtk
``storescu``) therefore waits up to 1 ms per instance, plus the cost of
the sleeps, for nothing.

:func:`use_waiting_reactor` gives one accepted association a loop that is
pynetdicom 3.0's own, pass for pass (pause checkpoint, serve a message,
release, abort, dead DUL thread, network timeout), except that the sleep and
the non-blocking look become one wait on the DIMSE message queue of at most
``wait_s``: a message is served as soon as the DUL thread has decoded it. The
DUL thread also wakes the loop when it hands the association an A-RELEASE or
A-ABORT (its ``to_user_queue``), so a release is answered at once, not after
the wait (10 ms of every association's end before); timeouts are noticed at
the same pace as before.

The pause protocol of pynetdicom's ``send_*`` methods (used by storage
commitment to send N-EVENT-REPORT on the association) is unchanged: a caller
clears ``_reactor_checkpoint`` and waits until the loop reports
``_is_paused``, which it does at the top of each pass, so after at most one
wait; until then it sends nothing. Unlike pynetdicom's loop, this one then
blocks for a message, so a caller that clears the checkpoint in the instant
after the loop passed it (and still sees ``_is_paused``) must not find the
loop waiting on the queue its response will arrive on: the loop checks the
checkpoint again before it waits, and pauses instead.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from pynetdicom import evt

from pacs_bridge import _pynetdicom_compat

LOGGER = logging.getLogger(__name__)

#: pynetdicom's own pause between passes of the loop (``time.sleep(0.001)``).
DEFAULT_WAIT_S = 0.001
_PYNETDICOM_ATTRIBUTES = ("_run_reactor", "_reactor_checkpoint", "_is_paused", "_kill", "_serve_request")


def use_waiting_reactor(assoc: Any, wait_s: float = DEFAULT_WAIT_S) -> None:
    """Make the association ``assoc`` serve each DIMSE message as soon as it is decoded.

    Call it before the association's loop starts: from an ``EVT_ACCEPTED``
    handler for an accepted one (pynetdicom enters the loop after negotiation
    returns), from ``EVT_CONN_OPEN`` for a requested one (a C-MOVE's
    destination: pynetdicom runs the same loop once the association is
    established; a send pausing it wakes it).

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        An acceptor association.
    wait_s : float
        Longest wait for a message before the loop checks for release, abort
        and timeouts again.

    Raises
    ------
    RuntimeError
        If the association lacks the pynetdicom 3.x internals the loop uses.
    """
    missing = [name for name in _PYNETDICOM_ATTRIBUTES if not hasattr(assoc, name)]
    queues = (getattr(assoc, "dimse", None), "msg_queue"), (getattr(assoc, "dul", None), "to_user_queue")
    if missing or not all(isinstance(getattr(owner, name, None), queue.Queue) for owner, name in queues):
        raise RuntimeError(
            f"pynetdicom's Association lacks {', '.join(missing) or 'dimse.msg_queue or dul.to_user_queue'}: "
            "this pynetdicom version runs its loop differently; pin pynetdicom 3.x or adapt "
            "pacs_bridge.reactor"
        )

    wake = threading.Event()
    _set_after_put(assoc.dimse.msg_queue, wake)
    _set_after_put(assoc.dul.to_user_queue, wake)
    # A sender pausing the loop (send_c_store and the like clear the checkpoint, then wait for
    # _is_paused) wakes it too, so the pause takes effect at once, not after the wait.
    checkpoint = assoc._reactor_checkpoint
    clear = checkpoint.clear

    def clear_and_wake() -> None:
        clear()
        wake.set()

    checkpoint.clear = clear_and_wake

    def run_reactor(self: Any) -> None:
        waiting_reactor(self, wait_s, wake)

    _pynetdicom_compat.replace_association_loop(assoc, run_reactor)


def _set_after_put(target: queue.Queue[Any], event: threading.Event) -> None:
    """Make every ``target.put`` set ``event`` once the item is in the queue."""
    put = target.put

    def put_and_set(item: Any, block: bool = True, timeout: float | None = None) -> None:
        put(item, block, timeout)
        event.set()

    target.put = put_and_set  # type: ignore[method-assign]


def _next_message(
    assoc: Any, messages: queue.Queue[Any], wait_s: float, wake: threading.Event
) -> tuple[Any, Any]:
    """The next DIMSE message ``(context_id, message)``, or ``(None, None)`` after at most ``wait_s``.

    ``wake`` is set after every put on the message queue and the DUL's queue
    to the association (and by a pause), so the wait also ends when the DUL
    thread hands over a release or an abort. It is cleared before the queues
    are looked at, so a put after the look sets it and the wait returns at once.
    """
    wake.clear()
    try:
        return messages.get_nowait()  # type: ignore[no-any-return]
    except queue.Empty:
        pass
    if assoc.dul.to_user_queue.empty() and wake.wait(wait_s):
        try:
            return messages.get_nowait()  # type: ignore[no-any-return]
        except queue.Empty:
            pass
    return None, None


def waiting_reactor(assoc: Any, wait_s: float, wake: threading.Event) -> None:
    """The acceptor loop of pynetdicom 3.0 (``Association._run_reactor``), its sleep replaced by a wait.

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        An established acceptor association.
    wait_s : float
        Longest wait for a DIMSE message per pass.
    wake : threading.Event
        Set by every put on the association's DIMSE message queue and on its
        DUL's queue to the association, and by a pause (:func:`use_waiting_reactor`).
    """
    messages: queue.Queue[Any] = assoc.dimse.msg_queue
    assoc._is_paused = False
    while not assoc._kill:
        # The pause checkpoint of pynetdicom's send_* methods: they wait for _is_paused.
        assoc._is_paused = True
        assoc._reactor_checkpoint.wait()
        assoc._is_paused = False
        if not assoc._reactor_checkpoint.is_set():
            # A sender paused the loop just after the wait returned and may have seen
            # _is_paused still True: go back and pause, or the wait for a message below
            # could take the response its send_* method is waiting for.
            continue
        context_id, msg = _next_message(assoc, messages, wait_s, wake)
        if msg:
            assoc._serve_request(msg, context_id)
        if assoc.is_established and assoc.acse.is_release_requested():
            assoc.acse.send_release(is_response=True)
            LOGGER.info("Association Released")
            assoc.is_released = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_RELEASED, {})
            assoc.kill()
            return
        if assoc.acse.is_aborted():
            LOGGER.info("Association Aborted%s", " (A-P-ABORT)" if assoc.acse.is_aborted("a-p-abort") else "")
            assoc.dul.receive_pdu(wait=False)  # so that EVT_ACSE_RECV fires for subscribers
            assoc.is_aborted = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_ABORTED, {})
            assoc.kill()
            return
        if not assoc.dul.is_alive():
            assoc.kill()
            return
        if assoc.dul.idle_timer_expired():
            LOGGER.error("Network timeout reached")
            if assoc.network_timeout_response == "A-RELEASE":
                assoc._is_paused = True
                assoc._reactor_checkpoint.wait()
                assoc.release()
                assoc._is_paused = False
            else:
                assoc.abort()
            assoc.kill()
            return
