"""Every reach into pynetdicom's internals, in one place, gated on the version it was tested with.

The receiver changes pynetdicom in these ways, and only here:

Process-wide, while at least one :class:`~pacs_bridge.server.BridgeServer`
runs (:func:`install_receiver_patches` / :func:`remove_receiver_patches`,
reference-counted, the originals restored when the last server stops):

* ``pynetdicom._config.STORE_RECV_CHUNKED_DATASET = True``: data sets stream
  to a file instead of memory;
* ``pynetdicom.dimse_messages.NamedTemporaryFile`` replaced by the spool
  file factory (:mod:`pacs_bridge.spool`).

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

import hashlib
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

import pynetdicom
from pynetdicom import _config, dimse_messages
from pynetdicom.utils import make_target

LOGGER = logging.getLogger(__name__)

#: The pynetdicom minor version every patch here was written against and tested with.
TESTED_MINOR = "3.0"

#: SHA-256 of ``inspect.getsource`` of every pynetdicom function replaced or copied.
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
