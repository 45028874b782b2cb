"""Every reach into pynetdicom's internals, in one place, gated on the version it was tested with.

The receiver changes pynetdicom in these ways, and only here:

Process-wide, while at least one :class:`~pacs_bridge.server.BridgeServer`
runs (:func:`install_receiver_patches` / :func:`remove_receiver_patches`,
reference-counted, the originals restored when the last server stops):

* ``pynetdicom._config.STORE_RECV_CHUNKED_DATASET = True``: data sets stream
  to a file instead of memory;
* ``pynetdicom.dimse_messages.NamedTemporaryFile`` replaced by the spool
  file factory (:mod:`pacs_bridge.spool`).

Process-wide, once a forwarder exists (:func:`enable_chunked_send`):

* ``pynetdicom._config.STORE_SEND_CHUNKED_DATASET = True`` (a documented
  flag): a C-STORE given a file path sends the file's data set bytes as stored,
  read in chunks, instead of decoding and re-encoding it. Only calls that pass
  a path are affected. It is also enabled by the first server
  that retrieves (C-MOVE and C-GET send stored files the same way).

Process-wide, while at least one server that retrieves runs
(:func:`install_retrieve_patches` / :func:`remove_retrieve_patches`,
reference-counted, only on the tested pynetdicom):

* ``pynetdicom.association.uid_to_service_class`` answers the retrieve
  service class of :mod:`pacs_bridge.qr.service` where it would answer
  ``QueryRetrieveServiceClass``; that class is pynetdicom's except for C-MOVE
  and C-GET on a receiver's own AE.

Per association, requested or accepted (:func:`set_tcp_nodelay`, from ``evt.EVT_CONN_OPEN``):

* ``TCP_NODELAY`` on the association's socket (``assoc.dul.socket.socket``;
  pynetdicom has no option for it): a C-STORE request is a small command PDU
  followed by the data set, and with Nagle's algorithm the data set of a small
  instance waits for the peer's delayed ACK of the command (about 40 ms each).

Per association, requested or accepted, on the tested pynetdicom only
(:func:`install_send_guard`, from ``EVT_CONN_OPEN``: C-MOVE destinations unless
``pynetdicom_patches = false``, the receiver's associations when its loops are
replaced, forwarding):

* the DUL's ``send_pdu`` (counts the P-DATA primitives queued) and ``_send``
  (writes each PDU under the association's :class:`SendGuard` lock) wrapped, so
  :func:`fast_send_c_store` can write a whole C-STORE request onto the socket
  from the calling thread (:mod:`pacs_bridge.pdata_writer`) once the DUL thread
  has written everything queued before it, and the DUL thread writes nothing
  until it is done. It copies ``Association.send_c_store`` for a file path
  (context, request, reactor pause, response) and replaces only
  ``DIMSEServiceProvider.send_msg``; a TLS socket or an association without
  the guard gets ``None`` back and the caller sends the stock way. Abort paths
  that write directly (pynetdicom's loop after an unexpected error, the receiver's
  ``dul_loop._abort``) do not take the lock: they end the association anyway.

Per association or server (:func:`replace_dul_loop`,
:func:`replace_association_loop`, :func:`replace_pdu_reader`,
:func:`register_server`):

* the DUL thread's ``Thread._target`` (its loop, copied from
  ``DULServiceProvider.run_reactor``, :mod:`pacs_bridge.dul_loop`);
* the DUL's ``_read_pdu_data`` (:mod:`pacs_bridge.pdu_guard`);
* the acceptor's ``Association._run_reactor`` (:mod:`pacs_bridge.reactor`);
* ``ApplicationEntity._servers`` (as ``AE.start_server(block=False)`` does).

Relied on without a patch: ``ACSE._negotiate_as_acceptor`` triggers
``EVT_SOP_EXTENDED`` after reading the calling AE title and before
negotiating presentation contexts, which is where the receiver narrows the
acceptor's contexts to the requester's permissions
(``BridgeServer._on_negotiation``); its hash is in :data:`PATCHED_SOURCES`.

:data:`PATCHED_SOURCES` holds the SHA-256 of the source of every pynetdicom
function these replace or copy; ``tests/pacs_bridge/test_pynetdicom_compat.py``
fails when one changes, so an upgrade cannot silently run a copy of code
that is no longer pynetdicom's. On a pynetdicom minor version other than
:data:`TESTED_MINOR` the per-association replacements are not made (the
stock loops and reader run: correct, but without the receiver's PDU limits
and with pynetdicom's 1 ms sleeps) and a warning says so; ``pyproject.toml``
pins the tested minor version.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynetdicom
from pynetdicom import _config, dimse_messages
from pynetdicom.utils import make_target

LOGGER = logging.getLogger(__name__)

#: The pynetdicom minor version every patch here was written against and tested with.
TESTED_MINOR = "3.0"

#: SHA-256 of ``inspect.getsource`` of every pynetdicom function replaced, copied, wrapped or relied on.
PATCHED_SOURCES: dict[str, str] = {
    "pynetdicom.dul.DULServiceProvider.run_reactor": (
        "e3a10eb3a0931e4854af33b9496e92d9679522aca26b0e04da8967559b9e2803"
    ),
    "pynetdicom.dul.DULServiceProvider._read_pdu_data": (
        "19f2d4e38c13c83586365d93dd5cd96a0c7c665cb37251054b3e1f246e9f431b"
    ),
    "pynetdicom.association.Association._run_reactor": (
        "f28838c5559e462a563750cfc9f3790027f4bb7e2223baf42c9f5d682c359dee"
    ),
    "pynetdicom.dimse_messages.DIMSEMessage.decode_msg": (
        "f51c777e841a76beeaadfe3015bd4f4a68387229a72f13f3a3b7846d01d72284"
    ),
    "pynetdicom.acse.ACSE._negotiate_as_acceptor": (
        "fffd360957c42a8ed89284cf1b1b734527c9be60253950777a0330c0f2be692e"
    ),
    "pynetdicom.transport.AssociationServer.get_request": (
        "925a4f3a3042f6e4b944505d06dc19c41e10ff7dec5385c794d62d31fd000300"
    ),
    "pynetdicom.transport.AssociationServer.process_request": (
        "4fa44ac5b54b4498035cc1d8b32e1c3035ffee46a054fb2abffad634997b7f18"
    ),
    "pynetdicom.ae.ApplicationEntity.start_server": (
        "d3868a2df83d3cc08966b575dd8663ee18f101b03ec8d2766639c621b2d58841"
    ),
    "pynetdicom.association.Association._serve_request": (
        "2f24c1759cdf6c8c433094f2a8dd8144f76f5547f03daed7b94e0f78bc12f877"
    ),
    "pynetdicom.service_class.QueryRetrieveServiceClass.SCP": (
        "e59ba54b9071ffc378d9bc75ff4dcf151860e48c9e01b5fdbb4903880e2d85e4"
    ),
    # The fast C-STORE sender: what it copies (send_c_store), replaces (send_msg, the DUL's
    # queue and AssociationSocket.send), wraps (send_pdu, _send) and relies on.
    "pynetdicom.association.Association.send_c_store": (
        "fa5a8127f349f8e75698f4cdf2b4dbe3f38e3e9e320a8cf45c15bf8333f9c283"
    ),
    "pynetdicom.dimse.DIMSEServiceProvider.send_msg": (
        "a839cf2fb46976d9da29cf06fea41c04416b38d14fab612af12e5d869bd5b3f0"
    ),
    "pynetdicom.dimse_messages.DIMSEMessage.encode_msg": (
        "73000c902c52832dab302ddb3bc274ea93d205a810a197225dd87d4c1212ba57"
    ),
    "pynetdicom.dimse_messages.DIMSEMessage.primitive_to_message": (
        "71fd61d5997f0f0c38abc2d383c4c6457f9c770468288aab04eb82a04d00ce00"
    ),
    "pynetdicom.dul.DULServiceProvider._send": (
        "a850a7919e68484ef6751ee7a199b3ba4a911b5cbf0c2928bf796c55539254d4"
    ),
    "pynetdicom.dul.DULServiceProvider.send_pdu": (
        "7cbce5da8594124e9e70c790a68df640d21df11af4220783e752bc607de8dde6"
    ),
    "pynetdicom.fsm.DT_1": ("82e5c5d4114534fa9ac86124c7c7ef11ff2b98bc73069372cbe413af9df19081"),
    "pynetdicom.transport.AssociationSocket.send": (
        "1ea8158c0b51facac667a0340b93f495b947fdc4f55663946fb30d456c804e09"
    ),
    "pynetdicom.association.Association._handle_no_response": (
        "6f3d62518395c3a8272f401da36d2136053cda76b6cafd6b12e045b8850634fd"
    ),
    "pynetdicom.association.Association._check_received_status": (
        "364c3ae215b58646a8ab3accac6dddac5ddc820b7bcf210d38d98f52ff19844a"
    ),
    "pynetdicom.association.Association._get_valid_context": (
        "117a52c2ae6720e0bc934266b1ef0aede4366c3de895b16f0c773c3a5076442d"
    ),
    "pynetdicom.dsutils.split_dataset": ("377ac781c097b81f92e08b5c78e18efbc85a94c7f43c4dfdd30dd39fa1028b05"),
}

_lock = threading.Lock()
_installed = 0
_originals: dict[str, Any] = {}


def pynetdicom_minor() -> str:
    """The running pynetdicom's ``major.minor``."""
    return ".".join(str(pynetdicom.__version__).split(".")[:2])


