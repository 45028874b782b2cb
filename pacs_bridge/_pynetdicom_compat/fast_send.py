"""The fast C-STORE sender's reach into pynetdicom: the send guard and the sender (see the package)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

from pacs_bridge._pynetdicom_compat import is_tested_version

LOGGER = logging.getLogger(__name__)

# -- fast C-STORE of a stored file ----------------------------------------------------------------


class SendGuard:
    """What keeps the DUL thread from writing while :func:`fast_send_c_store` writes.

    ``lock`` is held by the DUL's every ``_send`` (each PDU it writes) and by a
    fast send for its whole message; ``pending`` counts the P-DATA primitives
    queued to the DUL thread and not yet written (a fast send starts only at
    0, so a message queued before it is not interleaved with it); ``broken`` is
    set when a fast send failed part-way (the stream is no longer whole).
    """

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.pending = 0
        self.broken = False


_GUARD_ATTRIBUTE = "_usarchive_send_guard"


def install_send_guard(assoc: Any) -> bool:
    """Let :func:`fast_send_c_store` write on ``assoc`` (call from ``EVT_CONN_OPEN``; tested pynetdicom only).

    Wraps the DUL's ``send_pdu`` (counts queued P-DATA) and ``_send`` (writes
    under :class:`SendGuard` ``.lock``) on this association's DUL only. It must
    run before any P-DATA is queued: ``EVT_CONN_OPEN`` is before the
    association is negotiated.

    Returns
    -------
    bool
        Whether the guard is installed (``False`` on an untested pynetdicom).
    """
    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.pdu_primitives import P_DATA

    dul = getattr(assoc, "dul", None)
    if not is_tested_version() or dul is None or not all(hasattr(dul, n) for n in ("send_pdu", "_send")):
        return False
    if getattr(dul, _GUARD_ATTRIBUTE, None) is not None:
        return True
    guard = SendGuard()
    send_pdu, write_pdu = dul.send_pdu, dul._send

    def counted_send_pdu(primitive: Any) -> None:
        if isinstance(primitive, P_DATA):
            with guard.lock:  # waits while a fast send writes
                guard.pending += 1
        send_pdu(primitive)

    def guarded_send(pdu: Any) -> None:
        with guard.lock:
            try:
                write_pdu(pdu)
            finally:
                if isinstance(pdu, P_DATA_TF):
                    guard.pending = max(0, guard.pending - 1)
                    guard.lock.notify_all()

    dul.send_pdu = counted_send_pdu
    dul._send = guarded_send
    setattr(dul, _GUARD_ATTRIBUTE, guard)
    return True


def send_guard(assoc: Any) -> SendGuard | None:
    """The :class:`SendGuard` of ``assoc``'s DUL, if :func:`install_send_guard` installed one."""
    guard = getattr(getattr(assoc, "dul", None), _GUARD_ATTRIBUTE, None)
    return guard if isinstance(guard, SendGuard) else None


#: When the association has neither a network nor a DIMSE timeout (pynetdicom would wait forever).
DEFAULT_STALL_TIMEOUT_S = 60.0


