"""STOW-RS (PS3.18 10.5): ``POST /studies[/{study}]``, each part through :meth:`Archive.ingest`.

The body is spooled to a file in the store's staging directory (bounded by
``[web] max_request_bytes``, checked from Content-Length before reading and
again while reading), then split into parts memory-mapped. Each
``application/dicom`` part is ingested on its own: a Part 10 file as is, a
file without the 128-byte preamble (starting at the file meta group) with a
zero preamble and ``DICM`` prepended, a bare data set (no file meta) with
the part's ``transfer-syntax`` parameter or, without one, the transfer
syntax pydicom reads it in. Ingest is durable (fsync, index committed)
before the response is written, so a 200 means stored.

The answer is DICOM JSON: Referenced SOP Sequence for the stored (and
identical duplicates, as C-STORE treats them), Failed SOP Sequence with a
Failure Reason (the C-STORE status codes of PS3.4 and PS3.18 Table 10.5.3-2)
and the reason text in Error Comment (0000,0902, as LT: the reasons say what to do and are longer
than LO allows). A part that is neither a Part 10 file, nor file meta without
preamble, nor a data set starting in group 0008 is rejected as not DICOM. 200 when all were stored,
202 when some failed, 409 when none was.
"""

from __future__ import annotations

import mmap
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

import anyio.to_thread
import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import read_preamble
from starlette.requests import Request
from starlette.responses import Response

from archive.ingest import IngestOutcome, Origin, RejectCode
from archive.web.errors import WebRequestError
from archive.web.media import DICOM, request_boundary, split_multipart
from archive.web.tokens import Role

#: Failure Reason (0008,1197) per rejection (the C-STORE statuses, PS3.4 Table GG.4-1).
FAILURE_REASONS: dict[RejectCode | None, int] = {
    RejectCode.NOT_DICOM: 0xC000,
    RejectCode.TRUNCATED: 0xC000,
    RejectCode.MALFORMED: 0xC000,
    RejectCode.INVALID_UID: 0xC000,
    RejectCode.UNKNOWN_TRANSFER_SYNTAX: 0xC000,
    RejectCode.MISSING_ATTRIBUTE: 0xA900,
    RejectCode.CONFLICT: 0x0111,
    RejectCode.OUT_OF_RESOURCES: 0xA700,
    RejectCode.STORAGE_ERROR: 0xA700,
    None: 0x0110,
}
_WRONG_STUDY = 0xA900
_UNSUPPORTED_MEDIA = 0xC000


