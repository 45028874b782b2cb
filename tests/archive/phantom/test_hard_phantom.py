"""The hard corpus: deterministic, its truth agrees with its pixels, bad specs are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from archive.errors import PhantomError
from archive.phantom.hard import HardSpec, generate_hard_clip, hard_corpus

SMALL = HardSpec(frames=20, rows=140, cols=180, spacing_mm=0.25)


def test_same_spec_and_seed_give_the_same_clip() -> None:
    a = generate_hard_clip(SMALL, 3)
    b = generate_hard_clip(SMALL, 3)
    c = generate_hard_clip(SMALL, 4)
    assert np.array_equal(a.frames, b.frames)
    assert a.tips == b.tips
    assert not np.array_equal(a.frames, c.frames)


def test_needle_pixels_are_bright_where_the_truth_puts_the_shaft() -> None:
    clip = generate_hard_clip(dataclasses.replace(SMALL, gain_drift_db=0.0, motion=False), 1)
    t = int(np.nonzero(clip.visible)[0][-1])
    tip, entry = clip.tips[t], clip.entries[t]
    assert tip is not None and entry is not None
    # the middle of the shaft is brighter than the median of the frame
    mid = (round((tip[0] + entry[0]) / 2), round((tip[1] + entry[1]) / 2))
    frame = clip.frames[t].astype(float)
    assert frame[mid] > np.median(frame) + 40
    # the tip is where the shaft ends: a little beyond it along the shaft the echo is gone
    direction = np.subtract(tip, entry) / np.hypot(*np.subtract(tip, entry))
    before = np.round(np.add(tip, -2.0 / 0.25 * direction)).astype(int)
    assert frame[tuple(before)] > np.median(frame) + 40


def test_angles_and_truth_geometry_agree() -> None:
    for angle in (20.0, 55.0):
        clip = generate_hard_clip(dataclasses.replace(SMALL, angle_deg=angle, motion=False), 2)
        t = int(np.nonzero(clip.visible)[0][-1])
        tip, entry = clip.tips[t], clip.entries[t]
        assert tip is not None and entry is not None
        measured = np.degrees(np.arctan2(tip[0] - entry[0], abs(tip[1] - entry[1])))
        assert measured == pytest.approx(angle, abs=0.5)


def test_fade_out_makes_frames_without_an_echo_and_no_needle_clip_has_none() -> None:
    faded = generate_hard_clip(dataclasses.replace(SMALL, fade=(8, 6)), 5)
    assert faded.echo[8:14].min() == 0.0
    assert faded.absent[8:14].any() and faded.visible[5:8].all()
    empty = generate_hard_clip(dataclasses.replace(SMALL, needle=False), 5)
    assert all(tip is None for tip in empty.tips)
    assert empty.absent.all() and not empty.spread.any() and empty.injection_start is None


def test_spread_grows_and_stays_out_of_bone() -> None:
    clip = generate_hard_clip(SMALL, 6)
    assert clip.injection_start is not None and clip.injection_end is not None
    areas = clip.spread.sum(axis=(1, 2))
    assert areas[: clip.injection_start].sum() == 0
    assert np.all(np.diff(areas[clip.injection_start : clip.injection_end + 1]) >= 0)
    assert areas[clip.injection_end] > 100


def test_corpus_covers_every_feature() -> None:
    corpus = dict(hard_corpus())
    assert max(spec.angle_deg for spec in corpus.values()) == 55.0
    assert any(spec.fade[1] > 0 for spec in corpus.values())
    assert any(not spec.needle for spec in corpus.values())
    assert any(spec.speckle_correlation < 0.9 for spec in corpus.values())
    assert all(spec.gain_drift_db > 0 for spec in corpus.values())


@pytest.mark.parametrize(
    ("change", "name"),
    [({"angle_deg": 70.0}, "angle_deg"), ({"frames": 4}, "frames"), ({"spacing_mm": 2.0}, "spacing_mm")],
)
def test_bad_spec_is_refused_naming_the_argument(change, name) -> None:
    with pytest.raises(PhantomError, match=name):
        dataclasses.replace(SMALL, **change)
    with pytest.raises(PhantomError, match="seed"):
        generate_hard_clip(SMALL, -1)
