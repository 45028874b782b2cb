"""Accuracy of the needle and spread proposals on the phantom and the hard corpus (issue 20).

Targets on frames where the needle is visible: median tip error <= 1.0 mm,
p90 <= 2.5 mm, median shaft angle error <= 2 deg, needle found on >= 95 % of
them; a needle claimed on <= 5 % of frames without one; spread Dice >= 0.7
at injection end. The Hough baseline runs on the same clips in the same
test run and must be clearly worse. Clips are small (tens of frames,
~250x300) to keep the suite fast; the benchmark repeats this at 640x480.
"""

from __future__ import annotations

import pytest

from archive.analysis.proposals import propose_clip
from archive.analysis.proposals.baseline import propose_baseline
from archive.phantom.proposal_corpus import Case, hard_cases, phantom_cases
from archive.phantom.scoring import ClipScore, Summary, score_clip, summarise


def _run(cases: list[Case]) -> tuple[list[ClipScore], list[ClipScore]]:
    method, baseline = [], []
    for case in cases:
        proposal = propose_clip(
            case.frames,
            spacing_mm=case.spacing_mm,
            frame_interval_s=case.frame_interval_s,
            region=case.region,
            approach=case.approach,
        )
        method.append(score_clip(case.name, proposal, case.truth))
        if case.approach == "in-plane":
            reference = propose_baseline(case.frames, spacing_mm=case.spacing_mm, region=case.region)
            baseline.append(score_clip(case.name, reference, case.truth, spread=False))
    return method, baseline


@pytest.fixture(scope="module")
def phantom() -> tuple[list[ClipScore], list[ClipScore]]:
    return _run(phantom_cases())


@pytest.fixture(scope="module")
def hard() -> tuple[list[ClipScore], list[ClipScore]]:
    return _run(hard_cases())


def _check_needle(summary: Summary) -> None:
    numbers = summary.as_dict()
    assert summary.tip_median_mm is not None and summary.tip_median_mm <= 1.0, numbers
    assert summary.tip_p90_mm is not None and summary.tip_p90_mm <= 2.5, numbers
    assert summary.angle_median_deg is not None and summary.angle_median_deg <= 2.0, numbers
    assert summary.found_fraction is not None and summary.found_fraction >= 0.95, numbers
    assert summary.claimed_fraction is not None and summary.claimed_fraction <= 0.05, numbers


def test_phantom_needle_meets_the_targets(phantom) -> None:
    method, _ = phantom
    summary = summarise(method)
    assert summary.visible_frames >= 100 and summary.absent_frames >= 16
    _check_needle(summary)


def test_hard_corpus_needle_meets_the_targets(hard) -> None:
    method, _ = hard
    summary = summarise(method)
    assert summary.visible_frames >= 100 and summary.absent_frames >= 60
    _check_needle(summary)


def test_no_needle_clip_gets_no_needle(hard) -> None:
    method, _ = hard
    (empty,) = [s for s in method if s.name == "no-needle"]
    assert empty.visible == 0 and empty.absent == 40
    assert empty.claimed <= 2, empty


def test_fading_needle_is_not_claimed_while_gone(hard) -> None:
    method, _ = hard
    faded = [s for s in method if "fade" in s.name]
    assert faded
    for score in faded:
        # absent frames include the fully faded ones, not only those before entry
        assert score.absent > 6
        assert score.claimed <= 0.05 * score.absent + 1, score


def test_hard_corpus_spread_dice_at_injection_end(hard) -> None:
    method, _ = hard
    summary = summarise(method)
    assert summary.dice_median is not None and summary.dice_median >= 0.7, summary.as_dict()
    assert summary.dice_min is not None and summary.dice_min >= 0.45, summary.as_dict()


def test_phantom_spread_dice_at_injection_end(phantom) -> None:
    """The phantom's pool lies in soft tissue, where the image shows it (see docs/proposals.md)."""
    method, _ = phantom
    summary = summarise(method)
    assert summary.dice_median is not None and summary.dice_median >= 0.7, summary.as_dict()
    assert summary.dice_min is not None and summary.dice_min >= 0.45, summary.as_dict()
    assert summary.dice_observable_median is not None
    assert summary.dice_observable_median >= summary.dice_median, summary.as_dict()


@pytest.mark.parametrize("corpus", ["phantom", "hard"])
def test_baseline_is_worse(corpus, request) -> None:
    method, baseline = request.getfixturevalue(corpus)
    ours, hough = summarise(method), summarise(baseline)
    report = f"method {ours.as_dict()}\nbaseline {hough.as_dict()}"
    assert hough.tip_median_mm is not None and ours.tip_median_mm is not None
    assert hough.tip_median_mm > 3.0 * ours.tip_median_mm, report
    assert hough.claimed_fraction is not None and hough.claimed_fraction > 0.5, report
    assert hough.found_fraction is not None and hough.found_fraction < ours.found_fraction, report


def test_out_of_plane_dot_on_the_phantom() -> None:
    method, baseline = _run(phantom_cases(out_of_plane=True, frames=32))
    assert baseline == []
    summary = summarise(method)
    numbers = summary.as_dict()
    assert summary.angle_median_deg is None  # a dot has no shaft
    assert summary.tip_median_mm is not None and summary.tip_median_mm <= 1.0, numbers
    assert summary.tip_p90_mm is not None and summary.tip_p90_mm <= 2.5, numbers
    assert summary.found_fraction is not None and summary.found_fraction >= 0.95, numbers
    assert summary.claimed_fraction is not None and summary.claimed_fraction <= 0.05, numbers
