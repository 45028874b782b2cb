from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from deid_cases import (
    BANNER_ROWS,
    FOLLOW_UP_DATE,
    INSTANCE_UIDS,
    OTHER_SECRET,
    PLANTED_TEXT,
    REGION,
    SECRET,
    SERIES_UID,
    STUDY_DATE,
    STUDY_UID,
    UNKNOWN_PUBLIC_TAG,
    dciodvfy_errors,
    leaks,
    planted_dataset,
    planted_frames,
    planted_needles,
    roundtrip,
    to_bytes,
)
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage

from archive.calibration import UltrasoundRegion
from archive.errors import ConfigError, DeidentificationError
from archive.research.deid import DeidOptions, DeidResult, deidentify_dataset, patient_key, pseudonym
from archive.research.deid.options import SECRET_OPTION
from archive.settings import ArchiveSettings


def _deid(instance: int = 0, secret: bytes = SECRET, **kwargs: object) -> DeidResult:
    content_date = FOLLOW_UP_DATE if instance else STUDY_DATE
    options = DeidOptions(secret=secret, **kwargs)  # type: ignore[arg-type]
    return deidentify_dataset(roundtrip(planted_dataset(instance, content_date=content_date)), options)


def _days(a: str, b: str) -> int:
    return (dt.datetime.strptime(b, "%Y%m%d") - dt.datetime.strptime(a, "%Y%m%d")).days


def _walk(ds: Dataset) -> list[int]:
    tags = []
    for elem in ds:
        tags.append(int(elem.tag))
        if elem.VR == "SQ":
            for item in elem.value:
                tags.extend(_walk(item))
    return tags


def test_planted_identity_is_in_the_input_bytes() -> None:
    # Guards the leak tests below: every needle must be findable before.
    data = to_bytes(planted_dataset(1, content_date=FOLLOW_UP_DATE))
    assert leaks(data, planted_needles()) == planted_needles()


@pytest.mark.parametrize("dates", [True, False])
def test_no_planted_string_or_date_in_the_output_bytes(dates: bool) -> None:
    result = _deid(1, retain_longitudinal_dates_modified=dates)
    data = to_bytes(result.dataset)
    assert leaks(data, planted_needles()) == []
    for uid in (*INSTANCE_UIDS, STUDY_UID, SERIES_UID):
        assert uid.encode() not in data


def test_private_overlay_and_identifying_attributes_are_gone_recursively() -> None:
    ds = _deid(1).dataset
    tags = _walk(ds)
    assert not [t for t in tags if (t >> 16) & 1], "private tags survived"
    assert not [t for t in tags if (t >> 24) in (0x50, 0x60)], "curves or overlays survived"
    for keyword in (
        "InstitutionName",
        "InstitutionAddress",
        "OperatorsName",
        "PerformingPhysicianName",
        "StationName",
        "DeviceSerialNumber",
        "StudyDescription",
        "SeriesDescription",
        "ProtocolName",
        "RequestAttributesSequence",
        "OtherPatientIDsSequence",
        "PatientComments",
        "ImageComments",
        "PatientAge",
    ):
        assert keyword not in ds, keyword
    for keyword in ("AccessionNumber", "ReferringPhysicianName", "PatientBirthDate"):
        assert ds[keyword].is_empty, keyword
    nested = ds.ProcedureCodeSequence[0]
    assert nested.CodeMeaning == "Lumbar medial branch block"  # unlisted text is kept
    assert "InstitutionName" not in nested
    assert "TextValue" not in nested  # unlisted free text
    assert UNKNOWN_PUBLIC_TAG not in ds  # unlisted, uninterpretable
    assert str(nested.PersonName) == "ANONYMOUS^"
    assert ds.BodyPartExamined == "LSPINE" and ds.ImageLaterality == "R"


def test_patient_gets_a_stable_pseudonym_and_study_id() -> None:
    result = _deid(0)
    expected = pseudonym(SECRET, PLANTED_TEXT["patient_id"])
    assert result.patient_pseudonym == expected
    assert result.dataset.PatientID == expected
    assert str(result.dataset.PatientName) == f"{expected}^"
    assert result.dataset.StudyID == pseudonym(SECRET, STUDY_UID, "study")
    assert _deid(1).patient_pseudonym == expected
    assert _deid(0, OTHER_SECRET).patient_pseudonym != expected


def test_uids_are_consistent_across_instances_and_references() -> None:
    first, second = _deid(0).dataset, _deid(1).dataset
    assert first.StudyInstanceUID == second.StudyInstanceUID != STUDY_UID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID != SERIES_UID
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert second.ReferencedImageSequence[0].ReferencedSOPClassUID == UltrasoundMultiFrameImageStorage
    assert first.SOPClassUID == UltrasoundMultiFrameImageStorage
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in first.file_meta


def test_output_is_stable_across_runs_and_keyed_by_the_secret() -> None:
    assert to_bytes(_deid(1).dataset) == to_bytes(_deid(1).dataset)
    mine, theirs = _deid(1).dataset, _deid(1, OTHER_SECRET).dataset
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID", "StudyDate"):
        assert mine[keyword].value != theirs[keyword].value, keyword


