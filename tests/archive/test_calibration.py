"""Tests of archive.calibration against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from archive.calibration import Calibration, UltrasoundRegion, calibration_or_none
from archive.errors import CalibrationError

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def region_item(
    x0: int,
    y0: int,
    x1: int,
    y1: int,
    *,
    delta_x: float,
    delta_y: float,
    spatial_format: int = 1,
    data_type: int = 1,
    units: tuple[int, int] = (3, 3),
    ref_pixel: tuple[int, int] | None = None,
    ref_physical: tuple[float, float] | None = None,
) -> Dataset:
    item = Dataset()
    item.RegionLocationMinX0 = x0
    item.RegionLocationMinY0 = y0
    item.RegionLocationMaxX1 = x1
    item.RegionLocationMaxY1 = y1
    item.RegionSpatialFormat = spatial_format
    item.RegionDataType = data_type
    item.RegionFlags = 0
    item.PhysicalUnitsXDirection, item.PhysicalUnitsYDirection = units
    item.PhysicalDeltaX = delta_x
    item.PhysicalDeltaY = delta_y
    if ref_pixel is not None:
        item.ReferencePixelX0, item.ReferencePixelY0 = ref_pixel
    if ref_physical is not None:
        item.ReferencePixelPhysicalValueX, item.ReferencePixelPhysicalValueY = ref_physical
    return item


def dataset_with(*items: Dataset) -> Dataset:
    ds = Dataset()
    ds.SequenceOfUltrasoundRegions = Sequence(list(items))
    return ds


# Region A: 2D tissue, rows 20..219, cols 10..109, 0.02 cm/col, 0.05 cm/row (anisotropic),
# reference pixel at offset (x 40, y 0) from the min corner, physical value (0.0, 0.5) cm.
REGION_A = region_item(
    10, 20, 109, 219, delta_x=0.02, delta_y=0.05, ref_pixel=(40, 0), ref_physical=(0.0, 0.5)
)
# Region C: a second 2D tissue image beside A (dual view), rows 20..219, cols 120..219.
REGION_C = region_item(120, 20, 219, 219, delta_x=0.02, delta_y=0.05)
# Region D: PW spectral Doppler strip below A: seconds across, cm/s up.
REGION_D = region_item(
    10, 230, 109, 299, delta_x=0.004, delta_y=-1.5, spatial_format=3, data_type=3, units=(4, 7)
)


def test_region_reads_item_with_defaults() -> None:
    region = UltrasoundRegion.from_item(region_item(0, 0, 99, 49, delta_x=0.01, delta_y=0.02))
    assert (region.min_x0, region.min_y0, region.max_x1, region.max_y1) == (0, 0, 99, 49)
    assert (region.ref_pixel_x0, region.ref_pixel_y0) == (0, 0)
    assert (region.ref_physical_x, region.ref_physical_y) == (0.0, 0.0)
    assert region.is_tissue_2d and region.is_cm
    # 0.02 cm = 0.2 mm per row, 0.01 cm = 0.1 mm per column
    assert region.pixel_size_mm == pytest.approx((0.2, 0.1))


def test_to_mm_uses_reference_pixel_offset_from_min_corner() -> None:
    region = UltrasoundRegion.from_item(REGION_A)
    # x_mm = 10 * (0.0 + (70 - (10 + 40)) * 0.02) = 10 * 0.4 = 4.0
    # y_mm = 10 * (0.5 + (120 - (20 + 0)) * 0.05) = 10 * 5.5 = 55.0
    assert region.to_mm(120, 70) == pytest.approx((55.0, 4.0))
    # at the reference pixel itself (row 20, col 50): (10 * 0.5, 10 * 0.0)
    assert region.to_mm(20, 50) == pytest.approx((5.0, 0.0))
    # sub-pixel: col 50.5 -> 10 * 0.5 * 0.02 = 0.1 mm
    assert region.to_mm(20, 50.5) == pytest.approx((5.0, 0.1))


def test_negative_delta_gives_negative_positions_but_positive_distances() -> None:
    cal = Calibration.from_dataset(dataset_with(region_item(0, 0, 99, 99, delta_x=-0.03, delta_y=0.01)))
    # x_mm = 10 * (10 - 0) * -0.03 = -3.0 ; y_mm = 10 * 5 * 0.01 = 0.5
    assert cal.point_mm(5, 10) == pytest.approx((0.5, -3.0))
    # 20 columns * |-0.03| cm = 0.6 cm = 6.0 mm
    assert cal.distance_mm((0, 10), (0, 30)) == pytest.approx(6.0)
    assert cal.pixel_size_mm == pytest.approx((0.1, 0.3))


def test_distance_is_anisotropic_hypot() -> None:
    cal = Calibration.from_dataset(dataset_with(REGION_A))
    # d_col 15 * 0.02 = 0.3 cm, d_row 8 * 0.05 = 0.4 cm -> 10 * hypot(0.3, 0.4) = 5.0 mm
    assert cal.distance_mm((100, 50), (108, 65)) == pytest.approx(5.0)
    # (dy, dx) from (108, 65) back to (100, 50): (-4.0, -3.0) mm
    assert cal.vector_mm((108, 65), (100, 50)) == pytest.approx((-4.0, -3.0))


def test_contains_uses_half_pixel_bounds() -> None:
    region = UltrasoundRegion.from_item(REGION_A)
    assert region.contains(20, 9.5) and region.contains(219.49, 109.49)
    assert not region.contains(20, 9.49)
    assert not region.contains(219.5, 50)
    assert not region.contains(100, 109.5)


def test_several_regions_point_in_doppler_strip_is_refused() -> None:
    cal = Calibration.from_dataset(dataset_with(REGION_A, REGION_D))
    assert cal.region_at(100, 50) == UltrasoundRegion.from_item(REGION_A)
    with pytest.raises(CalibrationError, match=r"row 250.*2D tissue region.*#1 \(.*spatial format 3"):
        cal.region_at(250, 50)
    with pytest.raises(CalibrationError, match="2D tissue"):
        cal.distance_mm((100, 50), (250, 50))
    with pytest.raises(CalibrationError, match="no region"):
        cal.point_mm(5, 5)


def test_points_in_different_tissue_regions_are_refused() -> None:
    cal = Calibration.from_dataset(dataset_with(REGION_A, REGION_C, REGION_D))
    # same pixel size in both regions, but a distance across them means nothing
    with pytest.raises(CalibrationError, match="different regions"):
        cal.distance_mm((100, 50), (100, 150))
    # inside C alone: d_col 50 * 0.02 = 1.0 cm = 10 mm
    assert cal.distance_mm((100, 150), (100, 200)) == pytest.approx(10.0)


def test_overlapping_tissue_regions_prefer_the_smallest() -> None:
    outer = region_item(0, 0, 299, 299, delta_x=0.1, delta_y=0.1)
    cal = Calibration.from_dataset(dataset_with(outer, REGION_A))
    assert cal.region_at(100, 50) == UltrasoundRegion.from_item(REGION_A)
    assert cal.region_at(250, 250) == UltrasoundRegion.from_item(outer)
    # one point only in the outer region: measured in the outer region, 0.1 cm = 1 mm per pixel,
    # 10 * hypot(3 * 0.1, 4 * 0.1) = 5.0 mm
    assert cal.distance_mm((250, 250), (254, 253)) == pytest.approx(5.0)
    assert cal.distance_mm((100, 50), (100, 250)) == pytest.approx(200.0)
    # primary region is the largest: 1 mm x 1 mm
    assert cal.pixel_size_mm == pytest.approx((1.0, 1.0))


def test_units_not_cm_are_refused() -> None:
    cal = Calibration.from_dataset(
        dataset_with(region_item(0, 0, 99, 99, delta_x=1, delta_y=1, units=(0, 3)))
    )
    with pytest.raises(CalibrationError, match=r"physical units 3 \(cm\).*X 0"):
        cal.distance_mm((1, 1), (2, 2))
    with pytest.raises(CalibrationError, match="2D tissue region in cm"):
        _ = cal.primary_region
    assert (
        calibration_or_none(dataset_with(region_item(0, 0, 9, 9, delta_x=1, delta_y=1, units=(0, 0)))) is None
    )


def test_area_of_mask_in_one_region() -> None:
    cal = Calibration.from_dataset(dataset_with(REGION_A, REGION_C))
    mask = np.zeros((240, 240), dtype=bool)
    assert cal.area_mm2(mask) == 0.0
    mask[100:104, 30:35] = True
    # 4 * 5 = 20 pixels of 0.5 mm x 0.2 mm = 0.1 mm² -> 2.0 mm²
    assert cal.area_mm2(mask) == pytest.approx(2.0)
    mask[100, 150] = True  # one pixel in region C
    with pytest.raises(CalibrationError, match="one 2D tissue region"):
        cal.area_mm2(mask)
    with pytest.raises(ValueError, match="2-D"):
        cal.area_mm2(np.zeros((2, 2, 2), dtype=bool))


def test_primary_region_is_largest_tissue_region_in_cm() -> None:
    small = region_item(0, 0, 9, 9, delta_x=0.5, delta_y=0.5)
    cal = Calibration.from_dataset(dataset_with(small, REGION_D, REGION_C))
    assert cal.primary_region == UltrasoundRegion.from_item(REGION_C)
    # 0.05 cm per row, 0.02 cm per column
    assert cal.pixel_size_mm == pytest.approx((0.5, 0.2))


def test_incomplete_item_names_missing_attribute() -> None:
    item = region_item(0, 0, 9, 9, delta_x=0.1, delta_y=0.1)
    del item.PhysicalDeltaX
    with pytest.raises(CalibrationError, match=r"PhysicalDeltaX \(0018,602C\)"):
        Calibration.from_dataset(dataset_with(item))


def test_inverted_rectangle_is_refused() -> None:
    with pytest.raises(CalibrationError, match=r"cols 50\.\.9"):
        UltrasoundRegion.from_item(region_item(50, 0, 9, 9, delta_x=0.1, delta_y=0.1))


def test_empty_sequence_is_uncalibrated() -> None:
    with pytest.raises(CalibrationError, match="empty"):
        Calibration.from_dataset(dataset_with())


def _write_clip(path: Path, regions: list[Dataset] | None) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PixelSpacing = [0.3, 0.3]  # must never be used for ultrasound
    ds.NumberOfFrames = 2
    ds.Rows, ds.Columns = 8, 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.arange(128, dtype=np.uint8).tobytes()
    if regions is not None:
        ds.SequenceOfUltrasoundRegions = Sequence(regions)
    ds.save_as(path, enforce_file_format=True)


def test_missing_calibration_in_file_read_header_only(tmp_path: Path) -> None:
    path = tmp_path / "uncalibrated.dcm"
    _write_clip(path, None)
    ds = dcmread(path, stop_before_pixels=True)
    assert "PixelData" not in ds
    with pytest.raises(CalibrationError, match=r"\(0018,6011\).*absent.*Pixel Spacing is not used"):
        Calibration.from_dataset(ds)
    assert calibration_or_none(ds) is None


def test_calibration_read_back_from_file_header_only(tmp_path: Path) -> None:
    path = tmp_path / "calibrated.dcm"
    _write_clip(path, [region_item(1, 1, 6, 6, delta_x=0.02, delta_y=-0.04, ref_pixel=(-1, 2))])
    cal = calibration_or_none(dcmread(path, stop_before_pixels=True))
    assert cal is not None
    # x_mm = 10 * (4 - (1 + -1)) * 0.02 = 0.8 ; y_mm = 10 * (5 - (1 + 2)) * -0.04 = -0.8
    assert cal.point_mm(5, 4) == pytest.approx((-0.8, 0.8))
    assert cal.pixel_size_mm == pytest.approx((0.4, 0.2))
