"""Media types of PS3.18: Accept negotiation and ``multipart/related`` (RFC 2387) bodies.

Clients send the ``type=`` parameter both quoted and unquoted
(``multipart/related; type="application/dicom"`` and
``multipart/related; type=application/octet-stream; transfer-syntax=*``);
:func:`parse_media_ranges` reads either, with ``q`` weights, and
:func:`negotiate` picks the first acceptable of what an endpoint offers.

:func:`part_header` / :func:`closing` write a multipart body a part at a time
(responses stream); :func:`split_multipart` finds the parts of a STOW-RS body
already spooled to a file (memory-mapped: a body of gigabytes is not held in
memory).
"""

from __future__ import annotations

import mmap
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from archive.web.errors import WebRequestError

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"
MULTIPART = "multipart/related"


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept (or Content-Type) header, lower-cased, parameters unquoted."""

    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def main(self) -> str:
        """The type before the slash (``image`` of ``image/jpeg``)."""
        return self.type.split("/", 1)[0]

    def matches(self, media_type: str) -> bool:
        """Whether ``media_type`` (e.g. ``image/jpeg``) is in this range (``*/*``, ``image/*``)."""
        if self.type in ("*/*", "*"):
            return True
        if self.type.endswith("/*"):
            return media_type.split("/", 1)[0] == self.main
        return media_type == self.type


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_media_type(text: str) -> MediaRange:
    """One media type with parameters (``type`` and ``transfer-syntax`` quoted or not)."""
    pieces = _split(text, ";")
    params: dict[str, str] = {}
    q = 1.0
    for piece in pieces[1:]:
        if "=" not in piece:
            continue
        name, value = piece.split("=", 1)
        name = name.strip().lower()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name == "q":
            try:
                q = float(value)
            except ValueError:
                raise WebRequestError(
                    400, f"Accept: expected a weight q=0..1, but got q={value!r} in {text.strip()!r}"
                ) from None
        else:
            params[name] = value if name == "transfer-syntax" else value.lower()
    return MediaRange(pieces[0].strip().lower(), params, q)


def parse_media_ranges(header: str | None) -> list[MediaRange]:
    """An Accept header's ranges, heaviest first (stable); ``*/*`` when absent or empty."""
    if header is None or not header.strip():
        return [MediaRange("*/*")]
    ranges = [parse_media_type(item) for item in _split(header, ",") if item.strip()]
    return sorted((r for r in ranges if r.q > 0), key=lambda r: -r.q)


@dataclass(frozen=True)
class Choice:
    """What a request will get: a single-part or multipart answer and the parts' type."""

    multipart: bool
    part_type: str
    transfer_syntax: str | None  # as asked (``*``: as stored), None: not asked


def negotiate(
    accept: str | None,
    part_types: Sequence[str],
    *,
    multipart: bool = True,
    single: Sequence[str] = (),
) -> Choice:
    """Pick the answer for ``accept`` among what the endpoint offers.

    Parameters
    ----------
    accept : str or None
        The request's Accept header.
    part_types : sequence of str
        Media types of the parts of a ``multipart/related`` answer, preferred first.
    multipart : bool
        Whether a multipart answer is offered.
    single : sequence of str
        Media types offered as a single-part answer (e.g. ``application/dicom+json``).

    Raises
    ------
    WebRequestError
        406 naming what was asked and what is offered.
    """
    for wanted in parse_media_ranges(accept):
        if wanted.type == MULTIPART and multipart:
            asked = wanted.params.get("type")
            for part in part_types:
                if asked is None or MediaRange(asked).matches(part):
                    return Choice(True, part, wanted.params.get("transfer-syntax"))
            continue
        for media in single:
            if wanted.matches(media):
                return Choice(False, media, wanted.params.get("transfer-syntax"))
        if multipart and wanted.type in ("*/*", "*"):
            return Choice(True, part_types[0], None)
    offered = [f'{MULTIPART}; type="{p}"' for p in part_types] if multipart else []
    raise WebRequestError(
        406, f"Accept {accept!r}: none of it is offered here; expected one of {offered + list(single)}"
    )


def new_boundary() -> str:
    """A boundary that cannot occur by chance in the parts (128 random bits)."""
    return "usarchive-" + secrets.token_hex(16)


def multipart_type(boundary: str, part_type: str, transfer_syntax: str | None = None) -> str:
    """The Content-Type of a multipart/related answer."""
    extra = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'{MULTIPART}; type="{part_type}"; boundary={boundary}{extra}'


def part_header(
    boundary: str,
    content_type: str,
    *,
    length: int | None = None,
    location: str | None = None,
    first: bool = False,
) -> bytes:
    """The delimiter and headers that open a part."""
    lines = [("" if first else "\r\n") + f"--{boundary}", f"Content-Type: {content_type}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if location is not None:
        lines.append(f"Content-Location: {location}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def closing(boundary: str) -> bytes:
    """The close delimiter."""
    return f"\r\n--{boundary}--\r\n".encode("ascii")


@dataclass(frozen=True)
class Part:
    """One part of a request body: its headers and where its content lies in the body."""

    headers: dict[str, str]
    start: int
    end: int

    @property
    def content_type(self) -> MediaRange:
        """The part's Content-Type (``application/dicom`` when it has none)."""
        return parse_media_type(self.headers.get("content-type", DICOM))


def request_boundary(content_type: str | None) -> tuple[str, MediaRange]:
    """The boundary of a multipart/related request and its Content-Type.

    Raises
    ------
    WebRequestError
        415 for another media type or a missing boundary.
    """
    media = parse_media_type(content_type or "")
    if media.type != MULTIPART:
        raise WebRequestError(
            415,
            f'Content-Type {content_type!r}: expected multipart/related; type="application/dicom" '
            "with a boundary (STOW-RS, PS3.18 10.5)",
        )
    boundary = media.params.get("boundary", "")
    if not boundary:
        raise WebRequestError(415, f"Content-Type {content_type!r}: expected a boundary= parameter")
    return boundary, media


def split_multipart(body: mmap.mmap | bytes, boundary: str) -> Iterator[Part]:
    """The parts of a multipart body (preamble and epilogue ignored).

    Raises
    ------
    WebRequestError
        400 when the first delimiter or the close delimiter is missing, or a part has no header end.
    """
    delimiter = b"--" + boundary.encode("ascii", "replace")
    position = body.find(delimiter)
    if position < 0:
        raise WebRequestError(400, f"multipart body: expected a part opened by --{boundary}, but found none")
    while True:
        after = position + len(delimiter)
        if body[after : after + 2] == b"--":
            return
        header_end = body.find(b"\r\n\r\n", after)
        if header_end < 0:
            raise WebRequestError(400, "multipart body: a part's headers do not end (no blank line)")
        headers: dict[str, str] = {}
        for line in bytes(body[after:header_end]).decode("latin-1").split("\r\n"):
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        start = header_end + 4
        following = body.find(b"\r\n" + delimiter, start)
        if following < 0:
            raise WebRequestError(
                400, f"multipart body: a part is not closed by --{boundary} (the body was cut short?)"
            )
        yield Part(headers, start, following)
        position = following + 2
