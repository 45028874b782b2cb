"""The mark layers are rewritten only when what they show changes, and always show the annotation."""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.components import ViewerModel

from annotator.widget.layers import MarkLayers
from archive.model import NeedleView
from archive.review import ClipAnnotation, NeedleMark, TargetMark

ROWS, COLS = 30, 40
N_FRAMES = 12


def _annotation() -> ClipAnnotation:
    spread = np.zeros((ROWS, COLS), bool)
    spread[5:9, 10:15] = True
    nerve = np.zeros((ROWS, COLS), bool)
    nerve[20:22, 3:6] = True
    return (
        ClipAnnotation.new("1.2.3", "alice", N_FRAMES, (ROWS, COLS))
        .with_needle(4, NeedleMark(((0.0, 0.0), (10.0, 10.0)), NeedleView.IN_PLANE))
        .with_needle(6, NeedleMark(((0.0, 0.0), (14.0, 20.0)), NeedleView.IN_PLANE))
        .with_needle(9, NeedleMark(((12.0, 12.0),), NeedleView.OUT_OF_PLANE))
        .with_target(5, TargetMark((15.0, 20.0), "L5 SAP–TP junction"))
        .with_spread(6, spread)
        .with_danger(6, "nerve root", nerve)
    )


def _layers() -> MarkLayers:
    return MarkLayers(ViewerModel(), (ROWS, COLS), (0.2, 0.1), ["nerve root", "vessel"])


def _content(marks: MarkLayers) -> list[Any]:
    """Everything the layers show, comparable with ``==`` after conversion to lists."""
    return [
        [np.asarray(path).tolist() for path in marks.needle.data],
        np.asarray(marks.needle_dot.data).tolist(),
        np.asarray(marks.target.data).tolist(),
        np.asarray(marks.spread.data).tolist(),
        np.asarray(marks.danger.data).tolist(),
        np.asarray(marks.needle.edge_color).round(3).tolist(),
        np.asarray(marks.target.face_color).round(3).tolist(),
    ]


def _count_writes(marks: MarkLayers) -> list[str]:
    writes: list[str] = []
    for layer in marks.all:
        layer.events.data.connect(lambda event, name=layer.name: writes.append(name))
    return writes


def test_stepping_shows_the_same_as_filling_afresh() -> None:
    annotation = _annotation()
    stepping = _layers()
    # Forwards, backwards, jumps and repeats: each frame must look as if filled from scratch.
    for frame in [0, 1, 2, 3, 4, 5, 6, 7, 6, 5, 11, 9, 9, 10, 2, 6, 0]:
        stepping.show(annotation, frame)
        fresh = _layers()
        fresh.show(annotation, frame)
        assert _content(stepping) == _content(fresh), f"frame {frame}"


def test_frames_without_marks_do_not_rewrite_the_layers() -> None:
    annotation = _annotation()
    marks = _layers()
    marks.show(annotation, 0)
    writes = _count_writes(marks)
    for frame in (1, 2, 3):  # no mark before the first keyframe (4)
        marks.show(annotation, frame)
    assert writes == []
    marks.show(annotation, 4)  # a needle keyframe: only the needle layers are rewritten
    assert writes and set(writes) <= {"needle", "needle (out-of-plane)"}
    writes.clear()
    marks.show(annotation, 6)  # spread and danger appear: the mask layers are rewritten
    assert {"spread", "danger"} <= set(writes)
    writes.clear()
    marks.show(annotation, 7)  # and cleared again
    assert {"spread", "danger"} <= set(writes)


def test_a_layer_edited_by_the_reviewer_is_rewritten_from_the_annotation() -> None:
    annotation = _annotation()
    marks = _layers()
    marks.show(annotation, 1)
    # Painting changes the Labels data in place; a refused needle edit leaves a path in the layer.
    marks.spread.data[0:3, 0:3] = 1
    marks.danger.data[4, 4] = 2
    marks.needle.add_paths([np.array([[1.0, 1.0], [5.0, 5.0]])])
    marks.target.add([(3.0, 3.0)])
    marks.show(annotation, 1)
    assert not np.asarray(marks.spread.data).any()
    assert not np.asarray(marks.danger.data).any()
    assert len(marks.needle.data) == 0
    assert len(marks.target.data) == 0
    marks.spread.data[0:3, 0:3] = 1
    marks.show(annotation, 2)  # also when stepping on to a frame without marks
    assert not np.asarray(marks.spread.data).any()


def test_a_changed_annotation_is_shown_on_the_same_frame() -> None:
    annotation = _annotation()
    marks = _layers()
    marks.show(annotation, 1)
    edited = annotation.with_target(1, TargetMark((7.0, 8.0), "L5 SAP–TP junction"))
    marks.show(edited, 1)
    assert np.asarray(marks.target.data).tolist() == [[7.0, 8.0]]