def fast_send_c_store(
    assoc: Any,
    path: Path,
    *,
    msg_id: int = 1,
    priority: int = 2,
    originator_aet: str | None = None,
    originator_id: int | None = None,
) -> Any:
    """``assoc.send_c_store(path)`` with the P-DATA PDUs written from this thread, many per call.

    pynetdicom 3.0's ``Association.send_c_store`` for a file path with
    ``STORE_SEND_CHUNKED_DATASET`` (the request, its context, the reactor
    paused, the response awaited and checked: the same code, copied), except
    that ``DIMSEServiceProvider.send_msg`` (each PDU queued to the DUL thread)
    becomes :func:`pacs_bridge.pdata_writer.write_stored_message` on the
    association's socket, under the association's :class:`SendGuard`.

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        An established association with a guard (:func:`install_send_guard`).
    path : Path
        The stored file, sent as stored (its own transfer syntax must be accepted).
    msg_id, priority, originator_aet, originator_id
        As ``send_c_store``.

    Returns
    -------
    pydicom.dataset.Dataset or None
        As ``send_c_store`` (an empty data set: no response, the association
        aborted), or ``None`` when the fast path cannot be used here (no
        guard, a TLS socket), so the caller sends the stock way.

    Raises
    ------
    RuntimeError, AttributeError, ValueError, OSError
        As ``send_c_store`` does, before anything is sent (no association, file
        meta missing, no accepted context, unreadable file).
    """
    from pydicom.dataset import Dataset
    from pynetdicom import evt
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import split_dataset
    from pynetdicom.pdu import P_DATA_TF

    from pacs_bridge import pdata_writer

    guard = send_guard(assoc)
    raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if guard is None or not pdata_writer.supported(raw):
        return None
    if not assoc.is_established:
        raise RuntimeError(
            "The association with a peer SCP must be established before sending a C-STORE request"
        )
    req = C_STORE()
    req.MessageID = msg_id
    req.Priority = priority
    req.MoveOriginatorApplicationEntityTitle = originator_aet
    req.MoveOriginatorMessageID = originator_id
    file_meta, offset = split_dataset(path)
    missing = [
        kw
        for kw in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
        if kw not in file_meta
    ]
    if missing:
        raise AttributeError(f"{path}: file meta information lacks {', '.join(missing)}")
    req._dataset_path = (path, offset)
    context = assoc._get_valid_context(
        file_meta.MediaStorageSOPClassUID, file_meta.TransferSyntaxUID, "scu", allow_conversion=False
    )
    req.AffectedSOPClassUID = file_meta.MediaStorageSOPClassUID
    req.AffectedSOPInstanceUID = file_meta.MediaStorageSOPInstanceUID
    context_id = int(context.context_id)

    message = C_STORE_RQ()
    message.primitive_to_message(req)
    message.context_id = context_id
    max_pdu = int(assoc.dimse.maximum_pdu_size or 0)
    # The command set's PDUs as pynetdicom encodes them: the message without its data set.
    message._data_set_path, message.data_set = None, None
    command = [P_DATA_TF(p).encode() for p in message.encode_msg(context_id, max_pdu)]
    message._data_set_path = (path, offset)
    stall_s = stall_timeout(assoc)

    # Pause the reactor as send_c_store does (a no-op wait inside a handler, where it is paused).
    assoc._reactor_checkpoint.clear()
    try:
        while not assoc._is_paused:
            time.sleep(0.0001)
        evt.trigger(assoc, evt.EVT_DIMSE_SENT, {"message": message})
        if not _write_guarded(assoc, guard, raw, command, path, offset, context_id, max_pdu, stall_s):
            return Dataset()
        _, rsp = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
        _until_resumed(assoc)
    if rsp is None:
        assoc._handle_no_response()
        return Dataset()
    return assoc._check_received_status(rsp)


def _until_resumed(assoc: Any, timeout_s: float = 1.0) -> None:
    """Wait until the association's loop has left its pause (it reports ``_is_paused`` False).

    pynetdicom's pause protocol has a stale-flag race that a fast sender hits:
    the loop, woken by ``set()``, may not have run yet when the next send
    clears the checkpoint and still reads ``_is_paused`` True; the loop then
    resumes for one pass and takes that send's C-STORE response as an
    unexpected message (the sender then times out and the instance is sent
    again). Waiting here for the loop to resume makes the next pause a fresh
    one. Not from the loop's own thread (a C-GET handler: the loop is the
    caller and stays "paused" until the handler returns), and bounded.
    """
    if threading.current_thread() is assoc:
        return
    deadline = time.monotonic() + timeout_s
    while assoc._is_paused and assoc.is_alive() and not assoc._kill and time.monotonic() < deadline:
        time.sleep(0.0001)


def stall_timeout(assoc: Any) -> float:
    """The longest a write on ``assoc`` may make no progress: its network, else DIMSE, timeout."""
    return float(assoc.network_timeout or assoc.dimse_timeout or DEFAULT_STALL_TIMEOUT_S)


def await_dul(assoc: Any, guard: SendGuard, stall_s: float) -> None:
    """With ``guard.lock`` held: wait until the DUL thread has written the P-DATA queued before.

    Returns when nothing is pending, the stream is broken, the association has
    ended, or ``stall_s`` passed (``guard.pending`` then tells the caller).
    """
    deadline = time.monotonic() + stall_s
    while guard.pending and not guard.broken and assoc.is_established and assoc.dul.is_alive():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        guard.lock.wait(min(left, 0.05))


def _write_guarded(
    assoc: Any,
    guard: SendGuard,
    raw: Any,
    command: list[bytes],
    path: Path,
    offset: int,
    context_id: int,
    max_pdu: int,
    stall_s: float,
) -> bool:
    """Write the message once the DUL thread has written all it had; on failure end the association."""
    from pacs_bridge import pdata_writer

    with guard.lock:
        await_dul(assoc, guard, stall_s)
        if guard.broken or not assoc.is_established:
            LOGGER.warning("C-STORE of %s not sent: the association is no longer usable", path)
            return False
        if guard.pending:
            LOGGER.warning("C-STORE of %s not sent: the DUL thread wrote nothing for %g s", path, stall_s)
        else:
            try:
                pdata_writer.write_stored_message(raw, command, path, offset, context_id, max_pdu, stall_s)
                return True
            except OSError as exc:
                LOGGER.warning("C-STORE of %s: sending failed part-way: %s", path, exc)
        guard.broken = True
    # Half a PDU may be out: nothing more may go on this stream. Shutting the socket down
    # ends the association (the DUL thread sees the connection closed) without writing.
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    assoc.abort()  # returns once the DUL thread has stopped
    if not assoc.dul.is_alive():
        # pynetdicom skips close() when shutdown() fails, as it does on a reset connection.
        with contextlib.suppress(OSError):
            raw.close()
    return False
