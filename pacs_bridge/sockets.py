"""TCP options of association sockets.

pynetdicom leaves Nagle's algorithm on. A DIMSE message goes out as several
small writes (the command PDU, then the data set's), so with Nagle on, the
second write waits for the peer to acknowledge the first, and a peer that
delays its ACKs (Linux: up to 40 ms) stalls every message: measured on
loopback, 88 ms per C-STORE sub-operation of a small clip instead of a few.
dcmtk turns it off when ``TCP_NODELAY`` is set in its environment; we turn it
off on every association socket we open or accept.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

LOGGER = logging.getLogger(__name__)


def set_no_delay(assoc: Any) -> None:
    """Turn off Nagle's algorithm on the TCP socket of ``assoc`` (a pynetdicom association); never raises."""
    transport = getattr(getattr(assoc, "dul", None), "socket", None)
    sock = getattr(transport, "socket", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:  # a socket already closed, or not TCP
        LOGGER.debug("TCP_NODELAY not set: %s", exc)


def on_connection_open(event: Any) -> None:
    """``EVT_CONN_OPEN`` handler: :func:`set_no_delay` on the association that just connected."""
    set_no_delay(event.assoc)
