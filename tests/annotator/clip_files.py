"""Small ultrasound multi-frame DICOM files written for the annotator tests and benchmark.

Frames are drawn so each one differs (a bright bar whose row is the frame
index), JPEG Baseline frames are encoded with Pillow (4:2:2 YCbCr for colour,
as scanners store them).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

#: Region calibration used by :func:`write_clip`: cm per pixel along X (cols) and Y (rows).
DELTA_X_CM = 0.02
DELTA_Y_CM = 0.025


def moving_bar_frames(n_frames: int, rows: int, cols: int, *, rgb: bool = False) -> NDArray[np.uint8]:
    """Frames of shape (T, H, W) or (T, H, W, 3), uint8: frame ``t`` has a bright bar at row ``t % H``."""
    frames = np.full((n_frames, rows, cols), 40, dtype=np.uint8)
    for t in range(n_frames):
        row = (t * 3) % (rows - 4)
        frames[t, row : row + 4, :] = 220
    if not rgb:
        return frames
    colour = np.stack([frames, frames // 2, 255 - frames], axis=-1)
    return np.ascontiguousarray(colour)


def _jpeg(frame: NDArray[np.uint8], quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    # subsampling=1 is 4:2:2, which is what YBR_FULL_422 declares.
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality, subsampling=1)
    return buffer.getvalue()


def _region() -> Dataset:
    item = Dataset()
    item.RegionLocationMinX0 = 0
    item.RegionLocationMinY0 = 0
    item.RegionLocationMaxX1 = 10_000
    item.RegionLocationMaxY1 = 10_000
    item.RegionSpatialFormat = 1
    item.RegionDataType = 1
    item.RegionFlags = 0
    item.PhysicalUnitsXDirection = 3
    item.PhysicalUnitsYDirection = 3
    item.PhysicalDeltaX = DELTA_X_CM
    item.PhysicalDeltaY = DELTA_Y_CM
    return item


def _dataset(
    n_frames: int,
    rows: int,
    cols: int,
    *,
    rgb: bool,
    jpeg: bool,
    calibrated: bool,
    frame_time_ms: float | None,
    series_description: str,
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.PatientName = "TEST^CLIP"
    ds.PatientID = "T0001"
    ds.SeriesDescription = series_description
    ds.ContentDate = "20240506"
    ds.ContentTime = "101230"
    ds.NumberOfFrames = n_frames
    if frame_time_ms is not None:
        ds.FrameTime = frame_time_ms
        ds.FrameIncrementPointer = 0x00181063
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if rgb:
        ds.PlanarConfiguration = 0
    if calibrated:
        ds.SequenceOfUltrasoundRegions = Sequence([_region()])
    if jpeg:
        ds.PhotometricInterpretation = "YBR_FULL_422" if rgb else "MONOCHROME2"
        ds.LossyImageCompression = "01"
    else:
        ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    return ds


def _set_encapsulated(ds: Dataset, encoded: list[bytes], fragments_per_frame: int, bot: bool) -> None:
    ds.PixelData = encapsulate(encoded, fragments_per_frame=fragments_per_frame, has_bot=bot)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def write_clip(
    path: Path,
    frames: NDArray[np.uint8],
    *,
    jpeg: bool = True,
    calibrated: bool = True,
    frame_time_ms: float | None = 50.0,
    series_description: str = "L4/5 MBB R",
    corrupt_frames: tuple[int, ...] = (),
    fragments_per_frame: int = 1,
    basic_offset_table: bool = False,
) -> Path:
    """Write an Ultrasound Multi-frame Image of ``frames`` to ``path``.

    ``corrupt_frames``: indices of JPEG frames replaced by garbage bytes.
    ``fragments_per_frame`` and ``basic_offset_table``: how the JPEG frames are
    encapsulated.
    """
    n_frames, rows, cols = frames.shape[:3]
    rgb = frames.ndim == 4
    ds = _dataset(
        n_frames,
        rows,
        cols,
        rgb=rgb,
        jpeg=jpeg,
        calibrated=calibrated,
        frame_time_ms=frame_time_ms,
        series_description=series_description,
    )
    if jpeg:
        encoded = [_jpeg(frame) for frame in frames]
        for index in corrupt_frames:
            # Keep the SOI marker, then bytes no JPEG decoder accepts.
            encoded[index] = b"\xff\xd8" + bytes(range(256)) * 4
        _set_encapsulated(ds, encoded, fragments_per_frame, basic_offset_table)
    else:
        ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_jpeg_clip(
    path: Path,
    frame_at: Callable[[int], NDArray[np.uint8]],
    n_frames: int,
    *,
    frame_time_ms: float = 33.0,
    quality: int = 85,
) -> Path:
    """Write a calibrated JPEG Baseline clip whose frame ``t`` is ``frame_at(t)``.

    One frame is in memory at a time (plus the encoded clip).

    ``frame_at`` returns (H, W) or (H, W, 3) uint8 arrays, all the same shape.
    """
    first = frame_at(0)
    ds = _dataset(
        n_frames,
        first.shape[0],
        first.shape[1],
        rgb=first.ndim == 3,
        jpeg=True,
        calibrated=True,
        frame_time_ms=frame_time_ms,
        series_description="benchmark clip",
    )
    encoded = [_jpeg(frame_at(t), quality) for t in range(n_frames)]
    _set_encapsulated(ds, encoded, 1, False)
    ds.save_as(path, enforce_file_format=True)
    return path
