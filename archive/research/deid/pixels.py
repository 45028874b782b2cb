"""Clean Pixel Data: blank every pixel outside the 2D ultrasound regions.

Ultrasound scanners burn patient name, ID, birth date and institution into a
header banner above the image. Everything the B-mode image shows lies inside
the 2D regions (RegionSpatialFormat 1) of the Sequence of Ultrasound Regions,
so zeroing every pixel outside them, on every frame, removes the banner while
leaving the image untouched. Text an operator typed *inside* a region is not
found this way (see docs/deidentification.md).

:func:`blank_outside_regions` is the pure array operation;
:func:`clean_pixel_data` decodes a dataset's frames, blanks them and stores
them back uncompressed (Explicit VR Little Endian).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID

from archive.calibration import SPATIAL_FORMAT_2D, Calibration, UltrasoundRegion
from archive.errors import CalibrationError, DeidentificationError
from archive.pixels import to_little_endian

logger = logging.getLogger(__name__)

_ALLOW_FLAG = "allow_uncalibrated=True (--allow-uncalibrated on the command line)"


def keep_mask(shape: tuple[int, int], regions: Sequence[UltrasoundRegion]) -> npt.NDArray[np.bool_]:
    """Pixels inside any 2D region's inclusive rectangle.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of a frame.
    regions : sequence of UltrasoundRegion
        Regions of other spatial formats (M-mode, Doppler) are ignored;
        rectangles reaching past the frame are clipped to it.

    Returns
    -------
    ndarray of shape (rows, cols), bool
    """
    rows, cols = shape
    mask = np.zeros((rows, cols), dtype=bool)
    for region in regions:
        if region.spatial_format != SPATIAL_FORMAT_2D:
            continue
        top, bottom = max(region.min_y0, 0), min(region.max_y1, rows - 1)
        left, right = max(region.min_x0, 0), min(region.max_x1, cols - 1)
        if top <= bottom and left <= right:
            mask[top : bottom + 1, left : right + 1] = True
    return mask


def blank_outside_regions(
    frames: npt.NDArray[np.generic], regions: Sequence[UltrasoundRegion]
) -> npt.NDArray[np.generic]:
    """Zero every pixel outside the 2D regions, on every frame.

    Parameters
    ----------
    frames : ndarray of shape (T, H, W) or (T, H, W, 3)
        Frames, usually uint8 (any numeric dtype is kept).
    regions : sequence of UltrasoundRegion
        The image's regions; only RegionSpatialFormat 1 (2D) keeps pixels.

    Returns
    -------
    ndarray
        A new array of the same shape and dtype; pixels inside a 2D region
        equal the input, all others are 0. With no 2D region every pixel is 0.

    Raises
    ------
    ValueError
        If ``frames`` is not 3-D, or 4-D with 3 samples per pixel.
    """
    if frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] != 3):
        raise ValueError(
            f"frames: expected an array of shape (T, H, W) or (T, H, W, 3), but got shape {frames.shape}"
        )
    mask = keep_mask((frames.shape[1], frames.shape[2]), regions)
    out = np.zeros_like(frames)
    out[:, mask] = frames[:, mask]
    return out


def tissue_regions(ds: Dataset, *, allow_uncalibrated: bool = False) -> tuple[UltrasoundRegion, ...]:
    """The 2D regions whose pixels survive cleaning.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The original instance (header suffices).
    allow_uncalibrated : bool
        Return an empty tuple instead of raising when there is no usable 2D
        region; the caller then leaves the pixels as they are and must mark
        the clip as not pixel-cleaned.

    Returns
    -------
    tuple of UltrasoundRegion
        Only regions with RegionSpatialFormat 1.

    Raises
    ------
    DeidentificationError
        If the Sequence of Ultrasound Regions is absent, malformed or holds
        no 2D region and ``allow_uncalibrated`` is false.
    """
    try:
        found = Calibration.from_dataset(ds).regions
        regions = tuple(r for r in found if r.spatial_format == SPATIAL_FORMAT_2D)
        problem = "" if regions else "its Sequence of Ultrasound Regions has no 2D region (spatial format 1)"
    except CalibrationError as exc:
        regions, problem = (), str(exc)
    if regions or allow_uncalibrated:
        return regions
    sop = ds.get("SOPInstanceUID", "<no SOPInstanceUID>")
    raise DeidentificationError(
        f"instance {sop}: expected 2D ultrasound regions to blank the burned-in banner around them "
        f"(Clean Pixel Data), but {problem}; the clip is refused. Pass {_ALLOW_FLAG} to export it "
        "with its pixels unchanged and marked as not pixel-cleaned"
    )


def clean_pixel_data(ds: Dataset, regions: Sequence[UltrasoundRegion]) -> None:
    """Blank ``ds``'s pixels outside ``regions`` and store them uncompressed, in place.

    Compressed frames (JPEG Baseline, JPEG Lossless, JPEG 2000, RLE) are
    decoded one at a time and blanked as they come into one array of the
    clip (memory: the decoded clip, plus its bytes while they are stored);
    colour frames are converted to RGB. The result is stored natively:
    Transfer Syntax Explicit VR Little Endian (a big-endian data set is
    re-encoded, :func:`archive.pixels.to_little_endian`), Photometric
    Interpretation RGB for colour (MONOCHROME1/2 and PALETTE COLOR are kept;
    palette pixels are blanked to index 0). Lossy Image Compression, its
    ratio and method are left as they were: the pixels
    stay lossy-compressed ones.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        With ``file_meta.TransferSyntaxUID`` and Pixel Data.
    regions : sequence of UltrasoundRegion
        Regions to keep (2D ones only are used).

    Raises
    ------
    DeidentificationError
        If the transfer syntax is unknown, there is no Pixel Data, or the
        frames cannot be decoded (e.g. a missing pylibjpeg plugin).
    """
    sop = ds.get("SOPInstanceUID", "<no SOPInstanceUID>")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None or "PixelData" not in ds:
        raise DeidentificationError(
            f"instance {sop}: expected Pixel Data and a Transfer Syntax UID in the file meta to clean the "
            "pixels, but one is missing; read the file with pydicom.dcmread (not stop_before_pixels)"
        )
    frame_count = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        decoder = get_decoder(UID(syntax))
        frames: npt.NDArray[np.generic] | None = None
        outside: npt.NDArray[np.bool_] | None = None
        photometric = str(ds.PhotometricInterpretation)
        for index, (frame, info) in enumerate(decoder.iter_array(ds, as_rgb=True)):
            if frames is None or outside is None:
                frames = np.empty((frame_count, *frame.shape), dtype=frame.dtype)
                outside = ~keep_mask((frame.shape[0], frame.shape[1]), regions)
                photometric = str(info.get("photometric_interpretation", photometric))
            frames[index] = frame
            frames[index][outside] = 0  # blank as we go: one decoded clip in memory, no copy
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        raise DeidentificationError(
            f"instance {sop}: expected pixel data that pydicom can decode (transfer syntax {syntax}), "
            f"but decoding failed: {exc}; install the pylibjpeg plugins or export without cleaning"
        ) from exc
    if frames is None:
        raise DeidentificationError(f"instance {sop}: expected at least one frame, but Pixel Data is empty")
    cleaned = frames if "NumberOfFrames" in ds else frames[0]
    # pydicom gives new Pixel Data only to little-endian data sets: re-encode a big-endian one
    # (its OW/OF/... values byte-swapped) as Explicit VR Little Endian first.
    to_little_endian(ds)
    ds.set_pixel_data(
        cleaned,
        photometric_interpretation=photometric,
        bits_stored=int(ds.BitsStored),
        generate_instance_uid=False,
    )
    logger.info(
        "instance %s: blanked pixels outside %d 2D region(s) on %d frame(s)", sop, len(regions), frame_count
    )
