from __future__ import annotations

import numpy as np
import pytest

from archive.errors import AnnotationError
from archive.model import ClipEvent, NeedleView, ReviewStatus
from archive.review import ClipAnnotation, MarkKind, NeedleMark, ReviewComment, TargetMark
from archive.review.temporal import MarkState, TemporalMode, target_shown

IN, OUT = NeedleView.IN_PLANE, NeedleView.OUT_OF_PLANE
TARGET = "L5 SAP–TP junction"


@pytest.fixture
def empty() -> ClipAnnotation:
    return ClipAnnotation.new("1.2.826.0.1.3680043.8.498.1", "ann", 20, (64, 80))


@pytest.fixture
def keyed(empty: ClipAnnotation) -> ClipAnnotation:
    """Needle keyframes at 2 and 6 (in-plane, advancing), target keyframes at 2 and 10."""
    return (
        empty.with_needle(2, NeedleMark(((0.0, 0.0), (10.0, 20.0)), IN))
        .with_needle(6, NeedleMark(((0.0, 4.0), (30.0, 40.0)), IN))
        .with_target(2, TargetMark((40.0, 50.0), TARGET))
        .with_target(10, TargetMark((48.0, 42.0), TARGET))
    )


def test_new_is_empty_draft(empty: ClipAnnotation) -> None:
    assert empty.status is ReviewStatus.DRAFT
    assert empty.editable
    for kind in MarkKind:
        assert empty.keyframes(kind) == ()
    assert empty.needle_at(5) is None
    assert empty.tip_at(5) is None
    assert empty.target_at(5) is None


def test_keyframe_returned_as_is(keyed: ClipAnnotation) -> None:
    assert keyed.needle_at(2) == NeedleMark(((0.0, 0.0), (10.0, 20.0)), IN)
    assert keyed.is_keyframe(MarkKind.NEEDLE, 2)
    assert not keyed.is_interpolated(MarkKind.NEEDLE, 2)


def test_needle_interpolated_between_keyframes(keyed: ClipAnnotation) -> None:
    # frame 3 is a quarter of the way from 2 to 6
    mark = keyed.needle_at(3)
    assert mark == NeedleMark(((0.0, 1.0), (15.0, 25.0)), IN)
    assert keyed.tip_at(3) == (15.0, 25.0)
    assert keyed.is_interpolated(MarkKind.NEEDLE, 3)
    assert not keyed.is_keyframe(MarkKind.NEEDLE, 3)


def test_no_extrapolation_outside_keyframes(keyed: ClipAnnotation) -> None:
    assert keyed.needle_at(1) is None
    assert keyed.needle_at(7) is None
    assert not keyed.is_interpolated(MarkKind.NEEDLE, 7)
    assert keyed.mark_state(MarkKind.NEEDLE, 7) is None
    assert keyed.target_at(1) is None
    assert keyed.mark_state(MarkKind.TARGET, 1) is None


def test_target_held_between_and_after_keyframes(keyed: ClipAnnotation) -> None:
    assert keyed.target_at(6) == TargetMark((40.0, 50.0), TARGET)
    assert keyed.mark_state(MarkKind.TARGET, 6) is MarkState.HELD
    assert keyed.is_carried(MarkKind.TARGET, 6)
    assert not keyed.is_interpolated(MarkKind.TARGET, 6)
    # after the last keyframe, to the end of the clip
    for frame in (11, 19):
        assert keyed.target_at(frame) == TargetMark((48.0, 42.0), TARGET)
        assert keyed.mark_state(MarkKind.TARGET, frame) is MarkState.HELD
    assert keyed.mark_state(MarkKind.TARGET, 10) is MarkState.KEYFRAME
    assert keyed.shown_frames(MarkKind.TARGET) == tuple(range(2, 20))
    assert keyed.shown_frames(MarkKind.NEEDLE) == tuple(range(2, 7))


def test_target_optionally_interpolated(keyed: ClipAnnotation) -> None:
    shown = target_shown(keyed.target, 6, TemporalMode.INTERPOLATE_THEN_HOLD)
    assert shown == (TargetMark((44.0, 46.0), TARGET), MarkState.INTERPOLATED)
    assert target_shown(keyed.target, 15, TemporalMode.INTERPOLATE_THEN_HOLD) == (
        TargetMark((48.0, 42.0), TARGET),
        MarkState.HELD,
    )
    assert target_shown(keyed.target, 15, TemporalMode.INTERPOLATE) is None


