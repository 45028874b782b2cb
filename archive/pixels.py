"""Pixel interpretation shared by the exports and the annotator: palettes, byte order, output form.

Decoding itself is pydicom's (:func:`pydicom.pixels.iter_pixels`, the decoders'
``as_array``; YBR_FULL, YBR_FULL_422 become RGB there, JPEG 2000's YBR_RCT and
YBR_ICT come out of the decoder as RGB). What this module adds is what pydicom
leaves to the caller:

* PALETTE COLOR: :func:`palette_to_rgb` applies the lookup tables with
  :func:`pydicom.pixels.apply_color_lut`. pydicom reads non-segmented LUT
  Data (OW) in the machine's byte order, so for a big-endian file the tables
  are byte-swapped first (:func:`_little_endian_luts`); tables whose
  descriptor says 8 bits per entry but that are stored one entry per 16-bit
  word come back as ``uint16`` holding values 0..255 and are narrowed to
  ``uint8`` (not shifted: shifting them right by 8 makes them black).
* Big-endian data sets cannot be given new Pixel Data by pydicom
  (``Dataset.set_pixel_data`` refuses them): :func:`to_little_endian` turns a
  data set read from a big-endian file into Explicit VR Little Endian,
  byte-swapping the OW/OL/OF/OD/OV values pydicom keeps as raw bytes.
* :func:`output_form` says what a clip decodes to (shape, dtype and the
  photometric interpretation of the decoded frames) from the header alone.

Nothing here runs on the ingest path: ingest never decodes pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import iter_pixels
from pydicom.uid import UID, ExplicitVRLittleEndian

PALETTE = "PALETTE COLOR"
#: Photometric interpretations pydicom's decoders return as RGB (``as_rgb=True``).
_TO_RGB = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420", "YBR_PARTIAL_422")
#: VRs whose values pydicom keeps as raw bytes in the file's byte order, and their item size.
_SWAPPED_VRS = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
_LUT_DATA = ("Red", "Green", "Blue", "Alpha")
_PIXEL_DATA_TAG = 0x7FE00010


def is_big_endian(ds: Dataset) -> bool:
    """Whether ``ds`` was read from (or is to be written in) a big-endian transfer syntax."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        try:
            return not UID(syntax).is_little_endian
        except ValueError:
            pass
    return ds.original_encoding[1] is False


def _swap(value: bytes, width: int) -> bytes:
    usable = len(value) - len(value) % width
    swapped = np.frombuffer(value[:usable], dtype=f">u{width}").astype(f"<u{width}").tobytes()
    return swapped + value[usable:]


def _little_endian_luts(ds: Dataset) -> Dataset:
    """``ds`` itself, or for a big-endian file a copy whose palette LUT Data are in little-endian order."""
    if not is_big_endian(ds) or "RedPaletteColorLookupTableData" not in ds:
        return ds  # segmented tables are read in the file's byte order by pydicom itself
    luts = Dataset()
    for colour in _LUT_DATA:
        descriptor = f"{colour}PaletteColorLookupTableDescriptor"
        data = f"{colour}PaletteColorLookupTableData"
        if descriptor in ds:
            luts[descriptor] = ds[descriptor]
        if data in ds:
            value = bytes(ds[data].value)
            luts.add_new(data, "OW", _swap(value, 2))
    return luts


def palette_to_rgb(indices: npt.NDArray[Any], ds: Dataset) -> npt.NDArray[Any]:
    """Apply ``ds``'s Palette Color lookup tables to decoded indices.

    Parameters
    ----------
    indices : ndarray
        Palette indices of one frame ``(H, W)`` or of frames ``(T, H, W)``.
    ds : pydicom.dataset.Dataset
        The clip's data set (header suffices) with the Palette Color Lookup
        Table module, normal or segmented, 8 or 16 bits per entry.

    Returns
    -------
    ndarray of shape ``indices.shape + (3,)``
        ``uint8`` when the tables have 8 bits per entry (however they are
        stored), ``uint16`` when they have 16. An Alpha table is dropped.

    Raises
    ------
    ValueError
        If the tables are missing or inconsistent (pydicom's message).
    """
    rgb = apply_color_lut(indices, _little_endian_luts(ds))[..., :3]
    nominal_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    if nominal_bits <= 8 and rgb.dtype != np.uint8:
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    return rgb


