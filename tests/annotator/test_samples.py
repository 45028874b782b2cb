from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread

from annotator.samples import SAMPLE_SPECS, sample_cache_dir, sample_path
from archive.calibration import Calibration


def test_sample_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sample_cache_dir() == tmp_path / "usarchive" / "samples"


def test_unknown_sample_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="cervical_c4_danger"):
        sample_path("l9", tmp_path)


def test_sample_is_generated_once(tmp_path: Path) -> None:
    path = sample_path("cervical_c4_danger", tmp_path)
    ds = dcmread(path, stop_before_pixels=True)
    assert ds.SeriesDescription == "C4/5 block R"
    assert int(ds.NumberOfFrames) == SAMPLE_SPECS["cervical_c4_danger"].frames
    written = path.stat().st_mtime_ns
    assert sample_path("cervical_c4_danger", tmp_path) == path
    assert path.stat().st_mtime_ns == written


@pytest.mark.gui
def test_open_sample_in_viewer(
    make_napari_viewer: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    viewer = make_napari_viewer()
    viewer.open_sample("usarchive", "lumbar_l4_in_plane")
    [layer] = viewer.layers
    assert layer.name == "L4 MBB R in-plane"
    assert layer.rgb
    assert layer.data.shape[0] == SAMPLE_SPECS["lumbar_l4_in_plane"].frames
    expected = Calibration.from_dataset(layer.data.header).pixel_size_mm
    np.testing.assert_allclose(layer.scale[1:], expected)
    assert layer.metadata["calibrated"] is True
    assert np.asarray(layer._slice.image.raw).any()
    assert list((tmp_path / "usarchive" / "samples").glob("lumbar_l4_in_plane_*.dcm"))
