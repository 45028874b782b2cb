"""archive.pixels grey frames (stacked, or one at a time) and to_grey_uint8, for the proposal detector."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from archive.pixels import grey_frames, iter_grey_frames, iter_rgb_frames, to_grey_uint8


def test_grey_rgb_monochrome1_and_16_bit_conversions() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 200, 200]]], dtype=np.uint8)
    np.testing.assert_array_equal(to_grey_uint8(rgb, "RGB"), [[76, 150, 29, 200]])  # BT.601 luma
    grey = np.array([[0, 10, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(to_grey_uint8(grey, "MONOCHROME2"), grey)
    np.testing.assert_array_equal(to_grey_uint8(grey, "MONOCHROME1"), [[255, 245, 0]])
    wide = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(to_grey_uint8(wide, "MONOCHROME2"), [[0, 128, 255]])
    signed = np.array([[-128, 0, 127]], dtype=np.int8)
    np.testing.assert_array_equal(to_grey_uint8(signed, "MONOCHROME2"), [[0, 128, 255]])


def test_a_jpeg_ybr_clip_decodes_to_grey_and_stops_at_last(sample_dir: Path) -> None:
    path = sample_dir / "l3_tt_inplane_jpeg.dcm"  # YBR_FULL_422, 32 frames
    header = dcmread(path, stop_before_pixels=True)
    frames = grey_frames(path, header, last=5)
    assert frames.shape == (5, int(header.Rows), int(header.Columns)) and frames.dtype == np.uint8
    first = next(iter_rgb_frames(path, header))
    np.testing.assert_array_equal(frames[0], to_grey_uint8(first, "RGB"))
    assert frames.std() > 0  # an image, not a blank
    assert grey_frames(path, header).shape[0] == 32


def test_a_header_promising_more_frames_than_decoded_is_refused(sample_dir: Path) -> None:
    source = sample_dir / "l4_tt_inplane_mono.dcm"  # 30 frames MONOCHROME2, native
    header = dcmread(source, stop_before_pixels=True)
    assert grey_frames(source, header, last=0).shape == (0, 280, 380)
    pixels = dcmread(source)
    pixels.NumberOfFrames = 31
    with pytest.raises(ValueError, match="expected 31 frame"):
        grey_frames(source, pixels)


def test_frames_are_decoded_one_at_a_time(sample_dir: Path) -> None:
    source = sample_dir / "l4_tt_inplane_mono.dcm"  # 30 frames of 280 x 380, native
    header = dcmread(source, stop_before_pixels=True)
    frame_bytes = int(header.Rows) * int(header.Columns)
    tracemalloc.start()
    try:
        decoded = 0
        for frame in iter_grey_frames(source, header):
            assert frame.shape == (280, 380) and frame.dtype == np.uint8
            decoded += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded == 30
    assert peak < 10 * frame_bytes, peak  # a few frames' worth, not the clip's 30
    first_five = list(iter_grey_frames(source, header, last=5))
    np.testing.assert_array_equal(np.stack(first_five), grey_frames(source, header, last=5))
