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
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any

from pacs_bridge._pynetdicom_compat import is_tested_version
from pacs_bridge._pynetdicom_compat.fast_send import SendGuard, await_dul, send_guard, stall_timeout

LOGGER = logging.getLogger(__name__)

#: The largest encoded data set a direct write takes (a C-FIND identifier is a few hundred bytes).
MAX_DIRECT_BYTES = 1024 * 1024
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

    def send_msg(primitive: Any, context_id: int) -> None:
        if not _send_direct(assoc, guard, primitive, context_id):
            stock(primitive, context_id)

    dimse.send_msg = send_msg
    return True


def _send_direct(assoc: Any, guard: SendGuard, primitive: Any, context_id: int) -> bool:
    """Build and write the message as ``DIMSEServiceProvider.send_msg`` does; ``False``: not done."""
    from pynetdicom import evt
    from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE
    from pynetdicom.pdu import P_DATA_TF

    from pacs_bridge import pdata_writer

    dul = assoc.dul
    raw = getattr(getattr(dul, "socket", None), "socket", None)
    if guard.broken or not isinstance(raw, socket.socket) or not pdata_writer.supported(raw):
        return False
    # As send_msg: the message from the primitive, EVT_DIMSE_SENT, the same PDUs.
    if primitive.MessageIDBeingRespondedTo is None:
        message = _RQ_TO_MESSAGE[primitive.__class__]()
    else:
        message = _RSP_TO_MESSAGE[primitive.__class__]()
    message.primitive_to_message(primitive)
    message.context_id = context_id
    if getattr(message, "_data_set_path", None) is not None:
        return False  # a file-backed C-STORE: the fast sender's or the stock path
    if message.data_set is not None:
        with message.data_set.getbuffer() as encoded:
            if encoded.nbytes > MAX_DIRECT_BYTES:
                return False
    with guard.lock:
        # Checked under the lock: the DUL thread changes state only while it holds it to write.
        if dul.state_machine.current_state != _DATA_TRANSFER_STATE:
            return False
        evt.trigger(assoc, evt.EVT_DIMSE_SENT, {"message": message})
        pdus = [P_DATA_TF(p).encode() for p in message.encode_msg(context_id, assoc.dimse.maximum_pdu_size)]
        stall_s = stall_timeout(assoc)
        await_dul(assoc, guard, stall_s)
        if not guard.pending and not guard.broken:
            try:
                pdata_writer.write_buffers(raw, pdus, stall_s)
                return True
            except OSError as exc:
                LOGGER.warning("%s not sent: writing failed part-way: %s", type(primitive).__name__, exc)
        else:
            name = type(primitive).__name__
            LOGGER.warning("%s not sent: the DUL thread wrote nothing for %g s", name, stall_s)
        guard.broken = True
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)  # the DUL thread sees the connection closed
    return True  # not sent, and never to be: the association ends
