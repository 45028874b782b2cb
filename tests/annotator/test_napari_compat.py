"""The napari internals the annotator relies on are the recorded ones; without the patches it still works."""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path
from typing import Any

import napari
import numpy as np
import pytest
from widget_fixtures import ViewerFactory, ingest, open_clip_from_list

from annotator import _napari_compat
from annotator.overlay import text_overlay
from annotator.widget import ProcedureReviewWidget
from archive.archive import Archive

LUMBAR = "l4_tt_inplane_mono"
COMPAT_LOGGER = "annotator._napari_compat"


@pytest.mark.parametrize("qualified_name", sorted(_napari_compat.PATCHED_SOURCES))
def test_every_overridden_or_relied_on_napari_source_is_the_recorded_one(qualified_name: str) -> None:
    found = _napari_compat.source_hash(qualified_name)
    assert found == _napari_compat.PATCHED_SOURCES[qualified_name], (
        f"{qualified_name} changed in napari {napari.__version__}: check annotator/_napari_compat.py "
        "against the new source, then record the new hash in PATCHED_SOURCES"
    )


def test_the_tested_minor_version_is_the_pinned_and_installed_one(repo_root: Path) -> None:
    extras = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    [napari_requirement] = [r for r in extras["annotator"] if r.startswith("napari")]
    low, high = re.fullmatch(r"napari>=([\d.]+),<([\d.]+)", napari_requirement).groups()  # type: ignore[union-attr]
    assert low.startswith(_napari_compat.TESTED_MINOR + ".")
    major, minor = (int(part) for part in _napari_compat.TESTED_MINOR.split("."))
    assert high == f"{major}.{minor + 1}"
    assert _napari_compat.is_tested_version(), f"napari {napari.__version__} installed"


def test_another_napari_version_turns_the_patches_off_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_napari_compat, "napari_minor", lambda: "0.10")
    monkeypatch.setattr(_napari_compat, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=COMPAT_LOGGER):
        assert not _napari_compat.patches_enabled()
        assert not _napari_compat.patches_enabled()
    [record] = [r for r in caplog.records if r.name == COMPAT_LOGGER]
    assert "not the tested 0.9.x" in record.getMessage()
    assert not _napari_compat.patches_enabled(False)


def mark_nodes_drawn(widget: ProcedureReviewWidget) -> list[bool]:
    assert widget.marks is not None
    visuals = widget.viewer.window._qt_viewer.canvas.layer_to_visual
    return [bool(visuals[layer].node.visible) for layer in widget.marks.all]


def overlay_visual_types(widget: ProcedureReviewWidget) -> set[type]:
    canvas = widget.viewer.window._qt_viewer.canvas
    return {type(v) for v in canvas._viewer_overlay_to_visual[text_overlay(widget.viewer)]}


def slider_labels(widget: ProcedureReviewWidget) -> tuple[str, str]:
    slider = widget.viewer.window._qt_viewer.dims.slider_widgets[0]
    return slider.curslice_label.text(), slider.totslice_label.text()


def open_lumbar(
    viewer: Any, qtbot: Any, archive: Archive, sample_dir: Path, **kwargs: Any
) -> ProcedureReviewWidget:
    uid = ingest(archive, sample_dir / f"{LUMBAR}.dcm")
    widget = ProcedureReviewWidget(viewer, archive=archive, **kwargs)
    viewer.window.add_dock_widget(widget, name="Procedure review", area="right")
    open_clip_from_list(qtbot, widget, uid)
    viewer.screenshot(canvas_only=True, flash=False)  # the overlay's visuals are made when first drawn
    return widget


def assert_stock_napari(widget: ProcedureReviewWidget) -> None:
    from napari._vispy.overlays.text import VispyTextOverlay

    assert overlay_visual_types(widget) == {VispyTextOverlay}
    assert all(mark_nodes_drawn(widget))  # napari draws every shown layer
    step = int(widget.viewer.dims.current_step[0])
    total = int(widget.viewer.dims.nsteps[0])
    assert slider_labels(widget) == (str(step), str(total - 1))  # napari's 0-based labels


