"""The reader driven through a real napari viewer (Qt, under Xvfb)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clip_files import DELTA_X_CM, DELTA_Y_CM, moving_bar_frames, write_clip
from napari.utils.notifications import ErrorNotification, notification_manager
from pydicom.data import get_testdata_file

from annotator.frames import DEFAULT_PREFETCH_FRAMES, ClipFrames
from annotator.reader import UNCALIBRATED_MARK

pytestmark = pytest.mark.gui

ViewerFactory = Callable[..., Any]


def _testdata(name: str) -> Path:
    found = get_testdata_file(name)
    assert found is not None
    return Path(found)


def _open(viewer: Any, path: Path) -> Any:
    layers = viewer.open(path, plugin="usarchive")
    assert len(layers) == 1
    return layers[0]


def test_open_calibrated_jpeg_clip(make_napari_viewer: ViewerFactory, tmp_path: Path) -> None:
    source = moving_bar_frames(30, 64, 80, rgb=True)
    path = write_clip(tmp_path / "clip.dcm", source)
    viewer = make_napari_viewer()
    layer = _open(viewer, path)
    assert isinstance(layer.data, ClipFrames)
    assert layer.rgb
    assert layer.ndim == 3
    np.testing.assert_allclose(layer.scale, (1.0, DELTA_Y_CM * 10, DELTA_X_CM * 10))
    assert [str(u) for u in layer.units] == ["pixel", "millimeter", "millimeter"]
    assert tuple(layer.axis_labels) == ("t", "y", "x")
    assert layer.metadata["calibrated"] is True
    # What is on screen is the decoded frame at the current step.
    viewer.dims.set_current_step(0, 12)
    shown = np.asarray(layer._slice.image.raw)
    assert shown.shape == (64, 80, 3)
    np.testing.assert_array_equal(shown, layer.data[12])
    assert np.median(np.abs(shown.astype(int) - source[12].astype(int))) <= 3


def test_only_viewed_frames_and_the_next_few_are_decoded(
    make_napari_viewer: ViewerFactory, tmp_path: Path
) -> None:
    path = write_clip(tmp_path / "clip.dcm", moving_bar_frames(200, 48, 64))
    viewer = make_napari_viewer()
    layer = _open(viewer, path)
    frames: ClipFrames = layer.data
    viewed = {0, 1, 2, 150}
    for step in sorted(viewed):
        viewer.dims.set_current_step(0, step)
        assert frames.wait_prefetched()
    # Opening shows frame 0 and the middle frame; each shown frame brings its neighbours
    # in the direction of stepping (prefetch); no frame far from a shown one is decoded.
    near = {
        i
        for shown in viewed | {99}
        for i in range(shown - DEFAULT_PREFETCH_FRAMES, shown + DEFAULT_PREFETCH_FRAMES + 1)
    }
    decoded = set(frames.cached_indices)
    assert viewed <= decoded <= near
    assert {151, 152} <= decoded
    assert frames.decode_count == len(decoded)


def test_cache_stays_bounded_while_stepping(make_napari_viewer: ViewerFactory, tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.dcm", moving_bar_frames(120, 32, 40))
    viewer = make_napari_viewer()
    layer = _open(viewer, path)
    frames: ClipFrames = layer.data
    for step in range(120):
        viewer.dims.set_current_step(0, step)
        assert len(frames.cached_indices) <= frames.cache_frames
    assert frames.decode_count >= 120


def test_open_uncalibrated_clip(make_napari_viewer: ViewerFactory, tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.dcm", moving_bar_frames(10, 32, 40), calibrated=False)
    viewer = make_napari_viewer()
    layer = _open(viewer, path)
    assert layer.name.endswith(UNCALIBRATED_MARK)
    assert layer.metadata["calibrated"] is False
    np.testing.assert_allclose(layer.scale, (1.0, 1.0, 1.0))


@pytest.mark.parametrize(
    ("name", "shape", "rgb"),
    [
        ("examples_ybr_color.dcm", (30, 240, 320, 3), True),
        ("SC_rgb_rle_2frame.dcm", (2, 100, 100, 3), True),
        ("examples_palette.dcm", (1, 350, 800, 3), True),
        ("SC_ybr_full_422_uncompressed.dcm", (1, 100, 100, 3), True),
        ("JPEG2000.dcm", (1, 1024, 256), False),
        ("rtdose.dcm", (15, 10, 10), False),
    ],
)
def test_open_pydicom_test_files(
    make_napari_viewer: ViewerFactory, name: str, shape: tuple[int, ...], rgb: bool
) -> None:
    viewer = make_napari_viewer()
    layer = _open(viewer, _testdata(name))
    assert layer.data.shape == shape
    assert layer.rgb is rgb
    shown = np.asarray(layer._slice.image.raw)
    assert shown.shape == shape[1:]
    assert shown.any()


def test_corrupt_frame_notifies_and_shows_black(make_napari_viewer: ViewerFactory, tmp_path: Path) -> None:
    path = write_clip(tmp_path / "broken.dcm", moving_bar_frames(9, 32, 40), corrupt_frames=(4,))
    viewer = make_napari_viewer()
    errors: list[str] = []

    def collect(notification: Any) -> None:
        if isinstance(notification, ErrorNotification) or str(notification.severity) == "error":
            errors.append(str(notification.message))

    notification_manager.notification_ready.connect(collect)
    try:
        layer = _open(viewer, path)
        viewer.dims.set_current_step(0, 4)
        shown = np.asarray(layer._slice.image.raw)
        assert shown.shape == (32, 40)
        assert not shown.any()
        viewer.dims.set_current_step(0, 3)
        assert np.asarray(layer._slice.image.raw).any()
    finally:
        notification_manager.notification_ready.disconnect(collect)
    assert len(errors) == 1
    assert "broken.dcm" in errors[0]
    assert "frame 5 (index 4)" in errors[0]


def test_no_reference_leak_on_none(make_napari_viewer: ViewerFactory, tmp_path: Path, qtbot: Any) -> None:
    """Stepping through frames must not drain ``None``'s reference count.

    PySide6 6.12 on Python 3.11 lost ~50 references to ``None`` per step, which
    aborts the interpreter after a few thousand steps; the Qt binding was
    changed for it (see conftest.py). ``None`` is immortal from Python 3.12.
    """
    import sys

    path = write_clip(tmp_path / "clip.dcm", moving_bar_frames(40, 32, 40))
    viewer = make_napari_viewer(show=True)
    _open(viewer, path)
    for index in range(5):
        viewer.dims.set_current_step(0, index)
    qtbot.wait(1)
    before = sys.getrefcount(None)
    steps = 200
    for index in range(steps):
        viewer.dims.set_current_step(0, index % 40)
    qtbot.wait(1)
    lost_per_step = (before - sys.getrefcount(None)) / steps
    assert lost_per_step < 1.0
