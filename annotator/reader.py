"""npe2 reader: DICOM ultrasound clips as calibrated, lazily decoded napari image layers.

napari calls :func:`get_reader` with a path; it returns :func:`read_clips` for
DICOM files (extension ``.dcm``/``.dicom``, or any other name whose bytes
128-131 are ``DICM``), a ``DICOMDIR`` and folders holding DICOM files
(:mod:`annotator.reader_folders`), and ``None`` for everything else, so other
readers get their turn. Each clip opens as its own layer. To make napari
prefer this reader over its own for DICOM, see
:mod:`annotator.reader_preference`.

The layer
---------
* data: a :class:`~annotator.frames.ClipFrames`, shape ``(T, H, W)`` or
  ``(T, H, W, 3)``; frames decode when napari shows them, and the next
  frames are decoded ahead in a background thread.
* axes ``("t", "y", "x")``. The time axis keeps scale 1, one step per frame:
  steps stay frame indices (what annotations and events refer to), and a
  Frame Time Vector need not be uniform, so a scale in seconds would be wrong
  for some clips. The time in seconds is shown by
  :func:`annotator.overlay.attach_time_overlay` from ``metadata["frame_times_ms"]``.
* ``scale`` ``(1, row_mm, col_mm)`` and ``units`` ``("pixel", "mm", "mm")`` from
  the primary 2D tissue region of the Sequence of Ultrasound Regions. Without
  a usable region: scale ``(1, 1, 1)``, units pixel, ``metadata["calibrated"]``
  False and the layer name ends in ``" (uncalibrated)"``; pixel spacing is
  never guessed.
* ``metadata``: see :func:`layer_metadata`.

A frame that cannot be decoded is shown black and reported once with
napari's ``show_error`` notification; the layer stays open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from annotator.errors import ClipOpenError, FrameDecodeError
from annotator.frames import DEFAULT_CACHE_FRAMES, DEFAULT_PREFETCH_FRAMES, ClipFrames
from annotator.reader_folders import dicomdir_files, folder_files, has_dicom, is_dicomdir
from archive.calibration import Calibration, calibration_or_none
from archive.errors import TimingError
from archive.timing import frame_times

logger = logging.getLogger(__name__)

#: File name suffixes read without looking at the content (lower case).
DICOM_SUFFIXES = (".dcm", ".dicom")
#: Appended to the layer name of a clip without region calibration.
UNCALIBRATED_MARK = " (uncalibrated)"

_MAGIC_OFFSET = 128
_MAGIC = b"DICM"

LayerData = tuple[Any, dict[str, Any], str]
PathOrPaths = str | Path | Sequence[str | Path]


def is_dicom_file(path: str | Path) -> bool:
    """Whether ``path`` is a file this reader handles.

    Parameters
    ----------
    path : str or Path
        A file or directory napari was asked to open.

    Returns
    -------
    bool
        True for a file named ``*.dcm`` or ``*.dicom`` (any case), or any
        other file with ``DICM`` at byte 128 (scanner exports are often named
        ``IM000001`` or by UID). False for directories and missing files.
    """
    candidate = Path(path)
    if not candidate.is_file():
        return False
    if candidate.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with candidate.open("rb") as fh:
            fh.seek(_MAGIC_OFFSET)
            return fh.read(len(_MAGIC)) == _MAGIC
    except OSError:
        return False


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """npe2 reader contribution: :func:`read_clips` when every path is DICOM, else ``None``.

    Parameters
    ----------
    path : str, Path or sequence of them
        What napari asks to open.
    """
    paths = [path] if isinstance(path, str | Path) else list(path)
    if paths and all(
        is_dicom_file(p) or (Path(p).is_dir() and has_dicom(Path(p), is_dicom_file)) for p in paths
    ):
        return read_clips
    return None


def read_clips(path: PathOrPaths) -> list[LayerData]:
    """Read one or more DICOM clips as napari layer data tuples.

    Parameters
    ----------
    path : str, Path or sequence of them
        DICOM files, DICOMDIRs, or folders holding DICOM files.

    Returns
    -------
    list of (ClipFrames, dict, "image")
        One image layer per clip. Instances of a DICOMDIR or folder that hold
        no image (a report, a presentation state) are skipped and logged.

    Raises
    ------
    annotator.errors.ClipOpenError
        If a file given by name is not a clip, or a folder or DICOMDIR holds no clip.
    """
    paths = [path] if isinstance(path, str | Path) else list(path)
    layers: list[LayerData] = []
    for given in map(Path, paths):
        if given.is_dir() or is_dicomdir(given):
            files = folder_files(given, is_dicom_file) if given.is_dir() else dicomdir_files(given)
            found = []
            for file in files:
                try:
                    found.append(read_clip(file, on_error=notify_frame_error))
                except ClipOpenError as exc:
                    logger.info("skipped %s in %s: %s", file, given, exc)
            if not found:
                raise ClipOpenError(
                    f"{given}: expected DICOM image clips in it, but found none among {len(files)} "
                    "DICOM file(s); open a folder of ultrasound clips"
                )
            layers.extend(found)
        else:
            layers.append(read_clip(given, on_error=notify_frame_error))
    return layers


def notify_frame_error(error: FrameDecodeError) -> None:
    """Show a frame decoding error as a napari error notification."""
    from napari.utils.notifications import show_error

    show_error(str(error))


def read_clip(
    path: str | Path,
    *,
    cache_frames: int = DEFAULT_CACHE_FRAMES,
    on_error: Callable[[FrameDecodeError], None] | None = None,
    prefetch_frames: int = DEFAULT_PREFETCH_FRAMES,
) -> LayerData:
    """One DICOM clip as an image layer data tuple.

    Parameters
    ----------
    path : str or Path
        A DICOM file with Pixel Data.
    cache_frames : int, optional
        Decoded frames kept in memory.
    on_error : callable, optional
        Receives frame decoding errors (the frame is then shown black);
        without it they are raised when napari draws the frame.
    prefetch_frames : int, optional
        Frames decoded ahead of the shown one in a background thread
        (see :class:`~annotator.frames.ClipFrames`); 0 turns prefetching off.

    Returns
    -------
    (ClipFrames, dict, "image")
        Layer data, keyword arguments of :class:`napari.layers.Image`, layer type.

    Raises
    ------
    annotator.errors.ClipOpenError
        If the file has no decodable image layout.
    """
    frames = ClipFrames(path, cache_frames=cache_frames, on_error=on_error, prefetch_frames=prefetch_frames)
    header = frames.header
    calibration = calibration_or_none(header)
    metadata = layer_metadata(frames, calibration)
    if calibration is not None:
        row_mm, col_mm = calibration.pixel_size_mm
        scale = (1.0, row_mm, col_mm)
        units = ("pixel", "mm", "mm")
    else:
        scale = (1.0, 1.0, 1.0)
        units = ("pixel", "pixel", "pixel")
    name = str(header.get("SeriesDescription") or "").strip() or frames.path.stem
    if calibration is None:
        name += UNCALIBRATED_MARK
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": scale,
        "units": units,
        "axis_labels": ("t", "y", "x"),
        "rgb": frames.rgb,
        "metadata": metadata,
        "contrast_limits": _contrast_limits(frames),
    }
    logger.info(
        "opened %s: %d frames of %s, %s",
        frames.path.name,
        len(frames),
        frames.shape[1:],
        "calibrated" if calibration is not None else "uncalibrated",
    )
    return frames, kwargs, "image"


def layer_metadata(frames: ClipFrames, calibration: Calibration | None) -> dict[str, Any]:
    """What the annotator keeps about a clip in ``layer.metadata``.

    Parameters
    ----------
    frames : ClipFrames
        The clip's frames (and header).
    calibration : Calibration or None
        From :func:`archive.calibration.calibration_or_none`.

    Returns
    -------
    dict
        ``path`` (str), ``sop_instance_uid`` (str), ``number_of_frames``
        (int), ``frame_times_ms`` (tuple of float, start of each frame from
        the first, or ``None`` when the clip has no timing),
        ``frame_time_source`` (str or ``None``), ``timing_problem`` (str or
        ``None``), ``calibrated`` (bool), ``pixel_size_mm`` ((row, col) in mm
        or ``None``), ``calibration`` (a one-line summary), ``clip_frames``
        (the :class:`ClipFrames`, for decode statistics).
    """
    header = frames.header
    times_ms: tuple[float, ...] | None
    try:
        times = frame_times(header)
        times_ms, source, problem = times.offsets_ms, times.source, None
    except TimingError as exc:
        times_ms, source, problem = None, None, str(exc)
    if times_ms is not None and len(times_ms) != len(frames):
        problem = f"{len(times_ms)} frame times for {len(frames)} frames; times are not shown"
        times_ms = None
    return {
        "path": str(frames.path),
        "sop_instance_uid": str(header.get("SOPInstanceUID", "")),
        "number_of_frames": len(frames),
        "frame_times_ms": times_ms,
        "frame_time_source": source,
        "timing_problem": problem,
        "calibrated": calibration is not None,
        "pixel_size_mm": calibration.pixel_size_mm if calibration is not None else None,
        "calibration": _calibration_summary(header, calibration),
    }


def _calibration_summary(header: Dataset, calibration: Calibration | None) -> str:
    if calibration is None:
        regions = header.get("SequenceOfUltrasoundRegions")
        found = f"{len(regions)} region(s), none 2D tissue in cm" if regions else "no ultrasound regions"
        return f"uncalibrated: {found}; distances are in pixels only"
    region = calibration.primary_region
    row_mm, col_mm = region.pixel_size_mm
    return (
        f"calibrated: {row_mm:.4g} x {col_mm:.4g} mm per pixel (row x col) from region "
        f"rows {region.min_y0}..{region.max_y1}, cols {region.min_x0}..{region.max_x1}"
    )


def _contrast_limits(frames: ClipFrames) -> tuple[float, float]:
    """Display range without decoding the clip: the dtype's range for 8-bit, else frame 0's."""
    if frames.dtype == np.uint8:
        return 0.0, 255.0
    first = frames[0]
    low, high = float(first.min()), float(first.max())
    return (low, high) if high > low else (low, low + 1.0)
