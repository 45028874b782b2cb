"""Lazy, one-frame-at-a-time access to the pixels of a DICOM clip.

:class:`ClipFrames` looks like a read-only numpy array of shape ``(T, H, W)``
(grey) or ``(T, H, W, 3)`` (colour, RGB) and decodes a frame only when it is
indexed, keeping the last few decoded frames in a bounded LRU cache, so memory
does not grow with clip length. napari accepts it as image layer data (it
needs ``shape``, ``dtype``, ``ndim`` and ``__getitem__``).

How a frame is found without reading the whole Pixel Data:

* native (uncompressed) transfer syntaxes: the frame's bytes lie at a fixed
  offset from the start of the Pixel Data value, read with one seek;
* encapsulated (JPEG, JPEG 2000, RLE, ...): the fragment positions are read
  once when the clip is opened (item headers only, no pixel bytes); a frame is
  one fragment when there are as many fragments as frames, otherwise the
  Extended or Basic Offset Table says where each frame starts. Without either
  (several fragments per frame and no table) pydicom's
  :func:`pydicom.encaps.get_frame` scans the fragments for each frame;
* deflated transfer syntaxes cannot be seeked into: the file is inflated and
  read whole for each frame decoded (slow; scanners do not send deflated clips).

8-bit JPEG Baseline frames (MONOCHROME2, YBR_FULL, YBR_FULL_422) are decoded
with Pillow, which is fast enough to step through a clip; everything else
with pydicom's decoders (pylibjpeg plugins).

With ``prefetch_frames`` set, showing frame ``i`` also decodes the next few
frames (in the direction of stepping) in a background thread
(:mod:`annotator.prefetch`), so the next step usually finds its frame in the
cache: decoding overlaps with the viewer drawing the current frame.

Colour: YBR_FULL and YBR_FULL_422 become RGB, PALETTE
COLOR becomes RGB through its lookup table (:func:`archive.pixels.palette_to_rgb`:
big-endian tables byte-swapped, 16-bit table entries scaled to 8 bits, 8-bit
entries stored in 16-bit words kept as they are). This module does not import napari.
"""

from __future__ import annotations

import io
import logging
import operator
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import DTypeLike, NDArray
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, get_frame, parse_basic_offsets, parse_fragments
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import as_pixel_options, pixel_array, pixel_dtype
from pydicom.uid import UID, JPEGBaseline8Bit

from annotator.errors import ClipOpenError, FrameDecodeError
from annotator.prefetch import FramePrefetcher
from archive.pixels import palette_to_rgb, to_uint8

logger = logging.getLogger(__name__)

#: Frames kept decoded by default (a 1024 x 1280 RGB frame is 3.9 MB).
DEFAULT_CACHE_FRAMES = 32
#: Frames decoded ahead of the shown one by the reader's layers.
DEFAULT_PREFETCH_FRAMES = 2

_PIXEL_DATA_TAG = 0x7FE00010
_ITEM_TAG = 0xFFFEE000
_PALETTE = "PALETTE COLOR"
_REQUIRED_PIXEL_ATTRIBUTES = (
    "Rows",
    "Columns",
    "BitsAllocated",
    "SamplesPerPixel",
    "PhotometricInterpretation",
)
#: Photometric interpretations of JPEG Baseline whose frames Pillow decodes as pydicom would.
_PILLOW_PHOTOMETRICS = ("MONOCHROME2", "YBR_FULL", "YBR_FULL_422")

ErrorHandler = Callable[[FrameDecodeError], None]


@dataclass(frozen=True)
class _PixelDataValue:
    """Where the Pixel Data value starts in the file, and its encoded length."""

    offset: int
    length: int
    vr: str | None


