"""Temporal modes of marks: what frames between and after keyframes show (archive.review.temporal)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from archive.errors import AnnotationError
from archive.review import ClipAnnotation, MarkKind, NeedleMark, TargetMark
from archive.review.temporal import (
    TEMPORAL_MODES,
    Carry,
    MarkState,
    TemporalMode,
    carry,
    danger_shown,
    spread_shown,
)

SHAPE = (40, 60)


def _disc(row: float, col: float, radius: float) -> np.ndarray:
    rr, cc = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return np.asarray((rr - row) ** 2 + (cc - col) ** 2 <= radius**2)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (TemporalMode.INTERPOLATE, [None, Carry(2), Carry(2, 5), Carry(5), None]),
        (TemporalMode.HOLD, [None, Carry(2), Carry(2), Carry(5), Carry(5)]),
        (TemporalMode.INTERPOLATE_THEN_HOLD, [None, Carry(2), Carry(2, 5), Carry(5), Carry(5)]),
    ],
)
def test_carry_before_on_between_and_after_keyframes(
    mode: TemporalMode, expected: list[Carry | None]
) -> None:
    assert [carry((2, 5), f, mode) for f in (1, 2, 3, 5, 9)] == expected


def test_documented_modes() -> None:
    assert TEMPORAL_MODES == {
        MarkKind.NEEDLE: TemporalMode.INTERPOLATE,
        MarkKind.TARGET: TemporalMode.HOLD,
        MarkKind.DANGER: TemporalMode.HOLD,
        MarkKind.SPREAD: TemporalMode.INTERPOLATE_THEN_HOLD,
    }


def test_danger_held_until_the_next_keyframe_and_after_the_last() -> None:
    canal, root = _disc(10, 10, 4), _disc(30, 40, 5)
    ann = ClipAnnotation.new("1.2.3", "r", 12, SHAPE).with_danger(3, "spinal canal", canal)
    ann = ann.with_danger(7, "nerve root", root)
    assert ann.danger_at(2) == {}
    assert ann.mark_state(MarkKind.DANGER, 2) is None
    for frame in (4, 5, 6):
        assert set(ann.danger_at(frame)) == {"spinal canal"}
        np.testing.assert_array_equal(ann.danger_at(frame)["spinal canal"], canal)
        assert ann.mark_state(MarkKind.DANGER, frame) is MarkState.HELD
    # frame 7 was painted while it held the canal: its keyframe keeps the canal and adds the root
    assert set(ann.danger_at(7)) == {"spinal canal", "nerve root"}
    assert ann.mark_state(MarkKind.DANGER, 7) is MarkState.KEYFRAME
    for frame in (8, 11):
        np.testing.assert_array_equal(ann.danger_at(frame)["nerve root"], root)
        assert ann.is_carried(MarkKind.DANGER, frame)
    assert ann.shown_frames(MarkKind.DANGER) == tuple(range(3, 12))


def test_danger_optionally_interpolated_per_class() -> None:
    danger = {0: {"vessel": _disc(20, 20, 8), "canal": _disc(5, 5, 3)}, 4: {"vessel": _disc(20, 30, 8)}}
    shown = danger_shown(danger, 2, TemporalMode.INTERPOLATE_THEN_HOLD)
    assert shown is not None
    masks, state = shown
    assert state is MarkState.INTERPOLATED
    # the vessel moves half-way; the canal, absent on frame 4, is held until then
    rows, cols = np.nonzero(masks["vessel"])
    assert cols.mean() == pytest.approx(25.0, abs=0.5)
    assert rows.mean() == pytest.approx(20.0, abs=0.5)
    np.testing.assert_array_equal(masks["canal"], danger[0]["canal"])
    assert danger_shown(danger, 2, TemporalMode.HOLD) == (danger[0], MarkState.HELD)


def test_spread_interpolated_by_shape_then_held() -> None:
    small, large = _disc(20, 30, 3), _disc(20, 30, 12)
    ann = ClipAnnotation.new("1.2.3", "r", 10, SHAPE).with_spread(2, small).with_spread(6, large)
    assert ann.spread_at(1) is None
    middle = ann.spread_at(4)
    assert middle is not None
    assert ann.mark_state(MarkKind.SPREAD, 4) is MarkState.INTERPOLATED
    # radius half-way between 3 and 12, within a pixel
    radius = np.sqrt(middle.sum() / np.pi)
    assert radius == pytest.approx(7.5, abs=1.0)
    assert not middle.flags.writeable
    assert (middle >= small).all() and (middle <= large).all()
    for frame in (7, 9):
        np.testing.assert_array_equal(ann.spread_at(frame), large)
        assert ann.mark_state(MarkKind.SPREAD, frame) is MarkState.HELD
    # pure function without a distance cache gives the same
    shown = spread_shown(ann.spread, 4)
    assert shown is not None
    np.testing.assert_array_equal(shown[0], middle)


def _shown(ann: ClipAnnotation, kind: MarkKind, frame: int) -> Any:
    shown = {
        MarkKind.NEEDLE: ann.needle_at,
        MarkKind.TARGET: ann.target_at,
        MarkKind.SPREAD: ann.spread_at,
        MarkKind.DANGER: ann.danger_at,
    }
    return shown[kind](frame)


def test_make_keyframe_stores_what_a_carried_frame_shows() -> None:
    ann = ClipAnnotation.new("1.2.3", "r", 10, SHAPE)
    ann = ann.with_needle(1, NeedleMark(((0.0, 0.0), (10.0, 10.0)))).with_needle(
        5, NeedleMark(((0.0, 0.0), (30.0, 30.0)))
    )
    ann = ann.with_target(1, TargetMark((20.0, 20.0), "L4 SAP–TP junction"))
    ann = ann.with_spread(1, _disc(20, 30, 3)).with_spread(5, _disc(20, 30, 9))
    ann = ann.with_danger(1, "vessel", _disc(5, 5, 2))
    cases = ((MarkKind.NEEDLE, 3), (MarkKind.TARGET, 8), (MarkKind.SPREAD, 3), (MarkKind.DANGER, 4))
    for kind, frame in cases:
        before = _shown(ann, kind, frame)
        keyed = ann.make_keyframe(kind, frame)
        assert keyed.mark_state(kind, frame) is MarkState.KEYFRAME
        assert frame in keyed.keyframes(kind)
        after = _shown(keyed, kind, frame)
        if kind is MarkKind.DANGER:
            np.testing.assert_array_equal(after["vessel"], before["vessel"])
        elif kind is MarkKind.SPREAD:
            np.testing.assert_array_equal(after, before)
        else:
            assert after == before
    with pytest.raises(AnnotationError, match=r"frame 2 a needle keyframe: the frame is a keyframe already"):
        ann.make_keyframe(MarkKind.NEEDLE, 1)
    with pytest.raises(AnnotationError, match=r"frame 9 a needle keyframe: the frame shows no carried mark"):
        ann.make_keyframe(MarkKind.NEEDLE, 8)


def test_shapes_that_do_not_overlap_vanish_between_keyframes() -> None:
    # the documented limit of shape interpolation: mark keyframes closer when a structure jumps
    spread = {0: _disc(20, 10, 4), 4: _disc(20, 50, 4)}
    shown = spread_shown(spread, 2)
    assert shown is not None
    assert not shown[0].any()
