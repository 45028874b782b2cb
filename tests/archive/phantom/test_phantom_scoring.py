"""Scoring proposals against synthetic truth: tip and angle errors, detection rates, Dice."""

from __future__ import annotations

import numpy as np
import pytest

from archive.analysis.proposals import ClipProposal, FrameProposal, SpreadProposal
from archive.phantom.scoring import ProposalTruth, dice, score_clip, summarise


def _truth() -> ProposalTruth:
    spread = np.zeros((20, 20), dtype=bool)
    spread[5:10, 5:10] = True
    return ProposalTruth(
        tips=[None, (10.0, 10.0), (12.0, 12.0), (14.0, 14.0)],
        entries=[None, (0.0, 0.0), (0.0, 0.0), (0.0, 0.0)],
        visible=np.array([False, True, True, True]),
        absent=np.array([True, False, False, False]),
        spread_end=spread,
        injection_end=3,
        spacing_mm=(0.5, 0.5),
    )


def test_errors_rates_and_dice_are_counted_in_mm_and_degrees() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:10, 5:15] = True  # 25 of 50 overlap the 25-pixel truth
    proposal = ClipProposal(
        frames=(
            FrameProposal(1, (3.0, 3.0), None, 0.9),  # claimed where there is no needle
            FrameProposal(2, (10.0, 14.0), ((0.0, 0.0), (10.0, 14.0)), 0.9),  # 4 px = 2 mm off
            FrameProposal(3, None, None, 0.0),  # missed
            FrameProposal(4, (14.0, 14.0), ((0.0, 0.0), (14.0, 14.0)), 0.9),  # exact
        ),
        spread=(SpreadProposal(4, mask, 12.5),),
        approach="in-plane",
        units="mm",
        method="test/1",
    )
    score = score_clip("c", proposal, _truth())
    assert (score.visible, score.found, score.absent, score.claimed) == (3, 2, 1, 1)
    errors = sorted(e.tip_mm for e in score.errors)
    assert errors == pytest.approx([0.0, 2.0])
    angles = sorted(e.angle_deg for e in score.errors if e.angle_deg is not None)
    assert angles[0] == pytest.approx(0.0)
    assert angles[1] == pytest.approx(45.0 - np.degrees(np.arctan2(10, 14)))
    assert score.dice == pytest.approx(2 * 25 / 75)
    summary = summarise([score])
    assert summary.found_fraction == pytest.approx(2 / 3)
    assert summary.claimed_fraction == 1.0
    assert summary.tip_median_mm == pytest.approx(1.0)


def test_missing_spread_scores_zero_and_baseline_is_not_scored_on_spread() -> None:
    proposal = ClipProposal(
        frames=tuple(FrameProposal(n, None, None, 0.0) for n in range(1, 5)),
        spread=(),
        approach="in-plane",
        units="mm",
        method="test/1",
    )
    assert score_clip("c", proposal, _truth()).dice == 0.0
    assert score_clip("c", proposal, _truth(), spread=False).dice is None


def test_dice_of_two_empty_masks_is_one() -> None:
    empty = np.zeros((3, 3), dtype=bool)
    assert dice(empty, empty) == 1.0