def _locate_pixel_data(path: Path) -> tuple[Dataset, _PixelDataValue | None]:
    """Read the header and find the Pixel Data value (``None`` when deflated)."""
    with path.open("rb") as fh:
        try:
            header = dcmread(fh, stop_before_pixels=True)
        except InvalidDicomError as exc:
            raise ClipOpenError(
                f"{path.name}: expected a DICOM file (preamble and 'DICM'), but pydicom says: {exc}; "
                "open a DICOM Part 10 file"
            ) from exc
        tsyntax = UID(header.file_meta.get("TransferSyntaxUID", ""))
        if not tsyntax:
            raise ClipOpenError(
                f"{path.name}: expected a Transfer Syntax UID (0002,0010) in the file meta, but it is "
                "absent; the file cannot be decoded, re-export it as DICOM Part 10"
            )
        if tsyntax.is_deflated:
            return header, None
        endian = "<" if tsyntax.is_little_endian else ">"
        raw = fh.read(8)
        if len(raw) < 8:
            raise ClipOpenError(
                f"{path.name}: expected a Pixel Data element (7FE0,0010), but the file ends after the "
                "header; it holds no image"
            )
        group, element = struct.unpack(f"{endian}HH", raw[:4])
        if (group << 16 | element) != _PIXEL_DATA_TAG:
            raise ClipOpenError(
                f"{path.name}: expected Pixel Data (7FE0,0010) after the header, but found "
                f"({group:04X},{element:04X}); float pixel data is not an ultrasound image"
            )
        vr: str | None = None
        if tsyntax.is_implicit_VR:
            (length,) = struct.unpack(f"{endian}L", raw[4:])
        else:
            vr = raw[4:6].decode("ascii", errors="replace")
            (length,) = struct.unpack(f"{endian}L", fh.read(4))
        return header, _PixelDataValue(offset=fh.tell(), length=length, vr=vr)


class _EncapsulatedFrames:
    """Fragment table of encapsulated Pixel Data, built once; reads one frame's bytes."""

    def __init__(self, path: Path, header: Dataset, value: _PixelDataValue, number_of_frames: int) -> None:
        self.path = path
        self.number_of_frames = number_of_frames
        self.endian = "<" if UID(header.file_meta.TransferSyntaxUID).is_little_endian else ">"
        self.value_offset = value.offset
        with path.open("rb") as fh:
            fh.seek(value.offset)
            basic_offsets = parse_basic_offsets(fh, endianness=self.endian)
            first_fragment = fh.tell()
            _, fragment_offsets = parse_fragments(fh, endianness=self.endian)
        self.fragment_offsets = fragment_offsets
        starts = self._frame_starts(header, basic_offsets, first_fragment)
        # frame i is fragments [first_fragment_of[i], first_fragment_of[i + 1]); None: scan per frame.
        self.first_fragment_of: list[int] | None = starts
        logger.debug(
            "%s: %d fragments for %d frames, %s",
            path.name,
            len(fragment_offsets),
            number_of_frames,
            "indexed" if starts is not None else "no usable offset table, scanning per frame",
        )

    def _frame_starts(
        self, header: Dataset, basic_offsets: list[int], first_fragment: int
    ) -> list[int] | None:
        n_fragments = len(self.fragment_offsets)
        if n_fragments == self.number_of_frames:
            return [*range(n_fragments), n_fragments]
        if self.number_of_frames == 1:
            return [0, n_fragments]
        extended = header.get("ExtendedOffsetTable")
        if extended is not None:
            table = np.frombuffer(bytes(extended), dtype=f"{self.endian}u8").tolist()
        else:
            table = basic_offsets
        if len(table) != self.number_of_frames:
            return None
        index_of = {offset - first_fragment: i for i, offset in enumerate(self.fragment_offsets)}
        try:
            return [index_of[offset] for offset in table] + [n_fragments]
        except KeyError:
            logger.warning("%s: the offset table does not match the fragments; scanning per frame", self.path)
            return None

    def read(self, index: int) -> bytes:
        """The encoded bytes of frame ``index`` (0-based)."""
        with self.path.open("rb") as fh:
            if self.first_fragment_of is None:
                fh.seek(self.value_offset)
                return get_frame(fh, index, number_of_frames=self.number_of_frames, endianness=self.endian)
            first, stop = self.first_fragment_of[index], self.first_fragment_of[index + 1]
            if first >= stop:
                raise ValueError(
                    f"the encapsulated Pixel Data has {len(self.fragment_offsets)} fragments, "
                    "none of them for this frame"
                )
            return b"".join(self._fragment(fh, i) for i in range(first, stop))

    def _fragment(self, fh: BinaryIO, i: int) -> bytes:
        fh.seek(self.fragment_offsets[i])
        group, element, length = struct.unpack(f"{self.endian}HHL", fh.read(8))
        if (group << 16 | element) != _ITEM_TAG:
            raise ValueError(f"fragment {i} does not start with an item tag (FFFE,E000)")
        data = fh.read(length)
        if len(data) != length:
            raise ValueError(f"fragment {i} is truncated: {len(data)} of {length} bytes")
        return data


