"""archive.pixels: palettes in either byte order, 8-bit entries in 16-bit words, re-encoding big endian."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.pixels.processing import apply_color_lut
from pydicom.uid import ExplicitVRLittleEndian

from archive.pixels import iter_rgb_frames, output_form, palette_to_rgb, to_little_endian, to_uint8


@pytest.fixture(scope="module")
def palettes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """pydicom's palette example little endian, and dcmtk's big-endian copy of it."""
    little = Path(str(get_testdata_file("examples_palette.dcm")))
    big = tmp_path_factory.mktemp("pixels") / "big.dcm"
    subprocess.run(["dcmconv", "+tb", str(little), str(big)], check=True, capture_output=True, timeout=60)
    return little, big


def test_big_endian_palette_is_applied_as_the_little_endian_one(palettes: tuple[Path, Path]) -> None:
    little, big = (dcmread(p) for p in palettes)
    expected = apply_color_lut(little.pixel_array, little)
    assert not np.array_equal(apply_color_lut(big.pixel_array, big), expected)  # what pydicom alone does
    assert np.array_equal(palette_to_rgb(big.pixel_array, big), expected)
    assert np.array_equal(next(iter_rgb_frames(palettes[1], big)), expected)
    form = output_form(big)
    assert (form.frame_shape, form.dtype, form.photometric) == ((*big.pixel_array.shape, 3), np.uint16, "RGB")


def test_eight_bit_entries_in_sixteen_bit_words_are_narrowed_not_shifted(palettes: tuple[Path, Path]) -> None:
    ds = dcmread(palettes[0])
    for colour in ("Red", "Green", "Blue"):
        values = np.frombuffer(ds[f"{colour}PaletteColorLookupTableData"].value, "<u2") >> 8
        ds[f"{colour}PaletteColorLookupTableData"].value = values.astype("<u2").tobytes()
        descriptor = ds[f"{colour}PaletteColorLookupTableDescriptor"]
        descriptor.value = [descriptor.value[0], descriptor.value[1], 8]
    rgb = palette_to_rgb(ds.pixel_array, ds)
    assert rgb.dtype == np.uint8 and rgb.max() > 200
    assert np.array_equal(to_uint8(rgb), rgb)


def test_to_little_endian_swaps_raw_values_and_leaves_parsed_ones(palettes: tuple[Path, Path]) -> None:
    little, big = (dcmread(p) for p in palettes)
    to_little_endian(big)
    assert big.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert big.RedPaletteColorLookupTableData == little.RedPaletteColorLookupTableData
    assert big.RedPaletteColorLookupTableDescriptor == little.RedPaletteColorLookupTableDescriptor
    big.set_pixel_data(little.pixel_array, "PALETTE COLOR", 8, generate_instance_uid=False)  # now allowed
    assert np.array_equal(apply_color_lut(big.pixel_array, big), apply_color_lut(little.pixel_array, little))
