from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clip_files import moving_bar_frames, write_clip
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from annotator.errors import ClipOpenError, FrameDecodeError
from annotator.frames import ClipFrames


def _testdata(name: str) -> Path:
    found = get_testdata_file(name)
    assert found is not None, f"pydicom test file {name} is not installed"
    return Path(found)


def _reference(path: Path) -> NDArray[np.generic]:
    """All frames as pydicom decodes them, shaped (T, H, W[, 3]), palette applied."""
    ds = dcmread(path)
    array = ds.pixel_array
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        array = apply_color_lut(array, ds)
        if array.dtype == np.uint16:
            array = (array >> 8).astype(np.uint8)
    if int(ds.get("NumberOfFrames") or 1) == 1:
        array = array[np.newaxis]
    return np.asarray(array)


# (file, what it exercises, max difference to pydicom's own decoding)
PYDICOM_FILES = [
    ("examples_ybr_color.dcm", "JPEG Baseline YBR_FULL_422, 30 frames", 4),
    ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "JPEG Baseline YBR_FULL", 4),
    ("SC_rgb_small_odd_jpeg.dcm", "JPEG Baseline, odd size", 4),
    ("SC_jpeg_no_color_transform.dcm", "JPEG Baseline RGB without colour transform", 0),
    ("SC_rgb_rle_2frame.dcm", "RLE RGB, 2 frames", 0),
    ("rtdose_rle.dcm", "RLE 32-bit, 15 frames", 0),
    ("examples_palette.dcm", "PALETTE COLOR", 0),
    ("SC_ybr_full_422_uncompressed.dcm", "native YBR_FULL_422", 0),
    ("MR_small_implicit.dcm", "Implicit VR Little Endian", 0),
    ("ExplVR_BigEnd.dcm", "Explicit VR Big Endian RGB", 0),
    ("JPEG2000.dcm", "JPEG 2000", 0),
    ("GDCMJ2K_TextGBR.dcm", "JPEG 2000 YBR_RCT", 0),
    ("image_dfl.dcm", "Deflated Explicit VR Little Endian", 0),
]


@pytest.mark.parametrize(("name", "what", "tolerance"), PYDICOM_FILES, ids=[f[0] for f in PYDICOM_FILES])
def test_pydicom_test_files_decode_like_pydicom(name: str, what: str, tolerance: int) -> None:
    path = _testdata(name)
    frames = ClipFrames(path)
    expected = _reference(path)
    assert frames.shape == expected.shape, what
    assert frames.dtype == expected.dtype, what
    got = np.asarray(frames)
    difference = np.abs(got.astype(np.int64) - expected.astype(np.int64)).max()
    assert difference <= tolerance, f"{what}: max difference {difference}"
    assert frames.decode_count == frames.shape[0]


def test_colour_files_become_rgb() -> None:
    palette = ClipFrames(_testdata("examples_palette.dcm"))
    ybr = ClipFrames(_testdata("examples_ybr_color.dcm"))
    for frames in (palette, ybr):
        assert frames.rgb
        assert frames.ndim == 4
        assert frames.shape[-1] == 3
        assert frames.dtype == np.uint8
        first = frames[0]
        # Real colour: the channels are not all equal.
        assert not np.array_equal(first[..., 0], first[..., 2])


def test_native_clip_round_trips_exactly(tmp_path: Path) -> None:
    source = moving_bar_frames(12, 40, 50)
    frames = ClipFrames(write_clip(tmp_path / "c.dcm", source, jpeg=False))
    assert frames.shape == (12, 40, 50)
    assert len(frames) == 12
    assert frames.ndim == 3
    np.testing.assert_array_equal(np.asarray(frames), source)
    np.testing.assert_array_equal(frames[-1], source[-1])
    np.testing.assert_array_equal(frames[3, 5:9, ::2], source[3, 5:9, ::2])
    np.testing.assert_array_equal(frames[..., 7], source[..., 7])
    np.testing.assert_array_equal(frames[[1, 4]], source[[1, 4]])


def test_native_rgb_clip_round_trips_exactly(tmp_path: Path) -> None:
    source = moving_bar_frames(5, 32, 48, rgb=True)
    frames = ClipFrames(write_clip(tmp_path / "c.dcm", source, jpeg=False))
    assert frames.shape == (5, 32, 48, 3)
    np.testing.assert_array_equal(frames[2:4], source[2:4])


