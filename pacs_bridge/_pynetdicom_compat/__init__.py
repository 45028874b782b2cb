"""Every reach into pynetdicom's internals, in one place, gated on the version it was tested with.

The receiver changes pynetdicom in these ways, and only here:

Process-wide, while at least one :class:`~pacs_bridge.server.BridgeServer`
runs (:func:`install_receiver_patches` / :func:`remove_receiver_patches`,
reference-counted, the originals restored when the last server stops):

* ``pynetdicom._config.STORE_RECV_CHUNKED_DATASET = True``: data sets stream
  to a file instead of memory;
* ``pynetdicom.dimse_messages.NamedTemporaryFile`` replaced by the spool
  file factory (:mod:`pacs_bridge.spool`);
* ``pynetdicom.service_class.encode`` (how a service class encodes the
  identifiers it answers with, e.g. each C-FIND response) tries
  :func:`pacs_bridge.fast_encode.encode_dataset` first: the same bytes,
  about ten times faster, for the flat ASCII data sets it takes; any other
  goes to pynetdicom's ``encode``;
* ``pynetdicom._config.LOG_RESPONSE_IDENTIFIERS = False`` (a documented
  flag): pynetdicom formats every C-FIND response identifier for its DEBUG
  log even when that log is off, 10 % of a response's cost; the receiver's
  own log has one line per query.

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

Per accepted association, with the send guard (:func:`install_direct_send_msg`,
from ``EVT_CONN_OPEN``, :mod:`~pacs_bridge._pynetdicom_compat.direct_send`):

* ``DIMSEServiceProvider.send_msg`` replaced by a copy that writes an in-memory
  message's PDUs from the sending thread under the guard (a C-FIND's
  responses, C-STORE and C-ECHO responses), else sends the stock way. A
  C-ECHO/STORE/FIND/MOVE response is encoded there without pynetdicom's
  message object (the same bytes) while nothing observes ``EVT_DIMSE_SENT``
  for it (:func:`~pacs_bridge._pynetdicom_compat.direct_send.ignores_c_responses`).

Per association or server (:func:`replace_dul_loop`,
:func:`replace_association_loop`, :func:`replace_pdu_reader`,
:func:`register_server`):

* the DUL thread's ``Thread._target`` (its loop, copied from
  ``DULServiceProvider.run_reactor``, :mod:`pacs_bridge.dul_loop`);
* the DUL's ``_read_pdu_data`` (:mod:`pacs_bridge.pdu_guard`);
* the acceptor's ``Association._run_reactor`` (:mod:`pacs_bridge.reactor`);
* ``ApplicationEntity._servers`` (as ``AE.start_server(block=False)`` does).
* the server's ``contexts`` made a list whose deep copy copies each context's
  attributes and transfer syntax list (:func:`use_cheap_context_copies`):
  pynetdicom deep-copies them for every association (25 ms of its set-up).

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

import hashlib
import inspect
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import pynetdicom
from pynetdicom import _config, dimse_messages, service_class
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
    "pynetdicom.transport.RequestHandler._create_association": (
        "05c8d12b79863cdbdb901ce37187b7030a0434c5cd89d219ed0bedbda679a61e"
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
    # Identifiers encoded by our encoder where it can (service_class.encode), and the command sets
    # of responses encoded as primitive_to_message / encode_msg (above) would.
    "pynetdicom.dsutils.encode": "0d29ffd5d358c45a6b20436a9a45ec4ea003631dd4323e827c87365624c71cf0",
    "pynetdicom.service_class.ServiceClass._c_find_scp": (
        "da242b908ef4848ceaec8937680dfe9d23705301f6bad99de6dd64786cd9a7ca"
    ),
    "pynetdicom.association.Association.get_handlers": (
        "7cb7298701d5c7661c15da5037157dbac930c739d7b54ec8c08e7fe584d1e301"
    ),
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
            _originals["LOG_RESPONSE_IDENTIFIERS"] = _config.LOG_RESPONSE_IDENTIFIERS
            _config.LOG_RESPONSE_IDENTIFIERS = False
            _originals["encode"] = getattr(service_class, "encode")  # noqa: B009 - not re-exported
            setattr(service_class, "encode", _encoder(_originals["encode"]))  # noqa: B010
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
            setattr(service_class, "encode", _originals.pop("encode"))  # noqa: B010
            _config.LOG_RESPONSE_IDENTIFIERS = _originals.pop("LOG_RESPONSE_IDENTIFIERS")


def _encoder(stock: Callable[..., bytes | None]) -> Callable[..., bytes | None]:
    """The ``encode`` of pynetdicom, trying :func:`pacs_bridge.fast_encode.encode_dataset` first."""
    from pydicom.dataset import Dataset

    from pacs_bridge.fast_encode import encode_dataset

    def encode(ds: Any, is_implicit_vr: bool, is_little_endian: bool, deflated: bool = False) -> bytes | None:
        if isinstance(ds, Dataset):
            encoded = encode_dataset(ds, is_implicit_vr, is_little_endian, deflated)
            if encoded is not None:
                return encoded
        return stock(ds, is_implicit_vr, is_little_endian, deflated)

    return encode


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


class _ContextTemplates(list[Any]):
    """A server's supported presentation contexts whose deep copy is a cheap one.

    pynetdicom gives every accepted association ``deepcopy(server.contexts)``
    (``RequestHandler._create_association``). For the receiver's ~200
    contexts and ~2,600 transfer syntaxes that deep copy took 25 ms of every
    association's set-up. A context holds only strings, ``None`` and its
    list of transfer syntax UIDs (immutable strings), so a copy of its
    attributes with that list copied is as independent as the deep copy.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        copies = []
        for context in self:
            copy = object.__new__(type(context))
            copy.__dict__.update(context.__dict__)
            copy._transfer_syntax = list(context._transfer_syntax)
            copies.append(copy)
        return copies


