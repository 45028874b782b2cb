"""Every reach into uvicorn's internals, in one place, gated on the version it was tested with.

uvicorn bounds how long a kept-alive connection may stay idle, but not how
long a client may take to send a request head, nor how many connections may
be open (``limit_concurrency`` answers 503 to *requests* beyond the limit;
connections that send nothing are never refused). :func:`http_protocol`
gives the HTTP protocol class for ``uvicorn.Config(http=...)``: a subclass
of uvicorn's h11 protocol (``uvicorn.protocols.http.h11_impl.H11Protocol``,
always h11, never httptools, so the class applies whatever is installed)
that adds, per connection:

* ``connection_made``: beyond ``max_connections`` open connections (uvicorn's
  ``server_state.connections``), a 503 with ``Connection: close`` is written
  and the connection closed;
* a **head timer**, armed when the connection is made and, on a kept-alive
  connection, when the first byte of the next head arrives (the bytes h11
  holds, ``h11.Connection.trailing_data``); cancelled once h11 has the whole
  head (its ``their_state`` leaves ``IDLE``). When it fires with the head
  still incomplete, a 408 with ``Connection: close`` is written and the
  connection closed;
* a **drain timer**, armed when an answer is complete while the client is
  still sending a body the application did not read (``their_state`` is
  ``SEND_BODY``; uvicorn would discard its bytes for as long as they come):
  after ``body_timeout_s`` the connection is closed;
* both cancelled in ``connection_lost``.

It overrides ``connection_made``, ``data_received``, ``on_response_complete``
and ``connection_lost``, each calling uvicorn's first, relies on
``handle_events`` (which discards body bytes once the answer is done), and
reads ``conn``, ``cycle`` (its ``response_complete``), ``transport``,
``connections``, ``loop`` and ``client`` of the instance.
:data:`PATCHED_SOURCES` holds the SHA-256 of the source of those uvicorn
methods; ``tests/archive/web/test_uvicorn_compat.py``
fails when one changes. On a uvicorn minor version other than
:data:`TESTED_MINOR`, :func:`http_protocol` logs a warning and gives
uvicorn's stock h11 protocol (no head timeout, no connection cap: the body
bound of :mod:`archive.web.limits` still applies, and uvicorn's
``limit_concurrency`` still refuses requests beyond the cap), as it does
with ``[web] uvicorn_patches = false``; ``pyproject.toml`` pins the tested
minor version.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections.abc import Callable
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from archive.web.limits import ConnectionLimits

LOGGER = logging.getLogger(__name__)

#: The uvicorn minor version the protocol class was written against and tested with.
TESTED_MINOR = "0.54"

#: SHA-256 of the source of each uvicorn method the protocol class extends.
PATCHED_SOURCES: dict[str, str] = {
    "H11Protocol.connection_made": "6efb565ff3d36b916c29bd42330a2b99b601b48932389e396e5ac53dbef6b91c",
    "H11Protocol.data_received": "e03b145518ca44aafc84f6f11655e54570ce724fa24854ae1287771166316a16",
    "H11Protocol.handle_events": "e63a9d1492e3efe74f38a7e953ae0b00edd0dc99ea1f1f55cb616e2a43fa2cd9",
    "H11Protocol.on_response_complete": "1fbb8f48c6a1afc4cb655ddc746495c68608d12be775ea25c9debfd1e232a96a",
    "H11Protocol.connection_lost": "dbb688fa2b3860005b4f7c53af5c33be1a7ac139184665008984d8935d261e91",
}


def source_hash(function: Callable[..., Any]) -> str:
    """SHA-256 of a function's source (what :data:`PATCHED_SOURCES` records)."""
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def tested() -> bool:
    """Whether the installed uvicorn is the minor version the protocol class was tested with."""
    return ".".join(uvicorn.__version__.split(".")[:2]) == TESTED_MINOR


