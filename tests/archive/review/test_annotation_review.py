from __future__ import annotations

import itertools

import pytest

from archive.errors import AnnotationError
from archive.model import ReviewStatus
from archive.review.workflow import EDITABLE_STATUSES, allowed_transitions, transition

D, S, A, R = (
    ReviewStatus.DRAFT,
    ReviewStatus.SUBMITTED,
    ReviewStatus.APPROVED,
    ReviewStatus.NEEDS_REWORK,
)
ALLOWED = {(D, D), (D, S), (S, D), (S, A), (S, R), (R, R), (R, S), (A, R)}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(ReviewStatus, repeat=2)))
def test_transition_table(current: ReviewStatus, new: ReviewStatus) -> None:
    if (current, new) in ALLOWED:
        assert transition(current, new) is new
        assert new in allowed_transitions(current)
    else:
        with pytest.raises(AnnotationError, match=f"cannot go from '{current.value}' to '{new.value}'"):
            transition(current, new)
        assert new not in allowed_transitions(current)


def test_transition_accepts_strings() -> None:
    assert transition("submitted", "needs-rework") is R
    assert transition("DRAFT", "SUBMITTED") is S


def test_transition_unknown_status() -> None:
    with pytest.raises(ValueError, match="ReviewStatus"):
        transition("draft", "finished")


def test_error_lists_allowed_next_statuses() -> None:
    with pytest.raises(AnnotationError, match="allowed next statuses are: draft, submitted"):
        transition(D, A)


def test_editable_statuses() -> None:
    assert frozenset({D, R}) == EDITABLE_STATUSES
