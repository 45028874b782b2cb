"""Reading and validating an offered instance's header without decoding pixels.

What is checked, in order, for a Part 10 file:

1. a 128-byte preamble followed by ``DICM`` (else ``NOT_DICOM``);
2. the File Meta Information (group 0002, Explicit VR Little Endian): every
   element's length fits in the file, and (0002,0010) Transfer Syntax UID is
   present and one pydicom knows (else ``UNKNOWN_TRANSFER_SYNTAX``);
3. the structure of the whole dataset up to end of file, reading only element
   headers and seeking past values: every value length fits inside the file and
   inside its enclosing item, undefined-length sequences and items end with
   their delimiters, encapsulated Pixel Data is a series of items ending with a
   sequence delimiter, and the file ends exactly at an element boundary (else
   ``TRUNCATED`` or ``MALFORMED``). Deflated transfer syntaxes are not walked
   (their bytes are a zlib stream); step 4 still parses their header;
4. the header parsed with ``pydicom.dcmread(stop_before_pixels=True)`` (values
   over 1 MB deferred, never loaded): SOP Class, SOP Instance, Study Instance
   and Series Instance UIDs present (``MISSING_ATTRIBUTE``) and of valid UID
   syntax (``INVALID_UID``), and the Media Storage SOP Instance UID of the file
   meta equal to the SOP Instance UID (``MALFORMED``).

A *bare dataset* (the network case) gets a preamble and file meta built by
:func:`build_file_meta` and is then checked like a file.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import UID, AllTransferSyntaxes, DeflatedExplicitVRLittleEndian

from archive.ingest import IngestRejectedError, RejectCode

logger = logging.getLogger(__name__)

#: Implementation Class UID written into file meta built by usarchive (under pydicom's root).
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.8.498.80775462237475500785181042521882572048"
#: Implementation Version Name written with it.
IMPLEMENTATION_VERSION_NAME = "USARCHIVE_0_1"

_PREAMBLE_LENGTH = 128
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_REQUIRED_UIDS = (
    ("SOPClassUID", "(0008,0016)"),
    ("SOPInstanceUID", "(0008,0018)"),
    ("StudyInstanceUID", "(0020,000D)"),
    ("SeriesInstanceUID", "(0020,000E)"),
)


@dataclass(frozen=True)
class InstanceHeader:
    """The validated header of an offered instance.

    Attributes
    ----------
    dataset : pydicom.dataset.Dataset
        Everything before Pixel Data (large values deferred); ``file_meta`` set.
    transfer_syntax : str
    sop_class_uid, sop_instance_uid, study_instance_uid, series_instance_uid : str
    """

    dataset: Dataset
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class _StructureWalker:
    """Checks element lengths against the file without reading values."""

    def __init__(self, handle: BinaryIO, size: int, *, implicit: bool, little: bool) -> None:
        self._handle = handle
        self._size = size
        self.position = handle.tell()  # tracked here: tell() on every element is slow
        self._implicit = implicit
        self._endian = "<" if little else ">"

    def _read(self, count: int, what: str, tag: int | None = None) -> bytes:
        """Read ``count`` bytes of ``what``, followed by ``tag`` in the message if given.

        The tag is formatted only on failure: formatting it per element would dominate the walk.
        """
        offset = self.position
        data = self._handle.read(count)
        self.position += len(data)
        if len(data) < count:
            if tag is not None:
                what = f"{what} {_tag_text(tag)}"
            raise IngestRejectedError(
                RejectCode.TRUNCATED,
                f"file ends at byte {self._size} inside {what} at byte offset {offset}; "
                "the file is truncated: send or copy it again",
            )
        return data

    def _header(self, implicit: bool) -> tuple[int, bytes | None, int, int]:
        """Read one element header: (tag, VR or None, value length, header offset)."""
        offset = self.position
        group, element = struct.unpack(self._endian + "HH", self._read(4, "an element tag"))
        tag = (group << 16) | element
        if group == 0xFFFE or implicit:
            (length,) = struct.unpack(self._endian + "L", self._read(4, "the header of", tag))
            return tag, None, length, offset
        vr = self._read(2, "the VR of", tag)
        if vr in _LONG_VRS:
            self._read(2, "the header of", tag)
            (length,) = struct.unpack(self._endian + "L", self._read(4, "the header of", tag))
        else:
            (length,) = struct.unpack(self._endian + "H", self._read(2, "the header of", tag))
        return tag, vr, length, offset

    def _skip(self, tag: int, length: int, offset: int, limit: int) -> None:
        start = self.position
        if start + length > limit:
            where = "the file" if limit == self._size else "its enclosing item"
            raise IngestRejectedError(
                RejectCode.TRUNCATED if limit == self._size else RejectCode.MALFORMED,
                f"element {_tag_text(tag)} at byte offset {offset} declares a value of {length} bytes, "
                f"but only {limit - start} bytes remain in {where}; its length field is wrong or the "
                "file is truncated",
            )
        self._handle.seek(length, io.SEEK_CUR)
        self.position += length

    def walk_dataset(self, limit: int, *, implicit: bool, in_undefined_item: bool = False) -> None:
        """Walk elements up to ``limit`` (or an item delimiter when ``in_undefined_item``)."""
        while True:
            if self.position == limit and not in_undefined_item:
                return
            tag, vr, length, offset = self._header(implicit)
            if tag == _ITEM_DELIMITER:
                if in_undefined_item:
                    return
                raise IngestRejectedError(
                    RejectCode.MALFORMED,
                    f"item delimiter (FFFE,E00D) at byte offset {offset} outside an undefined-length item",
                )
            if tag >> 16 == 0xFFFE:
                raise IngestRejectedError(
                    RejectCode.MALFORMED,
                    f"unexpected {_tag_text(tag)} at byte offset {offset} where a data element was expected",
                )
            if length != _UNDEFINED:
                self._skip(tag, length, offset, limit)
            elif tag in _PIXEL_TAGS and vr in (b"OB", b"OW"):
                self._walk_fragments(limit)
            elif implicit or vr == b"SQ":
                self._walk_sequence(limit, implicit=implicit)
            elif vr == b"UN":
                self._walk_sequence(limit, implicit=True)
            else:
                raise IngestRejectedError(
                    RejectCode.MALFORMED,
                    f"element {_tag_text(tag)} at byte offset {offset} has VR {vr!r} and undefined length, "
                    "which only sequences and encapsulated Pixel Data may have",
                )
            if self.position > limit:
                raise IngestRejectedError(
                    RejectCode.MALFORMED, f"element {_tag_text(tag)} overruns its container"
                )

    def _walk_sequence(self, limit: int, *, implicit: bool) -> None:
        while True:
            tag, _vr, length, offset = self._header(implicit)
            if tag == _SEQUENCE_DELIMITER:
                return
            if tag != _ITEM:
                raise IngestRejectedError(
                    RejectCode.MALFORMED,
                    f"expected an item (FFFE,E000) or sequence delimiter at byte offset {offset}, "
                    f"but found {_tag_text(tag)}",
                )
            if length == _UNDEFINED:
                self.walk_dataset(limit, implicit=implicit, in_undefined_item=True)
            else:
                end = self.position + length
                if end > limit:
                    self._skip(tag, length, offset, limit)
                self.walk_dataset(end, implicit=implicit)

    def _walk_fragments(self, limit: int) -> None:
        while True:
            tag, _vr, length, offset = self._header(True)
            if tag == _SEQUENCE_DELIMITER:
                return
            if tag != _ITEM or length == _UNDEFINED:
                raise IngestRejectedError(
                    RejectCode.MALFORMED,
                    f"encapsulated Pixel Data: expected a defined-length item (FFFE,E000) or the "
                    f"sequence delimiter at byte offset {offset}, but found {_tag_text(tag)}",
                )
            self._skip(tag, length, offset, limit)


def _read_transfer_syntax(handle: BinaryIO, size: int) -> tuple[str, int]:
    """Walk the file meta group; return (Transfer Syntax UID, offset where the dataset starts)."""
    walker = _StructureWalker(handle, size, implicit=False, little=True)
    transfer_syntax: str | None = None
    while True:
        position = walker.position
        if position == size:
            break
        peek = handle.read(2)
        handle.seek(position)
        if len(peek) < 2 or struct.unpack("<H", peek)[0] != 0x0002:
            break
        tag, _vr, length, offset = walker._header(False)
        if length == _UNDEFINED:
            raise IngestRejectedError(
                RejectCode.MALFORMED, f"file meta element {_tag_text(tag)} has undefined length"
            )
        if tag == 0x00020010:
            raw = walker._read(length, "the Transfer Syntax UID (0002,0010)")
            transfer_syntax = raw.rstrip(b"\x00 ").decode("ascii", "replace")
        else:
            walker._skip(tag, length, offset, size)
    if not transfer_syntax:
        raise IngestRejectedError(
            RejectCode.MISSING_ATTRIBUTE,
            "file meta: expected a Transfer Syntax UID (0002,0010), but it is absent or empty; "
            "the file cannot be decoded",
        )
    if transfer_syntax not in AllTransferSyntaxes:
        raise IngestRejectedError(
            RejectCode.UNKNOWN_TRANSFER_SYNTAX,
            f"file meta: transfer syntax {transfer_syntax!r} is not one this archive knows; "
            "convert the file to a standard transfer syntax (e.g. with dcmconv) and import it again",
        )
    return transfer_syntax, walker.position


def dataset_start(path: Path) -> tuple[str, int]:
    """Where the data set of a Part 10 file starts, after its File Meta Information.

    Parameters
    ----------
    path : Path
        A Part 10 file (already validated by :func:`read_header`).

    Returns
    -------
    tuple of (str, int)
        The Transfer Syntax UID and the byte offset of the first data set element.

    Raises
    ------
    IngestRejectedError
        If the preamble or file meta cannot be read.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(_PREAMBLE_LENGTH + 4)
        if len(prefix) < _PREAMBLE_LENGTH + 4 or prefix[_PREAMBLE_LENGTH:] != b"DICM":
            raise IngestRejectedError(RejectCode.NOT_DICOM, f"{path.name} is not a DICOM Part 10 file")
        return _read_transfer_syntax(handle, size)