def is_tested_version() -> bool:
    """Whether the running pynetdicom is the minor version the patches were tested with."""
    return pynetdicom_minor() == TESTED_MINOR


def source_hash(qualified_name: str) -> str:
    """SHA-256 (hex) of the source of the pynetdicom function ``qualified_name``."""
    module_name, _, rest = qualified_name.partition(".")
    target: Any = __import__(module_name)
    for part in rest.split("."):
        target = getattr(target, part)
    return hashlib.sha256(inspect.getsource(target).encode()).hexdigest()


def install_receiver_patches(spool_factory: Callable[..., Any]) -> None:
    """Make pynetdicom stream received data sets into files made by ``spool_factory`` (reference-counted)."""
    global _installed
    if not hasattr(dimse_messages, "NamedTemporaryFile") or not hasattr(
        _config, "STORE_RECV_CHUNKED_DATASET"
    ):
        raise RuntimeError(
            "pynetdicom lacks dimse_messages.NamedTemporaryFile or _config.STORE_RECV_CHUNKED_DATASET: "
            f"this pynetdicom ({pynetdicom.__version__}) receives data sets differently; "
            f"install pynetdicom {TESTED_MINOR}.x"
        )
    with _lock:
        if _installed == 0:
            _originals["NamedTemporaryFile"] = getattr(dimse_messages, "NamedTemporaryFile")  # noqa: B009
            _originals["STORE_RECV_CHUNKED_DATASET"] = _config.STORE_RECV_CHUNKED_DATASET
            setattr(dimse_messages, "NamedTemporaryFile", spool_factory)  # noqa: B010 - not re-exported
            _config.STORE_RECV_CHUNKED_DATASET = True
        _installed += 1


