"""Burned-in annotation outside the 2D region: header banner and depth scale.

Scanners write the patient's name, ID and the date into a header bar above
the image; a de-identification test needs exactly that. Text is drawn with
Pillow's built-in bitmap font so the pixels do not depend on installed fonts.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from archive.phantom.geometry import BANNER_ROWS, Layout
from archive.phantom.spec import ClipSpec

_WHITE = (255, 255, 255)
_AMBER = (236, 196, 92)
_SCALE = (200, 210, 220)


def banner_lines(spec: ClipSpec) -> tuple[str, str, str, str]:
    """The four text fields: left and right of line 1, left and right of line 2.

    The right-hand fields are left out of the image when the image is too
    narrow for them; the patient name, ID, birth date and the date always fit
    from 260 columns on.
    """
    who = spec.identity
    return (
        f"{who.patient_name} ID:{who.patient_id}",
        f"DOB:{who.birth_date:%Y-%m-%d}",
        f"{spec.study_date:%Y-%m-%d} {spec.content_time:%H:%M:%S}",
        f"{who.institution}  C5-2 MSK {spec.depth_mm / 10.0:.1f}cm",
    )


def draw_annotation(spec: ClipSpec, layout: Layout) -> npt.NDArray[np.uint8]:
    """Banner and depth scale on black, outside the region rectangle.

    Parameters
    ----------
    spec : ClipSpec
        Supplies the patient text, dates and depth.
    layout : Layout
        Region rectangle and spacing (for the scale ticks).

    Returns
    -------
    ndarray of shape (rows, cols, 3), uint8
        RGB overlay; zero wherever nothing is drawn.
    """
    image = Image.new("RGB", (layout.cols, layout.rows))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default_imagefont()
    left1, right1, left2, right2 = banner_lines(spec)
    for left, right, y, colour in ((left1, right1, 3, _WHITE), (left2, right2, 16, _AMBER)):
        draw.text((4, y), left, fill=colour, font=font)
        left_end = 4 + int(draw.textlength(left, font=font))
        width = int(draw.textlength(right, font=font))
        if left_end + 8 + width <= layout.cols - 4:
            draw.text((layout.cols - width - 4, y), right, fill=colour, font=font)
    # keep the banner strictly within its rows whatever the font does
    pixels = np.asarray(image).copy()
    pixels[BANNER_ROWS:] = 0

    scale = Image.new("RGB", (layout.cols, layout.rows))
    draw = ImageDraw.Draw(scale)
    _, _, max_col, max_row = layout.region
    x0 = max_col + 5
    for depth_mm in range(0, int(layout.depth_mm) + 1, 5):
        row = layout.ref_row + depth_mm / layout.spacing_mm
        if row > max_row:
            break
        tick = 7 if depth_mm % 10 == 0 else 4
        draw.line([(x0, round(row)), (x0 + tick, round(row))], fill=_SCALE)
        if depth_mm % 20 == 0 and depth_mm > 0:
            draw.text((x0 + 10, round(row) - 5), f"{depth_mm // 10}", fill=_SCALE, font=font)
    scale_pixels = np.asarray(scale).copy()
    scale_pixels[:, : max_col + 1] = 0
    result: npt.NDArray[np.uint8] = np.maximum(pixels, scale_pixels)
    return result