def test_target_held_not_interpolated_between_different_targets(keyed: ClipAnnotation) -> None:
    changed = keyed.with_target(10, TargetMark((48.0, 42.0), "S1 SAP–sacral ala junction"))
    assert changed.target_at(6) == TargetMark((40.0, 50.0), TARGET)
    assert target_shown(changed.target, 6, TemporalMode.INTERPOLATE_THEN_HOLD) == (
        TargetMark((40.0, 50.0), TARGET),
        MarkState.HELD,
    )
    assert target_shown(changed.target, 6, TemporalMode.INTERPOLATE) is None
    assert changed.target_at(10) is not None


def test_needle_not_interpolated_between_views(keyed: ClipAnnotation) -> None:
    changed = keyed.with_needle(6, NeedleMark(((30.0, 40.0),), OUT))
    assert changed.needle_at(4) is None


def test_out_of_plane_dot_interpolated(empty: ClipAnnotation) -> None:
    ann = empty.with_needle(0, NeedleMark(((10.0, 10.0),), OUT)).with_needle(
        4, NeedleMark(((20.0, 30.0),), OUT)
    )
    assert ann.needle_at(2) == NeedleMark(((15.0, 20.0),), OUT)


def test_editing_keyframe_updates_neighbours(keyed: ClipAnnotation) -> None:
    before = keyed.tip_at(4)
    edited = keyed.with_needle(6, NeedleMark(((0.0, 4.0), (50.0, 60.0)), IN))
    assert before == (20.0, 30.0)
    assert edited.tip_at(4) == (30.0, 40.0)
    assert edited.tip_at(5) == (40.0, 50.0)
    # the old object is untouched (undo is keeping it)
    assert keyed.tip_at(4) == (20.0, 30.0)


def test_inserting_keyframe_splits_interpolation(keyed: ClipAnnotation) -> None:
    edited = keyed.with_needle(4, NeedleMark(((0.0, 2.0), (20.0, 70.0)), IN))
    assert edited.tip_at(3) == (15.0, 45.0)
    assert edited.tip_at(5) == (25.0, 55.0)


def test_removing_keyframe_reinterpolates(keyed: ClipAnnotation) -> None:
    three = keyed.with_needle(10, NeedleMark(((0.0, 0.0), (50.0, 60.0)), IN))
    removed = three.without_needle(6)
    assert removed.keyframes(MarkKind.NEEDLE) == (2, 10)
    assert removed.tip_at(6) == (30.0, 40.0)
    with pytest.raises(AnnotationError, match="no stored mark"):
        removed.without_needle(6)


def test_interpolated_polylines_with_different_counts(empty: ClipAnnotation) -> None:
    ann = empty.with_needle(0, NeedleMark(((0.0, 0.0), (5.0, 0.0), (10.0, 0.0)), IN)).with_needle(
        2, NeedleMark(((0.0, 10.0), (20.0, 10.0)), IN)
    )
    mark = ann.needle_at(1)
    assert mark is not None
    assert mark.points == ((0.0, 5.0), (7.5, 5.0), (15.0, 5.0))


def test_keyframe_navigation(keyed: ClipAnnotation) -> None:
    ann = keyed.with_needle(12, NeedleMark(((0.0, 0.0), (5.0, 5.0)), IN))
    assert ann.keyframes("needle") == (2, 6, 12)
    assert ann.next_keyframe(MarkKind.NEEDLE, 2) == 6
    assert ann.next_keyframe(MarkKind.NEEDLE, 0) == 2
    assert ann.next_keyframe(MarkKind.NEEDLE, 12) is None
    assert ann.previous_keyframe(MarkKind.NEEDLE, 6) == 2
    assert ann.previous_keyframe(MarkKind.NEEDLE, 7) == 6
    assert ann.previous_keyframe(MarkKind.NEEDLE, 2) is None
    assert ann.keyframes(MarkKind.TARGET) == (2, 10)


def test_keyframes_stay_sorted(empty: ClipAnnotation) -> None:
    ann = empty.with_target(9, TargetMark((1.0, 1.0), "a")).with_target(3, TargetMark((1.0, 1.0), "a"))
    assert ann.keyframes(MarkKind.TARGET) == (3, 9)


