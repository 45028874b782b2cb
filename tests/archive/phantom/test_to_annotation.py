"""The annotation a perfect reviewer makes of a phantom clip (archive.phantom.to_annotation)."""

from __future__ import annotations

import numpy as np

from archive.model import ClipEvent, NeedleView, SpinalLevel
from archive.phantom import ClipSpec, generate_clip
from archive.phantom.to_annotation import annotation_from_truth


def test_annotation_marks_exactly_the_truth() -> None:
    spec = ClipSpec(level=SpinalLevel.C4, danger=True, depth_mm=45.0, rows=160, cols=200, frames=12)
    _, truth = generate_clip(spec, 5)
    ann = annotation_from_truth(truth, "truth")
    assert ann.reviewer == "truth"
    assert ann.sop_instance_uid == truth.sop_instance_uid
    assert (ann.n_frames, ann.frame_shape) == (12, (160, 200))
    visible = [f for f, line in enumerate(truth.needle) if line is not None]
    assert list(ann.needle) == visible
    for frame in visible:
        tip = truth.tips[frame]
        assert tip is not None
        assert ann.tip_at(frame) == tuple(tip)
        assert ann.needle[frame].view is NeedleView.IN_PLANE
    assert list(ann.target) == list(range(12))
    target = ann.target_at(3)
    assert target is not None and target.point == tuple(truth.targets[3])
    assert list(ann.spread) == [f for f in range(12) if truth.spread[f].any()]
    assert truth.danger is not None
    assert all(np.array_equal(ann.danger_at(f)[truth.danger_name], truth.danger[f]) for f in range(12))
    assert {e.value: f for e, f in ann.events.items()} == {
        name: f for name, f in truth.events.items() if f is not None
    }
    assert ClipEvent.INJECTION_START in ann.events


def test_out_of_plane_truth_gives_dots_and_no_danger() -> None:
    spec = ClipSpec(level=SpinalLevel.L5, needle_view=NeedleView.OUT_OF_PLANE, rows=160, cols=200, frames=10)
    _, truth = generate_clip(spec, 6)
    ann = annotation_from_truth(truth, "truth")
    assert ann.needle
    assert all(len(mark.points) == 1 and mark.view is NeedleView.OUT_OF_PLANE for mark in ann.needle.values())
    assert not ann.danger
