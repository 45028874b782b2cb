"""Boolean masks as compact text: bits packed, zlib-compressed, base64-encoded.

The one codec behind the mask fields of the annotation JSON
(:mod:`archive.review.serialise`) and of the phantom's ground truth
(:mod:`archive.phantom.truth`); each keeps its own encoding name and error class
around it.
"""

from __future__ import annotations

import base64
import binascii
import zlib

import numpy as np
from numpy.typing import NDArray


def pack_mask(mask: NDArray[np.bool_]) -> str:
    """Pack a boolean mask into ASCII text.

    Parameters
    ----------
    mask : ndarray of any shape, bool
        The mask, read in C order; its shape is not stored (keep it beside the text).

    Returns
    -------
    str
        Base64 of the zlib-compressed (level 9) ``numpy.packbits`` bytes.
    """
    packed = np.packbits(np.ascontiguousarray(mask, dtype=np.bool_), axis=None)
    return base64.b64encode(zlib.compress(packed.tobytes(), 9)).decode("ascii")


def unpack_mask(data: str, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """Unpack text written by :func:`pack_mask` into a mask of ``shape``.

    Parameters
    ----------
    data : str
        Text from :func:`pack_mask`.
    shape : tuple of int
        Shape of the mask that was packed.

    Returns
    -------
    ndarray of shape ``shape``, bool

    Raises
    ------
    ValueError
        If ``data`` is not base64 of zlib data (the message names "base64"), or
        does not hold the number of packed bytes ``shape`` needs (the message
        names "packed bytes").
    """
    try:
        raw = zlib.decompress(base64.b64decode(data, validate=True))
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise ValueError(f"the data are not valid base64 zlib data ({exc})") from exc
    n_pixels = int(np.prod(shape))
    expected = (n_pixels + 7) // 8
    if len(raw) != expected:
        raise ValueError(f"expected {expected} packed bytes for shape {shape}, but got {len(raw)}")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n_pixels)
    return bits.astype(np.bool_).reshape(shape)
