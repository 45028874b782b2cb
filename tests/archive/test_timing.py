"""Tests of archive.timing against hand-computed values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from archive.errors import TimingError
from archive.timing import frame_times, frame_times_or_unknown

FRAME_TIME = 0x00181063
FRAME_TIME_VECTOR = 0x00181065
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def clip(n_frames: int | None, **attributes: object) -> Dataset:
    ds = Dataset()
    if n_frames is not None:
        ds.NumberOfFrames = n_frames
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def test_frame_time_named_by_pointer() -> None:
    times = frame_times(clip(4, FrameIncrementPointer=FRAME_TIME, FrameTime=33.4))
    # 0, 33.4, 2 * 33.4 = 66.8, 3 * 33.4 = 100.2
    assert times.offsets_ms == pytest.approx((0.0, 33.4, 66.8, 100.2))
    assert times.source == "FrameTime"
    assert times.number_of_frames == 4
    assert times.nominal_frame_time_ms == pytest.approx(33.4)
    assert times.offset_s(2) == pytest.approx(0.0668)
    assert times.start is None


def test_frame_time_vector_accumulates_increments() -> None:
    ds = clip(4, FrameIncrementPointer=[FRAME_TIME_VECTOR], FrameTimeVector=[0, 30, 40, 30])
    times = frame_times(ds)
    # 0, 0 + 30 = 30, 30 + 40 = 70, 70 + 30 = 100
    assert times.offsets_ms == pytest.approx((0.0, 30.0, 70.0, 100.0))
    assert times.source == "FrameTimeVector"
    # mean increment 100 / 3
    assert times.nominal_frame_time_ms == pytest.approx(100.0 / 3.0)
    assert times.frame_at(0) == 0
    assert times.frame_at(69.9) == 1
    assert times.frame_at(70.0) == 2
    assert times.frame_at(5000.0) == 3
    with pytest.raises(ValueError, match="time_ms"):
        times.frame_at(-1.0)
    with pytest.raises(IndexError, match=r"0\.\.3"):
        times.offset_s(4)


def test_pointer_decides_between_frame_time_and_vector() -> None:
    both = {"FrameTime": 50.0, "FrameTimeVector": [0, 10, 10]}
    assert frame_times(clip(3, FrameIncrementPointer=FRAME_TIME_VECTOR, **both)).offsets_ms == (0, 10, 20)
    assert frame_times(clip(3, FrameIncrementPointer=FRAME_TIME, **both)).offsets_ms == (0, 50, 100)
    # a pointer to both (multi-valued AT): the vector, being per frame, is preferred
    multi = clip(3, FrameIncrementPointer=[FRAME_TIME, FRAME_TIME_VECTOR], **both)
    assert frame_times(multi).source == "FrameTimeVector"


def test_vector_length_must_match_number_of_frames() -> None:
    with pytest.raises(TimingError, match=r"one value per frame \(5.*got 4"):
        frame_times(clip(5, FrameIncrementPointer=FRAME_TIME_VECTOR, FrameTimeVector=[0, 30, 30, 30]))


def test_vector_with_negative_increment_is_refused() -> None:
    with pytest.raises(TimingError, match=">= 0 ms"):
        frame_times(clip(3, FrameIncrementPointer=FRAME_TIME_VECTOR, FrameTimeVector=[0, 30, -5]))


def test_non_positive_frame_time_is_refused() -> None:
    with pytest.raises(TimingError, match="positive"):
        frame_times(clip(3, FrameIncrementPointer=FRAME_TIME, FrameTime=0))


def test_cine_rate_fallback() -> None:
    times = frame_times(clip(3, CineRate=25))
    # 1000 / 25 = 40 ms per frame: 0, 40, 80
    assert times.offsets_ms == pytest.approx((0.0, 40.0, 80.0))
    assert times.source == "CineRate"
    assert times.nominal_frame_time_ms == pytest.approx(40.0)


def test_pointer_to_missing_attribute_falls_back_to_cine_rate() -> None:
    times = frame_times(clip(2, FrameIncrementPointer=FRAME_TIME, CineRate=20))
    assert times.offsets_ms == pytest.approx((0.0, 50.0))


def test_missing_timing_names_what_was_looked_for() -> None:
    with pytest.raises(TimingError, match=r"FrameTime \(0018,1063\).*FrameTimeVector.*CineRate.*10 frames"):
        frame_times(clip(10))


def test_single_frame_without_timing_is_one_frame_at_zero() -> None:
    times = frame_times(clip(None))
    assert times.offsets_ms == (0.0,)
    assert times.source == "SingleFrame"
    assert times.nominal_frame_time_ms is None
    assert times.frame_at(123.0) == 0


def test_absolute_time_with_fractional_seconds_and_frame_delay() -> None:
    ds = clip(
        3,
        FrameIncrementPointer=FRAME_TIME,
        FrameTime=40,
        ContentDate="20240305",
        ContentTime="101530.250",
        FrameDelay=100,
    )
    times = frame_times(ds)
    # 10:15:30.250 + 100 ms delay = 10:15:30.350
    assert times.start == datetime(2024, 3, 5, 10, 15, 30, 350000)
    # frame 2 (0-based) starts 2 * 40 = 80 ms later: 10:15:30.430
    assert times.absolute(2) == datetime(2024, 3, 5, 10, 15, 30, 430000)


def test_timezone_offset_makes_start_aware() -> None:
    ds = clip(
        1,
        CineRate=30,
        ContentDate="20240305",
        ContentTime="235959.9",
        TimezoneOffsetFromUTC="+0800",
    )
    start = frame_times(ds).start
    assert start is not None
    assert start.utcoffset() == timedelta(hours=8)
    # 23:59:59.9 at +08:00 is 15:59:59.9 UTC
    assert start.astimezone(UTC) == datetime(2024, 3, 5, 15, 59, 59, 900000, tzinfo=UTC)


def test_absolute_without_content_date_is_an_error() -> None:
    times = frame_times(clip(2, FrameTime=40, ContentTime="101530"))
    assert times.start is None
    with pytest.raises(TimingError, match=r"Content Date \(0008,0023\)"):
        times.absolute(0)


def test_timing_read_back_from_file_header_only(tmp_path: Path) -> None:
    ds = clip(3, FrameIncrementPointer=FRAME_TIME_VECTOR, FrameTimeVector=[0, 33.3, 33.4])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.ContentDate, ds.ContentTime = "20240305", "080000.000001"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 2, 2, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.zeros(12, dtype=np.uint8).tobytes()
    path = tmp_path / "clip.dcm"
    ds.save_as(path, enforce_file_format=True)

    times = frame_times(dcmread(path, stop_before_pixels=True))
    # 0, 33.3, 33.3 + 33.4 = 66.7
    assert times.offsets_ms == pytest.approx((0.0, 33.3, 66.7))
    assert times.start == datetime(2024, 3, 5, 8, 0, 0, 1)


def test_clip_without_any_timing_has_unknown_times_for_exports() -> None:
    ds = clip(5)
    with pytest.raises(TimingError, match="cannot be timed"):
        frame_times(ds)
    times = frame_times_or_unknown(ds)
    assert not times.timed and times.source == "unknown" and times.start is None
    assert times.number_of_frames == 5 and all(np.isnan(times.offsets_ms))
    for call in (lambda: times.offset_s(1), lambda: times.absolute(1), lambda: times.frame_at(10.0)):
        with pytest.raises(TimingError, match="no timing"):
            call()


def test_unknown_times_only_when_timing_is_absent_not_when_it_is_wrong() -> None:
    assert frame_times_or_unknown(clip(4, FrameTime=40.0)).offsets_ms == (0.0, 40.0, 80.0, 120.0)
    assert frame_times_or_unknown(clip(None)).timed  # a single frame needs no timing
    with pytest.raises(TimingError):
        frame_times_or_unknown(clip(3, FrameTimeVector=[0.0, 40.0]))
