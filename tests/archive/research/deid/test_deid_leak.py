"""Leak test on phantom clips: planted identity in attributes and the burned-in banner."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from deid_cases import SECRET, dciodvfy_errors, leaks, roundtrip, to_bytes
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from archive.phantom import generate_clip
from archive.phantom.spec import ClipSpec, Descriptions, Encoding, PatientIdentity
from archive.research.deid import DeidOptions, DeidResult, deidentify_dataset

IDENTITY = PatientIdentity(
    patient_name="ZQXPHAN^ZQXTOMGIVEN",
    patient_id="ZQXP000042",
    birth_date=dt.date(1953, 7, 19),
    sex="M",
    accession="ZQXACC4242",
    institution="ZQX Phantom Hospital",
    operator="ZQXSONO^ZQXGRAPHER",
)
DESCRIPTIONS = Descriptions(
    study="ZQX 腰椎内侧支阻滞 李四光",
    series="ZQX L4/5 MBB R",
    performed_step="ZQX 右侧 李四光",
    protocol="ZQX MSK Spine",
    character_set="ISO_IR 192",
)
STUDY_DATE = dt.date(2024, 5, 6)


#: Dates as the banner draws them: only in pixels, never in attributes.
BANNER_DATES = (f"{IDENTITY.birth_date:%Y-%m-%d}", f"{STUDY_DATE:%Y-%m-%d}")


def _needles(*, banner_dates: bool = True) -> list[bytes]:
    texts = [
        IDENTITY.patient_name,
        *IDENTITY.patient_name.split("^"),
        IDENTITY.patient_id,
        IDENTITY.accession,
        IDENTITY.institution,
        *IDENTITY.operator.split("^"),
        "李四光",
        "腰椎内侧支阻滞",
        DESCRIPTIONS.series,
        DESCRIPTIONS.protocol,
        f"{IDENTITY.birth_date:%Y%m%d}",
        f"{STUDY_DATE:%Y%m%d}",
        *(BANNER_DATES if banner_dates else ()),
    ]
    return [text.encode("utf-8") for text in texts]


@dataclass(frozen=True)
class Case:
    original: Dataset
    original_bytes: bytes
    result: DeidResult


#: (encoding, frames): every encoding as a cine clip, and one single-frame image.
CLIPS = [*((encoding, 8) for encoding in Encoding), (Encoding.JPEG_BASELINE, 1)]


@pytest.fixture(scope="module", params=CLIPS, ids=lambda clip: f"{clip[0]}-{clip[1]}f")
def case(request: pytest.FixtureRequest) -> Case:
    encoding, frames = request.param
    spec = ClipSpec(
        frames=frames,
        rows=200,
        cols=260,
        depth_mm=60.0,
        encoding=encoding,
        identity=IDENTITY,
        descriptions=DESCRIPTIONS,
        study_date=STUDY_DATE,
    )
    dataset, _ = generate_clip(spec, seed=5)
    original = roundtrip(dataset)
    result = deidentify_dataset(original, DeidOptions(secret=SECRET))
    return Case(original, to_bytes(original), result)


def _region_window(ds: Dataset) -> tuple[slice, slice]:
    item = ds.SequenceOfUltrasoundRegions[0]
    rows = slice(int(item.RegionLocationMinY0), int(item.RegionLocationMaxY1) + 1)
    cols = slice(int(item.RegionLocationMinX0), int(item.RegionLocationMaxX1) + 1)
    return rows, cols


def test_phantom_carries_the_planted_identity_as_text_and_banner(case: Case) -> None:
    text_needles = _needles(banner_dates=False)
    assert leaks(case.original_bytes, text_needles) == text_needles
    banner_rows = _region_window(case.original)[0].start
    pixels = case.original.pixel_array
    frames = pixels if "NumberOfFrames" in case.original else pixels[np.newaxis]
    assert frames[:, :banner_rows].any(), "the phantom banner is blank"


def test_no_planted_string_or_date_in_the_output_bytes(case: Case) -> None:
    assert leaks(to_bytes(case.result.dataset), _needles()) == []


def test_banner_pixels_are_zero_and_the_region_is_unchanged(case: Case) -> None:
    out = roundtrip(case.result.dataset).pixel_array
    before = case.original.pixel_array  # decoded the same way (colour as RGB)
    rows, cols = _region_window(case.original)
    assert out.shape == before.shape
    if "NumberOfFrames" not in case.original:
        out, before = out[np.newaxis], before[np.newaxis]
    np.testing.assert_array_equal(out[:, rows, cols], before[:, rows, cols])
    outside = np.ones(out.shape[1:3], dtype=bool)
    outside[rows, cols] = False
    assert not out[:, outside].any()


def test_cleaned_clip_is_stored_natively_with_its_compression_history(case: Case) -> None:
    ds = case.result.dataset
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert not ds["PixelData"].is_undefined_length
    assert ds.LossyImageCompression == case.original.LossyImageCompression
    if case.original.LossyImageCompression == "01":
        assert ds.PhotometricInterpretation == "RGB"
        assert ds.LossyImageCompressionRatio == case.original.LossyImageCompressionRatio
        assert ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert ds.BurnedInAnnotation == "NO"
    assert case.result.method_codes == ("113100", "113101", "113107")


def test_output_passes_dciodvfy(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "deid.dcm"
    path.write_bytes(to_bytes(case.result.dataset))
    assert dciodvfy_errors(path) == []
