"""measure_shaft on drawn brightening images: reverberation copies, a shaft end hidden on bright bone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archive.analysis.proposals.inplane import measure_shaft, noise_level
from archive.analysis.proposals.params import DEFAULTS, to_pixels

SPACING = 0.25  # mm per working pixel
PARAMS = to_pixels(DEFAULTS, (SPACING, SPACING), 0.066)
SHAPE = (170, 240)
ENTRY = (30.0, 20.0)
ANGLE = 20.0
LENGTH = 170.0  # pixels
#: Reverberation copies: 1.1 mm apart down the beam (rows), as in the hard corpus.
COPY_ROWS = 1.1 / SPACING


def _segment(shape, start, end, width=1.0):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    d = np.subtract(end, start)
    u = np.clip(((rows - start[0]) * d[0] + (cols - start[1]) * d[1]) / float(d @ d), 0.0, 1.0)
    dist = np.hypot(rows - (start[0] + u * d[0]), cols - (start[1] + u * d[1]))
    return np.exp(-((dist / width) ** 2))


def _point(fraction: float) -> tuple[float, float]:
    rad = math.radians(ANGLE)
    return (ENTRY[0] + fraction * LENGTH * math.sin(rad), ENTRY[1] + fraction * LENGTH * math.cos(rad))


def _image(shaft_far: float, copies_near: tuple[float, ...], copies_far: tuple[float, ...], seed: int):
    """Shaft bright over its first 75 %, ``shaft_far`` beyond; copies below, brighter over a shadow."""
    split = _point(0.75)
    tip = _point(1.0)
    image = 8.0 * _segment(SHAPE, ENTRY, split) + shaft_far * _segment(SHAPE, split, tip)
    for k, (near, far) in enumerate(zip(copies_near, copies_far, strict=True), start=1):
        down = k * COPY_ROWS
        image += near * _segment(SHAPE, (ENTRY[0] + down, ENTRY[1]), (split[0] + down, split[1]))
        image += far * _segment(SHAPE, (split[0] + down, split[1]), (tip[0] + down, tip[1]))
    rng = np.random.default_rng(seed)
    image += np.abs(rng.normal(0.0, 0.4, SHAPE))
    # the shaft's far quarter lies on a bright bone surface: the background there is occluded
    occluded = _segment(SHAPE, split, tip, width=2.5) > 0.2
    return image.astype(np.float32), occluded


def _errors(measured) -> tuple[float, float]:
    tip = _point(1.0)
    tip_mm = math.dist(measured.tip, tip) * SPACING
    return tip_mm, abs(measured.angle_deg - ANGLE)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_copies_over_a_shadow_show_the_end_of_a_shaft_hidden_on_bone(seed: int) -> None:
    image, occluded = _image(1.0, (4.0, 2.5, 1.5, 0.8), (7.0, 7.0, 6.0, 5.0), seed)
    measured = measure_shaft(image, PARAMS, noise=noise_level(image), occluded=occluded)
    assert measured is not None
    tip_mm, angle = _errors(measured)
    assert angle <= 1.0, measured
    assert tip_mm <= 1.0, measured


def test_a_clear_shaft_without_copies_ends_at_its_tip() -> None:
    image, _ = _image(8.0, (0.0, 0.0), (0.0, 0.0), 4)
    measured = measure_shaft(image, PARAMS, noise=noise_level(image))
    assert measured is not None
    tip_mm, angle = _errors(measured)
    assert angle <= 0.5 and tip_mm <= 0.5, measured


def test_copies_do_not_carry_the_tip_past_the_end_of_the_shaft() -> None:
    # weak copies in tissue beside a clear shaft: the tip is the shaft's, not pushed further
    image, _ = _image(8.0, (3.0, 2.0, 1.0), (3.0, 2.0, 1.0), 5)
    measured = measure_shaft(image, PARAMS, noise=noise_level(image))
    assert measured is not None
    tip_mm, angle = _errors(measured)
    assert angle <= 0.5 and tip_mm <= 0.5, measured
