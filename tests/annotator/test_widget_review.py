"""The review widget: uncalibrated clips, stale saves, review status, filters, shortcuts, edit rules."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from app_model.types import KeyBinding
from widget_fixtures import (
    ViewerFactory,
    click,
    ingest,
    open_clip_from_list,
    open_widget,
    uncalibrated_copy,
)

from annotator.widget.readout import UNCALIBRATED_TEXT
from annotator.widget.shortcuts import SHORTCUTS, help_text
from archive.archive import Archive
from archive.model import ClipEvent, ReviewStatus
from archive.phantom.truth import GroundTruth
from archive.review import MarkKind

pytestmark = pytest.mark.gui

LUMBAR = "l4_tt_inplane_mono"
CERVICAL = "c45_danger_mono"


def _mark_needle_and_target(widget: Any, truth: GroundTruth, frame: int) -> None:
    widget.go_to_frame(frame)
    widget.tool_needle()
    widget.marks.needle.add_paths([np.asarray(truth.needle[frame])])
    widget.tool_target()
    widget.marks.target.add([truth.targets[frame]])


def test_uncalibrated_clip_opens_and_says_mm_unavailable(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path, tmp_path: Path
) -> None:
    source = sample_dir / f"{LUMBAR}.dcm"
    uid = ingest(archive, uncalibrated_copy(source, tmp_path / "uncalibrated.dcm"))
    truth = GroundTruth.read(source.with_suffix(".json"))
    widget = open_widget(make_napari_viewer(), archive)
    open_clip_from_list(qtbot, widget, uid)
    assert widget.calibration is None
    assert "UNCALIBRATED" in widget.panel.calibration_label.text()
    assert widget.image is not None and tuple(widget.image.scale) == (1.0, 1.0, 1.0)
    frame = 18
    _mark_needle_and_target(widget, truth, frame)
    rows, cols = np.nonzero(truth.spread[frame])
    widget.tool_spread()
    widget.marks.spread.paint((float(rows.mean()), float(cols.mean())), 1)
    qtbot.waitUntil(lambda: widget.annotation is not None and frame in widget.annotation.spread)
    reading = widget.readout()
    assert reading is not None
    # The marks are there (a calibrated clip would give numbers), but no mm value is shown.
    assert widget.annotation is not None and widget.annotation.tip_at(frame) is not None
    for measurement in (reading.tip_to_target_mm, reading.needle_angle_deg, reading.spread_area_mm2):
        assert measurement.value is None and measurement.text == UNCALIBRATED_TEXT
    for field in ("tip_to_target_mm", "needle_angle_deg", "spread_area_mm2"):
        assert widget.panel.readout_labels[field].text() == UNCALIBRATED_TEXT
    assert "uncalibrated" in widget.panel.frame_label.text()


def test_stale_save_is_refused_and_edits_are_kept(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    source = sample_dir / f"{LUMBAR}.dcm"
    uid = ingest(archive, source)
    truth = GroundTruth.read(source.with_suffix(".json"))
    viewer = make_napari_viewer()
    first = open_widget(viewer, archive)
    open_clip_from_list(qtbot, first, uid)
    _mark_needle_and_target(first, truth, 10)
    assert first.save() and first.session is not None and first.session.base_version == 1

    # Another editor of alice's annotation saves version 2 in between.
    other = archive.annotations.load(uid, "alice").annotation.with_event(ClipEvent.NEEDLE_VISIBLE, 4)
    archive.annotations.save(other, base_version=1)

    first.go_to_frame(12)
    first.mark_event(ClipEvent.INJECTION_START)
    edited = first.annotation
    click(qtbot, first, "save")
    assert "NOT SAVED" in first.panel.message.text()
    assert "version 2 is now stored" in first.panel.message.text()
    assert first.annotation == edited and first.session.dirty
    assert "UNSAVED CHANGES" in first.panel.status_label.text()
    stored = archive.annotations.load(uid, "alice")
    assert stored.version == 2 and ClipEvent.INJECTION_START not in stored.annotation.events


def test_review_status_through_the_widget_and_list_filters(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    lumbar = ingest(archive, sample_dir / f"{LUMBAR}.dcm")
    cervical = ingest(archive, sample_dir / f"{CERVICAL}.dcm")
    widget = open_widget(make_napari_viewer(), archive)
    assert sorted(widget.clip_list.uids()) == sorted([lumbar, cervical])
    open_clip_from_list(qtbot, widget, lumbar)
    truth = GroundTruth.read(sample_dir / f"{LUMBAR}.json")
    _mark_needle_and_target(widget, truth, 10)

    widget.panel.status_combo.setCurrentText("submitted")
    click(qtbot, widget, "set_status")
    assert widget.annotation is not None and widget.annotation.status is ReviewStatus.SUBMITTED
    assert widget.panel.status_label.text() == "alice: submitted, version 2"
    # Submitted marks are frozen: an edit is refused with the reason and the layers show the stored marks.
    widget.go_to_frame(10)
    widget.marks.target.add([(100.0, 100.0)])
    assert "cannot be edited" in widget.panel.message.text()
    qtbot.waitUntil(lambda: len(widget.marks.target.data) == 1)
    np.testing.assert_allclose(widget.marks.target.data[0], truth.targets[10])

    # needs-rework needs a comment.
    assert not widget.set_status("needs-rework")
    assert "comment" in widget.panel.message.text()
    widget.panel.status_combo.setCurrentText("needs-rework")
    widget.panel.comment.setText("mark the needle on the injection frame too")
    click(qtbot, widget, "set_status")
    assert widget.annotation is not None and widget.annotation.status is ReviewStatus.NEEDS_REWORK
    assert widget.annotation.comments[-1].text == "mark the needle on the injection frame too"
    assert archive.annotations.load(uid := lumbar, "alice").status is ReviewStatus.NEEDS_REWORK

    # Filters of the clip list.
    clips = widget.clip_list
    clips.status.setCurrentText("needs-rework")
    click(qtbot, widget, "search_button")
    assert clips.uids() == [uid]
    status_column = clips.table.item(0, 7)
    assert status_column is not None and status_column.text() == "needs-rework"
    clips.status.setCurrentText("approved")
    clips.refresh()
    assert clips.uids() == []
    clips.status.setCurrentText("any")
    clips.level.setCurrentText("C4")
    clips.refresh()
    assert clips.uids() == [cervical]
    clips.level.setCurrentText("any")
    clips.technique.setCurrentText("TT")
    clips.refresh()
    assert clips.uids() == [lumbar]
    clips.technique.setCurrentText("any")
    clips.filter_reviewer.setText("bob")
    clips.refresh()
    assert clips.uids() == []
    clips.filter_reviewer.setText("alice")
    clips.refresh()
    assert clips.uids() == [lumbar]
    clips.filter_reviewer.clear()
    clips.patient.setText("nobody-with-this-id")
    clips.refresh()
    assert clips.uids() == []


def test_keyframe_navigation_erase_and_shortcuts(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    source = sample_dir / f"{LUMBAR}.dcm"
    uid = ingest(archive, source)
    truth = GroundTruth.read(source.with_suffix(".json"))
    viewer = make_napari_viewer()
    widget = open_widget(viewer, archive)
    open_clip_from_list(qtbot, widget, uid)
    for frame in (6, 20):
        widget.go_to_frame(frame)
        widget.tool_needle()
        widget.marks.needle.add_paths([np.asarray(truth.needle[frame])])
    # Editing a keyframe (dragging its path, here: replacing the layer data) moves the interpolated frames.
    widget.go_to_frame(12)
    assert widget.annotation is not None
    before = widget.annotation.needle_at(12)
    assert before is not None and widget.annotation.is_interpolated(MarkKind.NEEDLE, 12)
    widget.go_to_frame(20)
    moved = np.asarray(truth.needle[20]) + np.array([4.0, -6.0])
    widget.marks.needle.data = [moved]
    after = widget.annotation.needle_at(12) if widget.annotation is not None else None
    assert after is not None and after != before
    np.testing.assert_allclose(
        after.points, np.asarray(before.points) + (12 - 6) / (20 - 6) * np.array([4.0, -6.0]), atol=1e-3
    )
    # Editing the interpolated frame itself makes it a keyframe.
    widget.go_to_frame(12)
    qtbot.waitUntil(lambda: len(widget.marks.needle.data) == 1)
    widget.marks.needle.data = [np.asarray(after.points) + np.array([1.0, 1.0])]
    assert widget.annotation is not None and widget.annotation.keyframes(MarkKind.NEEDLE) == (6, 12, 20)
    widget.marks.needle.data = []  # deleting the path deletes the keyframe again
    assert widget.annotation is not None and widget.annotation.keyframes(MarkKind.NEEDLE) == (6, 20)
    click(qtbot, widget, "next_keyframe")
    assert widget.current_frame() == 20
    click(qtbot, widget, "previous_keyframe")
    click(qtbot, widget, "previous_keyframe")
    assert widget.current_frame() == 6

    # Every shortcut is in the help and bound on the viewer to the method it names.
    text = help_text()
    assert widget.help.toPlainText() == text
    for shortcut in SHORTCUTS:
        assert shortcut.key in text and shortcut.description in text
        if shortcut.action is not None:
            assert KeyBinding.from_str(shortcut.key) in viewer.keymap, shortcut.key
    viewer.keymap[KeyBinding.from_str("Alt-Right")](viewer)
    assert widget.current_frame() == 20
    viewer.keymap[KeyBinding.from_str("Alt-T")](viewer)
    assert viewer.layers.selection.active is widget.marks.target
    viewer.keymap[KeyBinding.from_str("Alt-3")](viewer)
    assert widget.annotation is not None and widget.annotation.events == {ClipEvent.INJECTION_START: 20}

    # Erase on the needle deletes this frame's keyframe; the neighbours are no longer interpolated.
    widget.tool_needle()
    click(qtbot, widget, "tool_erase")
    assert widget.annotation is not None and widget.annotation.keyframes(MarkKind.NEEDLE) == (6,)
    assert widget.annotation.needle_at(12) is None
    viewer.keymap[KeyBinding.from_str("Alt-S")](viewer)
    assert widget.panel.message.text() == "saved version 1"
    assert archive.annotations.load(uid, "alice").annotation == widget.annotation


def test_reviewer_is_asked_once_when_not_configured(
    make_napari_viewer: ViewerFactory,
    qtbot: Any,
    archive: Archive,
    sample_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    archive.settings = dataclasses.replace(archive.settings, reviewer=None)  # no [review] reviewer
    questions: list[str] = []

    def answer(*args: Any, **kwargs: Any) -> tuple[str, bool]:
        questions.append(str(args[2]))
        return " erin ", True

    monkeypatch.setattr("annotator.widget.widget.QInputDialog.getText", answer)
    uid = ingest(archive, sample_dir / f"{LUMBAR}.dcm")
    widget = open_widget(make_napari_viewer(), archive)
    assert widget.reviewer_field.text() == ""
    open_clip_from_list(qtbot, widget, uid)
    open_clip_from_list(qtbot, widget, uid)
    assert len(questions) == 1 and "user name" in questions[0]
    assert widget.reviewer_field.text() == "erin"
    assert widget.session is not None and widget.session.reviewer == "erin"


def test_approver_opens_a_reviewers_annotation_and_approves_it(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    source = sample_dir / f"{LUMBAR}.dcm"
    uid = ingest(archive, source)
    truth = GroundTruth.read(source.with_suffix(".json"))
    viewer = make_napari_viewer()
    widget = open_widget(viewer, archive)
    open_clip_from_list(qtbot, widget, uid)
    _mark_needle_and_target(widget, truth, 10)
    assert widget.set_status("submitted")
    alice = widget.annotation

    # Bob, the approver, opens the same clip: his own (empty) annotation first, alice's on request.
    widget.reviewer_field.setText("bob")
    open_clip_from_list(qtbot, widget, uid)
    assert widget.annotation is not None and widget.annotation.reviewer == "bob"
    assert not widget.annotation.needle
    owners = [widget.panel.owner.itemText(i) for i in range(widget.panel.owner.count())]
    assert owners == ["alice", "bob"]
    widget.panel.owner.textActivated.emit("alice")
    assert widget.annotation == alice
    assert widget.panel.status_label.text().startswith("alice: submitted")
    assert widget.set_status("approved", "tip on the SAP-TP junction")
    stored = archive.annotations.load(uid, "alice")
    assert stored.status is ReviewStatus.APPROVED
    assert stored.annotation.comments[-1].author == "bob"
    assert [c.author for c in archive.annotations.comments(uid, "alice")][-1] == "bob"
    assert archive.annotations.reviewers(uid) == ["alice"]  # bob saved nothing of his own