def test_copy_from_previous_keyframe(keyed: ClipAnnotation) -> None:
    copied = keyed.copy_from_previous(MarkKind.NEEDLE, 7)
    assert copied.is_keyframe(MarkKind.NEEDLE, 7)
    assert copied.needle_at(7) == keyed.needle_at(6)


def test_copy_from_previous_interpolated_frame(keyed: ClipAnnotation) -> None:
    copied = keyed.copy_from_previous(MarkKind.NEEDLE, 4)
    assert copied.is_keyframe(MarkKind.NEEDLE, 4)
    assert copied.needle_at(4) == keyed.needle_at(3)
    assert copied.needle_at(4) != keyed.needle_at(4)


def test_copy_from_previous_uses_last_keyframe_across_gap(keyed: ClipAnnotation) -> None:
    # frames 7..9 have no needle; copying to 9 takes the last keyframe (6)
    copied = keyed.copy_from_previous("needle", 9)
    assert copied.needle_at(9) == keyed.needle_at(6)
    assert copied.tip_at(8) == (30.0, 40.0)


def test_copy_from_previous_target(keyed: ClipAnnotation) -> None:
    copied = keyed.copy_from_previous(MarkKind.TARGET, 12)
    assert copied.target_at(12) == TargetMark((48.0, 42.0), TARGET)


def test_copy_from_previous_without_source(keyed: ClipAnnotation) -> None:
    with pytest.raises(AnnotationError, match="there is none"):
        keyed.copy_from_previous(MarkKind.NEEDLE, 2)
    with pytest.raises(AnnotationError, match="there is none"):
        keyed.copy_from_previous(MarkKind.SPREAD, 0)


def test_copy_from_previous_masks(empty: ClipAnnotation) -> None:
    mask = np.zeros((64, 80), dtype=bool)
    mask[10:20, 30:40] = True
    vessel = np.zeros((64, 80), dtype=bool)
    vessel[50:55, 5:9] = True
    ann = empty.with_spread(3, mask).with_danger(3, "Vessel", vessel).with_danger(5, "nerve root", mask)
    copied = ann.copy_from_previous(MarkKind.SPREAD, 6).copy_from_previous(MarkKind.DANGER, 4)
    spread = copied.spread_at(6)
    assert spread is not None
    np.testing.assert_array_equal(spread, mask)
    assert set(copied.danger_at(4)) == {"vessel"}
    np.testing.assert_array_equal(copied.danger_at(4)["vessel"], vessel)
    assert copied.keyframes(MarkKind.SPREAD) == (3, 6)
    assert copied.keyframes(MarkKind.DANGER) == (3, 4, 5)
    # between the spread keyframes 3 and 6 the mask is interpolated (here: the same box)
    assert copied.is_interpolated(MarkKind.SPREAD, 5)
    np.testing.assert_array_equal(copied.spread_at(5), mask)  # type: ignore[arg-type]


def test_masks_are_copied_and_read_only(empty: ClipAnnotation) -> None:
    mask = np.zeros((64, 80), dtype=bool)
    ann = empty.with_spread(1, mask)
    mask[0, 0] = True
    stored = ann.spread_at(1)
    assert stored is not None
    assert not stored.any()
    with pytest.raises(ValueError, match="read-only"):
        stored[0, 0] = True
    # unchanged read-only masks are shared between versions, not copied
    later = ann.with_target(1, TargetMark((1.0, 1.0), "x"))
    assert later.spread_at(1) is stored


def test_mask_validation(empty: ClipAnnotation) -> None:
    with pytest.raises(AnnotationError, match=r"frame shape \(64, 80\)"):
        empty.with_spread(1, np.zeros((64, 81), dtype=bool))
    with pytest.raises(AnnotationError, match="boolean mask"):
        empty.with_spread(1, np.full((64, 80), 0.5))
    with pytest.raises(AnnotationError, match="boolean mask"):
        empty.with_spread(1, np.full((64, 80), 2, dtype=np.uint8))
    ones = empty.with_spread(1, np.ones((64, 80), dtype=np.uint8)).spread_at(1)
    assert ones is not None
    assert ones.dtype == np.bool_
    assert ones.all()


