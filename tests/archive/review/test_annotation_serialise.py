from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from archive.errors import AnnotationError
from archive.model import ClipEvent, NeedleView, ReviewStatus
from archive.review import (
    FORMAT_VERSION,
    ClipAnnotation,
    NeedleMark,
    ReviewComment,
    TargetMark,
    canonical_json,
    content_sha256,
    decode_mask,
    encode_mask,
    from_json,
    to_json,
)

ROWS, COLS = 12, 13  # 156 pixels: not a multiple of 8, exercises the packbits padding


def _full() -> ClipAnnotation:
    spread = np.zeros((ROWS, COLS), dtype=bool)
    spread[3:7, 4:9] = True
    canal = np.eye(ROWS, COLS, dtype=bool)
    ann = (
        ClipAnnotation.new("1.2.826.0.1.3680043.8.498.77", "ann", 30, (ROWS, COLS))
        .with_needle(2, NeedleMark(((0.1, 0.2), (3.3333333333333335, 4.0), (7.0, 9.5))))
        .with_needle(5, NeedleMark(((6.25, 7.125),), NeedleView.OUT_OF_PLANE))
        .with_target(1, TargetMark((8.0, 2.0), "L5 SAP–TP junction"))
        .with_target(12, TargetMark((8.5, 2.5), "L5 SAP–TP junction"))
        .with_spread(10, spread)
        .with_spread(11, np.zeros((ROWS, COLS), dtype=bool))
        .with_danger(4, "spinal canal", canal)
        .with_danger(4, "vessel", ~canal)
        .with_danger(9, "nerve root", spread)
        .with_event(ClipEvent.NEEDLE_VISIBLE, 1)
        .with_event(ClipEvent.TARGET_REACHED, 6)
        .with_event(ClipEvent.INJECTION_START, 7)
        .with_event(ClipEvent.INJECTION_END, 20)
        .with_adverse_event(8, "下肢神经刺激 (nerve irritation)")
        .with_status(ReviewStatus.SUBMITTED)
        .with_status(ReviewStatus.NEEDS_REWORK, ReviewComment("chief", "check frame 5", frame=5))
        .with_comment(ReviewComment("ann", "fixed"))
    )
    return ann


def test_round_trip_every_field() -> None:
    ann = _full()
    back = from_json(json.loads(json.dumps(to_json(ann))))
    assert back == ann
    assert back.needle[2].points[1] == (3.3333333333333335, 4.0)
    assert back.needle[5].view is NeedleView.OUT_OF_PLANE
    assert back.target[12] == TargetMark((8.5, 2.5), "L5 SAP–TP junction")
    np.testing.assert_array_equal(back.spread[10], ann.spread[10])
    assert not back.spread[11].any()
    assert set(back.danger[4]) == {"spinal canal", "vessel"}
    np.testing.assert_array_equal(back.danger[4]["vessel"], ~np.eye(ROWS, COLS, dtype=bool))
    assert back.events[ClipEvent.INJECTION_END] == 20
    assert back.adverse_events[0].note == "下肢神经刺激 (nerve irritation)"
    assert back.status is ReviewStatus.NEEDS_REWORK
    assert back.comments == (ReviewComment("chief", "check frame 5", 5), ReviewComment("ann", "fixed"))
    assert canonical_json(back) == canonical_json(ann)


def test_document_layout() -> None:
    doc = to_json(_full())
    assert doc["format_version"] == FORMAT_VERSION == 1
    assert doc["frame_shape"] == [ROWS, COLS]
    assert [e["frame"] for e in doc["needle"]] == [2, 5]
    assert doc["needle"][0]["points"][0] == [0.1, 0.2]
    assert [(e["frame"], e["class"]) for e in doc["danger"]] == [
        (4, "spinal canal"),
        (4, "vessel"),
        # painting on frame 9, which holds the classes of frame 4, makes it a keyframe of all three
        (9, "nerve root"),
        (9, "spinal canal"),
        (9, "vessel"),
    ]
    assert doc["events"] == {
        "needle visible": 1,
        "target reached": 6,
        "injection start": 7,
        "injection end": 20,
    }
    assert doc["status"] == "needs-rework"
    assert doc["spread"][0]["mask"]["encoding"] == "packbits-zlib-base64"


def test_canonical_json_is_deterministic_and_sorted() -> None:
    a, b = _full(), _full()
    text = canonical_json(a)
    assert text == canonical_json(b)
    assert content_sha256(a) == content_sha256(b)
    assert len(content_sha256(a)) == 64
    parsed = json.loads(text)
    assert list(parsed) == sorted(parsed)
    assert text == json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert "下肢神经刺激" in text


def test_content_hash_changes_with_any_edit() -> None:
    ann = _full()
    base = content_sha256(ann)
    rework = ann.with_needle(2, NeedleMark(((0.1, 0.2), (3.3333333333333335, 4.0), (7.0, 9.25))))
    flipped = ann.spread[10].copy()
    flipped[0, 0] = True
    hashes = {
        content_sha256(rework),
        content_sha256(ann.with_spread(10, flipped)),
        content_sha256(ann.with_comment(ReviewComment("x", "y"))),
        content_sha256(ann.with_status(ReviewStatus.SUBMITTED)),
    }
    assert base not in hashes
    assert len(hashes) == 4