def _decode_with_pillow(encoded: bytes, samples_per_pixel: int) -> NDArray[np.uint8] | None:
    """Decode an 8-bit JPEG Baseline frame with Pillow (libjpeg-turbo), or ``None`` to fall back.

    For YCbCr frames Pillow converts to RGB in C, several times faster than
    pydicom's numpy conversion; values agree with pydicom's within a few grey
    levels (chroma upsampling and rounding). Frames with an Adobe APP14 colour
    transform marker, or a mode other than the one expected, go to pydicom.
    """
    image = Image.open(io.BytesIO(encoded), formats=("JPEG",))
    expected_mode = "RGB" if samples_per_pixel == 3 else "L"
    if image.mode != expected_mode or "adobe_transform" in image.info:
        return None
    return np.asarray(image)


class ClipFrames:
    """A clip's frames as a lazily decoded, read-only array.

    Parameters
    ----------
    path : str or Path
        A DICOM Part 10 file with Pixel Data (single or multi-frame).
    cache_frames : int, optional
        How many decoded frames to keep (least recently used are dropped);
        at least 1.
    on_error : callable, optional
        Called with the :class:`FrameDecodeError` when a frame cannot be
        decoded, once per frame; the frame is then returned as zeros. Without
        it the error is raised.

    Attributes
    ----------
    path : Path
    header : pydicom.dataset.Dataset
        The file's dataset without Pixel Data.
    shape : tuple of int
        ``(T, H, W)`` for one sample per pixel, ``(T, H, W, 3)`` for colour
        (RGB after conversion from YBR or a palette). ``T`` is 1 for a single
        frame image.
    dtype : numpy.dtype
        ``uint8`` for ultrasound; wider for 16-bit images.
    decode_count : int
        Frames decoded from the file so far, prefetched ones included (cache
        hits are not counted).

    Raises
    ------
    ClipOpenError
        If the file is not DICOM, has no Pixel Data or its Image Pixel
        attributes are incomplete.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        cache_frames: int = DEFAULT_CACHE_FRAMES,
        on_error: ErrorHandler | None = None,
        prefetch_frames: int = 0,
    ) -> None:
        if cache_frames < 1:
            raise ValueError(f"cache_frames: expected at least 1, but got {cache_frames}")
        if prefetch_frames < 0:
            raise ValueError(f"prefetch_frames: expected 0 or more, but got {prefetch_frames}")
        self.path = Path(path)
        self.header, value = _locate_pixel_data(self.path)
        self.cache_frames = cache_frames
        self.on_error = on_error
        self.decode_count = 0
        self._cache: OrderedDict[int, NDArray[Any]] = OrderedDict()
        # Frames the prefetch thread is decoding; set when they are in the cache (or failed).
        self._in_flight: dict[int, threading.Event] = {}
        self._reported: set[int] = set()
        self._lock = threading.RLock()
        self._tsyntax = UID(self.header.file_meta.TransferSyntaxUID)
        self._options = self._pixel_options()
        self._palette = self.header.get("PhotometricInterpretation") == _PALETTE
        n_frames = int(self._options["number_of_frames"])
        self._frame_shape = self._output_frame_shape()
        self.shape: tuple[int, ...] = (n_frames, *self._frame_shape)
        self.dtype: np.dtype[Any] = np.dtype(np.uint8) if self._palette else pixel_dtype(self.header)
        self._value = value
        if value is not None and value.vr is not None:
            self._options["pixel_vr"] = value.vr
        self._encapsulated: _EncapsulatedFrames | None = None
        self._pillow_jpeg = (
            self._tsyntax == JPEGBaseline8Bit
            and int(self.header.BitsAllocated) == 8
            and self.header.PhotometricInterpretation in _PILLOW_PHOTOMETRICS
        )
        if value is not None and self._tsyntax.is_encapsulated:
            self._encapsulated = _EncapsulatedFrames(self.path, self.header, value, n_frames)
        depth = min(prefetch_frames, cache_frames - 1)
        self._prefetcher = FramePrefetcher(self.prefetch_frame, n_frames, depth) if depth > 0 else None

    def _pixel_options(self) -> dict[str, Any]:
        missing = [
            kw for kw in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel") if kw not in self.header
        ]
        if missing or "PhotometricInterpretation" not in self.header:
            raise ClipOpenError(
                f"{self.path.name}: expected the Image Pixel attributes Rows, Columns, BitsAllocated, "
                f"SamplesPerPixel and PhotometricInterpretation, but {', '.join(missing) or 'Photometric'} "
                "missing; the pixels cannot be interpreted"
            )
        options = as_pixel_options(self.header)
        options["transfer_syntax_uid"] = self._tsyntax
        options["pixel_keyword"] = "PixelData"
        return options

    def _output_frame_shape(self) -> tuple[int, ...]:
        rows, cols = int(self.header.Rows), int(self.header.Columns)
        samples = int(self.header.SamplesPerPixel)
        if self._palette or samples == 3:
            return (rows, cols, 3)
        if samples != 1:
            raise ClipOpenError(
                f"{self.path.name}: expected 1 or 3 Samples per Pixel, but got {samples}; "
                "such images are not ultrasound clips"
            )
        return (rows, cols)

    # --- array protocol -----------------------------------------------------

    @property
    def ndim(self) -> int:
        """Number of dimensions: 3 (grey) or 4 (colour)."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements, as for a numpy array."""
        return int(np.prod(self.shape))

    @property
    def rgb(self) -> bool:
        """Whether frames are RGB (last axis of length 3)."""
        return len(self._frame_shape) == 3

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ClipFrames({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key: Any) -> NDArray[Any]:
        """Index like a numpy array whose first axis is the frame.

        ``key`` may be an int, a slice, a sequence of ints, ``...`` or a tuple
        whose first item is one of those and whose other items index within
        the frame(s). Only the frames selected on the first axis are decoded.
        """
        parts = key if isinstance(key, tuple) else (key,)
        if not parts:
            return self[:]
        if parts[0] is Ellipsis:
            fill = self.ndim - (len(parts) - 1)
            if fill < 1:
                return self[parts[1:]]
            parts = (slice(None),) * fill + parts[1:]
        first, rest = parts[0], parts[1:]
        if isinstance(first, int | np.integer):
            frame = self.frame(self._normalise(int(first)))
            return frame[rest] if rest else frame
        if isinstance(first, slice):
            indices: list[int] = list(range(*first.indices(len(self))))
        else:
            try:
                indices = [self._normalise(operator.index(i)) for i in np.asarray(first).ravel()]
            except TypeError as exc:
                raise TypeError(
                    f"ClipFrames index: expected an int, slice or sequence of ints for the frame axis, "
                    f"but got {type(first).__name__}"
                ) from exc
        stack = np.empty((len(indices), *self._frame_shape), dtype=self.dtype)
        for out, index in enumerate(indices):
            stack[out] = self.frame(index)
        return stack[(slice(None), *rest)] if rest else stack

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> NDArray[Any]:
        """All frames decoded into one array (memory grows with the clip: avoid for long clips)."""
        stack = self[:]
        return stack.astype(dtype) if dtype is not None else stack

    def _normalise(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"frame index {index} out of range for a clip of {n} frames")
        return index % n

    # --- decoding -------------------------------------------------------------

    def frame(self, index: int) -> NDArray[Any]:
        """One decoded frame, from the cache or the file.

        Parameters
        ----------
        index : int
            0-based frame index, ``0 <= index < T``.

        Returns
        -------
        ndarray of shape (H, W) or (H, W, 3), dtype :attr:`dtype`
            Read-only. Zeros when the frame cannot be decoded and ``on_error``
            is set.

        Raises
        ------
        FrameDecodeError
            If the frame cannot be decoded and ``on_error`` is not set.
        """
        index = self._normalise(index)
        frame = self._frame(index)
        if self._prefetcher is not None:
            self._prefetcher.shown(index)
        return frame

    def _frame(self, index: int) -> NDArray[Any]:
        while True:
            with self._lock:
                cached = self._cache.get(index)
                if cached is not None:
                    self._cache.move_to_end(index)
                    return cached
                in_flight = self._in_flight.get(index)
                if in_flight is None:
                    return self._decode_into_cache(index)
            # The prefetch thread is decoding this frame: take its result rather than decode twice.
            in_flight.wait()

    def _decode_into_cache(self, index: int) -> NDArray[Any]:
        with self._lock:
            try:
                frame = self._decode(index)
            except FrameDecodeError as exc:
                if self.on_error is None:
                    raise
                if index not in self._reported:
                    self._reported.add(index)
                    logger.error("%s", exc)
                    self.on_error(exc)
                blank = np.zeros(self._frame_shape, dtype=self.dtype)
                blank.setflags(write=False)
                return blank
            self._store(index, frame)
            return frame

    def _store(self, index: int, frame: NDArray[Any]) -> None:
        with self._lock:
            self._cache[index] = frame
            while len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)

    def prefetch_frame(self, index: int) -> None:
        """Decode frame ``index`` into the cache unless it is there already (thread-safe).

        Called by the prefetch thread. A frame that cannot be decoded is left
        out of the cache: reading it later decodes it again and reports the
        error as :meth:`frame` does.
        """
        with self._lock:
            if index in self._cache or index in self._in_flight:
                return
            done = self._in_flight[index] = threading.Event()
        try:
            frame = self._decode(index)
        except FrameDecodeError as exc:
            logger.debug("prefetch: %s", exc)
        else:
            self._store(index, frame)
        finally:
            with self._lock:
                del self._in_flight[index]
            done.set()

    def wait_prefetched(self, timeout_s: float = 5.0) -> bool:
        """Wait until the frames wanted ahead are decoded (True at once without prefetching).

        Parameters
        ----------
        timeout_s : float, optional
            Longest wait in seconds.

        Returns
        -------
        bool
            False when ``timeout_s`` passed first.
        """
        return self._prefetcher is None or self._prefetcher.wait_idle(timeout_s)

    def close(self) -> None:
        """Stop prefetching (the cache and on-demand decoding keep working)."""
        if self._prefetcher is not None:
            self._prefetcher.close()

    @property
    def cached_indices(self) -> tuple[int, ...]:
        """Indices of the frames held decoded, least recently used first."""
        with self._lock:
            return tuple(self._cache)

    def _decode(self, index: int) -> NDArray[Any]:
        with self._lock:
            self.decode_count += 1
        try:
            array = self._decode_raw(index)
            if self._palette:
                array = self._apply_palette(array)
        except Exception as exc:  # decoders raise many types; all mean "this frame is unreadable"
            raise FrameDecodeError(self.path, index, f"{type(exc).__name__}: {exc}") from exc
        if array.shape != self._frame_shape:
            raise FrameDecodeError(
                self.path, index, f"it decoded to shape {array.shape} instead of {self._frame_shape}"
            )
        frame = np.ascontiguousarray(array, dtype=self.dtype)
        frame.setflags(write=False)
        return frame

    def _decode_raw(self, index: int) -> NDArray[Any]:
        if self._value is None:
            # Deflated: the whole dataset is inflated for each frame decoded (slow, rare).
            result: NDArray[Any] = pixel_array(dcmread(self.path), index=index)
            return result
        decoder = get_decoder(self._tsyntax)
        if self._encapsulated is None:
            with self.path.open("rb") as fh:
                fh.seek(self._value.offset)
                array, _ = decoder.as_array(fh, index=index, **self._options)
            return array
        encoded = self._encapsulated.read(index)
        if self._pillow_jpeg:
            fast = _decode_with_pillow(encoded, int(self._options["samples_per_pixel"]))
            if fast is not None:
                return fast
        options = {**self._options, "number_of_frames": 1}
        options.pop("extended_offsets", None)
        array, _ = decoder.as_array(encapsulate([encoded]), index=0, **options)
        return array

    def _apply_palette(self, indices: NDArray[Any]) -> NDArray[Any]:
        # archive.pixels byte-swaps a big-endian file's tables and narrows 8-bit entries stored in
        # 16-bit words (shifting those right by 8 made them black); 16-bit entries are scaled.
        return to_uint8(palette_to_rgb(indices, self.header))