def test_danger_classes(empty: ClipAnnotation) -> None:
    a = np.zeros((64, 80), dtype=bool)
    b = np.ones((64, 80), dtype=bool)
    ann = empty.with_danger(2, " Nerve Root ", a).with_danger(2, "spinal canal", b)
    assert sorted(ann.danger_at(2)) == ["nerve root", "spinal canal"]
    ann = ann.with_danger(2, "nerve root", b)
    assert ann.danger_at(2)["nerve root"].all()
    one_left = ann.without_danger(2, "NERVE ROOT")
    assert list(one_left.danger_at(2)) == ["spinal canal"]
    none_left = one_left.without_danger(2, "spinal canal")
    assert none_left.keyframes(MarkKind.DANGER) == ()
    assert ann.without_danger(2).danger_at(2) == {}
    with pytest.raises(AnnotationError, match="none to remove"):
        one_left.without_danger(2, "vessel")
    with pytest.raises(AnnotationError, match="class name"):
        empty.with_danger(2, " ", a)


def test_marks_must_lie_inside_clip(empty: ClipAnnotation) -> None:
    with pytest.raises(AnnotationError, match=r"frame index in 0\.\.19"):
        empty.with_needle(20, NeedleMark(((0.0, 0.0), (1.0, 1.0))))
    with pytest.raises(AnnotationError, match=r"frame index in 0\.\.19"):
        empty.with_target(-1, TargetMark((0.0, 0.0), "x"))
    with pytest.raises(AnnotationError, match="inside the frame"):
        empty.with_needle(0, NeedleMark(((0.0, 0.0), (64.0, 1.0))))
    with pytest.raises(AnnotationError, match="inside the frame"):
        empty.with_target(0, TargetMark((0.0, 80.0), "x"))
    with pytest.raises(AnnotationError, match="integer frame"):
        empty.needle_at(1.5)  # type: ignore[arg-type]


def test_constructor_validation() -> None:
    with pytest.raises(AnnotationError, match="at least 1 frame"):
        ClipAnnotation.new("1.2.3", "ann", 0, (10, 10))
    with pytest.raises(AnnotationError, match="frame_shape"):
        ClipAnnotation.new("1.2.3", "ann", 5, (10, 0))
    with pytest.raises(AnnotationError, match="reviewer"):
        ClipAnnotation.new("1.2.3", " ", 5, (10, 10))


def test_events(empty: ClipAnnotation) -> None:
    ann = (
        empty.with_event(ClipEvent.NEEDLE_VISIBLE, 2)
        .with_event("target reached", 8)
        .with_event(ClipEvent.INJECTION_START, 9)
        .with_event(ClipEvent.INJECTION_END, 9)
    )
    assert ann.events == {
        ClipEvent.NEEDLE_VISIBLE: 2,
        ClipEvent.TARGET_REACHED: 8,
        ClipEvent.INJECTION_START: 9,
        ClipEvent.INJECTION_END: 9,
    }
    assert ann.with_event(ClipEvent.INJECTION_END, 12).events[ClipEvent.INJECTION_END] == 12
    assert ClipEvent.TARGET_REACHED not in ann.without_event("target reached").events
    with pytest.raises(AnnotationError, match="not marked"):
        empty.without_event(ClipEvent.INJECTION_END)


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ((ClipEvent.INJECTION_START, 10), (ClipEvent.INJECTION_END, 9), "'injection end' .* before"),
        ((ClipEvent.NEEDLE_VISIBLE, 5), (ClipEvent.TARGET_REACHED, 4), "'target reached' .* before"),
        ((ClipEvent.INJECTION_START, 3), (ClipEvent.NEEDLE_VISIBLE, 4), "'injection start' .* before"),
    ],
)
def test_event_order_rules(
    empty: ClipAnnotation,
    first: tuple[ClipEvent, int],
    second: tuple[ClipEvent, int],
    message: str,
) -> None:
    ann = empty.with_event(*first)
    with pytest.raises(AnnotationError, match=message):
        ann.with_event(*second)


def test_injection_before_target_reached_is_allowed(empty: ClipAnnotation) -> None:
    ann = empty.with_event(ClipEvent.TARGET_REACHED, 10).with_event(ClipEvent.INJECTION_START, 6)
    assert ann.events[ClipEvent.INJECTION_START] == 6


def test_event_frame_out_of_range(empty: ClipAnnotation) -> None:
    with pytest.raises(AnnotationError, match="injection start"):
        empty.with_event(ClipEvent.INJECTION_START, 20)


