"""Encode flat, ASCII DICOM data sets as pydicom would, about ten times faster.

A C-FIND answering a hundred studies encodes a hundred small identifiers and a
hundred command sets; pydicom's writer (``pydicom.filewriter.write_dataset``,
through ``pynetdicom.dsutils.encode``) spends about 0.35 ms on each, most of a
response's cost (docs/pacs_bridge.md, *C-FIND responses*). This module writes
the same bytes for the data sets those responses are made of and declines
everything else, which then goes to pydicom unchanged:

* little endian, implicit or explicit VR, not deflated;
* elements of the VRs in :data:`STRING_VRS` (text values that are ASCII) and
  :data:`NUMBER_VRS` (integers), empty or not, single- or multi-valued;
* no sequence, no byte value, no value longer than an explicit VR's 16-bit
  length, nothing pydicom would convert (a ``date`` for DA, a float for DS).

The bytes are pydicom's by construction (tag order, padding: UI with NUL,
the others with a space; IS through its original string) and by test:
``tests/pacs_bridge/test_fast_encode.py`` compares both writers on generated
data sets.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

#: VRs written as ASCII text (values must be ``str``; IS may be an integer).
STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UI"})
#: VRs written as little-endian binary integers, and their ``struct`` codes.
NUMBER_VRS = {"US": "H", "UL": "I", "SS": "h", "SL": "i"}
_MAX_SHORT_LENGTH = 0xFFFF

#: One element to encode: (tag, VR, value).
Element = tuple[int, str, Any]


def encode_dataset(
    ds: Dataset, implicit_vr: bool, little_endian: bool, deflated: bool = False
) -> bytes | None:
    """The encoding of ``ds`` (pydicom's bytes), or ``None`` if it is not one this module writes.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The data set (a C-FIND identifier, say).
    implicit_vr, little_endian, deflated : bool
        The transfer syntax's encoding.

    Returns
    -------
    bytes or None
        ``None``: a sequence, a non-ASCII text, another VR, big endian or deflated;
        encode it with pydicom.
    """
    if not little_endian or deflated:
        return None
    elements: list[Element] = []
    for elem in ds.elements():  # tag order; a raw (undecoded) element has bytes, declined below
        elements.append((int(elem.tag), str(elem.VR), elem.value))
    return encode_elements(elements, implicit_vr)


def encode_elements(elements: Iterable[Element], implicit_vr: bool) -> bytes | None:
    """Little-endian encoding of ``elements`` (tags ascending), or ``None`` if one is not writable here.

    Parameters
    ----------
    elements : iterable of (int, str, object)
        Tag, VR and value of each element, tags ascending.
    implicit_vr : bool
        Implicit VR (a command set, Implicit VR Little Endian) or explicit VR.

    Returns
    -------
    bytes or None
    """
    parts: list[bytes] = []
    for tag, vr, value in elements:
        encoded = _value(vr, value)
        if encoded is None:
            return None
        length = len(encoded)
        if implicit_vr:
            parts.append(struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length))
        elif length > _MAX_SHORT_LENGTH:
            return None
        else:
            parts.append(struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), length))
        parts.append(encoded)
    return b"".join(parts)


def _value(vr: str, value: Any) -> bytes | None:
    if value is None or value == "":
        return b""
    code = NUMBER_VRS.get(vr)
    if code is not None:
        return _numbers(code, value)
    if vr not in STRING_VRS:
        return None
    text = _text(vr, value)
    if text is None or not text.isascii():
        return None
    if len(text) % 2:
        text += "\0" if vr == "UI" else " "
    return text.encode("ascii")


def _numbers(code: str, value: Any) -> bytes | None:
    values: Sequence[Any] = value if isinstance(value, (MultiValue, list, tuple)) else [value]
    if not all(type(v) is int for v in values):
        return None
    try:
        return struct.pack(f"<{len(values)}{code}", *values)
    except struct.error:
        return None  # out of the VR's range: pydicom's error, not ours


def _text(vr: str, value: Any) -> str | None:
    values: Sequence[Any] = value if isinstance(value, (MultiValue, list, tuple)) else [value]
    texts: list[str] = []
    for item in values:
        if vr == "IS" and isinstance(item, int):
            original = getattr(item, "original_string", None)
            texts.append(original if isinstance(original, str) else str(int(item)))
        elif vr == "PN" and isinstance(item, PersonName):
            if item.original_string is not None:
                return None  # its bytes as decoded: pydicom writes those
            texts.append(str(item))
        elif isinstance(item, str) and vr not in ("IS", "PN"):
            texts.append(str(item))
        else:
            return None
    return "\\".join(texts)
