"""napari's own open of a sample .dcm, a folder and a DICOMDIR uses the usarchive reader.

``viewer.open(path, plugin=None)`` is napari's "let napari choose" path, the one
File > Open, drag and drop and the ``napari`` command take (napari's
``viewer.open`` default, ``plugin="napari"``, always means napari's builtins).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.fileset import FileSet

from annotator.reader import get_reader, read_clips
from annotator.reader_preference import DICOM_PATTERNS, FOLDER_PATTERN, PLUGIN, prefer_usarchive_reader

ViewerFactory = Any
CLIPS = ("l4_tt_inplane_mono", "c45_danger_mono")


@pytest.fixture
def napari_settings() -> Iterator[Any]:
    """napari's settings, with the reader preference as it was put back afterwards."""
    from napari.settings import get_settings

    settings = get_settings()
    before = dict(settings.plugins.extension2reader)
    yield settings
    settings.plugins.extension2reader = before


def _ours(layer: Any) -> bool:
    # Only the usarchive reader gives the frame times and the ultrasound calibration.
    return "frame_times_ms" in layer.metadata and "calibrated" in layer.metadata


def test_viewer_open_uses_usarchive_reader_for_dcm_folder_and_dicomdir(
    make_napari_viewer: ViewerFactory, napari_settings: Any, sample_dir: Path, tmp_path: Path
) -> None:
    from napari.errors import MultipleReaderError

    folder = tmp_path / "study"
    (folder / "series").mkdir(parents=True)
    for name in CLIPS:
        shutil.copy(sample_dir / f"{name}.dcm", folder / "series" / f"{name}.dcm")
    (folder / "notes.txt").write_text("not DICOM")
    single = folder / "series" / f"{CLIPS[0]}.dcm"
    viewer = make_napari_viewer()

    napari_settings.plugins.extension2reader = {}
    with pytest.raises(MultipleReaderError):
        viewer.open(single, plugin=None)  # napari's reader claims *.dcm too: without a preference, no choice

    preference = prefer_usarchive_reader(napari_settings)
    assert {p: preference[p] for p in (*DICOM_PATTERNS, FOLDER_PATTERN)} == dict.fromkeys(
        (*DICOM_PATTERNS, FOLDER_PATTERN), PLUGIN
    )
    layers = viewer.open(single, plugin=None)
    assert len(layers) == 1 and _ours(layers[0])
    assert layers[0].data.shape[0] > 1  # the frame stack, not one plane per file
    assert [str(u) for u in layers[0].units][1:] == ["millimeter", "millimeter"]

    # A folder: one layer per clip, the non-DICOM file ignored.
    viewer.layers.clear()
    layers = viewer.open(folder, plugin=None)
    assert len(layers) == len(CLIPS) and all(_ours(layer) for layer in layers)

    # A DICOMDIR (and the folder holding it): its referenced clips.
    fileset = FileSet()
    for name in CLIPS:
        fileset.add(str(sample_dir / f"{name}.dcm"))
    media = tmp_path / "media"
    fileset.write(str(media))
    viewer.layers.clear()
    layers = viewer.open(media / "DICOMDIR", plugin=None)
    assert len(layers) == len(CLIPS) and all(_ours(layer) for layer in layers)
    assert get_reader(str(media)) is read_clips
    viewer.layers.clear()
    assert len(viewer.open(media, plugin=None)) == len(CLIPS)
    # The GUI's File > Open path, with the same preference.
    viewer.layers.clear()
    viewer.window._qt_viewer._qt_open([str(single)], stack=False)
    assert len(viewer.layers) == 1 and _ours(viewer.layers[0])
