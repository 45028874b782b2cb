"""Generated instances are valid DICOM, coded like a scanner, decodable and reproducible."""

from __future__ import annotations

import io
import subprocess

import numpy as np
import pydicom
import pytest
from phantom_cases import SPECS, Generated
from pydicom.pixels import iter_pixels
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from archive.phantom import generate_clip


def dciodvfy_errors(path: str) -> list[str]:
    result = subprocess.run(["dciodvfy", path], capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert "US" in output, f"dciodvfy did not identify the IOD:\n{output}"
    return [line for line in output.splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("name", list(SPECS))
def test_dciodvfy_reports_no_errors(generated: dict[str, Generated], name: str) -> None:
    assert dciodvfy_errors(str(generated[name].dcm)) == []


@pytest.mark.parametrize("name", list(SPECS))
def test_pydicom_decodes_every_frame(generated: dict[str, Generated], name: str) -> None:
    gen = generated[name]
    shapes = [frame.shape for frame in iter_pixels(gen.dcm)]
    assert len(shapes) == gen.spec.frames
    expected = (
        (gen.spec.rows, gen.spec.cols)
        if gen.spec.encoding.value == "explicit-mono"
        else (
            gen.spec.rows,
            gen.spec.cols,
            3,
        )
    )
    assert set(shapes) == {expected}


def test_coded_like_a_scanner(generated: dict[str, Generated]) -> None:
    mono = pydicom.dcmread(generated["l4_mono_in_plane"].dcm)
    assert mono.SOPClassUID == UltrasoundMultiFrameImageStorage
    assert mono.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert mono.PhotometricInterpretation == "MONOCHROME2"
    assert mono.FrameIncrementPointer == pydicom.tag.Tag("FrameTime")
    assert float(mono.FrameTime) == 50.0
    assert mono.NumberOfFrames == 16
    assert mono.BodyPartExamined == "LSPINE"
    assert mono.ImageLaterality == "R"
    assert mono.Manufacturer == "SonoSite"
    assert mono.ContentDate == "20240506"
    region = mono.SequenceOfUltrasoundRegions[0]
    assert (region.RegionSpatialFormat, region.RegionDataType) == (1, 1)
    assert (region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection) == (3, 3)
    assert mono.SOPInstanceUID == generated["l4_mono_in_plane"].truth.sop_instance_uid

    rgb = pydicom.dcmread(generated["l5_rgb_out_of_plane"].dcm)
    assert (rgb.PhotometricInterpretation, rgb.PlanarConfiguration, rgb.ImageLaterality) == ("RGB", 0, "L")

    jpeg = pydicom.dcmread(generated["l3_jpeg_in_plane"].dcm)
    assert jpeg.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert jpeg.PhotometricInterpretation == "YBR_FULL_422"
    assert jpeg.LossyImageCompression == "01"
    fragments = list(pydicom.encaps.generate_fragmented_frames(jpeg.PixelData, number_of_frames=16))
    assert len(fragments) == 16
    assert all(frame[0][:2] == b"\xff\xd8" for frame in fragments)  # real JPEG streams (SOI)

    single = pydicom.dcmread(generated["l4_single_frame"].dcm)
    assert single.SOPClassUID == UltrasoundImageStorage
    assert "NumberOfFrames" not in single

    chinese = pydicom.dcmread(generated["c4_danger_chinese"].dcm)
    assert chinese.SpecificCharacterSet == "ISO_IR 192"
    assert chinese.SeriesDescription == "颈椎 C4/5 右 平面内"
    assert chinese.BodyPartExamined == "CSPINE"


def test_clips_of_one_study_share_the_study_uid(generated: dict[str, Generated]) -> None:
    a = pydicom.dcmread(generated["l4_mono_in_plane"].dcm, stop_before_pixels=True)
    b = pydicom.dcmread(generated["l3_jpeg_in_plane"].dcm, stop_before_pixels=True)
    assert a.StudyInstanceUID == b.StudyInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.StudyInstanceUID.startswith("2.25.")


def _encoded(name: str, seed: int) -> bytes:
    spec = SPECS[name]
    dataset, _ = generate_clip(spec, seed)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_same_seed_gives_same_bytes_and_other_seed_differs() -> None:
    first = _encoded("l4_single_frame", 7)
    assert first == _encoded("l4_single_frame", 7)
    other = _encoded("l4_single_frame", 8)
    assert other != first
    assert len(other) == len(first)  # same layout, different speckle and UIDs


def test_saved_file_round_trips_pixels(generated: dict[str, Generated]) -> None:
    gen = generated["l4_mono_in_plane"]
    dataset, _ = generate_clip(gen.spec, 11)
    saved = pydicom.dcmread(gen.dcm)
    assert np.array_equal(saved.pixel_array, dataset.pixel_array)
