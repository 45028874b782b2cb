"""The spread segmentation on small synthetic darkening maps."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from archive.analysis.proposals.params import DEFAULTS, to_pixels
from archive.analysis.proposals.spread import VARIANCE_RATIO_BOUNDS, _variance_ratio, segment_spread
from archive.phantom.scoring import dice

PARAMS = to_pixels(DEFAULTS, (0.25, 0.25), 1.0 / 15.0)
SHAPE = (120, 120)
TIP = (60.0, 60.0)


def _pool(scale: float) -> npt.NDArray[np.bool_]:
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    return ((rows - TIP[0]) / (12.0 * scale)) ** 2 + ((cols - TIP[1]) / (24.0 * scale)) ** 2 <= 1.0


def _darkening(pool: npt.NDArray[np.bool_], rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """A pool whose darkening is strong at the tip and weak at its rim, over noise, blurred."""
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    falloff = np.exp(-(((rows - TIP[0]) / 8.0) ** 2 + ((cols - TIP[1]) / 16.0) ** 2))
    dark = np.where(pool, 5.0 + 50.0 * falloff, 0.0) + rng.normal(0.0, 1.5, SHAPE)
    blurred: npt.NDArray[np.float32] = ndimage.gaussian_filter(np.maximum(dark, 0.0), 1.5).astype(np.float32)
    return blurred


def test_a_pool_with_a_weak_rim_is_segmented_to_its_edge() -> None:
    """Equal Chan-Vese weights stop short of the weak rim (Dice about 0.8); the variance ratio does not."""
    rng = np.random.default_rng(0)
    grown = None
    for scale in (0.3, 0.5, 0.7, 0.85, 1.0, 1.0):
        grown = segment_spread(_darkening(_pool(scale), rng), TIP, grown, (0, 0), PARAMS)
    assert grown is not None
    assert dice(grown, _pool(1.0)) >= 0.9


def test_the_pool_only_grows() -> None:
    rng = np.random.default_rng(1)
    first = segment_spread(_darkening(_pool(0.8), rng), TIP, None, (0, 0), PARAMS)
    second = segment_spread(np.zeros(SHAPE, np.float32), TIP, first, (0, 0), PARAMS)
    assert first.any() and np.array_equal(first & second, first)


def test_no_darkening_gives_no_pool() -> None:
    rng = np.random.default_rng(2)
    noise = np.maximum(rng.normal(0.0, 1.0, SHAPE), 0.0).astype(np.float32)
    assert not segment_spread(noise, TIP, None, (0, 0), PARAMS).any()


def test_variance_ratio_weights_the_noisier_pool_and_is_bounded() -> None:
    rng = np.random.default_rng(3)
    pool = _pool(1.0)
    patch = np.where(pool, rng.normal(30.0, 6.0, SHAPE), rng.normal(0.0, 2.0, SHAPE)).astype(np.float32)
    assert abs(_variance_ratio(patch, pool) - 9.0) < 1.0
    wild = np.where(pool, rng.normal(30.0, 60.0, SHAPE), rng.normal(0.0, 2.0, SHAPE)).astype(np.float32)
    assert _variance_ratio(wild, pool) == VARIANCE_RATIO_BOUNDS[1]
    assert _variance_ratio(-wild, ~pool) == VARIANCE_RATIO_BOUNDS[0]
    assert _variance_ratio(patch, np.zeros(SHAPE, bool)) == 1.0