def test_dates_shift_by_one_patient_offset_and_keep_intervals_and_times() -> None:
    first, second = _deid(0), _deid(1)
    assert first.date_shift_days == second.date_shift_days
    days = first.date_shift_days
    assert days is not None and days < 0
    a, b = first.dataset, second.dataset
    assert _days(STUDY_DATE, a.StudyDate) == days
    assert _days(a.ContentDate, b.ContentDate) == _days(STUDY_DATE, FOLLOW_UP_DATE)
    assert _days(STUDY_DATE, b.InstanceCreationDate[:8]) == days + 14  # unlisted date: shifted too
    assert b.AcquisitionDateTime == f"{b.ContentDate}101230.5+0800"
    assert b.ProcedureCodeSequence[0].ObservationDateTime == f"{b.ContentDate}090000"
    assert a.ContentTime == "101230"
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"


def test_another_patient_gets_another_shift() -> None:
    ds = roundtrip(planted_dataset(0, patient_id="ZQXPID9999"))
    other = deidentify_dataset(ds, DeidOptions(secret=SECRET))
    assert other.date_shift_days != _deid(0).date_shift_days
    assert other.patient_pseudonym != _deid(0).patient_pseudonym


def test_without_modified_dates_dates_are_removed() -> None:
    result = _deid(1, retain_longitudinal_dates_modified=False)
    ds = result.dataset
    assert result.date_shift_days is None
    assert ds["StudyDate"].is_empty and ds["ContentDate"].is_empty and ds["StudyTime"].is_empty
    assert "SeriesDate" not in ds and "AcquisitionDateTime" not in ds and "InstanceCreationDate" not in ds
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert result.method_codes == ("113100", "113101")


def test_method_is_recorded() -> None:
    result = _deid(0)
    ds = result.dataset
    assert result.method_codes == ("113100", "113101", "113107")
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.BurnedInAnnotation == "NO"
    items = ds.DeidentificationMethodCodeSequence
    assert [(i.CodeValue, i.CodingSchemeDesignator) for i in items] == [
        ("113100", "DCM"),
        ("113101", "DCM"),
        ("113107", "DCM"),
    ]
    assert len(ds.DeidentificationMethod) == 3


def test_banner_is_zero_and_region_unchanged() -> None:
    result = _deid(0)
    assert result.pixels_cleaned
    out = roundtrip(result.dataset).pixel_array
    original = planted_frames(seed=1)
    assert not out[:, :BANNER_ROWS].any()
    min_x, min_y, max_x, max_y = REGION
    window = (slice(None), slice(min_y, max_y + 1), slice(min_x, max_x + 1))
    np.testing.assert_array_equal(out[window], original[window])
    outside = np.ones(out.shape[1:], dtype=bool)
    outside[window[1:]] = False
    assert not out[:, outside].any()
    assert result.dataset.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_uncalibrated_clip_is_refused_unless_allowed() -> None:
    ds = roundtrip(planted_dataset(0, regions=False))
    with pytest.raises(DeidentificationError, match=rf"{INSTANCE_UIDS[0]}.*allow_uncalibrated"):
        deidentify_dataset(ds, DeidOptions(secret=SECRET))
    result = deidentify_dataset(ds, DeidOptions(secret=SECRET, allow_uncalibrated=True))
    assert not result.pixels_cleaned
    assert "113101" not in result.method_codes
    assert result.dataset.BurnedInAnnotation == "YES"
    assert result.dataset.PixelData == ds.PixelData
    assert leaks(to_bytes(result.dataset), planted_needles()) == []


def test_clean_pixels_off_leaves_pixels_and_does_not_claim_cleaning() -> None:
    result = _deid(0, clean_pixels=False)
    assert not result.pixels_cleaned
    assert result.method_codes == ("113100", "113107")
    assert result.dataset.BurnedInAnnotation == "YES"


def test_the_injected_pixel_cleaner_gets_the_2d_regions() -> None:
    calls: list[tuple[int, ...]] = []

    def cleaner(ds: Dataset, regions: Sequence[UltrasoundRegion]) -> None:
        calls.extend((r.min_x0, r.min_y0, r.max_x1, r.max_y1) for r in regions)

    deidentify_dataset(roundtrip(planted_dataset()), DeidOptions(secret=SECRET), pixel_cleaner=cleaner)
    assert calls == [REGION]


def test_original_dataset_is_not_modified() -> None:
    ds = roundtrip(planted_dataset())
    before = to_bytes(ds)
    deidentify_dataset(ds, DeidOptions(secret=SECRET))
    assert to_bytes(ds) == before


def test_output_passes_dciodvfy(tmp_path: Path) -> None:
    path = tmp_path / "deid.dcm"
    path.write_bytes(to_bytes(_deid(1).dataset))
    assert dciodvfy_errors(path) == []


def test_patient_key_falls_back_and_refuses_nothing() -> None:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    assert patient_key(ds) == "1.2.3"
    ds.PatientName = "DOE^JANE"
    assert patient_key(ds) == "DOE^JANE"
    with pytest.raises(DeidentificationError, match="Patient ID"):
        patient_key(Dataset())


def test_options_validate_and_hide_the_secret(tmp_path: Path) -> None:
    with pytest.raises(DeidentificationError, match="at least 16 bytes"):
        DeidOptions(secret=b"short")
    with pytest.raises(DeidentificationError, match="Retain Safe Private"):
        DeidOptions(secret=SECRET, keep_private=True)
    assert SECRET.decode() not in repr(DeidOptions(secret=SECRET))
    settings = ArchiveSettings(data_dir=tmp_path, deid_secret=SECRET)
    assert DeidOptions.from_settings(settings, allow_uncalibrated=True) == DeidOptions(
        secret=SECRET, allow_uncalibrated=True
    )
    with pytest.raises(ConfigError, match=re.escape(SECRET_OPTION)):
        DeidOptions.from_settings(ArchiveSettings(data_dir=tmp_path))