def remove_receiver_patches() -> None:
    """Undo :func:`install_receiver_patches` once every server that installed them has stopped."""
    global _installed
    with _lock:
        if _installed == 0:
            return
        _installed -= 1
        if _installed == 0:
            setattr(dimse_messages, "NamedTemporaryFile", _originals.pop("NamedTemporaryFile"))  # noqa: B010
            _config.STORE_RECV_CHUNKED_DATASET = _originals.pop("STORE_RECV_CHUNKED_DATASET")


def enable_chunked_send() -> None:
    """Make ``send_c_store(path)`` stream the stored data set as is (see the module docstring)."""
    if not hasattr(_config, "STORE_SEND_CHUNKED_DATASET"):
        raise RuntimeError(
            f"pynetdicom {pynetdicom.__version__} lacks _config.STORE_SEND_CHUNKED_DATASET: it cannot send "
            f"a stored file as is; install pynetdicom {TESTED_MINOR}.x"
        )
    _config.STORE_SEND_CHUNKED_DATASET = True


def set_tcp_nodelay(assoc: Any) -> None:
    """Turn Nagle's algorithm off on ``assoc``'s TCP socket (see the module docstring)."""
    raw = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    if isinstance(raw, socket.socket):
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # the connection may already be gone
            LOGGER.debug("TCP_NODELAY not set: %s", exc)


