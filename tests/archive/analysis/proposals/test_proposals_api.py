"""propose_clip's contract: frame range, progress, cancel, units, input errors."""

from __future__ import annotations

import numpy as np
import pytest

from archive.analysis.proposals import (
    METHOD,
    ProposalCancelled,
    ProposalInputError,
    propose_clip,
)
from archive.errors import ArchiveError
from archive.phantom import ClipSpec, generate_clip


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, tuple[float, float], tuple[int, int, int, int], list]:
    dataset, truth = generate_clip(ClipSpec(frames=16, rows=200, cols=280), 11)
    c = truth.calibration
    region = (
        c["RegionLocationMinY0"],
        c["RegionLocationMinX0"],
        c["RegionLocationMaxY1"],
        c["RegionLocationMaxX1"],
    )
    spacing = float(c["spacing_mm"])
    return dataset.pixel_array, (spacing, spacing), region, truth.tips


def test_range_gives_one_proposal_per_frame_numbered_from_one(clip) -> None:
    frames, spacing, region, _ = clip
    proposal = propose_clip(
        frames, spacing_mm=spacing, frame_interval_s=0.066, region=region, first=5, last=9
    )
    assert [f.frame for f in proposal.frames] == [5, 6, 7, 8, 9]
    assert proposal.units == "mm"
    assert proposal.method == METHOD
    assert proposal.approach == "in-plane"


def test_range_results_match_the_whole_clip_run_on_frames_not_depending_on_history(clip) -> None:
    frames, spacing, region, tips = clip
    whole = propose_clip(frames, spacing_mm=spacing, frame_interval_s=0.066, region=region)
    part = propose_clip(frames, spacing_mm=spacing, frame_interval_s=0.066, region=region, first=8, last=8)
    assert part.frames[0].tip is not None
    assert whole.frames[7].tip is not None
    assert np.hypot(*np.subtract(part.frames[0].tip, whole.frames[7].tip)) < 2.0
    # and the tip lies in image coordinates near the truth
    assert np.hypot(*np.subtract(part.frames[0].tip, tips[7])) < 5.0


def test_progress_reports_every_frame(clip) -> None:
    frames, spacing, region, _ = clip
    calls: list[tuple[int, int]] = []
    propose_clip(
        frames,
        spacing_mm=spacing,
        frame_interval_s=0.066,
        region=region,
        first=3,
        last=6,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancel_raises_and_returns_nothing(clip) -> None:
    frames, spacing, region, _ = clip
    polled: list[int] = []

    def cancelled() -> bool:
        polled.append(1)
        return len(polled) > 3

    with pytest.raises(ProposalCancelled, match="after 3 of 16 frames") as info:
        propose_clip(frames, spacing_mm=spacing, frame_interval_s=0.066, region=region, cancelled=cancelled)
    assert isinstance(info.value, ArchiveError)
    assert len(polled) == 4


def test_uncalibrated_clip_works_in_pixels_and_says_so(clip) -> None:
    frames, _, region, tips = clip
    proposal = propose_clip(frames, spacing_mm=None, frame_interval_s=None, region=region, injection_start=12)
    assert proposal.units == "px"
    found = [f for f in proposal.frames if f.tip is not None]
    assert len(found) >= 8
    errors = [
        np.hypot(*np.subtract(f.tip, tips[f.frame - 1])) for f in found if tips[f.frame - 1] is not None
    ]
    assert np.median(errors) < 5.0
    assert proposal.spread, "a given injection start gives spread proposals"
    assert all(s.area_mm2 is None for s in proposal.spread)
    assert any(s.mask is not None for s in proposal.spread)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first": 0}, "frame range"),
        ({"first": 5, "last": 4}, "frame range"),
        ({"last": 17}, "frame range"),
        ({"approach": "sideways"}, "approach"),
        ({"injection_start": 0}, "injection_start"),
        ({"region": (0, 0, 500, 10)}, "region"),
        ({"spacing_mm": (0.2, -1.0)}, "spacing_mm"),
        ({"frame_interval_s": 0.0}, "frame_interval_s"),
    ],
)
def test_bad_arguments_are_named(clip, kwargs, message) -> None:
    frames, spacing, region, _ = clip
    options = {"spacing_mm": spacing, "frame_interval_s": 0.066, "region": region}
    options.update(kwargs)
    with pytest.raises(ProposalInputError, match=message):
        propose_clip(frames, **options)


def test_rgb_frames_are_refused_with_the_fix(clip) -> None:
    frames, spacing, _, _ = clip
    with pytest.raises(ProposalInputError, match="convert RGB"):
        propose_clip(np.stack([frames] * 3, axis=-1), spacing_mm=spacing, frame_interval_s=None)