def use_cheap_context_copies(server: Any) -> None:
    """Make each association's copy of ``server.contexts`` cheap (see :class:`_ContextTemplates`)."""
    from pynetdicom.presentation import PresentationContext

    contexts = list(server.contexts)
    plain = all(type(c) is PresentationContext and set(vars(c)) == _CONTEXT_ATTRIBUTES for c in contexts)
    if is_tested_version() and plain:
        server.contexts = _ContextTemplates(contexts)


#: A PresentationContext's attributes in pynetdicom 3.0 (all immutable but the transfer syntax list).
_CONTEXT_ATTRIBUTES = frozenset(
    {
        "_context_id",
        "_abstract_syntax",
        "_transfer_syntax",
        "result",
        "_scu_role",
        "_scp_role",
        "_as_scp",
        "_as_scu",
    }
)


# The fast senders live in their own modules; imported last, as they use the gate above.
from pacs_bridge._pynetdicom_compat.direct_send import ignores_c_responses, install_direct_send_msg  # noqa: E402
from pacs_bridge._pynetdicom_compat.fast_send import (  # noqa: E402
    DEFAULT_STALL_TIMEOUT_S,
    SendGuard,
    fast_send_c_store,
    install_send_guard,
    send_guard,
)

__all__ = [
    "DEFAULT_STALL_TIMEOUT_S",
    "PATCHED_SOURCES",
    "TESTED_MINOR",
    "SendGuard",
    "enable_chunked_send",
    "fast_send_c_store",
    "ignores_c_responses",
    "install_direct_send_msg",
    "install_receiver_patches",
    "install_retrieve_patches",
    "install_send_guard",
    "is_tested_version",
    "original_named_temporary_file",
    "per_association_patches_enabled",
    "pynetdicom_minor",
    "register_server",
    "remove_receiver_patches",
    "remove_retrieve_patches",
    "replace_association_loop",
    "replace_dul_loop",
    "replace_pdu_reader",
    "send_guard",
    "set_tcp_nodelay",
    "source_hash",
    "use_cheap_context_copies",
    "warn_if_untested",
]
