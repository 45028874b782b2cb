"""Where each frame of a stored file lies, found once per file (cached by its SHA-256).

WADO-RS frames are served by reading byte ranges of the stored file, as
received, with no decoding and no re-encoding:

* native (uncompressed) Pixel Data: frame *n* is ``frame_bytes`` at
  ``value + (n - 1) * frame_bytes``;
* encapsulated Pixel Data (JPEG Baseline, ...): the fragments are located
  with pydicom's :func:`pydicom.encaps.parse_basic_offsets` and
  :func:`pydicom.encaps.parse_fragments` (no pixel is read); one fragment per
  frame is the usual case, several per frame are grouped by the Basic Offset
  Table, and a single-frame image takes all fragments.

The header is read with ``stop_before_pixels``, which leaves the file at the
Pixel Data element; its value starts after the element header (12 bytes in
explicit VR for OB/OW, 8 in implicit VR).
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import parse_basic_offsets, parse_fragments
from pydicom.uid import UID

from archive.web.errors import WebRequestError

_PIXEL_DATA = 0x7FE00010

#: Media type of the frames of a transfer syntax served without re-encoding (PS3.18 Table 8.7.3-2).
NATIVE_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51": "image/jpeg",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57": "image/jpeg",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70": "image/jpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "image/jls",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "image/jls",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90": "image/jp2",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "image/jp2",  # JPEG 2000
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",  # RLE Lossless
}


@dataclass(frozen=True)
class PixelLayout:
    """Where the Pixel Data of one file lies.

    Attributes
    ----------
    transfer_syntax : str
    encapsulated : bool
    value_offset, value_length : int
        The Pixel Data value in the file (``value_length`` up to the sequence
        delimiter for encapsulated data).
    frames : tuple of tuple of (int, int)
        For each frame, the ``(offset, length)`` pieces whose concatenation is
        the frame (one piece, except for fragmented encapsulated frames).
    """

    transfer_syntax: str
    encapsulated: bool
    value_offset: int
    value_length: int
    frames: tuple[tuple[tuple[int, int], ...], ...]

    def frame_length(self, number: int) -> int:
        """Bytes of frame ``number`` (1-based)."""
        return sum(length for _, length in self.frames[number - 1])


def _frame_bytes(header: Dataset) -> int:
    bits = int(header.BitsAllocated)
    samples = int(header.get("SamplesPerPixel", 1))
    pixels = int(header.Rows) * int(header.Columns) * samples
    if bits == 1:
        return (pixels + 7) // 8
    return pixels * bits // 8


def _fragments(handle: object, offsets: list[int]) -> list[tuple[int, int]]:
    pieces = []
    for offset in offsets:
        handle.seek(offset)  # type: ignore[attr-defined]
        _tag, length = struct.unpack("<II", handle.read(8))  # type: ignore[attr-defined]
        pieces.append((offset + 8, int(length)))
    return pieces


def read_layout(path: Path) -> tuple[Dataset, PixelLayout | None]:
    """The header (no pixels) of a stored file and where its frames lie (``None``: no Pixel Data).

    Raises
    ------
    WebRequestError
        500 for a file whose Pixel Data cannot be located (named, with the reason).
    """
    with path.open("rb") as handle:
        header = pydicom.dcmread(handle, stop_before_pixels=True)
        element_at = handle.tell()
        first = handle.read(8)
        if len(first) < 8 or struct.unpack("<HH", first[:4]) != (0x7FE0, 0x0010):
            return header, None
        syntax = UID(str(header.file_meta.TransferSyntaxUID))
        if syntax.is_implicit_VR:
            value_at, length = element_at + 8, struct.unpack("<I", first[4:8])[0]
        else:
            handle.seek(element_at + 8)
            value_at, length = element_at + 12, struct.unpack("<I", handle.read(4))[0]
        frames = int(header.get("NumberOfFrames", 1) or 1)
        if not syntax.is_encapsulated:
            size = _frame_bytes(header)
            if size * frames > length:
                raise WebRequestError(
                    500, f"{path.name}: Pixel Data holds {length} bytes, fewer than {frames} frames of {size}"
                )
            pieces = tuple(((value_at + i * size, size),) for i in range(frames))
            return header, PixelLayout(str(syntax), False, value_at, length, pieces)
        handle.seek(value_at)
        basic = parse_basic_offsets(handle)
        first_fragment = handle.tell()
        count, offsets = parse_fragments(handle)
        fragments = _fragments(handle, offsets)
        end = fragments[-1][0] + fragments[-1][1] + 8 if fragments else first_fragment
    grouped: tuple[tuple[tuple[int, int], ...], ...]
    if count == frames:
        grouped = tuple((piece,) for piece in fragments)
    elif frames == 1:
        grouped = (tuple(fragments),)
    elif len(basic) == frames:
        starts = [first_fragment + offset for offset in basic] + [end]
        grouped = tuple(
            tuple(p for p, o in zip(fragments, offsets, strict=True) if starts[i] <= o < starts[i + 1])
            for i in range(frames)
        )
    else:
        raise WebRequestError(
            500,
            f"{path.name}: {count} fragments for {frames} frames and no usable Basic Offset Table; "
            "its frames cannot be told apart without decoding",
        )
    return header, PixelLayout(str(syntax), True, value_at, end - value_at, grouped)


class LayoutCache:
    """Headers and pixel layouts of stored files, keyed by SHA-256 (a replaced file has a new key).

    Parameters
    ----------
    capacity : int
        Files remembered (least recently used forgotten first).
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[Dataset, PixelLayout | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0

    def get(self, sha256: str, path: Path) -> tuple[Dataset, PixelLayout | None]:
        """The header and layout of the file with this digest, read once."""
        with self._lock:
            found = self._entries.get(sha256)
            if found is not None:
                self._entries.move_to_end(sha256)
                return found
        entry = read_layout(path)
        with self._lock:
            self.reads += 1
            self._entries[sha256] = entry
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return entry


def read_range(path: Path, offset: int, length: int) -> bytes:
    """``length`` bytes of ``path`` at ``offset``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def frame_numbers(text: str, frames: int) -> list[int]:
    """``1,3,5`` → ``[1, 3, 5]``, each checked against the instance's frames.

    Raises
    ------
    WebRequestError
        400 for a list that is not comma-separated whole numbers; 404 for a frame that does not exist.
    """
    try:
        numbers = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise WebRequestError(
            400, f"frame list {text!r}: expected numbers separated by commas, e.g. 1,2,3"
        ) from None
    if not numbers:
        raise WebRequestError(400, "frame list: expected at least one frame number")
    bad = [n for n in numbers if not 1 <= n <= frames]
    if bad:
        raise WebRequestError(404, f"frames {bad}: the instance has frames 1 to {frames}")
    return numbers
