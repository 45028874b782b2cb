"""WADO-RS rendered resources: ``/rendered``, ``/thumbnail`` (JPEG or PNG) and a clip as ``video/mp4``.

A frame is decoded by pydicom (one frame, :func:`pydicom.pixels.pixel_array`
with ``index``; YBR is converted to RGB) and made displayable per
photometric interpretation: MONOCHROME2 through its VOI LUT or window
(:func:`pydicom.pixels.apply_voi_lut`; the data range without one),
MONOCHROME1 the same then inverted, RGB / YBR as they are. The instance
rendered is frame 1 (or the frames asked); a thumbnail is the middle frame
scaled to fit ``viewport`` (default 128×128). ``Accept: video/mp4`` on
``/rendered`` gets the whole clip as H.264 (:mod:`archive.web.video`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from archive.web.errors import WebRequestError
from archive.web.media import negotiate
from archive.web.pixeldata import frame_numbers

_IMAGE_TYPES = ["image/jpeg", "image/png"]
_VIDEO = "video/mp4"


def displayable(frame: np.ndarray, header: Any) -> np.ndarray:
    """8-bit pixels of one decoded frame, ``(H, W)`` or ``(H, W, 3)`` uint8."""
    from pydicom.pixels.processing import apply_voi_lut

    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2"))
    if frame.ndim == 3:
        if frame.dtype == np.uint8:
            return frame
        scale = float(frame.max()) or 1.0
        return np.clip(frame / scale * 255.0, 0, 255).astype(np.uint8)
    values = frame.astype(np.float64)
    if "WindowCenter" in header and "WindowWidth" in header:
        center = float(np.atleast_1d(header.WindowCenter)[0])
        width = float(np.atleast_1d(header.WindowWidth)[0])
        low, high = center - width / 2, center + width / 2
    else:
        if "VOILUTSequence" in header:
            values = np.asarray(apply_voi_lut(frame, header), dtype=np.float64)
        low, high = float(values.min()), float(values.max())
    out = np.clip((values - low) / ((high - low) or 1.0) * 255.0, 0, 255).astype(np.uint8)
    return 255 - out if photometric == "MONOCHROME1" else out


def encode(pixels: np.ndarray, media_type: str, quality: int = 90) -> bytes:
    """JPEG or PNG bytes of 8-bit pixels."""
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    if media_type == "image/png":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _viewport(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    if not text:
        return default
    try:
        width, height = (int(v) for v in text.split(",")[:2])
    except ValueError:
        raise WebRequestError(
            400, f"viewport {text!r}: expected WIDTH,HEIGHT in pixels, e.g. 128,128"
        ) from None
    if not (0 < width <= 4096 and 0 < height <= 4096):
        raise WebRequestError(400, f"viewport {text!r}: expected sizes from 1 to 4096")
    return width, height


def _render(context: Any, request: Request, *, thumbnail: bool) -> Response:
    from pydicom.pixels.utils import pixel_array

    p = request.path_params
    instances = context.instances(p["study"], p.get("series"), p.get("instance"))
    instance = instances[len(instances) // 2] if thumbnail else instances[0]
    header, layout = context.layouts.get(instance.sha256, instance.path)
    if layout is None:
        raise WebRequestError(404, f"instance {instance.sop_instance_uid}: has no Pixel Data to render")
    accept = request.headers.get("accept")
    offered = (
        [*_IMAGE_TYPES, _VIDEO]
        if not thumbnail and len(layout.frames) > 1 and "frames" not in p
        else _IMAGE_TYPES
    )
    choice = negotiate(accept, [], multipart=False, single=offered)
    if choice.part_type == _VIDEO:
        from archive.web.video import clip_mp4

        return FileResponse(clip_mp4(context, instance, header), media_type=_VIDEO)
    frames = len(layout.frames)
    number = frame_numbers(p["frames"], frames)[0] if "frames" in p else (frames + 1) // 2 if thumbnail else 1
    frame = pixel_array(str(instance.path), index=number - 1)
    pixels = displayable(frame, header)
    default = (128, 128) if thumbnail else (pixels.shape[1], pixels.shape[0])
    width, height = _viewport(request.query_params.get("viewport"), default)
    image = Image.fromarray(pixels)
    if (width, height) != (image.width, image.height):
        image.thumbnail((width, height))
    return Response(encode(np.asarray(image), choice.part_type), media_type=choice.part_type)


def rendered_routes(context: Any) -> list[tuple[str, Callable[[Request], Response], list[str]]]:
    """``(path, handler, methods)`` of the rendered resources."""
    s, r, i = "/studies/{study}", "/series/{series}", "/instances/{instance}"

    def rendered(request: Request) -> Response:
        return _render(context, request, thumbnail=False)

    def thumbnail(request: Request) -> Response:
        return _render(context, request, thumbnail=True)

    table: list[tuple[str, Callable[[Request], Response], list[str]]] = []
    for path in (s, f"{s}{r}", f"{s}{r}{i}", f"{s}{r}{i}/frames/{{frames}}"):
        table.append((f"{path}/rendered", rendered, ["GET"]))
        table.append((f"{path}/thumbnail", thumbnail, ["GET"]))
    return table


__all__ = ["displayable", "encode", "rendered_routes"]