def step_frames(widget: ProcedureReviewWidget) -> None:
    assert widget.image is not None
    n_frames = int(widget.image.data.shape[0])
    for frame in (1, 2, n_frames - 1):
        widget.go_to_frame(frame)
        assert widget.current_frame() == frame
        assert f"(frame {frame + 1}/{n_frames})" in text_overlay(widget.viewer).text
        widget.viewer.screenshot(canvas_only=True, flash=False)


@pytest.mark.gui
def test_patches_switched_off_leave_napari_stock_and_the_widget_works(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    widget = open_lumbar(make_napari_viewer(show=True), qtbot, archive, sample_dir, napari_patches=False)
    step_frames(widget)
    assert_stock_napari(widget)


@pytest.mark.gui
def test_an_untested_napari_gets_the_stock_behaviour_and_the_widget_works(
    make_napari_viewer: ViewerFactory,
    qtbot: Any,
    archive: Archive,
    sample_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(_napari_compat, "napari_minor", lambda: "0.10")
    monkeypatch.setattr(_napari_compat, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=COMPAT_LOGGER):
        widget = open_lumbar(make_napari_viewer(show=True), qtbot, archive, sample_dir)
    assert any("napari 0.9" in r.getMessage() or "0.9.x" in r.getMessage() for r in caplog.records)
    step_frames(widget)
    assert_stock_napari(widget)


@pytest.mark.gui
def test_a_missing_internal_is_logged_and_nothing_is_reached_into(
    make_napari_viewer: ViewerFactory,
    qtbot: Any,
    archive: Archive,
    sample_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    viewer = make_napari_viewer(show=True)
    real_qt_viewer = viewer.window._qt_viewer

    class Renamed:  # a napari whose QtViewer no longer has .canvas and .dims
        pass

    monkeypatch.setattr(_napari_compat, "qt_viewer", lambda _viewer: Renamed())
    monkeypatch.setattr(_napari_compat, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=COMPAT_LOGGER):
        widget = open_lumbar(viewer, qtbot, archive, sample_dir)
    messages = " ".join(r.getMessage() for r in caplog.records if r.name == COMPAT_LOGGER)
    assert "VispyCanvas.layer_to_visual" in messages and "QtDims.slider_widgets" in messages
    assert real_qt_viewer is viewer.window._qt_viewer
    step_frames(widget)
    assert_stock_napari(widget)


@pytest.mark.gui
def test_the_patches_are_undone_when_the_clip_or_the_widget_is_closed(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    from napari._vispy.overlays.text import VispyTextOverlay

    viewer = make_napari_viewer(show=True)
    widget = open_lumbar(viewer, qtbot, archive, sample_dir)
    assert overlay_visual_types(widget) == {_napari_compat.SteadyBoxTextOverlay}
    assert not any(mark_nodes_drawn(widget))
    step = int(viewer.dims.current_step[0])
    assert slider_labels(widget) == (str(step + 1), str(int(viewer.dims.nsteps[0])))
    canvas = viewer.window._qt_viewer.canvas
    widget.close_clip()
    assert overlay_visual_types(widget) == {VispyTextOverlay}
    viewer.add_image(np.zeros((8, 4, 4), dtype=np.uint8))  # a plain stack: napari's own slider labels
    viewer.dims.set_current_step(0, 5)
    assert slider_labels(widget) == ("5", "7")
    viewer.layers.clear()

    # Opened again, then the widget itself goes (the viewer stays): napari's own objects again.
    open_clip_from_list(qtbot, widget, widget.clip_list.uids()[0])
    viewer.screenshot(canvas_only=True, flash=False)
    assert overlay_visual_types(widget) == {_napari_compat.SteadyBoxTextOverlay}
    overlay_visuals = canvas._viewer_overlay_to_visual[text_overlay(viewer)]
    viewer.window.remove_dock_widget(widget)
    widget.deleteLater()
    qtbot.waitUntil(lambda: {type(v) for v in overlay_visuals} == {VispyTextOverlay})
    viewer.dims.set_current_step(0, 3)
    slider = viewer.window._qt_viewer.dims.slider_widgets[0]
    assert slider.curslice_label.text() == "3"  # napari's 0-based label, no longer relabelled
