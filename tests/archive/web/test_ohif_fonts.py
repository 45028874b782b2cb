"""Headless Chromium draws the samples' Chinese text as glyphs, not boxes ("tofu"): a CJK font is installed.

OHIF and the landing page render names and descriptions with the browser's
fonts; without a CJK font (Debian ``fonts-noto-cjk``, installed by
``scripts/system-deps.sh``) every CJK character is the same missing-glyph
box. Each character of the Chinese sample's Series Description is drawn on a
canvas and compared with the others and with a code point no font has.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pydicom

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from ohif_served import chromium  # noqa: E402
from web_served import SAMPLES  # noqa: E402

#: Unassigned in Unicode (Greek block): drawn as the missing-glyph box by any font.
UNASSIGNED = "\u0378"

_DRAW = """(text) => {
  const canvas = document.createElement('canvas');
  canvas.width = 64; canvas.height = 64;
  const context = canvas.getContext('2d');
  context.fillStyle = 'white'; context.fillRect(0, 0, 64, 64);
  context.fillStyle = 'black'; context.font = '48px sans-serif'; context.textBaseline = 'top';
  context.fillText(text, 4, 4);
  return canvas.toDataURL('image/png');
}"""


def test_chromium_draws_each_cjk_character_of_the_samples_as_its_own_glyph() -> None:
    header = pydicom.dcmread(SAMPLES / "l5_ot_inplane_oblique_chinese_jpeg.dcm", stop_before_pixels=True)
    characters = sorted({c for c in str(header.SeriesDescription) if ord(c) >= 0x2E80})
    assert len(characters) >= 4, header.SeriesDescription
    with chromium() as browser:
        page = browser.new_page()
        page.set_content("<html><body></body></html>")
        missing = page.evaluate(_DRAW, UNASSIGNED)
        drawn = {c: page.evaluate(_DRAW, c) for c in characters}
        page.close()
    boxes = [c for c, image in drawn.items() if image == missing]
    assert not boxes, f"drawn as missing glyphs: {boxes}; install fonts-noto-cjk (scripts/system-deps.sh)"
    assert len(set(drawn.values())) == len(characters), "several characters drew the same image"
