"""Running the application under uvicorn: HTTP/1.1 on a bound socket, TLS from ``[web]``.

:class:`WebServer` binds the socket itself (so ``port = 0`` yields a free
port that is known before serving, for tests and ``usarchive web --port 0``)
and runs uvicorn on it, in the calling thread (:meth:`WebServer.serve`) or in
a background thread (:meth:`WebServer.start` / :meth:`WebServer.stop`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from archive.archive import Archive
from archive.web._uvicorn_compat import http_protocol
from archive.web.access import open_access_log
from archive.web.app import create_app
from archive.web.settings import WebSettings


class WebServer:
    """``usarchive web`` on one archive.

    Parameters
    ----------
    archive : Archive
        Open while the server runs (the caller closes it).
    settings : WebSettings
    wrap : callable, optional
        Puts more in front of the DICOMweb application (``--ohif``:
        :func:`archive.web.ohif.with_viewer`); uvicorn serves what it returns.
    """

    def __init__(
        self, archive: Archive, settings: WebSettings, *, wrap: Callable[[Starlette], ASGIApp] | None = None
    ) -> None:
        self.settings = settings
        self.app = create_app(archive, settings)
        served: ASGIApp = self.app if wrap is None else wrap(self.app)
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        # IPPROTO_TCP named, so asyncio sets TCP_NODELAY on accepted connections (it checks the
        # protocol); set on the listener too (inherited). Without it a keep-alive request waits
        # ~40 ms for the client's delayed ACK (Nagle).
        self.socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.bind((settings.host, settings.port))
        self.socket.listen(128)
        open_access_log(settings.access_log)
        config = uvicorn.Config(
            served,
            log_config=None,
            access_log=False,
            ssl_certfile=str(settings.certificate) if settings.certificate else None,
            ssl_keyfile=str(settings.key) if settings.key else None,
            # h11 always (never httptools), with the head timer and connection cap
            http=http_protocol(settings.limits, enabled=settings.uvicorn_patches),
            timeout_keep_alive=max(1, round(settings.limits.keep_alive_timeout_s)),
            timeout_graceful_shutdown=10,
            # the protocol refuses connection max + 1 itself; uvicorn's request check (>=) stays
            # behind it, and is the only cap with uvicorn's stock protocol (untested version)
            limit_concurrency=settings.limits.max_connections + 1,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound."""
        return int(self.socket.getsockname()[1])

    @property
    def url(self) -> str:
        """The DICOMweb root, e.g. ``http://127.0.0.1:8080/dicomweb``."""
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"{self.settings.scheme}://{host}:{self.port}{self.settings.root}"

    def serve(self) -> None:
        """Serve until interrupted (SIGINT/SIGTERM)."""
        asyncio.run(self.server.serve(sockets=[self.socket]))

    def start(self) -> None:
        """Serve in a background thread; returns once the server accepts connections."""
        started = threading.Event()

        async def run() -> None:
            task = asyncio.ensure_future(self.server.serve(sockets=[self.socket]))
            while not self.server.started and not task.done():
                await asyncio.sleep(0.005)  # uvicorn offers no started event; polled, not slept on
            started.set()
            await task

        self._thread = threading.Thread(target=lambda: asyncio.run(run()), name="usarchive-web", daemon=True)
        self._thread.start()
        started.wait(30)
        if not self.server.started:
            raise RuntimeError("usarchive web did not start within 30 s; see the log")

    def stop(self) -> None:
        """Stop a server started with :meth:`start`."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
        self.socket.close()
