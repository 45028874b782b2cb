"""propose_frames: frames consumed one at a time, memory bounded by the window the method needs."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest

from archive.analysis.proposals import ProposalInputError, SpreadProposal, propose_clip, propose_frames
from archive.phantom.hard import HardSpec, generate_hard_clip

ROWS, COLS = 200, 260
SPACING = (0.2, 0.2)


@pytest.fixture(scope="module")
def hard_clip():
    return generate_hard_clip(HardSpec(frames=24, rows=ROWS, cols=COLS, spacing_mm=0.2), 3)


def test_streamed_frames_give_the_same_proposal_as_the_stack(hard_clip) -> None:
    kwargs = {"spacing_mm": SPACING, "frame_interval_s": 0.066, "first": 3, "last": 20}
    stacked = propose_clip(hard_clip.frames, **kwargs)
    streamed = propose_frames(iter(list(hard_clip.frames)), count=len(hard_clip.frames), **kwargs)
    assert [f.frame for f in streamed.frames] == list(range(3, 21))
    assert streamed.frames == stacked.frames
    assert any(f.tip is not None for f in streamed.frames)
    assert streamed.injection_start == stacked.injection_start


def _long_clip(frames: int, read: list[int], shape: tuple[int, int] = (ROWS, COLS)) -> Iterator[np.ndarray]:
    """Static speckle with a needle advancing to a stop, made frame by frame (never held whole)."""
    rng = np.random.default_rng(5)
    background = np.clip(rng.normal(90.0, 18.0, size=shape), 0, 255).astype(np.float32)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    along = (cols - 20) * np.cos(0.6) + (rows - 20) * np.sin(0.6)
    shaft = (120.0 * np.exp(-(((-(cols - 20) * np.sin(0.6) + (rows - 20) * np.cos(0.6)) / 1.5) ** 2))).astype(
        np.float32
    )
    del rows, cols
    for t in range(frames):
        read.append(t)
        frame = background + rng.normal(0.0, 3.0, size=shape).astype(np.float32)
        if t >= 6:
            length = min(110.0, 20.0 + 4.0 * (t - 6))
            frame += shaft * ((along >= 0) & (along <= length))
        yield np.clip(frame, 0, 255).astype(np.uint8)


#: Small frames at 0.3 mm (the working pixel size: no block averaging), so that many frames run quickly.
SMALL, SMALL_SPACING = (120, 160), (0.3, 0.3)


def _peak(frames: int) -> tuple[int, int]:
    """Peak traced memory of a proposal on a generated clip, and the number of frames with a needle."""
    read: list[int] = []
    tracemalloc.start()
    try:
        proposal = propose_frames(
            _long_clip(frames, read, SMALL), count=frames, spacing_mm=SMALL_SPACING, frame_interval_s=0.066
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(proposal.frames) == frames
    return peak, sum(f.tip is not None for f in proposal.frames)


def test_a_long_clip_is_proposed_in_memory_far_below_its_size() -> None:
    short, long = 60, 720
    peak_short, _ = _peak(short)
    peak_long, found = _peak(long)
    clip_bytes = long * SMALL[0] * SMALL[1]
    assert found > long // 2  # it did detect the needle, not just skip the work
    assert peak_long < clip_bytes / 4, (peak_long, clip_bytes)
    # twelve times the frames, about the same peak: only the small per-frame results grow
    assert peak_long < peak_short + 1_000_000, (peak_short, peak_long)


def test_frames_after_last_are_not_read() -> None:
    read: list[int] = []
    propose_frames(_long_clip(100, read), count=100, spacing_mm=SPACING, frame_interval_s=0.066, last=12)
    assert read == list(range(12))


def test_a_source_shorter_than_count_or_with_a_wrong_frame_is_refused() -> None:
    frame = np.random.default_rng(2).integers(40, 200, size=(ROWS, COLS), dtype=np.uint8)
    with pytest.raises(ProposalInputError, match="only 5 came"):
        propose_frames(iter([frame] * 5), count=8, spacing_mm=SPACING, frame_interval_s=0.066)
    odd = [frame, frame, np.zeros((ROWS, COLS + 1), dtype=np.uint8)]
    with pytest.raises(ProposalInputError, match="frame 3 has shape"):
        propose_frames(iter(odd), count=3, spacing_mm=SPACING, frame_interval_s=0.066)
    with pytest.raises(ProposalInputError, match="count"):
        propose_frames(iter([frame]), count=0, spacing_mm=SPACING, frame_interval_s=0.066)


def test_a_spread_mask_is_kept_as_its_box_and_expands_to_the_frame() -> None:
    mask = np.zeros((ROWS, COLS), dtype=bool)
    mask[50:60, 100:130] = True
    mask[58, 131] = True
    spread = SpreadProposal(7, mask, 3.5)
    expanded = spread.mask
    assert expanded is not None and expanded.shape == (ROWS, COLS)
    np.testing.assert_array_equal(expanded, mask)
    assert spread.frame == 7 and spread.area_mm2 == 3.5
    assert SpreadProposal(8, None, None).mask is None
    boxed = SpreadProposal.from_box(9, (ROWS, COLS), (50, 100), mask[50:60, 100:132], 3.5)
    np.testing.assert_array_equal(boxed.mask, mask)
