"""Soft tissue and bone in the phantom's anatomy: where injectate can pool."""

from __future__ import annotations

import numpy as np
import pytest

from archive.model import Side, SpinalLevel
from archive.phantom.anatomy import Anatomy, Ellipse, build_anatomy


def _flat_bone(depth: float) -> Anatomy:
    bone = np.array([(-10.0, depth), (10.0, depth)])
    return Anatomy((bone,), ("plate",), (0.0, depth), "t", 1, (3.0,), None, "")


def test_points_below_a_bone_surface_are_not_soft_tissue() -> None:
    anatomy = _flat_bone(20.0)
    soft = anatomy.soft_tissue([0.0, 0.0, 0.0, 15.0], [19.9, 20.1, 35.0, 35.0])
    # above the plate, below it, far below it, and deep but beside the plate's span
    assert soft.tolist() == [True, False, False, True]


def test_fluid_area_is_the_part_of_the_pool_above_the_bone() -> None:
    anatomy = _flat_bone(20.0)
    pool = Ellipse((0.0, 20.0), (4.0, 2.0))  # centred on the surface: half lies in bone
    assert anatomy.fluid_area_mm2(pool) == pytest.approx(pool.area_mm2 / 2.0, rel=0.01)
    above = Ellipse((0.0, 10.0), (4.0, 2.0))
    assert anatomy.fluid_area_mm2(above) == pytest.approx(above.area_mm2, rel=0.01)


@pytest.mark.parametrize("side", [Side.LEFT, Side.RIGHT])
def test_target_lies_on_the_surface_and_bone_is_below_it(side: Side) -> None:
    anatomy = build_anatomy(
        SpinalLevel.L4, side, 30.0, danger=False, oblique=False, rng=np.random.default_rng(3)
    )
    x, y = anatomy.target_mm
    assert anatomy.soft_tissue(x, y - 1.0)
    assert not anatomy.soft_tissue(x, y + 1.5)
