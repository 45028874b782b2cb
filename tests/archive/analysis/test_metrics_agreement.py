"""Agreement between two reviewers against hand-computed values (archive.analysis.metrics.agreement)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from metrics_cases import CAL, SHAPE, base, box, with_danger

from archive.analysis.metrics import UNCALIBRATED_NOTE, BreachAgreement, agreement
from archive.errors import MetricsError
from archive.review import ClipAnnotation, NeedleMark


def second_reviewer() -> ClipAnnotation:
    """Bob: tips 10 cols (1 mm) right of Alice's on frame 2 and 20 cols (2 mm) on frame 6.

    Interpolated offsets on frames 3, 4, 5: 12.5, 15, 17.5 cols. Spread: same
    as Alice on frame 5, half of hers on frame 7 (200 of 400 px), and 50 px on
    frame 8 where Alice has none; an empty mask on frame 3.
    """
    ann = ClipAnnotation.new("1.2.3", "bob", 10, SHAPE)
    ann = ann.with_needle(2, NeedleMark(((10, 10), (20, 60))))
    ann = ann.with_needle(6, NeedleMark(((10, 10), (40, 70))))
    ann = ann.with_spread(3, np.zeros(SHAPE, dtype=bool))
    ann = ann.with_spread(5, box(70, 79, 75, 84))
    ann = ann.with_spread(7, box(40, 59, 70, 79))
    return ann.with_spread(8, box(0, 4, 0, 9))


def test_agreement_hand_computed() -> None:
    m = agreement(base(), second_reviewer(), CAL)
    assert m.reviewers == ("alice", "bob")
    # tip offsets 1.0, 1.25, 1.5, 1.75, 2.0 mm on frames 2..6
    assert m.tip_frames == 5
    assert m.tip_distance_mean_mm == pytest.approx(1.5)
    assert m.tip_distance_max_mm == pytest.approx(2.0)
    assert m.tip_distance_max_frame == 6
    # frames 5 (Dice 1), 7 (2 * 200 / 600) and 8 (0); frame 3 is empty for both
    assert m.spread_frames == 3
    assert m.spread_dice_mean == pytest.approx((1.0 + 2.0 / 3.0 + 0.0) / 3.0)
    assert m.spread_dice_pooled == pytest.approx(2.0 * (100 + 200) / (100 + 100 + 400 + 200 + 50))
    # neither marked a danger structure
    assert m.breach_agreement is None
    assert any("no danger structure marked by alice, bob" in n for n in m.notes)


def test_breach_agreement_both_neither_disagree() -> None:
    breached = with_danger(base())  # spread enters the vessel on frame 7
    far = box(0, 4, 190, 199)
    clean = base().with_danger(7, "vessel", far)
    bob_breached = second_reviewer().with_danger(7, "vessel", box(58, 65, 70, 79))
    bob_clean = second_reviewer().with_danger(7, "vessel", far)

    assert agreement(breached, bob_breached, CAL).breach_agreement is BreachAgreement.BOTH
    assert agreement(clean, bob_clean, CAL).breach_agreement is BreachAgreement.NEITHER
    disagree = agreement(breached, bob_clean, CAL)
    assert disagree.breach_agreement is BreachAgreement.DISAGREE
    assert (disagree.breach_a, disagree.breach_b) == (True, False)
    partial = agreement(breached, second_reviewer(), CAL)
    assert partial.breach_agreement is None
    assert any("no danger structure marked by bob" in n for n in partial.notes)


def test_uncalibrated_agreement_keeps_dice() -> None:
    m = agreement(base(), second_reviewer(), None)
    assert UNCALIBRATED_NOTE in m.notes
    assert m.tip_frames == 0
    assert m.tip_distance_mean_mm is None
    assert m.spread_dice_pooled == pytest.approx(600 / 850)


def test_no_common_tips_and_no_spread() -> None:
    lone = ClipAnnotation.new("1.2.3", "carol", 10, SHAPE).with_needle(9, NeedleMark(((1, 1), (5, 5))))
    m = agreement(base().without_spread(5).without_spread(7), lone, CAL)
    assert m.tip_frames == 0
    assert m.tip_distance_max_mm is None
    assert m.spread_frames == 0
    assert m.spread_dice_mean is None
    assert any("no frame on which both reviewers show a needle tip" in n for n in m.notes)
    assert any("no spread marked by either reviewer" in n for n in m.notes)


def test_identical_annotations_agree_perfectly() -> None:
    m = agreement(with_danger(base()), with_danger(base()), CAL)
    assert m.tip_distance_max_mm == 0.0
    assert m.spread_dice_mean == 1.0
    assert m.spread_dice_pooled == 1.0
    assert m.breach_agreement is BreachAgreement.BOTH


def test_to_dict_is_json_ready() -> None:
    record = json.loads(json.dumps(agreement(with_danger(base()), second_reviewer(), CAL).to_dict()))
    assert record["reviewers"] == ["alice", "bob"]
    assert record["breach_agreement"] is None
    assert record["tip_distance_mean_mm"] == pytest.approx(1.5)


def test_annotations_of_different_clips_are_refused() -> None:
    other = ClipAnnotation.new("9.9.9", "bob", 10, SHAPE)
    with pytest.raises(MetricsError, match="expected two annotations of one clip"):
        agreement(base(), other, CAL)
    shorter = ClipAnnotation.new("1.2.3", "bob", 9, SHAPE)
    with pytest.raises(MetricsError, match="same SOP Instance UID, number of frames"):
        agreement(base(), shorter, CAL)