def _as_part10(data: bytes, part_syntax: str | None) -> tuple[bytes, str | None]:
    """The part as ingest takes it: Part 10 bytes, or a bare data set and its transfer syntax."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return data, None
    if data[:2] == b"\x02\x00":
        return b"\x00" * 128 + b"DICM" + data, None
    if data[:2] != b"\x08\x00":  # a data set without file meta starts in group 0008
        return data, None  # not DICOM: ingest rejects it as such, with the reason
    if part_syntax:
        return data, part_syntax
    explicit = len(data) >= 6 and data[4:6].isalpha() and data[4:6].isupper()
    return data, ("1.2.840.10008.1.2.1" if explicit else "1.2.840.10008.1.2")


def _study_of(data: bytes, syntax: str | None) -> str:
    from io import BytesIO

    handle = BytesIO(data)
    try:
        if syntax is None:
            read_preamble(handle, force=False)
            handle.seek(0)
            ds = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=[0x0020000D])
        else:
            ds = pydicom.dcmread(handle, force=True, stop_before_pixels=True, specific_tags=[0x0020000D])
    except Exception:  # ingest will reject it with the reason
        return ""
    return str(ds.get("StudyInstanceUID", "")).strip()


def _failed(sop_class: str | None, sop_instance: str | None, reason: int, text: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class or ""
    item.ReferencedSOPInstanceUID = sop_instance or ""
    item.FailureReason = reason
    item.add_new(0x00000902, "LT", text)  # Error Comment as LT: the reasons are longer than 64
    return item


def store_parts(context: Any, body: mmap.mmap, boundary: str, study: str | None, origin: Origin) -> Dataset:
    """Ingest every part of ``body``; the STOW-RS response data set."""
    response = Dataset()
    stored: list[Dataset] = []
    failed: list[Dataset] = []
    base = context.settings.root
    for part in split_multipart(body, boundary):
        media = part.content_type
        if media.type != DICOM:
            failed.append(
                _failed(None, None, _UNSUPPORTED_MEDIA, f"part of type {media.type}: expected {DICOM}")
            )
            continue
        data, syntax = _as_part10(bytes(body[part.start : part.end]), media.params.get("transfer-syntax"))
        if study is not None:
            found = _study_of(data, syntax)
            if found and found != study:
                failed.append(
                    _failed(
                        None,
                        None,
                        _WRONG_STUDY,
                        f"Study Instance UID {found}: expected {study} (the request's path)",
                    )
                )
                continue
        result = context.archive.ingest(data, origin=origin, transfer_syntax=syntax)
        if result.outcome is IngestOutcome.REJECTED:
            failed.append(
                _failed(
                    result.sop_class_uid,
                    result.sop_instance_uid,
                    FAILURE_REASONS.get(result.code, 0x0110),
                    result.reason or "",
                )
            )
            continue
        item = Dataset()
        item.ReferencedSOPClassUID = result.sop_class_uid
        item.ReferencedSOPInstanceUID = result.sop_instance_uid
        item.RetrieveURL = f"{base}/instances/{result.sop_instance_uid}"
        stored.append(item)
    if study is not None:
        response.RetrieveURL = f"{base}/studies/{study}"
    if failed:
        response.FailedSOPSequence = failed
    response.ReferencedSOPSequence = stored
    return response


async def _spool(request: Request, limit: int, directory: str) -> tempfile._TemporaryFileWrapper[bytes]:
    spool = tempfile.NamedTemporaryFile(dir=directory, prefix="stow-", suffix=".body")  # noqa: SIM115
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise WebRequestError(
                    413,
                    f"request body over [web] max_request_bytes ({limit}); send fewer instances per request",
                )
            spool.write(chunk)
        spool.flush()
    except BaseException:
        spool.close()
        raise
    if size == 0:
        spool.close()
        raise WebRequestError(
            400, "STOW-RS: the request has no body; send multipart/related application/dicom"
        )
    return spool


def stow_handler(context: Any) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """The STOW-RS endpoint (admin tokens only)."""

    async def handler(request: Request) -> Response:
        from archive.web.app import caller_of, json_response

        caller = caller_of(request)
        caller.require(Role.ADMIN)
        boundary, _ = request_boundary(request.headers.get("content-type"))
        directory = str(context.archive.staging_dir)
        spool = await _spool(request, context.settings.max_request_bytes, directory)
        client = request.client
        origin = Origin(
            kind="web",
            path=f"token {caller.name}",
            address=f"{client.host}:{client.port}" if client else None,
        )
        try:
            with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as body:
                response = await anyio.to_thread.run_sync(
                    store_parts, context, body, boundary, request.path_params.get("study"), origin
                )
        finally:
            spool.close()
        document = response.to_json_dict()
        base = context.base_url(request)
        for item in document.get("00081199", {}).get("Value", []):
            url = item.get("00081190", {}).get("Value", [""])[0]
            item["00081190"]["Value"] = [base + url[len(context.settings.root) :]]
        if "00081190" in document:
            url = document["00081190"]["Value"][0]
            document["00081190"]["Value"] = [base + url[len(context.settings.root) :]]
        stored = len(response.ReferencedSOPSequence)
        failed = len(response.get("FailedSOPSequence", []))
        status = 200 if not failed else (202 if stored else 409)
        return json_response(document, status=status)

    return handler


__all__ = ["FAILURE_REASONS", "store_parts", "stow_handler"]
