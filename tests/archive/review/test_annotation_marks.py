from __future__ import annotations

import math

import pytest

from archive.errors import AnnotationError
from archive.model import NeedleView
from archive.review.marks import AdverseEvent, NeedleMark, ReviewComment, TargetMark, check_point


def test_in_plane_needle_tip_is_last_point() -> None:
    mark = NeedleMark(((10, 5), (20.5, 15), (30, 25)), NeedleView.IN_PLANE)
    assert mark.tip == (30.0, 25.0)
    assert mark.entry == (10.0, 5.0)
    assert all(isinstance(v, float) for p in mark.points for v in p)


def test_out_of_plane_needle_is_one_point() -> None:
    mark = NeedleMark(((12.0, 7.0),), "out-of-plane")  # type: ignore[arg-type]
    assert mark.view is NeedleView.OUT_OF_PLANE
    assert mark.tip == mark.entry == (12.0, 7.0)
    with pytest.raises(AnnotationError, match="exactly 1 point"):
        NeedleMark(((1.0, 1.0), (2.0, 2.0)), NeedleView.OUT_OF_PLANE)


def test_in_plane_needle_needs_two_distinct_points() -> None:
    with pytest.raises(AnnotationError, match="at least 2 points"):
        NeedleMark(((1.0, 1.0),), NeedleView.IN_PLANE)
    with pytest.raises(AnnotationError, match="distinct consecutive"):
        NeedleMark(((1.0, 1.0), (1.0, 1.0), (4.0, 4.0)), NeedleView.IN_PLANE)


def test_needle_ordered_entry_to_tip_is_enforced() -> None:
    with pytest.raises(AnnotationError, match="reverse the points"):
        NeedleMark(((30.0, 25.0), (10.0, 5.0)), NeedleView.IN_PLANE)
    # a horizontal needle is accepted either way
    assert NeedleMark(((10.0, 25.0), (10.0, 5.0))).tip == (10.0, 5.0)


def test_oriented_puts_deep_end_last() -> None:
    mark = NeedleMark.oriented([(30.0, 25.0), (20.0, 15.0), (10.0, 5.0)], "in-plane")
    assert mark.points == ((10.0, 5.0), (20.0, 15.0), (30.0, 25.0))
    assert NeedleMark.oriented([(10.0, 5.0), (30.0, 25.0)], "in-plane").tip == (30.0, 25.0)


def test_needle_rejects_nan() -> None:
    with pytest.raises(AnnotationError, match="finite"):
        NeedleMark(((math.nan, 1.0), (4.0, 4.0)))


def test_target_name_required_and_stripped() -> None:
    assert TargetMark((3, 4), "  L5 SAP–TP junction ").name == "L5 SAP–TP junction"
    with pytest.raises(AnnotationError, match="anatomical name"):
        TargetMark((3.0, 4.0), "   ")
    with pytest.raises(AnnotationError, match="finite"):
        TargetMark((math.inf, 4.0), "L4")


def test_adverse_event_and_comment_need_text() -> None:
    assert AdverseEvent(3, " paraesthesia ").note == "paraesthesia"
    with pytest.raises(AnnotationError, match="note"):
        AdverseEvent(3, "")
    with pytest.raises(AnnotationError, match="author and text"):
        ReviewComment("ann", " ")
    assert ReviewComment(" ann ", "tip wrong", frame=4) == ReviewComment("ann", "tip wrong", 4)


@pytest.mark.parametrize(
    ("point", "ok"),
    [
        ((-0.5, -0.5), True),
        ((9.5, 19.5), True),
        ((-0.6, 0.0), False),
        ((9.6, 0.0), False),
        ((0.0, 19.6), False),
    ],
)
def test_check_point_frame_bounds(point: tuple[float, float], ok: bool) -> None:
    if ok:
        assert check_point(point, (10, 20), "p") == point
    else:
        with pytest.raises(AnnotationError, match="inside the frame"):
            check_point(point, (10, 20), "p")