def check_structure(path: Path) -> str:
    """Check preamble, file meta and element lengths of a Part 10 file (steps 1–3).

    Parameters
    ----------
    path : Path
        The file to check.

    Returns
    -------
    str
        The Transfer Syntax UID.

    Raises
    ------
    IngestRejectedError
        ``NOT_DICOM``, ``TRUNCATED``, ``MALFORMED``, ``MISSING_ATTRIBUTE`` or
        ``UNKNOWN_TRANSFER_SYNTAX``.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(_PREAMBLE_LENGTH + 4)
        if len(prefix) < _PREAMBLE_LENGTH + 4 or prefix[_PREAMBLE_LENGTH:] != b"DICM":
            raise IngestRejectedError(
                RejectCode.NOT_DICOM,
                f"expected a DICOM Part 10 file (128-byte preamble then 'DICM'), but the data "
                f"({size} bytes) is not one",
            )
        transfer_syntax, start = _read_transfer_syntax(handle, size)
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            return transfer_syntax
        uid = UID(transfer_syntax)
        handle.seek(start)
        walker = _StructureWalker(handle, size, implicit=uid.is_implicit_VR, little=uid.is_little_endian)
        walker.walk_dataset(size, implicit=uid.is_implicit_VR)
    return transfer_syntax


def _uid_value(ds: Dataset, keyword: str, tag_text: str) -> str:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    if not text:
        raise IngestRejectedError(
            RejectCode.MISSING_ATTRIBUTE,
            f"expected {keyword} {tag_text}, but it is {'empty' if value is not None else 'absent'}; "
            "the instance cannot be indexed without it",
            sop_instance_uid=str(ds.get("SOPInstanceUID", "")) or None,
            sop_class_uid=str(ds.get("SOPClassUID", "")) or None,
        )
    if not UID(text).is_valid:
        raise IngestRejectedError(
            RejectCode.INVALID_UID,
            f"{keyword} {tag_text}: expected a UID (digits and dots, at most 64 characters, no "
            f"leading zeros), but got {text[:80]!r}",
            sop_instance_uid=text if keyword == "SOPInstanceUID" else None,
        )
    return text


def read_header(path: Path) -> InstanceHeader:
    """Validate a Part 10 file and read its header, never its pixels.

    Parameters
    ----------
    path : Path
        The file (a staged copy or the caller's file).

    Returns
    -------
    InstanceHeader

    Raises
    ------
    IngestRejectedError
        With the code and reason of the first problem found (see module docstring).
    """
    transfer_syntax = check_structure(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size="1 MB")
    except InvalidDicomError as exc:
        raise IngestRejectedError(
            RejectCode.NOT_DICOM, f"pydicom could not read the data as DICOM: {exc}"
        ) from exc
    except EOFError as exc:
        raise IngestRejectedError(RejectCode.TRUNCATED, f"the header ends early: {exc}") from exc
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise IngestRejectedError(
            RejectCode.MALFORMED, f"the header cannot be parsed: {type(exc).__name__}: {exc}"
        ) from exc
    uids = [_uid_value(ds, keyword, tag_text) for keyword, tag_text in _REQUIRED_UIDS]
    sop_class, sop_instance, study, series = uids
    media_instance = str(ds.file_meta.get("MediaStorageSOPInstanceUID", "")).strip()
    if media_instance and media_instance != sop_instance:
        logger.warning(
            "file meta Media Storage SOP Instance UID %s differs from SOP Instance UID %s; "
            "indexing by the dataset's SOP Instance UID",
            media_instance,
            sop_instance,
        )
    return InstanceHeader(ds, transfer_syntax, sop_class, sop_instance, study, series)


def _stop_at_pixels(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) in _PIXEL_TAGS


def peek_bare_dataset(data: bytes | BinaryIO, transfer_syntax: str) -> Dataset:
    """Read the header of a bare dataset (no preamble, no file meta) in ``transfer_syntax``.

    Parameters
    ----------
    data : bytes or binary file
        Positioned at the first element; a file is rewound to where it was.
    transfer_syntax : str
        Must be known (checked by the caller).

    Returns
    -------
    pydicom.dataset.Dataset
        Elements before Pixel Data.

    Raises
    ------
    IngestRejectedError
        ``MALFORMED`` if the header cannot be parsed.
    """
    uid = UID(transfer_syntax)
    if isinstance(data, bytes):
        raw: bytes | None = data
        handle: BinaryIO = io.BytesIO(data)
    else:
        raw, handle = None, data
    start = handle.tell()
    try:
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            body = raw if raw is not None else handle.read()
            handle = io.BytesIO(zlib.decompress(body[start if raw is not None else 0 :], -zlib.MAX_WBITS))
        return read_dataset(
            handle,
            is_implicit_VR=uid.is_implicit_VR,
            is_little_endian=uid.is_little_endian,
            stop_when=_stop_at_pixels,
            defer_size="1 MB",
        )
    except Exception as exc:  # corrupt input raises many types
        raise IngestRejectedError(
            RejectCode.MALFORMED,
            f"dataset in transfer syntax {transfer_syntax} cannot be parsed: {type(exc).__name__}: {exc}",
        ) from exc
    finally:
        if raw is None:
            data.seek(start)  # type: ignore[union-attr]


def build_file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, calling_ae: str | None
) -> bytes:
    """Preamble, ``DICM`` and File Meta Information for a bare dataset.

    Parameters
    ----------
    sop_class_uid, sop_instance_uid : str
        From the dataset (they become the Media Storage SOP Class/Instance UIDs).
    transfer_syntax : str
        The syntax the dataset bytes are encoded in.
    calling_ae : str, optional
        Recorded as Source Application Entity Title (0002,0016).

    Returns
    -------
    bytes
        To be written before the unchanged dataset bytes.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    if calling_ae:
        meta.SourceApplicationEntityTitle = calling_ae.strip()[:16]
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * _PREAMBLE_LENGTH + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return bytes(buffer.getvalue())