_retrieve_installed = 0


def install_retrieve_patches(service_class: type[Any]) -> None:
    """Serve Query/Retrieve requests with ``service_class`` (reference-counted); stream sent files.

    Parameters
    ----------
    service_class : type
        A subclass of pynetdicom's ``QueryRetrieveServiceClass``.

    Raises
    ------
    RuntimeError
        On a pynetdicom other than the tested minor version (check :func:`is_tested_version` first).
    """
    global _retrieve_installed
    if not is_tested_version():
        raise RuntimeError(
            f"pynetdicom {pynetdicom.__version__} is not the tested {TESTED_MINOR}.x: C-MOVE and C-GET are "
            f"served only on pynetdicom {TESTED_MINOR}.x"
        )
    from pynetdicom import association
    from pynetdicom.service_class import QueryRetrieveServiceClass

    with _lock:
        if _retrieve_installed == 0:
            original = association.uid_to_service_class  # type: ignore[attr-defined]
            _originals["uid_to_service_class"] = original

            def uid_to_service_class(uid: str) -> Any:
                found = original(uid)
                return service_class if found is QueryRetrieveServiceClass else found

            setattr(association, "uid_to_service_class", uid_to_service_class)  # noqa: B010
            enable_chunked_send()
        _retrieve_installed += 1


def remove_retrieve_patches() -> None:
    """Undo :func:`install_retrieve_patches` once every server that installed them has stopped."""
    global _retrieve_installed
    from pynetdicom import association

    with _lock:
        if _retrieve_installed == 0:
            return
        _retrieve_installed -= 1
        if _retrieve_installed == 0:
            setattr(association, "uid_to_service_class", _originals.pop("uid_to_service_class"))  # noqa: B010


def original_named_temporary_file() -> Any:
    """Pynetdicom's own ``NamedTemporaryFile`` (what other AEs in the process get)."""
    with _lock:
        return _originals.get("NamedTemporaryFile", getattr(dimse_messages, "NamedTemporaryFile"))  # noqa: B009


def per_association_patches_enabled() -> bool:
    """Whether the loops and the PDU reader are replaced (only on the tested pynetdicom)."""
    return is_tested_version()


def warn_if_untested() -> None:
    """Log once per server start when pynetdicom is not the tested minor version."""
    if not is_tested_version():
        LOGGER.warning(
            "pynetdicom %s is not the tested %s.x: running pynetdicom's own association loops and PDU "
            "reader (no PDU length limits, no ARTIM window of our own); install pynetdicom %s.x",
            pynetdicom.__version__,
            TESTED_MINOR,
            TESTED_MINOR,
        )


def replace_dul_loop(dul: Any, run: Callable[[], None]) -> None:
    """Make the not yet started DUL thread ``dul`` run ``run`` instead of ``run_reactor``."""
    # Thread.run calls _target, which pynetdicom set to its own run_reactor when it made the DUL.
    dul._target = make_target(run)


def replace_pdu_reader(dul: Any, read_pdu: Callable[[], None]) -> None:
    """Make ``dul`` read PDUs with ``read_pdu`` instead of ``_read_pdu_data``."""
    dul._read_pdu_data = read_pdu


def replace_association_loop(assoc: Any, loop: Callable[[Any], None]) -> None:
    """Make the acceptor ``assoc`` run ``loop(assoc)`` instead of ``_run_reactor``."""
    import types

    assoc._run_reactor = types.MethodType(loop, assoc)


def register_server(ae: Any, server: Any) -> None:
    """Register ``server`` with ``ae`` as ``AE.start_server(block=False)`` does."""
    ae._servers.append(server)


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
    stall_s = float(assoc.network_timeout or assoc.dimse_timeout or DEFAULT_STALL_TIMEOUT_S)

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

    deadline = time.monotonic() + stall_s
    with guard.lock:
        while guard.pending and not guard.broken and assoc.is_established and assoc.dul.is_alive():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            guard.lock.wait(min(left, 0.05))
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