def test_adverse_events(empty: ClipAnnotation) -> None:
    with pytest.raises(AnnotationError, match="with_adverse_event"):
        empty.with_event(ClipEvent.ADVERSE_EVENT, 3)
    ann = empty.with_adverse_event(9, "lower-limb paraesthesia").with_adverse_event(4, "pain on injection")
    assert [(e.frame, e.note) for e in ann.adverse_events] == [
        (4, "pain on injection"),
        (9, "lower-limb paraesthesia"),
    ]
    with pytest.raises(AnnotationError, match="recorded twice"):
        ann.with_adverse_event(4, "pain on injection")
    with pytest.raises(AnnotationError, match=r"0\.\.19"):
        ann.with_adverse_event(25, "late")
    removed = ann.without_adverse_event(ann.adverse_events[0])
    assert len(removed.adverse_events) == 1
    with pytest.raises(AnnotationError, match="not recorded"):
        removed.without_adverse_event(ann.adverse_events[0])


def test_status_workflow_locks_edits(keyed: ClipAnnotation) -> None:
    submitted = keyed.with_status(ReviewStatus.SUBMITTED)
    assert not submitted.editable
    with pytest.raises(AnnotationError, match="cannot be edited"):
        submitted.with_needle(8, NeedleMark(((0.0, 0.0), (1.0, 1.0))))
    with pytest.raises(AnnotationError, match="cannot be edited"):
        submitted.copy_from_previous(MarkKind.NEEDLE, 7)
    with pytest.raises(AnnotationError, match="expected a comment"):
        submitted.with_status(ReviewStatus.NEEDS_REWORK)
    comment = ReviewComment("chief", "tip on frame 6 is too deep", frame=6)
    rework = submitted.with_status("needs-rework", comment)
    assert rework.comments == (comment,)
    assert rework.editable
    fixed = rework.with_needle(6, NeedleMark(((0.0, 4.0), (25.0, 40.0)))).with_status(
        ReviewStatus.NEEDS_REWORK
    )
    approved = fixed.with_status(ReviewStatus.SUBMITTED).with_status(ReviewStatus.APPROVED)
    assert approved.status is ReviewStatus.APPROVED
    assert approved.tip_at(6) == (25.0, 40.0)
    noted = approved.with_comment(ReviewComment("chief", "good"))
    assert len(noted.comments) == 2
    with pytest.raises(AnnotationError, match="cannot go from 'approved' to 'draft'"):
        approved.with_status(ReviewStatus.DRAFT)


def test_equality(keyed: ClipAnnotation) -> None:
    mask = np.zeros((64, 80), dtype=bool)
    a = keyed.with_spread(1, mask)
    b = keyed.with_spread(1, mask.copy())
    assert a == b
    changed = mask.copy()
    changed[5, 5] = True
    assert a != keyed.with_spread(1, changed)
    assert a != keyed
    assert a != keyed.with_spread(2, mask)
    assert a.with_danger(1, "vessel", mask) != b.with_danger(1, "vessel", changed)
    with pytest.raises(TypeError):
        hash(a)


def test_interpolation_collapsing_to_a_point_gives_none(empty: ClipAnnotation) -> None:
    # a horizontal needle whose ends swap: half-way both ends meet at (5, 5)
    ann = empty.with_needle(0, NeedleMark(((5.0, 0.0), (5.0, 10.0)))).with_needle(
        2, NeedleMark(((5.0, 10.0), (5.0, 0.0)))
    )
    assert ann.needle_at(1) is None
    assert not ann.is_interpolated(MarkKind.NEEDLE, 1)


def test_frames_must_be_integers(empty: ClipAnnotation) -> None:
    with pytest.raises(AnnotationError, match="integer frame"):
        empty.with_event(ClipEvent.INJECTION_START, 2.5)  # type: ignore[arg-type]
    with pytest.raises(AnnotationError, match="integer frame"):
        empty.with_adverse_event(2.5, "pain")  # type: ignore[arg-type]
    with pytest.raises(AnnotationError, match="integer n_frames"):
        ClipAnnotation.new("1.2.3", "ann", 5.0, (10, 10))  # type: ignore[arg-type]
    assert empty.with_event(ClipEvent.INJECTION_START, np.int64(3)).events[ClipEvent.INJECTION_START] == 3


def test_comment_frame_must_be_in_clip(empty: ClipAnnotation) -> None:
    with pytest.raises(AnnotationError, match="frame of comment"):
        empty.with_comment(ReviewComment("chief", "look here", frame=20))
    assert empty.with_comment(ReviewComment("chief", "look here", frame=19)).comments[0].frame == 19
