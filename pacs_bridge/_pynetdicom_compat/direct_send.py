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
from collections.abc import Callable
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
    from pacs_bridge import pdata_writer

    dul = assoc.dul
    raw = getattr(getattr(dul, "socket", None), "socket", None)
    if guard.broken or not isinstance(raw, socket.socket) or not pdata_writer.supported(raw):
        return False
    pdus = _quick_pdus(assoc, primitive, context_id)
    if pdus is not None:
        return _write(assoc, guard, raw, primitive, lambda: pdus)
    return _write_message(assoc, guard, raw, primitive, context_id)


def _write_message(assoc: Any, guard: SendGuard, raw: socket.socket, primitive: Any, context_id: int) -> bool:
    """The message as ``send_msg`` builds it (pynetdicom's message, ``EVT_DIMSE_SENT``, its PDUs)."""
    from pynetdicom import evt
    from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE
    from pynetdicom.pdu import P_DATA_TF

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

    def pdus() -> list[bytes]:
        evt.trigger(assoc, evt.EVT_DIMSE_SENT, {"message": message})
        return [P_DATA_TF(p).encode() for p in message.encode_msg(context_id, assoc.dimse.maximum_pdu_size)]

    return _write(assoc, guard, raw, primitive, pdus)


def _write(
    assoc: Any, guard: SendGuard, raw: socket.socket, primitive: Any, pdus: Callable[[], list[bytes]]
) -> bool:
    """Write ``pdus()`` under the guard once the DUL thread has written all it had; ``False``: not done."""
    from pacs_bridge import pdata_writer

    with guard.lock:
        # Checked under the lock: the DUL thread changes state only while it holds it to write.
        if assoc.dul.state_machine.current_state != _DATA_TRANSFER_STATE:
            return False
        encoded = pdus()
        stall_s = stall_timeout(assoc)
        await_dul(assoc, guard, stall_s)
        if not guard.pending and not guard.broken:
            try:
                pdata_writer.write_buffers(raw, encoded, stall_s)
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


# -- responses encoded without pynetdicom's message ---------------------------------------------------

#: The response primitives :func:`_quick_pdus` encodes: primitive class → (message type, Command Field).
_QUICK_RESPONSES = {
    "C_ECHO": ("C-ECHO-RSP", 0x8030),
    "C_STORE": ("C-STORE-RSP", 0x8001),
    "C_FIND": ("C-FIND-RSP", 0x8020),
    "C_MOVE": ("C-MOVE-RSP", 0x8021),
}
#: The command elements :func:`_quick_pdus` writes, keyword → (tag, VR) (PS3.7 E.1); any other declines.
_COMMAND_ELEMENTS = {
    "AffectedSOPClassUID": (0x00000002, "UI"),
    "CommandField": (0x00000100, "US"),
    "MessageIDBeingRespondedTo": (0x00000120, "US"),
    "CommandDataSetType": (0x00000800, "US"),
    "Status": (0x00000900, "US"),
    "ErrorComment": (0x00000902, "LO"),
    "AffectedSOPInstanceUID": (0x00001000, "UI"),
    "NumberOfRemainingSuboperations": (0x00001020, "US"),
    "NumberOfCompletedSuboperations": (0x00001021, "US"),
    "NumberOfFailedSuboperations": (0x00001022, "US"),
    "NumberOfWarningSuboperations": (0x00001023, "US"),
}
_IGNORES_C_RESPONSES = "_usarchive_ignores_c_responses"


def ignores_c_responses(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an ``EVT_DIMSE_SENT`` handler as one that ignores C-ECHO/STORE/FIND/MOVE responses.

    While every handler bound to ``EVT_DIMSE_SENT`` on an association is so
    marked (or is pynetdicom's logging handler with its DEBUG log off), such
    responses are encoded and written without building pynetdicom's message
    (:func:`_quick_pdus`) and trigger no ``EVT_DIMSE_SENT``.

    Parameters
    ----------
    handler : callable
        The handler (a function, or the function of a method).

    Returns
    -------
    callable
        ``handler``, marked.
    """
    setattr(handler, _IGNORES_C_RESPONSES, True)
    return handler


def _sent_unobserved(assoc: Any) -> bool:
    """Whether no handler bound to ``EVT_DIMSE_SENT`` on ``assoc`` looks at C-service responses."""
    from pynetdicom import _handlers, evt

    for handler, _args in assoc.get_handlers(evt.EVT_DIMSE_SENT):
        function = getattr(handler, "__func__", handler)
        if function is _handlers.standard_dimse_sent_handler:
            if _handlers.LOGGER.isEnabledFor(logging.DEBUG):
                return False
        elif not getattr(function, _IGNORES_C_RESPONSES, False):
            return False
    return True


def _quick_pdus(assoc: Any, primitive: Any, context_id: int) -> list[bytes] | None:
    """A C-service response's PDUs, encoded here as pynetdicom would; ``None``: build pynetdicom's message.

    The command set holds what ``DIMSEMessage.primitive_to_message`` puts in:
    every element of the message type's set whose parameter is not ``None``,
    Command Field, Command Data Set Type (0x0001 for any Identifier object,
    0x0101 without) and Command Group Length.
    """
    from pynetdicom.dimse_messages import _COMMAND_SET_KEYWORDS

    from pacs_bridge import pdata_writer
    from pacs_bridge.fast_encode import encode_elements

    kind = _QUICK_RESPONSES.get(type(primitive).__name__)
    if kind is None or primitive.MessageIDBeingRespondedTo is None or not _sent_unobserved(assoc):
        return None
    name, command_field = kind
    data = getattr(primitive, "Identifier", None)
    encoded_data = None if data is None else data.getvalue()
    if encoded_data is not None and len(encoded_data) > MAX_DIRECT_BYTES:
        return None
    computed = {"CommandField": command_field, "CommandDataSetType": 0x0101 if data is None else 0x0001}
    elements = []
    for keyword in _COMMAND_SET_KEYWORDS[name]:
        if keyword == "CommandGroupLength":
            continue
        value = computed[keyword] if keyword in computed else getattr(primitive, keyword, None)
        if value is None:
            continue
        if keyword not in _COMMAND_ELEMENTS:
            return None  # Offending Element (AT) and the like: pynetdicom's way
        tag, vr = _COMMAND_ELEMENTS[keyword]
        elements.append((tag, vr, value))
    body = encode_elements(sorted(elements), implicit_vr=True)
    if body is None:
        return None
    command = (0x00000000).to_bytes(4, "little") + (4).to_bytes(4, "little") + len(body).to_bytes(4, "little")
    return pdata_writer.message_pdus(context_id, command + body, encoded_data, assoc.dimse.maximum_pdu_size)
