from __future__ import annotations

import pytest

from archive.model import Approach, ReviewStatus, Side, SpinalLevel, Technique, sort_levels


def test_parse_accepts_value_name_and_member() -> None:
    assert Side.parse("left") is Side.LEFT
    assert Side.parse(" RIGHT ") is Side.RIGHT
    assert Side.parse(Side.BILATERAL) is Side.BILATERAL
    assert Technique.parse("ot") is Technique.OT
    assert Approach.parse("in-plane") is Approach.IN_PLANE
    assert ReviewStatus.parse("needs-rework") is ReviewStatus.NEEDS_REWORK


def test_parse_error_lists_valid_values() -> None:
    with pytest.raises(ValueError, match=r"Side: expected one of left, right, bilateral, but got 'middle'"):
        Side.parse("middle")


def test_levels_order_and_span() -> None:
    assert SpinalLevel.span(SpinalLevel.L5, SpinalLevel.L3) == (
        SpinalLevel.L3,
        SpinalLevel.L4,
        SpinalLevel.L5,
    )
    assert SpinalLevel.span(SpinalLevel.L5, SpinalLevel.S1) == (SpinalLevel.L5, SpinalLevel.S1)
    assert sort_levels([SpinalLevel.S1, SpinalLevel.C4, SpinalLevel.L4, SpinalLevel.C4]) == (
        SpinalLevel.C4,
        SpinalLevel.L4,
        SpinalLevel.S1,
    )
    assert SpinalLevel.T12.region == "T"


def test_laterality_codes() -> None:
    assert [s.laterality for s in Side] == ["L", "R", "B"]
