from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from clip_files import moving_bar_frames, write_clip

from annotator.errors import FrameDecodeError
from annotator.frames import ClipFrames
from annotator.prefetch import FramePrefetcher
from annotator.reader import read_clip


def _clip(tmp_path: Path, n_frames: int = 20, **kwargs: object) -> Path:
    return write_clip(tmp_path / "c.dcm", moving_bar_frames(n_frames, 48, 64, rgb=True), **kwargs)  # type: ignore[arg-type]


def test_prefetched_frames_equal_direct_decoding(tmp_path: Path) -> None:
    path = _clip(tmp_path)
    direct = ClipFrames(path)
    ahead = ClipFrames(path, prefetch_frames=3)
    ahead[5]
    assert ahead.wait_prefetched()
    assert ahead.cached_indices == (5, 6, 7, 8)
    assert ahead.decode_count == 4
    for index in (6, 7, 8):
        np.testing.assert_array_equal(ahead[index], direct[index])
        assert not ahead[index].flags.writeable
    # 6, 7 and 8 came from the cache; showing 8 asked for 9, 10 and 11.
    assert ahead.wait_prefetched()
    assert ahead.decode_count == 7
    np.testing.assert_array_equal(ahead[11], direct[11])


def test_stepping_backwards_prefetches_earlier_frames(tmp_path: Path) -> None:
    frames = ClipFrames(_clip(tmp_path), prefetch_frames=2)
    frames[10]
    assert frames.wait_prefetched()
    frames[9]
    assert frames.wait_prefetched()
    assert set(frames.cached_indices) == {10, 11, 12, 9, 8, 7}


def test_prefetch_stops_at_the_clip_ends(tmp_path: Path) -> None:
    frames = ClipFrames(_clip(tmp_path, n_frames=6), prefetch_frames=4)
    frames[4]
    assert frames.wait_prefetched()
    assert frames.cached_indices == (4, 5)
    assert frames.decode_count == 2


def test_prefetch_is_bounded_by_the_cache(tmp_path: Path) -> None:
    frames = ClipFrames(_clip(tmp_path), cache_frames=3, prefetch_frames=10)
    for index in range(12):
        frames[index]
        assert frames.wait_prefetched()
        # The shown frame is never evicted by prefetching, and the cache never grows past its size.
        assert index in frames.cached_indices
        assert len(frames.cached_indices) <= 3
    assert set(frames.cached_indices) == {11, 12, 13}
    # Every frame decoded once: each step found its frame prefetched.
    assert frames.decode_count == 14


def test_without_prefetch_only_indexed_frames_decode(tmp_path: Path) -> None:
    frames = ClipFrames(_clip(tmp_path))
    frames[3]
    assert frames.wait_prefetched()
    assert frames.cached_indices == (3,)


def test_a_corrupt_frame_is_not_cached_by_prefetch_and_reported_when_shown(tmp_path: Path) -> None:
    reported: list[FrameDecodeError] = []
    frames = ClipFrames(_clip(tmp_path, corrupt_frames=(4,)), prefetch_frames=2, on_error=reported.append)
    frames[3]
    assert frames.wait_prefetched()
    assert 4 not in frames.cached_indices
    assert reported == []
    assert not frames[4].any()
    assert [error.index for error in reported] == [4]


def test_reader_layers_prefetch_and_can_turn_it_off(tmp_path: Path) -> None:
    path = _clip(tmp_path)
    data, _, _ = read_clip(path)
    data[0]
    assert data.wait_prefetched()
    assert len(data.cached_indices) > 1
    off, _, _ = read_clip(path, prefetch_frames=0)
    off[0]
    assert off.cached_indices == (0,)


def test_negative_prefetch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prefetch_frames"):
        ClipFrames(_clip(tmp_path), prefetch_frames=-1)


class _Recorder:
    def __init__(self) -> None:
        self.fetched: list[int] = []
        self.release = threading.Event()
        self.entered = threading.Event()

    def fetch(self, index: int) -> None:
        self.entered.set()
        self.release.wait(5.0)
        self.fetched.append(index)


def test_a_new_wish_replaces_the_frames_not_yet_fetched() -> None:
    recorder = _Recorder()
    prefetcher = FramePrefetcher(recorder.fetch, n_frames=100, depth=3)
    prefetcher.shown(10)
    # The thread holds 11 (blocked); 12 and 13 still wait, then the reviewer jumps to 50.
    assert recorder.entered.wait(5.0)
    assert prefetcher.wanted == (12, 13)
    prefetcher.shown(50)
    assert prefetcher.wanted == (51, 52, 53)
    recorder.release.set()
    assert prefetcher.wait_idle(5.0)
    assert recorder.fetched == [11, 51, 52, 53]
    assert not {12, 13} & set(recorder.fetched)


def test_closed_prefetcher_fetches_nothing() -> None:
    recorder = _Recorder()
    recorder.release.set()
    prefetcher = FramePrefetcher(recorder.fetch, n_frames=10, depth=2)
    prefetcher.close()
    prefetcher.shown(0)
    assert prefetcher.wanted == ()
    assert prefetcher.wait_idle(1.0)
    assert recorder.fetched == []


def test_prefetch_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        FramePrefetcher(_Recorder().fetch, n_frames=10, depth=0)