def to_uint8(frame: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """A ``uint16`` RGB frame (16-bit palette entries) scaled to ``uint8``; ``uint8`` unchanged."""
    if frame.dtype == np.uint8:
        return frame
    return (frame >> 8).astype(np.uint8)


@dataclass(frozen=True)
class OutputForm:
    """What a clip's frames decode to.

    Attributes
    ----------
    frame_shape : tuple of int
        ``(H, W)`` or ``(H, W, 3)``.
    dtype : numpy.dtype
        ``uint8``, ``uint16``, ``int8`` or ``int16`` (pydicom's dtype; RGB from
        a palette takes the tables' entry size).
    photometric : str
        Of the decoded frames: ``MONOCHROME1``, ``MONOCHROME2`` or ``RGB``.
    source_photometric : str
        As the header says (``PALETTE COLOR``, ``YBR_FULL_422``, ...).
    """

    frame_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    photometric: str
    source_photometric: str


def output_form(ds: Dataset) -> OutputForm:
    """The shape, dtype and photometric interpretation :func:`iter_rgb_frames` yields for ``ds``.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        Header of the clip (pixels not needed).

    Returns
    -------
    OutputForm

    Raises
    ------
    ValueError
        If the photometric interpretation, samples per pixel or bits allocated
        is not one of an image this module can decode to grey or RGB.
    """
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    source = str(ds.get("PhotometricInterpretation", "")).strip()
    if bits not in (8, 16):
        raise ValueError(f"expected 8 or 16 Bits Allocated, but got {bits}")
    if source == PALETTE:
        if samples != 1:
            raise ValueError(f"expected 1 sample per pixel for PALETTE COLOR, but got {samples}")
        entry_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        dtype = np.dtype(np.uint8 if entry_bits <= 8 else np.uint16)
        return OutputForm((rows, cols, 3), dtype, "RGB", source)
    if samples == 3 and source in _TO_RGB:
        return OutputForm((rows, cols, 3), np.dtype(f"{'i' if signed else 'u'}{bits // 8}"), "RGB", source)
    if samples == 1 and source in ("MONOCHROME1", "MONOCHROME2"):
        return OutputForm((rows, cols), np.dtype(f"{'i' if signed else 'u'}{bits // 8}"), source, source)
    raise ValueError(
        f"expected MONOCHROME1/2 or PALETTE COLOR with 1 sample per pixel, or RGB/YBR with 3, "
        f"but got {source or 'no Photometric Interpretation'} with {samples}"
    )


def iter_rgb_frames(path: Path, ds: Dataset) -> Iterator[npt.NDArray[Any]]:
    """Decode ``path`` one frame at a time as :func:`output_form` says: grey as stored, colour as RGB.

    Parameters
    ----------
    path : Path
        The DICOM file.
    ds : pydicom.dataset.Dataset
        Its header (for the palette).

    Yields
    ------
    ndarray
        One frame, ``(H, W)`` or ``(H, W, 3)``, in native byte order.
    """
    palette = str(ds.get("PhotometricInterpretation", "")).strip() == PALETTE
    for frame in iter_pixels(path, as_rgb=True):
        # a big-endian file decodes to big-endian arrays: hand on native byte order
        native = np.asarray(frame).astype(frame.dtype.newbyteorder("="), copy=False)
        yield palette_to_rgb(native, ds) if palette else native


#: ITU-R BT.601 luma weights: an RGB ultrasound frame (grey B-mode, colour overlays) to grey.
_LUMA = np.array([0.299, 0.587, 0.114])


def to_grey_uint8(frame: npt.NDArray[Any], photometric: str) -> npt.NDArray[np.uint8]:
    """One decoded frame (as :func:`iter_rgb_frames` yields it) as ``uint8`` grey, 0 black.

    Parameters
    ----------
    frame : ndarray
        ``(H, W)`` grey or ``(H, W, 3)`` RGB, any of the dtypes :func:`output_form` names.
    photometric : str
        Of the decoded frame (:attr:`OutputForm.photometric`): MONOCHROME1 is inverted.

    Returns
    -------
    ndarray of shape (H, W), uint8
        RGB by BT.601 luma; 16-bit and signed data scaled from their dtype's range.
    """
    values = np.asarray(frame)
    if values.dtype == np.uint8 and values.ndim == 2:  # already 8-bit grey: no float copy
        same: npt.NDArray[np.uint8] = 255 - values if photometric == "MONOCHROME1" else values
        return same
    if values.dtype.kind == "i":  # signed: shift to unsigned of the same width
        info = np.iinfo(values.dtype)
        values = values.astype(np.int64) - int(info.min)
        top = float(info.max) - float(info.min)
    else:
        top = float(np.iinfo(values.dtype).max) if values.dtype.kind == "u" else 255.0
    grey: npt.NDArray[np.float64] = values @ _LUMA if values.ndim == 3 else values.astype(np.float64)
    if top != 255.0:
        grey = grey * (255.0 / top)
    if photometric == "MONOCHROME1":
        grey = 255.0 - grey
    out: npt.NDArray[np.uint8] = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return out


def iter_grey_frames(path: Path, ds: Dataset, *, last: int | None = None) -> Iterator[npt.NDArray[np.uint8]]:
    """Decode frames 1 .. ``last`` of a clip one at a time as ``uint8`` grey (for detection on B-mode).

    Only the frame in hand is held: pydicom's :func:`~pydicom.pixels.iter_pixels`
    reads and decodes the Pixel Data frame by frame from the file.

    Parameters
    ----------
    path : Path
        The DICOM file.
    ds : pydicom.dataset.Dataset
        Its header.
    last : int, optional
        Last frame wanted (1-based); decoding stops there. Default: every frame.

    Yields
    ------
    ndarray of shape (H, W), uint8

    Raises
    ------
    ValueError
        If the image is not one :func:`output_form` can decode, or has fewer
        frames than its header says.
    """
    form = output_form(ds)
    count = _frames_wanted(ds, last)
    if count == 0:
        return
    decoded = 0
    for frame in iter_rgb_frames(path, ds):
        yield to_grey_uint8(frame, form.photometric)
        decoded += 1
        if decoded == count:
            return
    raise ValueError(
        f"{path}: expected {count} frame(s) as Number of Frames says, but only {decoded} decoded"
    )


def grey_frames(path: Path, ds: Dataset, *, last: int | None = None) -> npt.NDArray[np.uint8]:
    """Decode frames 1 .. ``last`` of a clip as one ``uint8`` grey stack (:func:`iter_grey_frames`).

    Parameters
    ----------
    path : Path
        The DICOM file.
    ds : pydicom.dataset.Dataset
        Its header.
    last : int, optional
        Last frame wanted (1-based); decoding stops there. Default: every frame.

    Returns
    -------
    ndarray of shape (T, H, W), uint8

    Raises
    ------
    ValueError
        If the image is not one :func:`output_form` can decode, or has fewer
        frames than its header says.
    """
    form = output_form(ds)
    count = _frames_wanted(ds, last)
    rows, cols = form.frame_shape[:2]
    out = np.empty((count, rows, cols), dtype=np.uint8)
    for decoded, frame in enumerate(iter_grey_frames(path, ds, last=count)):
        out[decoded] = frame
    return out


def _frames_wanted(ds: Dataset, last: int | None) -> int:
    """Frames 1 .. ``last`` that the clip has (all of them when ``last`` is ``None``)."""
    total = int(ds.get("NumberOfFrames", 1) or 1)
    return total if last is None else max(0, min(last, total))


def to_little_endian(ds: Dataset) -> None:
    """Re-encode a data set read from a big-endian file as Explicit VR Little Endian, in place.

    Values pydicom parsed (US, SS, FL, ...) are encoded in the new byte order
    when written; the values it keeps as raw bytes (OW, OL, OF, OD, OV, e.g.
    palette LUT Data and overlays) are byte-swapped here, in nested sequences
    too. Pixel Data is left alone: the caller replaces it
    (``Dataset.set_pixel_data``). UN values cannot be swapped without knowing
    their structure and are left as they are.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        With ``file_meta``; nothing happens when it is little endian already.
    """
    if not is_big_endian(ds):
        return
    _swap_raw_values(ds)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_original_encoding(False, True, ds.original_character_set)


def _swap_raw_values(ds: Dataset) -> None:
    for elem in list(ds.elements()):
        if not isinstance(elem, DataElement):
            elem = ds[elem.tag]
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_raw_values(item)
            item_encoding = ds.original_character_set
            for item in elem.value:
                item.set_original_encoding(False, True, item_encoding)
            continue
        width = _SWAPPED_VRS.get(str(elem.VR))
        if width is None or elem.tag == _PIXEL_DATA_TAG or not isinstance(elem.value, bytes | bytearray):
            continue
        elem.value = _swap(bytes(elem.value), width)
