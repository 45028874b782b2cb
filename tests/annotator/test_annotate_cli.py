from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from clip_files import moving_bar_frames, write_clip

from annotator.cli import annotate, open_clips
from annotator.overlay import text_overlay
from archive.cli.main import main


def test_annotate_is_a_usarchive_command() -> None:
    with click.Context(main) as ctx:
        assert main.get_command(ctx, "annotate") is annotate


def test_annotate_refuses_non_dicom_without_starting_napari(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image", encoding="utf-8")
    result = CliRunner().invoke(main, ["annotate", str(notes)])
    assert result.exit_code == 2
    assert "expected DICOM files" in result.output
    assert "notes.txt" in result.output


def test_annotate_needs_something_to_open() -> None:
    result = CliRunner().invoke(main, ["annotate"])
    assert result.exit_code == 2
    assert "--sample" in result.output


@pytest.mark.gui
def test_open_clips_shows_last_clip_time(make_napari_viewer: Callable[..., Any], tmp_path: Path) -> None:
    first = write_clip(tmp_path / "a.dcm", moving_bar_frames(10, 32, 40), frame_time_ms=100.0)
    second = write_clip(tmp_path / "b.dcm", moving_bar_frames(20, 32, 40), frame_time_ms=20.0)
    viewer = make_napari_viewer()
    layers, detach = open_clips(viewer, [first, second])
    assert [layer.data.path for layer in layers] == [first, second]
    assert detach is not None
    viewer.dims.set_current_step(0, 5)
    assert text_overlay(viewer).text == "t = 0.100 s (frame 6/20)"
    assert open_clips(viewer, []) == ([], None)


@pytest.mark.gui
def test_open_clips_without_napari_patches_keeps_napari_slider(
    make_napari_viewer: Callable[..., Any], tmp_path: Path
) -> None:
    clip = write_clip(tmp_path / "a.dcm", moving_bar_frames(10, 32, 40), frame_time_ms=100.0)
    viewer = make_napari_viewer()
    open_clips(viewer, [clip], napari_patches=False)
    viewer.dims.set_current_step(0, 5)
    assert text_overlay(viewer).text == "t = 0.500 s (frame 6/10)"
    slider = viewer.window._qt_viewer.dims.slider_widgets[0]
    assert (slider.curslice_label.text(), slider.totslice_label.text()) == ("5", "9")  # napari's own


@pytest.mark.parametrize(
    ("configured", "flag", "expected"),
    [
        (None, [], True),
        (None, ["--no-napari-patches"], False),
        (False, [], False),  # [review] napari_patches = false in usarchive.toml
        (False, ["--napari-patches"], True),  # the flag wins over the file
    ],
)
def test_annotate_passes_the_napari_patches_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: bool | None, flag: list[str], expected: bool
) -> None:
    import napari

    import annotator.cli

    clip = write_clip(tmp_path / "a.dcm", moving_bar_frames(4, 16, 16))
    seen: list[bool] = []

    def record(viewer: Any, paths: Any, *, napari_patches: bool = True) -> tuple[list[Any], None]:
        seen.append(napari_patches)
        return [], None

    monkeypatch.setattr(napari, "Viewer", lambda **_: object())
    monkeypatch.setattr(napari, "run", lambda: None)
    monkeypatch.setattr(annotator.cli, "open_clips", record)
    config: list[str] = []
    if configured is not None:
        path = tmp_path / "usarchive.toml"
        path.write_text(f"[review]\nnapari_patches = {str(configured).lower()}\n", encoding="utf-8")
        config = ["--config", str(path)]
    result = CliRunner().invoke(main, [*config, "annotate", *flag, str(clip)])
    assert result.exit_code == 0, result.output
    assert seen == [expected]


def test_prefer_reader_sets_napari_preference_and_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import napari.settings
    from napari.settings import NapariSettings

    settings = NapariSettings(config_path=tmp_path / "napari.yaml")
    settings.plugins.extension2reader = {"*.tif": "napari"}
    monkeypatch.setattr(napari.settings, "get_settings", lambda *a, **k: settings)
    result = CliRunner().invoke(main, ["annotate", "--prefer-reader"])
    assert result.exit_code == 0, result.output
    assert "with the usarchive reader" in result.output and "*.dcm" in result.output
    preference = dict(settings.plugins.extension2reader)
    assert preference["*.tif"] == "napari"  # other preferences kept
    assert {preference[p] for p in ("*.dcm", "*.dicom", "*DICOMDIR", "*/")} == {"usarchive"}