def test_mask_encoding_round_trip_and_errors() -> None:
    mask = np.zeros((3, 5), dtype=bool)
    mask[1, 2] = mask[2, 4] = True
    encoded = encode_mask(mask)
    assert encoded["shape"] == [3, 5]
    np.testing.assert_array_equal(decode_mask(encoded), mask)
    with pytest.raises(AnnotationError, match="encoding"):
        decode_mask({**encoded, "encoding": "rle"})
    with pytest.raises(AnnotationError, match="packed bytes"):
        decode_mask({**encoded, "shape": [30, 5]})
    with pytest.raises(AnnotationError, match="base64"):
        decode_mask({**encoded, "data": "***"})


def _doc() -> dict[str, Any]:
    return json.loads(canonical_json(_full()))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format_version=2), "format_version 1"),
        (lambda d: d.pop("reviewer"), "'reviewer'"),
        (lambda d: d.update(n_frames="30"), "n_frames to be int"),
        (lambda d: d.update(n_frames=True), "n_frames to be int"),
        (lambda d: d.update(n_frames=15), r"0\.\.14"),
        (lambda d: d.update(frame_shape=[12]), "frame_shape"),
        (lambda d: d.update(status="done"), "ReviewStatus"),
        (lambda d: d["needle"][0].update(view="sideways"), "NeedleView"),
        (lambda d: d["needle"][0]["points"].reverse(), "reverse the points"),
        (lambda d: d["needle"].append(dict(d["needle"][0])), "two entries for frame 2"),
        (lambda d: d["target"][0].update(point=[1.0]), r"\[row, col\]"),
        (lambda d: d["target"][0].update(point=["a", 1.0]), "to be float"),
        (lambda d: d["events"].update({"injection end": 3}), "'injection end'"),
        (lambda d: d["events"].update({"coffee break": 3}), "ClipEvent"),
        (lambda d: d["danger"].append(dict(d["danger"][0])), "appears twice"),
        (lambda d: d["spread"][0]["mask"].update(shape=[13, 12]), r"frame shape \(12, 13\)"),
        (lambda d: d["adverse_events"][0].update(note=""), "note"),
        (lambda d: d["comments"][0].update(frame="5"), "frame to be int"),
    ],
)
def test_from_json_rejects_invalid(change: Any, message: str) -> None:
    doc = _doc()
    change(doc)
    with pytest.raises(AnnotationError, match=message):
        from_json(doc)


# -- property test: any valid annotation survives the round trip bit for bit -------------------

N_FRAMES = 8
coord_row = st.floats(min_value=-0.5, max_value=ROWS - 0.5, allow_nan=False)
coord_col = st.floats(min_value=-0.5, max_value=COLS - 0.5, allow_nan=False)
point = st.tuples(coord_row, coord_col)
frame = st.integers(0, N_FRAMES - 1)
masks = hnp.arrays(np.bool_, (ROWS, COLS))
text = st.text(min_size=1, max_size=12).filter(lambda s: s.strip() != "")


@st.composite
def needle_marks(draw: st.DrawFn) -> NeedleMark:
    if draw(st.booleans()):
        return NeedleMark((draw(point),), NeedleView.OUT_OF_PLANE)
    points = draw(st.lists(point, min_size=2, max_size=5, unique=True))
    return NeedleMark.oriented(points, NeedleView.IN_PLANE)


@st.composite
def annotations(draw: st.DrawFn) -> ClipAnnotation:
    ann = ClipAnnotation.new(draw(text), draw(text), N_FRAMES, (ROWS, COLS))
    for f, mark in draw(st.dictionaries(frame, needle_marks(), max_size=3)).items():
        ann = ann.with_needle(f, mark)
    for f, p in draw(st.dictionaries(frame, point, max_size=3)).items():
        ann = ann.with_target(f, TargetMark(p, draw(text)))
    for f, m in draw(st.dictionaries(frame, masks, max_size=2)).items():
        ann = ann.with_spread(f, m)
    for f in draw(st.lists(frame, max_size=2, unique=True)):
        ann = ann.with_danger(f, draw(st.sampled_from(["vessel", "nerve root", "spinal canal"])), draw(masks))
    start = draw(frame)
    ann = ann.with_event(ClipEvent.INJECTION_START, start)
    ann = ann.with_event(ClipEvent.INJECTION_END, draw(st.integers(start, N_FRAMES - 1)))
    for f, note in draw(st.dictionaries(frame, text, max_size=2)).items():
        ann = ann.with_adverse_event(f, note)
    for _ in range(draw(st.integers(0, 2))):
        ann = ann.with_comment(ReviewComment(draw(text), draw(text), draw(st.none() | frame)))
    if draw(st.booleans()):
        ann = ann.with_status(ReviewStatus.SUBMITTED)
    return ann


@settings(max_examples=40, deadline=None)
@given(ann=annotations())
def test_round_trip_property(ann: ClipAnnotation) -> None:
    text_form = canonical_json(ann)
    back = from_json(json.loads(text_form))
    assert back == ann
    assert canonical_json(back) == text_form
    assert content_sha256(back) == content_sha256(ann)
