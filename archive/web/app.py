"""The DICOMweb application: Starlette routes under ``[web] root``, behind token auth and CORS.

Layers, outside in: CORS (only for the configured origins; preflights answered
without a token), then :class:`_Guard` (the bearer token, the request-size
limit, the body's time bounds of :func:`~archive.web.limits.bounded_receive`,
the access log line), then the routes of :mod:`archive.web.routes`.
Handlers are plain functions run in Starlette's thread pool (the index and
the files are read synchronously); large answers stream.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from archive.archive import Archive
from archive.query import MatchSettings
from archive.web.access import ACCESS_LOGGER, Caller, access_line, authenticate
from archive.web.errors import WebRequestError
from archive.web.limits import bounded_receive
from archive.web.metadata import MetadataCache
from archive.web.pixeldata import LayoutCache
from archive.web.routes import WebContext, routes
from archive.web.settings import WebSettings

logger = logging.getLogger(__name__)


def _error_response(exc: WebRequestError) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="usarchive"'} if exc.status == 401 else {}
    if exc.status in (408, 413):  # the body may still be coming: answer, then close (h11 does on this)
        headers["Connection"] = "close"
    return PlainTextResponse(str(exc) + "\n", status_code=exc.status, headers=headers)


class _Guard:
    """Token check, request-size limit and the access log, as plain ASGI (streaming untouched)."""

    def __init__(self, app: ASGIApp, context: WebContext) -> None:
        self.app = app
        self.context = context
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, size, caller = 500, "-", None

        async def logged_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", []):
                    if name == b"content-length":
                        size = value.decode("latin-1")
            await send(message)

        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            try:
                caller = await anyio.to_thread.run_sync(
                    authenticate, self.context.archive.tokens, headers.get("authorization")
                )
                length = headers.get("content-length")
                if (
                    length is not None
                    and length.isdigit()
                    and int(length) > self.context.settings.max_request_bytes
                ):
                    raise WebRequestError(
                        413,
                        f"request body of {length} bytes: larger than [web] max_request_bytes "
                        f"({self.context.settings.max_request_bytes}); send fewer instances per request",
                    )
            except WebRequestError as exc:
                await _error_response(exc)(scope, receive, logged_send)
                return
            scope.setdefault("state", {})["caller"] = caller
            await self.app(scope, bounded_receive(receive, self.context.settings.limits), logged_send)
        finally:
            self.log.info(
                access_line(
                    client=f"{scope['client'][0]}" if scope.get("client") else "-",
                    caller=caller,
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    size=size,
                    duration_ms=(time.perf_counter() - started) * 1000,
                )
            )


def caller_of(request: Request) -> Caller:
    """The caller _Guard accepted."""
    caller = request.scope.get("state", {}).get("caller")
    assert isinstance(caller, Caller)
    return caller


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WebRequestError)
    return _error_response(exc)


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.exception("web: %s %s failed", request.method, request.url.path)
    return PlainTextResponse(
        f"internal error: {type(exc).__name__}: {exc}; see the server's log\n", status_code=500
    )


def create_app(archive: Archive, settings: WebSettings, *, match: MatchSettings | None = None) -> Starlette:
    """The DICOMweb ASGI application of ``archive``.

    Parameters
    ----------
    archive : Archive
        Open for the application's lifetime (the caller closes it).
    settings : WebSettings
        Root path, CORS, limits.
    match : MatchSettings, optional
        Matching rules (the C-FIND defaults when omitted).

    Returns
    -------
    starlette.applications.Starlette
    """
    layouts = LayoutCache()
    context = WebContext(
        archive=archive,
        settings=settings,
        match=match or MatchSettings(max_results=settings.max_results),
        layouts=layouts,
        metadata=MetadataCache(layouts),
    )
    middleware = [Middleware(_Guard, context=context)]
    if settings.cors_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Accept", "Content-Type", "Range"],
                expose_headers=["Content-Range", "Content-Length", "Warning"],
            ),
        )
    app = Starlette(
        routes=routes(context),
        middleware=middleware,
        exception_handlers={WebRequestError: _request_error, Exception: _server_error},
    )
    app.state.context = context
    return app


def json_response(document: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``application/dicom+json``."""
    return Response(
        json.dumps(document, separators=(",", ":")),
        status_code=status,
        media_type="application/dicom+json",
        headers=headers,
    )
