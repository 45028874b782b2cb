"""Stepping through a clip in the review widget keeps the marks, readout and time label in step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from widget_fixtures import ViewerFactory, ingest, open_clip_from_list, open_widget

from annotator.overlay import frame_time_label, text_overlay
from annotator.widget.readout import frame_readout
from archive.archive import Archive
from archive.phantom.truth import GroundTruth

pytestmark = pytest.mark.gui

LUMBAR = "l4_tt_inplane_mono"


def test_stepping_updates_marks_readout_and_time_label(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    source = sample_dir / f"{LUMBAR}.dcm"
    truth = GroundTruth.read(source.with_suffix(".json"))
    uid = ingest(archive, source)
    viewer = make_napari_viewer()
    widget = open_widget(viewer, archive)
    open_clip_from_list(qtbot, widget, uid)
    marked = [
        f for f, points in enumerate(truth.needle) if points is not None and truth.targets[f] is not None
    ]
    keyframes = [marked[0], marked[len(marked) // 2]]
    assert keyframes[1] - keyframes[0] >= 2
    for frame in keyframes:
        widget.go_to_frame(frame)
        widget.tool_needle()
        widget.marks.needle.add_paths([np.asarray(truth.needle[frame])])
        widget.tool_target()
        widget.marks.target.add([truth.targets[frame]])
        qtbot.waitUntil(
            lambda frame=frame: widget.annotation is not None and frame in widget.annotation.needle
        )
    annotation = widget.annotation
    assert annotation is not None
    n_frames = annotation.n_frames
    times = widget.image.metadata["frame_times_ms"]
    first, last = keyframes
    middle = (first + last) // 2
    for frame in [0, first, middle, last, min(last + 1, n_frames - 1), middle, 0, first]:
        widget.go_to_frame(frame)
        expected_time = frame_time_label(frame, n_frames, times, calibrated=widget.calibration is not None)
        assert widget.panel.frame_label.text() == expected_time
        assert text_overlay(viewer).text == expected_time
        reading = frame_readout(annotation, widget.calibration, frame)
        for field, label in widget.panel.readout_labels.items():
            assert label.text() == getattr(reading, field).text, (frame, field)
        mark = annotation.needle_at(frame)
        if mark is None:
            assert len(widget.marks.needle.data) == 0, frame
        else:
            np.testing.assert_allclose(widget.marks.needle.data[0], np.asarray(mark.points))
        target = annotation.target_at(frame)
        shown_targets = np.asarray(widget.marks.target.data)
        if target is None:
            assert len(shown_targets) == 0, frame
        else:
            np.testing.assert_allclose(shown_targets[0], target.point)
    # Between the two keyframes the readout has numbers (interpolated marks), before them none.
    assert frame_readout(annotation, widget.calibration, middle).tip_to_target_mm.value is not None
