"""DIMSE messages held in memory written onto the socket by the sending thread (see the package).

pynetdicom sends every DIMSE message by queueing its P-DATA primitives to the
association's DUL thread, which takes them one per pass of its loop, encodes
and writes each. A C-FIND answering 100 studies is 200 such hand-overs: each
wakes the DUL thread and passes the GIL back and forth, about 1.5 ms per
response on a 2-core machine, most of a 100-match query's time.

:func:`install_direct_send_msg` replaces one association's
``DIMSEServiceProvider.send_msg`` with a copy that builds the message as
pynetdicom does (its primitive converted, ``EVT_DIMSE_SENT`` triggered, the
same PDUs) and, when it can, writes the encoded PDUs itself, under the
association's :class:`~pacs_bridge._pynetdicom_compat.fast_send.SendGuard`
(after whatever the DUL thread still had to write, and with the DUL thread
held off meanwhile, as the fast C-STORE sender does). It falls back to the
stock send (the DUL thread's queue) for a message whose data set is a file or
larger than :data:`MAX_DIRECT_BYTES`, on a TLS socket, when the DUL is not in
the data transfer state (Sta6), and when the guard is broken; then the state
machine sees the message as it always did. A direct write triggers no
``EVT_PDU_SENT`` (the receiver binds none). A write that fails part-way ends
the association: half a PDU may be out.

Pending C-FIND responses are held and written together, up to
:data:`HOLD_RESPONSES` of them (or :data:`HOLD_BYTES`, or
:data:`HOLD_S` after the first): one ``sendmsg`` instead of one per match.
Every C-FIND ends with a final response from the same thread (success,
cancel or failure, also when the handler raises), which writes whatever is
held before it; a message that goes the stock way writes it first too. An
association that ends meanwhile loses only responses whose query never
completed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import Any

from pacs_bridge._pynetdicom_compat import is_tested_version
from pacs_bridge._pynetdicom_compat.fast_send import DEFAULT_STALL_TIMEOUT_S, SendGuard, send_guard

LOGGER = logging.getLogger(__name__)

#: The largest encoded data set a direct write takes (a C-FIND identifier is a few hundred bytes).
MAX_DIRECT_BYTES = 1024 * 1024
#: Pending C-FIND responses held for one write, at most this many, bytes, seconds after the first.
HOLD_RESPONSES = 32
HOLD_BYTES = 256 * 1024
HOLD_S = 0.05
_PENDING = (0xFF00, 0xFF01)
_DATA_TRANSFER_STATE = "Sta6"


def install_direct_send_msg(assoc: Any) -> bool:
    """Write ``assoc``'s in-memory DIMSE messages from the sending thread (tested pynetdicom only).

    Call after :func:`~pacs_bridge._pynetdicom_compat.fast_send.install_send_guard`
    (from ``EVT_CONN_OPEN``).

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        The association, before it is established.

    Returns
    -------
    bool
        Whether the replacement is installed (``False``: no guard, or an untested pynetdicom).
    """
    guard = send_guard(assoc)
    dimse = getattr(assoc, "dimse", None)
    if not is_tested_version() or guard is None or dimse is None or not hasattr(dimse, "send_msg"):
        return False
    stock = dimse.send_msg
    held = Held()

    def send_msg(primitive: Any, context_id: int) -> None:
        if not send_direct(assoc, guard, held, primitive, context_id):
            stock(primitive, context_id)

    dimse.send_msg = send_msg
    return True


class Held:
    """Encoded pending C-FIND responses not yet written (see the module docstring)."""

    def __init__(self) -> None:
        self.pdus: list[bytes] = []
        self.responses = 0
        self.size = 0
        self.since = 0.0

    def add(self, pdus: list[bytes]) -> None:
        """Hold one response's PDUs."""
        if not self.pdus:
            self.since = time.monotonic()
        self.pdus += pdus
        self.responses += 1
        self.size += sum(len(pdu) for pdu in pdus)

    def full(self) -> bool:
        """Whether the held responses are to be written now."""
        return (
            self.responses >= HOLD_RESPONSES
            or self.size >= HOLD_BYTES
            or time.monotonic() - self.since >= HOLD_S
        )

    def take(self) -> list[bytes]:
        """The held PDUs, in order; nothing is held afterwards."""
        pdus, self.pdus, self.responses, self.size = self.pdus, [], 0, 0
        return pdus


def send_direct(assoc: Any, guard: SendGuard, held: Held, primitive: Any, context_id: int) -> bool:
    """Build and write (or hold) the message as ``DIMSEServiceProvider.send_msg`` sends it.

    Returns
    -------
    bool
        ``False`` when the stock send is to send it (anything held is written first).
    """
    from pynetdicom import evt
    from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE
    from pynetdicom.dimse_primitives import C_FIND
    from pynetdicom.pdu import P_DATA_TF

    from pacs_bridge import pdata_writer

    dul = assoc.dul
    raw = getattr(getattr(dul, "socket", None), "socket", None)
    if guard.broken or not isinstance(raw, socket.socket) or not pdata_writer.supported(raw):
        held.take()  # nothing is held on such an association, or it has ended
        return False
    # As send_msg: the message from the primitive, EVT_DIMSE_SENT, the same PDUs.
    if primitive.MessageIDBeingRespondedTo is None:
        message = _RQ_TO_MESSAGE[primitive.__class__]()
    else:
        message = _RSP_TO_MESSAGE[primitive.__class__]()
    message.primitive_to_message(primitive)
    message.context_id = context_id
    direct = getattr(message, "_data_set_path", None) is None  # else a file-backed C-STORE
    if direct and message.data_set is not None:
        with message.data_set.getbuffer() as encoded:
            direct = encoded.nbytes <= MAX_DIRECT_BYTES
    with guard.lock:
        # Checked under the lock: the DUL thread changes state only while it holds it to write.
        if not direct or dul.state_machine.current_state != _DATA_TRANSFER_STATE:
            if held.pdus:
                _write(assoc, guard, raw, held.take(), "C_FIND")
            return guard.broken  # sent the stock way, unless the association has just ended
        evt.trigger(assoc, evt.EVT_DIMSE_SENT, {"message": message})
        pdus = [P_DATA_TF(p).encode() for p in message.encode_msg(context_id, assoc.dimse.maximum_pdu_size)]
        if isinstance(primitive, C_FIND) and primitive.Status in _PENDING:
            held.add(pdus)
            if not held.full():
                return True
            pdus = []
        _write(assoc, guard, raw, held.take() + pdus, type(primitive).__name__)
    return True


def _write(assoc: Any, guard: SendGuard, raw: socket.socket, pdus: list[bytes], name: str) -> None:
    """Write ``pdus`` once the DUL thread has written what it had (guard held); on failure end it all."""
    from pacs_bridge import pdata_writer

    stall_s = float(assoc.network_timeout or assoc.dimse_timeout or DEFAULT_STALL_TIMEOUT_S)
    deadline = time.monotonic() + stall_s
    while guard.pending and not guard.broken and assoc.dul.is_alive():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        guard.lock.wait(min(left, 0.05))
    if not guard.pending and not guard.broken:
        try:
            pdata_writer.write_buffers(raw, pdus, stall_s)
            return
        except OSError as exc:
            LOGGER.warning("%s not sent: writing failed part-way: %s", name, exc)
    else:
        LOGGER.warning("%s not sent: the DUL thread wrote nothing for %g s", name, stall_s)
    guard.broken = True
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)  # the DUL thread sees the connection closed
