from __future__ import annotations

import numpy as np
import pytest
from deid_cases import BANNER_ROWS, REGION, planted_dataset, planted_frames, region_item
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from archive.calibration import UltrasoundRegion
from archive.errors import DeidentificationError
from archive.research.deid.pixels import blank_outside_regions, clean_pixel_data, keep_mask, tissue_regions


def _region(min_x: int, min_y: int, max_x: int, max_y: int, spatial_format: int = 1) -> UltrasoundRegion:
    return UltrasoundRegion(min_x, min_y, max_x, max_y, spatial_format, 1, 3, 3, 0.01, 0.01)


def test_blank_keeps_the_region_and_zeroes_everything_else() -> None:
    frames = np.arange(1, 2 * 4 * 5 + 1, dtype=np.uint8).reshape(2, 4, 5)
    before = frames.copy()
    out = blank_outside_regions(frames, [_region(1, 1, 3, 2)])
    assert out.shape == frames.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(frames, before)  # input untouched
    np.testing.assert_array_equal(out[:, 1:3, 1:4], frames[:, 1:3, 1:4])
    inside = np.zeros((4, 5), dtype=bool)
    inside[1:3, 1:4] = True
    assert (out[:, ~inside] == 0).all()


def test_blank_rgb_frames_and_union_of_regions() -> None:
    frames = np.full((3, 6, 8, 3), 200, dtype=np.uint8)
    out = blank_outside_regions(frames, [_region(0, 0, 1, 1), _region(6, 4, 7, 5)])
    expected = np.zeros((6, 8), dtype=bool)
    expected[0:2, 0:2] = True
    expected[4:6, 6:8] = True
    np.testing.assert_array_equal(out.any(axis=-1), np.broadcast_to(expected, (3, 6, 8)))
    assert (out[:, expected] == 200).all()


def test_non_2d_regions_keep_nothing_and_rectangles_are_clipped() -> None:
    frames = np.full((1, 4, 4), 9, dtype=np.uint8)
    assert not blank_outside_regions(frames, [_region(0, 0, 3, 3, spatial_format=3)]).any()
    mask = keep_mask((4, 4), [_region(2, 2, 40, 40)])
    assert mask.sum() == 4 and mask[2:, 2:].all()


@pytest.mark.parametrize("shape", [(4, 5), (1, 4, 5, 4), (1, 1, 4, 5, 3)])
def test_blank_refuses_wrong_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        blank_outside_regions(np.zeros(shape, dtype=np.uint8), [])


def test_uncalibrated_clip_is_refused_naming_the_instance_and_the_flag() -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4.5"
    with pytest.raises(DeidentificationError, match=r"1\.2\.3\.4\.5.*allow_uncalibrated=True"):
        tissue_regions(ds)
    assert tissue_regions(ds, allow_uncalibrated=True) == ()


def test_clip_with_only_non_2d_regions_is_refused() -> None:
    ds = Dataset()
    ds.SequenceOfUltrasoundRegions = Sequence([region_item(spatial_format=3)])
    with pytest.raises(DeidentificationError, match="no 2D region"):
        tissue_regions(ds)


def test_clean_pixel_data_blanks_the_banner_in_place() -> None:
    ds = planted_dataset()
    regions = tissue_regions(ds)
    assert len(regions) == 1
    clean_pixel_data(ds, regions)
    frames = planted_frames(seed=1)
    out = ds.pixel_array
    assert out.shape == frames.shape
    assert not out[:, :BANNER_ROWS].any()
    min_x, min_y, max_x, max_y = REGION
    np.testing.assert_array_equal(
        out[:, min_y : max_y + 1, min_x : max_x + 1], frames[:, min_y : max_y + 1, min_x : max_x + 1]
    )
    assert int(out.astype(bool).sum()) == frames.shape[0] * (max_y - min_y + 1) * (max_x - min_x + 1)


def test_clean_pixel_data_without_pixels_is_refused() -> None:
    ds = planted_dataset()
    del ds.PixelData
    with pytest.raises(DeidentificationError, match="expected Pixel Data"):
        clean_pixel_data(ds, tissue_regions(planted_dataset()))


def test_palette_colour_clip_keeps_its_palette_and_blanks_to_index_zero() -> None:
    ds = planted_dataset()
    ds.PhotometricInterpretation = "PALETTE COLOR"
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 8])
        setattr(ds, f"{colour}PaletteColorLookupTableData", bytes(range(256)))
    clean_pixel_data(ds, tissue_regions(ds))
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    out = ds.pixel_array
    assert out.shape == planted_frames(seed=1).shape
    assert not out[:, :BANNER_ROWS].any()
    assert ds.RedPaletteColorLookupTableData == bytes(range(256))
