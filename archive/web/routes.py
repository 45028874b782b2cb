"""The PS3.18 endpoints: QIDO-RS searches, WADO-RS retrieval, metadata, frames, bulk data.

Metadata carries our private procedure block (:mod:`archive.web.procedure`).

Paths (under ``[web] root``)::

    GET  /studies | /series | /instances                       QIDO-RS
    GET  /studies/{s}/series | /studies/{s}/instances            QIDO-RS
    GET  /studies/{s}/series/{r}/instances                      QIDO-RS
    GET  /studies/{s}[/series/{r}[/instances/{i}]]              WADO-RS (multipart/related; application/dicom)
    GET  …/metadata                                             WADO-RS metadata (dicom+json)
    GET  …/instances/{i}/frames/{list}                          frames (multipart)
    GET  …/instances/{i}/bulkdata/{tag}                         bulk data (HTTP Range)
    GET  …/rendered, …/thumbnail, …/frames/{list}/rendered      :mod:`archive.web.rendered`
    POST /studies[/{s}]                                         STOW-RS (:mod:`archive.web.stow`)
    GET  /usarchive/reviews?study=…                             review states (reviewer)
    GET  /usarchive/instances/{i}/annotations                   latest annotations (reviewer)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from archive.archive import Archive
from archive.errors import AnnotationError
from archive.query import Level, MatchSettings
from archive.web.catalog import StoredInstance, stored_instances
from archive.web.errors import WebRequestError
from archive.web.media import (
    DICOM,
    DICOM_JSON,
    OCTET_STREAM,
    closing,
    multipart_type,
    negotiate,
    new_boundary,
    part_header,
)
from archive.web.metadata import MetadataCache, instance_url
from archive.web.pixeldata import NATIVE_MEDIA_TYPES, LayoutCache, PixelLayout, frame_numbers, read_range
from archive.web.procedure import procedure_values, with_procedure
from archive.web.qido import parse_qido, run_qido, store_resolver
from archive.web.settings import WebSettings
from archive.web.tokens import Role

_CHUNK = 1024 * 1024


@dataclass
class WebContext:
    """What every handler needs: the archive, the settings and the caches."""

    archive: Archive
    settings: WebSettings
    match: MatchSettings
    layouts: LayoutCache
    metadata: MetadataCache

    def base_url(self, request: Request) -> str:
        """The DICOMweb root as the client reached it (``scheme://host[:port]/root``)."""
        return f"{request.url.scheme}://{request.url.netloc}{self.settings.root}"

    def instances(
        self, study: str, series: str | None = None, instance: str | None = None
    ) -> list[StoredInstance]:
        """Stored instances under the path's UIDs (404 when none)."""
        return stored_instances(self.archive.engine, self.archive.store.root, study, series, instance)


def _params(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    return params


def _qido(context: WebContext, level: Level) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        from archive.web.app import json_response

        negotiate(request.headers.get("accept"), [], multipart=False, single=[DICOM_JSON, "application/json"])
        query = parse_qido(
            level,
            _params(request),
            max_results=context.settings.max_results,
            study=request.path_params.get("study"),
            series=request.path_params.get("series"),
        )
        answer = run_qido(
            context.archive.engine,
            query,
            context.match,
            resolve_path=store_resolver(context.archive.store.root),
            base_url=context.base_url(request),
        )
        headers = {}
        if answer.more:
            headers["Warning"] = (
                f'299 usarchive "more results match; ask with offset={query.offset + query.limit}"'
            )
        if not answer.results:
            return Response(status_code=204, headers=headers)
        return json_response(answer.results, headers=headers)

    return handler


def _file_chunks(instances: list[StoredInstance], boundary: str, base: str) -> Iterator[bytes]:
    for number, instance in enumerate(instances):
        yield part_header(
            boundary,
            f"{DICOM}; transfer-syntax={instance.transfer_syntax}",
            length=instance.size,
            location=instance_url(base, instance),
            first=number == 0,
        )
        with instance.path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk
    yield closing(boundary)


def _retrieve(context: WebContext) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        p = request.path_params
        instances = context.instances(p["study"], p.get("series"), p.get("instance"))
        choice = negotiate(request.headers.get("accept"), [DICOM])
        wanted = choice.transfer_syntax
        if wanted not in (None, "*"):
            other = sorted({i.transfer_syntax for i in instances if i.transfer_syntax != wanted})
            if other:
                raise WebRequestError(
                    406,
                    f"transfer-syntax={wanted}: instances here are stored as {other} and are served "
                    "as stored "
                    "(no transcoding); ask with transfer-syntax=*",
                )
        boundary = new_boundary()
        return StreamingResponse(
            _file_chunks(instances, boundary, context.base_url(request)),
            media_type=multipart_type(boundary, DICOM),
        )

    return handler


def _metadata(context: WebContext) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        from archive.web.app import json_response

        negotiate(request.headers.get("accept"), [], multipart=False, single=[DICOM_JSON, "application/json"])
        p = request.path_params
        base = context.base_url(request)
        instances = context.instances(p["study"], p.get("series"), p.get("instance"))
        procedure = procedure_values(context.archive.engine, p["study"], p.get("series"), p.get("instance"))
        documents = [context.metadata.metadata(instance, base) for instance in instances]
        return json_response(
            [
                with_procedure(document, procedure.get(instance.sop_instance_uid, {}))
                for document, instance in zip(documents, instances, strict=True)
            ]
        )

    return handler


def _layout(context: WebContext, instance: StoredInstance) -> tuple[Any, PixelLayout]:
    header, layout = context.layouts.get(instance.sha256, instance.path)
    if layout is None:
        raise WebRequestError(404, f"instance {instance.sop_instance_uid}: has no Pixel Data, so no frames")
    return header, layout


def _frame_parts(
    instance: StoredInstance,
    layout: PixelLayout,
    numbers: list[int],
    boundary: str,
    content_type: str,
    decode: bool,
) -> Iterator[bytes]:
    import os

    fd = os.open(instance.path, os.O_RDONLY)
    try:
        pending: list[bytes] = []
        size = 0
        for index, number in enumerate(numbers):
            if decode:
                data = _decoded_frame(instance, number)
            else:
                data = b"".join(os.pread(fd, length, offset) for offset, length in layout.frames[number - 1])
            pending += [part_header(boundary, content_type, length=len(data), first=index == 0), data]
            size += len(data)
            if size >= _CHUNK or index == 0:  # the first frame goes out at once
                yield b"".join(pending)
                pending, size = [], 0
        pending.append(closing(boundary))
        yield b"".join(pending)
    finally:
        os.close(fd)


def _decoded_frame(instance: StoredInstance, number: int) -> bytes:
    from pydicom.pixels.utils import pixel_array

    return bytes(pixel_array(str(instance.path), index=number - 1).tobytes())


def _frames(context: WebContext) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        p = request.path_params
        (instance,) = context.instances(p["study"], p["series"], p["instance"])
        _, layout = _layout(context, instance)
        numbers = frame_numbers(p["frames"], len(layout.frames))
        native = NATIVE_MEDIA_TYPES.get(layout.transfer_syntax)
        offered = [native, OCTET_STREAM] if native else [OCTET_STREAM]
        choice = negotiate(request.headers.get("accept"), offered)
        decode = False
        if choice.part_type == OCTET_STREAM and layout.encapsulated and choice.transfer_syntax != "*":
            decode = True  # octet-stream without transfer-syntax=* means uncompressed (PS3.18 8.7.3.5.2)
        if choice.part_type == OCTET_STREAM and not decode:
            part = f"{OCTET_STREAM}; transfer-syntax={layout.transfer_syntax}"
        elif decode:
            part = f"{OCTET_STREAM}; transfer-syntax=1.2.840.10008.1.2.1"
        else:
            part = f"{choice.part_type}; transfer-syntax={layout.transfer_syntax}"
        boundary = new_boundary()
        return StreamingResponse(
            _frame_parts(instance, layout, numbers, boundary, part, decode),
            media_type=multipart_type(boundary, part.split(";")[0]),
        )

    return handler


def _range(header: str | None, total: int) -> tuple[int, int] | None:
    """``bytes=a-b`` → ``(start, end_exclusive)``; ``None`` without a Range header."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        raise WebRequestError(416, f"Range {header!r}: expected one range in bytes, e.g. bytes=0-1023")
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            start, end = max(total - int(last), 0), total
        else:
            start = int(first)
            end = total if last == "" else min(int(last) + 1, total)
    except ValueError:
        raise WebRequestError(416, f"Range {header!r}: expected bytes=START-END with whole numbers") from None
    if start >= total or start >= end:
        raise WebRequestError(416, f"Range {header!r}: outside the {total} bytes of this bulk data")
    return start, end


def _bulkdata(context: WebContext) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        p = request.path_params
        (instance,) = context.instances(p["study"], p["series"], p["instance"])
        header, layout = context.layouts.get(instance.sha256, instance.path)
        try:
            tag = int(p["tag"], 16)
        except ValueError:
            raise WebRequestError(
                400, f"bulk data tag {p['tag']!r}: expected 8 hex digits, e.g. 7FE00010"
            ) from None
        if tag == 0x7FE00010:
            if layout is None:
                raise WebRequestError(404, f"instance {instance.sop_instance_uid}: has no Pixel Data")
            offset, total, data = layout.value_offset, layout.value_length, None
        else:
            element = header.get(tag)
            if element is None or not isinstance(element.value, bytes):
                raise WebRequestError(
                    404, f"instance {instance.sop_instance_uid}: no bulk data at {p['tag']}"
                )
            data = bytes(element.value)
            offset, total = 0, len(data)
        span = _range(request.headers.get("range"), total)
        start, end = span or (0, total)
        body = data[start:end] if data is not None else read_range(instance.path, offset + start, end - start)
        headers = {"Accept-Ranges": "bytes"}
        if span is not None:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
        return Response(body, status_code=206 if span else 200, media_type=OCTET_STREAM, headers=headers)

    return handler


def _reviews(context: WebContext) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        from archive.web.app import caller_of, json_response
        from archive.web.reviews import review_states

        caller_of(request).require(Role.REVIEWER)
        return json_response(review_states(context.archive.engine, request.query_params.get("study")))

    return handler


def _annotations(context: WebContext) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        from archive.web.app import caller_of, json_response
        from archive.web.reviews import latest_annotations

        caller_of(request).require(Role.REVIEWER)
        uid = request.path_params["instance"]
        try:
            found = latest_annotations(context.archive.annotations, uid)
        except AnnotationError as exc:
            raise WebRequestError(404, str(exc)) from None
        if not found:
            raise WebRequestError(404, f"instance {uid}: no annotation stored")
        return json_response(found)

    return handler


def routes(context: WebContext) -> list[Route]:
    """Every route of the application, under ``context.settings.root``."""
    from archive.web.rendered import rendered_routes
    from archive.web.stow import stow_handler

    root = context.settings.root
    s, r, i = "/studies/{study}", "/series/{series}", "/instances/{instance}"
    get = ["GET"]
    table: list[tuple[str, Callable[[Request], Any], list[str]]] = [
        ("/studies", _qido(context, Level.STUDY), get),
        ("/series", _qido(context, Level.SERIES), get),
        ("/instances", _qido(context, Level.IMAGE), get),
        (f"{s}/series", _qido(context, Level.SERIES), get),
        (f"{s}/instances", _qido(context, Level.IMAGE), get),
        (f"{s}{r}/instances", _qido(context, Level.IMAGE), get),
        (s, _retrieve(context), get),
        (f"{s}{r}", _retrieve(context), get),
        (f"{s}{r}{i}", _retrieve(context), get),
        (f"{s}/metadata", _metadata(context), get),
        (f"{s}{r}/metadata", _metadata(context), get),
        (f"{s}{r}{i}/metadata", _metadata(context), get),
        (f"{s}{r}{i}/frames/{{frames}}", _frames(context), get),
        (f"{s}{r}{i}/bulkdata/{{tag}}", _bulkdata(context), get),
        ("/studies", stow_handler(context), ["POST"]),
        (s, stow_handler(context), ["POST"]),
        ("/usarchive/reviews", _reviews(context), get),
        ("/usarchive/instances/{instance}/annotations", _annotations(context), get),
        *rendered_routes(context),
    ]
    return [Route(root + path, handler, methods=methods) for path, handler, methods in table]