@pytest.mark.parametrize(
    ("fragments_per_frame", "basic_offset_table"),
    [(1, False), (1, True), (3, True), (3, False)],
    ids=["one-fragment", "one-fragment-bot", "three-fragments-bot", "three-fragments-no-table"],
)
def test_jpeg_clip_frames_match_source(
    tmp_path: Path, fragments_per_frame: int, basic_offset_table: bool
) -> None:
    source = moving_bar_frames(10, 64, 80, rgb=True)
    path = write_clip(
        tmp_path / "c.dcm",
        source,
        fragments_per_frame=fragments_per_frame,
        basic_offset_table=basic_offset_table,
    )
    frames = ClipFrames(path)
    assert frames.shape == (10, 64, 80, 3)
    for index in (0, 7, 9):
        error = np.abs(frames[index].astype(int) - source[index].astype(int))
        # Lossy JPEG: close to the source, and each frame is its own (the bar moves).
        assert np.median(error) <= 3
        assert error.max() < 80
    assert not np.array_equal(frames[0], frames[7])


def test_only_indexed_frames_are_decoded(tmp_path: Path) -> None:
    frames = ClipFrames(write_clip(tmp_path / "c.dcm", moving_bar_frames(40, 48, 64)))
    assert frames.decode_count == 0
    frames[17]
    assert frames.decode_count == 1
    frames[17, 10:20]
    frames[(17, slice(None), slice(None))]
    assert frames.decode_count == 1
    frames[3:6]
    assert frames.decode_count == 4
    assert frames.cached_indices == (17, 3, 4, 5)


def test_cache_is_bounded_and_least_recently_used(tmp_path: Path) -> None:
    frames = ClipFrames(write_clip(tmp_path / "c.dcm", moving_bar_frames(12, 32, 40)), cache_frames=3)
    for index in range(10):
        frames[index]
    assert frames.cached_indices == (7, 8, 9)
    assert frames.decode_count == 10
    frames[7]
    assert frames.cached_indices == (8, 9, 7)
    assert frames.decode_count == 10
    frames[0]
    assert frames.decode_count == 11
    assert frames.cached_indices == (9, 7, 0)


def test_frames_are_read_only(tmp_path: Path) -> None:
    frames = ClipFrames(write_clip(tmp_path / "c.dcm", moving_bar_frames(8, 32, 40)))
    with pytest.raises(ValueError, match="read-only"):
        frames[0][0, 0] = 1


def test_corrupt_frame_raises_naming_file_and_frame(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "broken.dcm", moving_bar_frames(8, 32, 40), corrupt_frames=(3,))
    frames = ClipFrames(path)
    assert frames[2].shape == (32, 40)
    with pytest.raises(FrameDecodeError) as caught:
        frames[3]
    assert caught.value.index == 3
    assert caught.value.path == path
    assert "broken.dcm" in str(caught.value)
    assert "frame 4 (index 3)" in str(caught.value)


def test_corrupt_frame_with_handler_gives_zeros_and_reports_once(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "broken.dcm", moving_bar_frames(8, 32, 40), corrupt_frames=(3,))
    reported: list[FrameDecodeError] = []
    frames = ClipFrames(path, on_error=reported.append)
    blank = frames[3]
    assert blank.shape == (32, 40)
    assert not blank.any()
    frames[3]
    assert [error.index for error in reported] == [3]
    assert frames[4].any()


def test_index_out_of_range(tmp_path: Path) -> None:
    frames = ClipFrames(write_clip(tmp_path / "c.dcm", moving_bar_frames(8, 32, 40)))
    with pytest.raises(IndexError, match="out of range for a clip of 8 frames"):
        frames[8]
    with pytest.raises(TypeError, match="frame axis"):
        frames["a"]


def test_invalid_cache_size(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "c.dcm", moving_bar_frames(8, 32, 40))
    with pytest.raises(ValueError, match="cache_frames"):
        ClipFrames(path, cache_frames=0)


def test_not_dicom_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.dcm"
    path.write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(ClipOpenError, match="expected a DICOM file"):
        ClipFrames(path)


def test_file_without_pixel_data_is_refused(tmp_path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows = ds.Columns = 4
    path = tmp_path / "header.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ClipOpenError, match="Pixel Data"):
        ClipFrames(path)
