"""A clip as ``video/mp4`` (H.264), encoded once per stored file and cached beside the store.

Frames are decoded with pydicom one at a time, made 8-bit RGB
(:func:`archive.web.rendered.displayable`) and piped into the ffmpeg that the
``imageio-ffmpeg`` wheel ships (``libx264``, ``yuv420p``, ``+faststart`` so a
browser can play while it downloads). The frame rate is the clip's (Frame
Time, or Cine Rate; 25/s without either). The file is written to a temporary
name and renamed, keyed by the stored file's SHA-256 under
``<data_dir>/web-cache/mp4/``; concurrent requests for one clip encode it once.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from archive.web.catalog import StoredInstance
from archive.web.errors import WebRequestError

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def frame_rate(header: Any) -> float:
    """Frames per second of a clip from Frame Time (ms) or Cine Rate; 25 without either."""
    frame_time = header.get("FrameTime")
    if frame_time:
        return 1000.0 / float(frame_time)
    cine = header.get("CineRate") or header.get("RecommendedDisplayFrameRate")
    return float(cine) if cine else 25.0


def _even(pixels: np.ndarray) -> np.ndarray:
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)
    height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2  # yuv420p needs even sizes
    return np.ascontiguousarray(rgb[:height, :width])


def clip_mp4(context: Any, instance: StoredInstance, header: Any) -> Path:
    """The cached MP4 of ``instance``, encoded on first use.

    Raises
    ------
    WebRequestError
        500 when ffmpeg fails (its message).
    """
    import imageio_ffmpeg  # type: ignore[import-untyped]
    from pydicom.pixels.utils import iter_pixels

    from archive.web.rendered import displayable

    directory = context.archive.settings.data_dir / "web-cache" / "mp4"
    target = directory / f"{instance.sha256}.mp4"
    if target.is_file():
        return Path(target)
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(instance.sha256, threading.Lock())
    with lock:
        if target.is_file():
            return Path(target)
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".{instance.sha256}.{os.getpid()}.{threading.get_ident()}.mp4"
        rows, columns = int(header.Rows) // 2 * 2, int(header.Columns) // 2 * 2
        writer = imageio_ffmpeg.write_frames(
            str(partial),
            (columns, rows),
            fps=frame_rate(header),
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=2,
            output_params=["-movflags", "+faststart"],
            ffmpeg_log_level="error",
        )
        try:
            writer.send(None)
            for frame in iter_pixels(str(instance.path)):
                writer.send(_even(displayable(frame, header)))
            writer.close()
            with partial.open("rb") as handle:
                os.fsync(handle.fileno())
            partial.replace(target)
        except Exception as exc:
            partial.unlink(missing_ok=True)
            raise WebRequestError(500, f"encoding {instance.sop_instance_uid} as MP4 failed: {exc}") from exc
    return Path(target)
