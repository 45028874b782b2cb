"""Reviewers pseudonymised and staff free text withheld before a research record is built."""

from __future__ import annotations

import numpy as np
from hdf5_cases import full_annotation

from archive.analysis.outcomes.model import Outcome
from archive.model import Side
from archive.research.deid import PseudonymKind, pseudonym
from archive.research.export.redact import (
    WITHHELD_ADVERSE_EVENT,
    WITHHELD_NOTE,
    redact_annotation,
    redact_outcome,
    reviewer_pseudonym,
)

SECRET = bytes(range(16))
OTHER_SECRET = bytes(range(1, 17))


def test_reviewer_pseudonym_is_keyed_stable_and_not_a_patients() -> None:
    first = reviewer_pseudonym(SECRET, "dr.a")
    assert first.startswith("R-") and len(first) == 14 and "dr.a" not in first
    assert reviewer_pseudonym(SECRET, "dr.a") == first
    assert reviewer_pseudonym(SECRET, "dr.b") != first
    assert reviewer_pseudonym(OTHER_SECRET, "dr.a") != first
    assert pseudonym(SECRET, "dr.a", "reviewer") == first
    assert pseudonym(SECRET, "dr.a", PseudonymKind.PERSON)[2:] != first[2:]  # domain-separated


def test_redact_annotation_replaces_reviewer_withholds_notes_and_keeps_marks() -> None:
    original = full_annotation()
    redacted = redact_annotation(original, SECRET)
    assert redacted.reviewer == reviewer_pseudonym(SECRET, original.reviewer)
    assert [(a.frame, a.note) for a in redacted.adverse_events] == [
        (4, WITHHELD_NOTE.format(number=1)),
        (4, WITHHELD_NOTE.format(number=2)),
    ]
    assert redacted.comments == () and original.comments != ()
    assert redacted.status is original.status
    assert redacted.needle == original.needle and redacted.target == original.target
    assert dict(redacted.events) == dict(original.events)
    assert all(np.array_equal(redacted.spread[f], original.spread[f]) for f in original.spread)
    assert set(redacted.danger) == set(original.danger)


def test_redact_annotation_with_free_text_keeps_the_notes_verbatim() -> None:
    original = full_annotation()
    redacted = redact_annotation(original, SECRET, include_free_text=True)
    assert redacted.adverse_events == original.adverse_events
    assert redacted.reviewer == reviewer_pseudonym(SECRET, original.reviewer)


def test_redact_outcome_marks_a_recorded_adverse_event_and_keeps_scores() -> None:
    outcome = Outcome(
        "1.2.3", Side.LEFT, vas_pre=7.0, vas_2w=2.0, adverse_event="told Mr Smith on 2024-05-06"
    )
    withheld = redact_outcome(outcome)
    assert withheld.adverse_event == WITHHELD_ADVERSE_EVENT
    assert (withheld.vas_pre, withheld.vas_2w, withheld.side) == (7.0, 2.0, Side.LEFT)
    assert redact_outcome(outcome, include_free_text=True).adverse_event == outcome.adverse_event
    none_recorded = Outcome("1.2.3", Side.LEFT, vas_pre=7.0)
    assert redact_outcome(none_recorded).adverse_event is None
