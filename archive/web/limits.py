"""Time and connection bounds of ``usarchive web``, and the bound on reading a request body.

A client must not hold a connection by being slow. Three bounds, from
``[web]`` (:class:`ConnectionLimits`):

* **the request head** (request line and headers) complete within
  ``header_timeout_s`` of the connection being accepted or, on a kept-alive
  connection, of its first byte; else **408** and the connection is closed
  (below ASGI, in :mod:`archive.web._uvicorn_compat`);
* **the request body** (:func:`bounded_receive`, here, at the ASGI level):
  each piece within ``body_timeout_s`` of the previous one, and on average at
  least ``body_min_rate`` bytes per second once ``body_timeout_s`` has passed
  since the body began; else **408** with ``Connection: close`` (the body
  spooled so far is deleted, nothing of it is stored). A body the application
  did not read is bounded the same way after the answer, by closing the
  connection (:mod:`archive.web._uvicorn_compat`);
* **connections**: at most ``max_connections`` at once; one more is answered
  **503** with ``Connection: close`` at once, before it sends anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Message, Receive

from archive.web.errors import WebRequestError


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take and how many may be connected (``[web]``).

    Attributes
    ----------
    header_timeout_s : float
        Longest time for a whole request head.
    body_timeout_s : float
        Longest wait for the next piece of a request body, and the grace before
        ``body_min_rate`` applies.
    body_min_rate : int
        Least average body rate in bytes per second after the grace (0: none).
    max_connections : int
        Most connections at once.
    keep_alive_timeout_s : float
        An idle kept-alive connection is closed after this long.
    """

    header_timeout_s: float = 20.0
    body_timeout_s: float = 20.0
    body_min_rate: int = 1000
    max_connections: int = 256
    keep_alive_timeout_s: float = 30.0

    def check(self) -> ConnectionLimits:
        """``self`` if every bound is usable.

        Raises
        ------
        ValueError
            Naming the ``[web]`` key and the value.
        """
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"[web] {name}: expected a number of seconds above 0, but got {value}")
        if self.body_min_rate < 0:
            raise ValueError(
                f"[web] body_min_rate: expected bytes per second, 0 or more, but got {self.body_min_rate}"
            )
        if self.max_connections < 1:
            raise ValueError(f"[web] max_connections: expected at least 1, but got {self.max_connections}")
        return self


def bounded_receive(
    receive: Receive, limits: ConnectionLimits, *, clock: Callable[[], float] = time.monotonic
) -> Receive:
    """``receive`` of one request, with the body bounds of ``limits`` until the body is complete.

    Once a message without ``more_body`` has come (at once for a request without
    a body), calls pass straight through: Starlette's wait for a disconnect
    during a long answer is not bounded.

    Parameters
    ----------
    receive : callable
        The ASGI server's ``receive``.
    limits : ConnectionLimits
        Its ``body_timeout_s`` and ``body_min_rate`` apply.
    clock : callable, optional
        Seconds, monotonic (tests may pass another).

    Returns
    -------
    callable
        An ASGI ``receive`` that raises :class:`~archive.web.errors.WebRequestError`
        (408) when the next piece of the body does not come in time.
    """
    started: float | None = None
    received = 0
    complete = False

    async def bounded() -> Message:
        nonlocal started, received, complete
        if complete:
            return await receive()
        now = clock()
        if started is None:
            started = now
        deadline = now + limits.body_timeout_s
        if limits.body_min_rate:
            deadline = min(deadline, started + limits.body_timeout_s + received / limits.body_min_rate)
        try:
            async with asyncio.timeout(max(deadline - now, 0.0)):
                message = await receive()
        except TimeoutError:
            raise WebRequestError(
                408,
                f"request body: {received} bytes in {clock() - started:.1f} s, slower than [web] "
                f"body_timeout_s ({limits.body_timeout_s:g} s between pieces) or body_min_rate "
                f"({limits.body_min_rate} bytes/s); nothing of it was stored, send it again faster",
            ) from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            complete = not message.get("more_body", False)
        else:
            complete = True
        return message

    return bounded


__all__ = ["ConnectionLimits", "bounded_receive"]