def _refusal(status: int, reason: str, text: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection (written below h11: before any request)."""
    body = (text + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    if status == 503:
        head = head[:-2] + "retry-after: 1\r\n\r\n"
    return head.encode() + body


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a head timeout, a drain timeout and a connection cap."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = ""

    def _who(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"

    def _arm(self, kind: str, delay: float, handler: Callable[[], None]) -> None:
        if self._timer is not None and self._timer_kind == kind:
            return
        self._disarm()
        self._timer = self.loop.call_later(delay, handler)
        self._timer_kind = kind

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_kind = ""

    def _follow_state(self) -> None:
        """Arm or cancel the timers for where h11 now is."""
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self.conn.trailing_data[0]:
                self._arm("head", self.limits.header_timeout_s, self._head_timeout)
        elif state is h11.SEND_BODY and self.cycle is not None and self.cycle.response_complete:
            self._arm("drain", self.limits.body_timeout_s, self._drain_timeout)
        else:
            self._disarm()

    def _head_timeout(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        limit = self.limits.header_timeout_s
        LOGGER.warning(
            "web: %s sent no complete request head within [web] header_timeout_s (%g s); 408, closed",
            self._who(),
            limit,
        )
        text = f"request head not complete within {limit:g} s ([web] header_timeout_s); send it at once"
        self.transport.write(_refusal(408, "Request Timeout", text))
        self.transport.close()

    def _drain_timeout(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        LOGGER.warning(
            "web: %s still sending an unread request body %g s after the answer ([web] body_timeout_s); "
            "closed",
            self._who(),
            self.limits.body_timeout_s,
        )
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """uvicorn's, then the connection cap and the head timer."""
        super().connection_made(transport)
        cap = self.limits.max_connections
        if len(self.connections) > cap:
            LOGGER.warning("web: %s refused: %d connections open ([web] max_connections)", self._who(), cap)
            text = f"{cap} connections open ([web] max_connections); try again later"
            transport.write(_refusal(503, "Service Unavailable", text))
            transport.close()
            return
        self._arm("head", self.limits.header_timeout_s, self._head_timeout)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, then the timers follow h11's state."""
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        """uvicorn's, then the timers follow h11's state (a pipelined head, an unread body)."""
        super().on_response_complete()
        self._follow_state()

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's, then no timer."""
        super().connection_lost(exc)
        self._disarm()


def changed_sources() -> list[str]:
    """The names in :data:`PATCHED_SOURCES` whose installed uvicorn source differs from the hash."""
    changed = []
    for name, digest in PATCHED_SOURCES.items():
        method = getattr(H11Protocol, name.split(".")[1])
        if source_hash(method) != digest:
            changed.append(name)
    return changed


def http_protocol(limits: ConnectionLimits, *, enabled: bool = True) -> type[asyncio.Protocol]:
    """The HTTP protocol class for ``uvicorn.Config(http=...)`` with ``limits``.

    Parameters
    ----------
    limits : ConnectionLimits
        The bounds every connection of the server gets.
    enabled : bool, optional
        ``[web] uvicorn_patches``; ``False`` gives the stock protocol (and a warning).

    Returns
    -------
    type
        A subclass of :class:`BoundedH11Protocol` bound to ``limits`` on the tested
        uvicorn; uvicorn's stock ``H11Protocol`` (and a warning in the log) on another
        or when not ``enabled``.
    """
    if not enabled:
        LOGGER.warning(
            "web: [web] uvicorn_patches = false: request heads are not timed and connections not capped "
            "(uvicorn's stock h11 protocol)"
        )
        return H11Protocol
    if not tested():
        LOGGER.warning(
            "web: uvicorn %s is not the tested %s.x: request heads are not timed and connections not "
            "capped (uvicorn's stock h11 protocol); install uvicorn %s.x for [web] header_timeout_s and "
            "max_connections",
            uvicorn.__version__,
            TESTED_MINOR,
            TESTED_MINOR,
        )
        return H11Protocol
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {"limits": limits})


__all__ = [
    "PATCHED_SOURCES",
    "TESTED_MINOR",
    "BoundedH11Protocol",
    "changed_sources",
    "http_protocol",
    "source_hash",
    "tested",
]
