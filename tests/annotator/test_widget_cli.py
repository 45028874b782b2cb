"""``usarchive annotate UID`` and the npe2 widget contribution of the review widget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from widget_fixtures import ViewerFactory, ingest

from annotator.cli import open_review
from annotator.widget import ProcedureReviewWidget
from archive.archive import Archive
from archive.cli.main import main
from archive.settings import ArchiveSettings


def test_annotate_refuses_an_unknown_uid_without_starting_napari(tmp_path: Path) -> None:
    missing = CliRunner().invoke(main, ["--data-dir", str(tmp_path / "data"), "annotate", "1.2.3.4.5"])
    assert missing.exit_code == 1 and "usarchive init" in missing.output  # no archive there
    assert CliRunner().invoke(main, ["--data-dir", str(tmp_path / "data"), "init"]).exit_code == 0
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path / "data"), "annotate", "1.2.3.4.5"])
    assert result.exit_code == 2
    assert "'1.2.3.4.5' is neither" in result.output
    assert "usarchive find" in result.output


def test_annotate_opens_one_archived_clip_at_a_time(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path / "data"), "annotate", "1.2.3", "1.2.4"])
    assert result.exit_code == 2
    assert "one archived clip at a time" in result.output


@pytest.mark.gui
def test_open_review_docks_the_widget_with_the_clip(
    make_napari_viewer: ViewerFactory, tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ArchiveSettings(tmp_path / "data", reviewer="carol")
    with Archive.open(settings) as archive:
        uid = ingest(archive, sample_dir / "l5_tt_outofplane_jpeg.dcm")
    viewer = make_napari_viewer()
    widget = open_review(viewer, settings, uid)
    assert isinstance(widget, ProcedureReviewWidget)
    assert widget.session is not None and widget.session.sop_instance_uid == uid
    assert widget.session.reviewer == "carol"
    assert widget.image is not None and widget.image in viewer.layers
    assert "Procedure review" in viewer.window.dock_widgets
    widget.archive.close()


@pytest.mark.gui
def test_open_review_without_napari_patches(
    make_napari_viewer: ViewerFactory, tmp_path: Path, sample_dir: Path
) -> None:
    settings = ArchiveSettings(tmp_path / "data", reviewer="carol")
    with Archive.open(settings) as archive:
        uid = ingest(archive, sample_dir / "l5_tt_outofplane_jpeg.dcm")
    viewer = make_napari_viewer()
    widget = open_review(viewer, settings, uid, napari_patches=False)
    assert not widget.napari_patches and widget.image is not None
    viewer.dims.set_current_step(0, 2)
    slider = viewer.window._qt_viewer.dims.slider_widgets[0]
    assert slider.curslice_label.text() == "2"  # napari's 0-based label
    widget.archive.close()


@pytest.mark.gui
def test_widget_contribution_opens_from_the_plugin_menu(
    make_napari_viewer: ViewerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USARCHIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USARCHIVE_REVIEWER", "dave")
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("usarchive", "Procedure review")
    found: Any = widget
    assert isinstance(found, ProcedureReviewWidget)
    assert found.archive.settings.data_dir == tmp_path / "home"
    assert found.panel.clip_label.text().startswith("no clip open")
    assert found.reviewer_field.text() == "dave"
    found.archive.close()
