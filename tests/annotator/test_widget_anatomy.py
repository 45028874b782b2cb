"""The review widget offers danger classes and target names by the clip's indexed level (archive.anatomy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from widget_fixtures import ViewerFactory, click, ingest, open_clip_from_list, open_widget

from annotator.widget.panel import DEFAULT_TARGET_NAME
from annotator.widget.session import archived_clip_levels
from archive.anatomy import anatomy_table
from archive.archive import Archive
from archive.model import SpinalLevel
from archive.phantom.truth import GroundTruth

pytestmark = pytest.mark.gui

LUMBAR = "l4_tt_inplane_mono"
CERVICAL = "c45_danger_mono"
FRAME = 12


def _choices(combo: Any) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def _levelless_copy(source: Path, target: Path) -> Path:
    """A copy of a sample clip whose header names no level or region, under new UIDs."""
    ds = dcmread(source)
    for keyword in (
        "StudyDescription",
        "SeriesDescription",
        "PerformedProcedureStepDescription",
        "BodyPartExamined",
        "ProtocolName",
    ):
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.save_as(target)
    return target


def _mark_target_and_danger(qtbot: Any, widget: Any, truth: GroundTruth, danger: str, target: str) -> None:
    """Choose ``danger`` and ``target`` in the boxes, click a target and paint danger on FRAME."""
    widget.go_to_frame(FRAME)
    qtbot.waitUntil(lambda: widget.current_frame() == FRAME)
    widget.panel.target_name.setCurrentText(target)
    click(qtbot, widget, "tool_target")
    widget.marks.target.add([truth.targets[FRAME]])
    widget.panel.danger_class.setCurrentText(danger)
    click(qtbot, widget, "tool_danger")
    rows, cols = widget.image.data.shape[1:3]
    centre = (rows / 2, cols / 2)
    widget.marks.danger.paint(centre, widget.marks.danger.selected_label)
    qtbot.waitUntil(lambda: widget.annotation is not None and FRAME in widget.annotation.danger)


def test_lumbar_clip_offers_lumbar_classes_and_its_level_targets_and_saves_the_chosen_name(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    source = sample_dir / f"{LUMBAR}.dcm"
    uid = ingest(archive, source)
    levels = archived_clip_levels(archive, uid)
    assert SpinalLevel.L4 in levels and all(level.region == "L" for level in levels)
    widget = open_widget(make_napari_viewer(), archive)
    open_clip_from_list(qtbot, widget, uid)
    assert _choices(widget.panel.danger_class) == ["nerve root", "vessel", "spinal canal"]
    offered = _choices(widget.panel.target_name)
    assert "L5 SAP–TP junction" in offered  # the L4 medial branch's target
    assert all(name.split()[0][0] in "LS" for name in offered)
    assert widget.panel.target_name.currentText() == offered[0]

    truth = GroundTruth.read(source.with_suffix(".json"))
    _mark_target_and_danger(qtbot, widget, truth, "spinal canal", "L5 SAP–TP junction")
    assert widget.save()
    saved = archive.annotations.load(uid, "alice")
    assert saved.annotation.target[FRAME].name == "L5 SAP–TP junction"
    assert set(saved.annotation.danger[FRAME]) == {"spinal canal"}


def test_cervical_clip_offers_cervical_classes_and_saves_the_chosen_ones(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    source = sample_dir / f"{CERVICAL}.dcm"
    uid = ingest(archive, source)
    widget = open_widget(make_napari_viewer(), archive)
    open_clip_from_list(qtbot, widget, uid)
    assert _choices(widget.panel.danger_class) == ["spinal cord", "vertebral artery", "nerve root"]
    offered = _choices(widget.panel.target_name)
    assert "C4 articular pillar waist" in offered and "C5 articular pillar waist" in offered
    assert not any("SAP–TP" in name for name in offered)

    truth = GroundTruth.read(source.with_suffix(".json"))
    _mark_target_and_danger(qtbot, widget, truth, "vertebral artery", "C5 articular pillar waist")
    assert widget.save()
    saved = archive.annotations.load(uid, "alice")
    assert saved.annotation.target[FRAME].name == "C5 articular pillar waist"
    assert set(saved.annotation.danger[FRAME]) == {"vertebral artery"}


def test_clip_of_unknown_level_offers_every_class_and_the_default_target_name(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path, tmp_path: Path
) -> None:
    uid = ingest(archive, _levelless_copy(sample_dir / f"{LUMBAR}.dcm", tmp_path / "levelless.dcm"))
    assert archived_clip_levels(archive, uid) == ()
    widget = open_widget(make_napari_viewer(), archive)
    open_clip_from_list(qtbot, widget, uid)
    every = list(dict.fromkeys(name for names in anatomy_table().danger.values() for name in names))
    assert _choices(widget.panel.danger_class) == every
    assert {"spinal cord", "vertebral artery", "nerve root", "vessel", "spinal canal"} <= set(every)
    assert _choices(widget.panel.target_name) == [DEFAULT_TARGET_NAME]
    assert widget.panel.target_name.currentText() == DEFAULT_TARGET_NAME
