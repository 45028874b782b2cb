from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clip_files import DELTA_X_CM, DELTA_Y_CM, moving_bar_frames, write_clip
from pydicom.data import get_testdata_file

from annotator.errors import FrameDecodeError
from annotator.frames import ClipFrames
from annotator.reader import (
    UNCALIBRATED_MARK,
    get_reader,
    is_dicom_file,
    read_clip,
    read_clips,
)


def _testdata(name: str) -> Path:
    found = get_testdata_file(name)
    assert found is not None
    return Path(found)


def test_reader_handles_dicom_by_extension_and_by_magic(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.dcm", moving_bar_frames(8, 32, 40))
    no_extension = tmp_path / "IM000001"
    no_extension.write_bytes(clip.read_bytes())
    uid_named = tmp_path / "1.2.840.99999.1.7"
    uid_named.write_bytes(clip.read_bytes())
    upper = tmp_path / "CLIP.DICOM"
    upper.write_bytes(clip.read_bytes())
    for path in (clip, no_extension, uid_named, upper):
        assert is_dicom_file(path), path
        assert get_reader(str(path)) is read_clips
    assert get_reader([str(clip), str(no_extension)]) is read_clips


def test_reader_declines_what_it_does_not_handle(tmp_path: Path) -> None:
    text = tmp_path / "notes"
    text.write_bytes(b"x" * 200)
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    short = tmp_path / "tiny"
    short.write_bytes(b"DICM")
    clip = write_clip(tmp_path / "clip.dcm", moving_bar_frames(8, 32, 40))
    assert get_reader(str(text)) is None
    assert get_reader(str(png)) is None
    assert get_reader(str(short)) is None
    empty = tmp_path / "no-dicom"
    empty.mkdir()
    (empty / "notes").write_bytes(b"x" * 200)
    assert get_reader(str(empty)) is None
    assert get_reader(str(tmp_path / "missing.dcm")) is None
    assert get_reader([str(clip), str(png)]) is None
    assert get_reader([]) is None


def test_calibrated_clip_layer(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.dcm", moving_bar_frames(20, 48, 64), frame_time_ms=40.0)
    data, kwargs, layer_type = read_clip(path)
    assert layer_type == "image"
    assert isinstance(data, ClipFrames)
    assert data.shape == (20, 48, 64)
    assert kwargs["scale"] == pytest.approx((1.0, DELTA_Y_CM * 10, DELTA_X_CM * 10))
    assert kwargs["units"] == ("pixel", "mm", "mm")
    assert kwargs["axis_labels"] == ("t", "y", "x")
    assert kwargs["rgb"] is False
    assert kwargs["name"] == "L4/5 MBB R"
    assert kwargs["contrast_limits"] == (0.0, 255.0)
    metadata = kwargs["metadata"]
    assert metadata["calibrated"] is True
    assert metadata["pixel_size_mm"] == pytest.approx((0.25, 0.2))
    assert metadata["sop_instance_uid"] == data.header.SOPInstanceUID
    assert metadata["frame_times_ms"] == pytest.approx([40.0 * i for i in range(20)])
    assert metadata["frame_time_source"] == "FrameTime"
    assert metadata["timing_problem"] is None
    assert "0.25 x 0.2 mm per pixel" in metadata["calibration"]
    # Opening decodes nothing: frames are decoded when shown.
    assert data.decode_count == 0


def test_uncalibrated_clip_is_marked(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.dcm", moving_bar_frames(8, 32, 40, rgb=True), calibrated=False)
    _, kwargs, _ = read_clip(path)
    assert kwargs["scale"] == (1.0, 1.0, 1.0)
    assert kwargs["units"] == ("pixel", "pixel", "pixel")
    assert kwargs["rgb"] is True
    assert kwargs["name"] == "L4/5 MBB R" + UNCALIBRATED_MARK
    assert kwargs["metadata"]["calibrated"] is False
    assert kwargs["metadata"]["pixel_size_mm"] is None
    assert kwargs["metadata"]["calibration"].startswith("uncalibrated: no ultrasound regions")


def test_clip_without_timing_still_opens(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.dcm", moving_bar_frames(8, 32, 40), frame_time_ms=None)
    _, kwargs, _ = read_clip(path)
    assert kwargs["metadata"]["frame_times_ms"] is None
    assert "FrameTime (0018,1063)" in kwargs["metadata"]["timing_problem"]


def test_name_falls_back_to_file_stem(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "IM0042.dcm", moving_bar_frames(8, 32, 40), series_description="")
    _, kwargs, _ = read_clip(path)
    assert kwargs["name"] == "IM0042"


def test_sixteen_bit_image_gets_contrast_from_first_frame() -> None:
    data, kwargs, _ = read_clip(_testdata("MR_small_implicit.dcm"))
    first = np.asarray(data[0])
    assert kwargs["contrast_limits"] == (float(first.min()), float(first.max()))


def test_read_clip_passes_errors_to_handler(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.dcm", moving_bar_frames(8, 32, 40), corrupt_frames=(0,))
    seen: list[FrameDecodeError] = []
    data, _, _ = read_clip(path, on_error=seen.append, cache_frames=2)
    assert not data[0].any()
    assert [e.index for e in seen] == [0]
    assert data.cache_frames == 2
