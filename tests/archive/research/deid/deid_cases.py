"""Small ultrasound instances with planted identifying data, for the de-identification tests."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage

SECRET = b"test-secret-for-deid-0123456789"
OTHER_SECRET = b"another-secret-for-deid-9876543210"

STUDY_UID = "1.2.826.0.1.3680043.8.498.4711.1"
SERIES_UID = "1.2.826.0.1.3680043.8.498.4711.1.2"
FRAME_OF_REFERENCE_UID = "1.2.826.0.1.3680043.8.498.4711.9"
INSTANCE_UIDS = ("1.2.826.0.1.3680043.8.498.4711.1.2.3", "1.2.826.0.1.3680043.8.498.4711.1.2.4")

# Identifying values planted in attributes, sequences, private tags and descriptions:
# every one must be gone from the de-identified bytes.
PLANTED_TEXT = {
    "name": "ZQXNAME^ZQXGIVEN",
    "patient_id": "ZQXPID4711",
    "other_id": "ZQXOTHERID",
    "accession": "ZQXACC0815",
    "institution": "ZQX Institution of Planting",
    "address": "ZQX 12 Plant Street",
    "operator": "ZQXOPER^ZQXOPGIVEN",
    "performer": "ZQXPERF^ZQXPFGIVEN",
    "referrer": "ZQXREF^ZQXRFGIVEN",
    "station": "ZQXSTATION",
    "serial": "ZQXSERIAL9",
    "study_id": "ZQXSTUDY77",
    "study_description": "ZQX study description",
    "series_description": "ZQX series description",
    "protocol": "ZQXPROTOCOL",
    "request": "ZQXREQUESTED",
    "private": "ZQXPRIVATEVALUE",
    "private_nested": "ZQXPRIVNESTED",
    "nested_person": "ZQXNESTED^ZQXNPGIVEN",
    "nested_institution": "ZQX Nested Institution",
    "chinese_name": "张三丰",
    "chinese_comment": "患者张三丰右侧腰痛",
    "overlay": "ZQXOVERLAYTEXT",
    "free_text": "ZQXFREETEXT",
    "unknown": "ZQXUNKNOWNVALUE",
}
#: A public tag no dictionary knows: read back with VR UN.
UNKNOWN_PUBLIC_TAG = 0x00089998
STUDY_DATE = "20240506"
FOLLOW_UP_DATE = "20240520"
BIRTH_DATE = "19470823"
PLANTED_DATES = (STUDY_DATE, FOLLOW_UP_DATE, BIRTH_DATE)

ROWS, COLS, FRAMES = 48, 64, 4
#: Inclusive 2D region rectangle (min_col, min_row, max_col, max_row).
REGION = (4, 12, 59, 45)
BANNER_ROWS = 8


def region_item(region: tuple[int, int, int, int] = REGION, spatial_format: int = 1) -> Dataset:
    min_x, min_y, max_x, max_y = region
    item = Dataset()
    item.RegionSpatialFormat = spatial_format
    item.RegionDataType = 1
    item.RegionFlags = 0
    item.RegionLocationMinX0 = min_x
    item.RegionLocationMinY0 = min_y
    item.RegionLocationMaxX1 = max_x
    item.RegionLocationMaxY1 = max_y
    item.PhysicalUnitsXDirection = 3
    item.PhysicalUnitsYDirection = 3
    item.PhysicalDeltaX = 0.02
    item.PhysicalDeltaY = 0.02
    return item


def planted_frames(seed: int = 1) -> npt.NDArray[np.uint8]:
    """(FRAMES, ROWS, COLS) uint8: a bright banner on top, texture everywhere else."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(1, 256, size=(FRAMES, ROWS, COLS), dtype=np.uint8)
    frames[:, :BANNER_ROWS, :] = 255
    return frames


def planted_dataset(
    instance: int = 0,
    *,
    patient_id: str = PLANTED_TEXT["patient_id"],
    content_date: str = STUDY_DATE,
    regions: bool = True,
) -> Dataset:
    """A US multi-frame instance carrying every planted identifier.

    Instance 1 references instance 0 (Referenced Image Sequence), so UID
    consistency across instances can be checked.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = UID(INSTANCE_UIDS[instance])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "ZQXSTATION"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceCreationDate = content_date
    ds.InstanceCreationTime = "101230"
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = INSTANCE_UIDS[instance]
    ds.StudyDate = STUDY_DATE
    ds.SeriesDate = STUDY_DATE
    ds.ContentDate = content_date
    ds.AcquisitionDateTime = f"{content_date}101230.5+0800"
    ds.StudyTime = "101230"
    ds.SeriesTime = "101230"
    ds.ContentTime = "101230"
    ds.AccessionNumber = PLANTED_TEXT["accession"]
    ds.Modality = "US"
    ds.Manufacturer = "SonoSite"
    ds.InstitutionName = PLANTED_TEXT["institution"]
    ds.InstitutionAddress = PLANTED_TEXT["address"]
    ds.ReferringPhysicianName = PLANTED_TEXT["referrer"]
    ds.StationName = PLANTED_TEXT["station"]
    ds.StudyDescription = f"{PLANTED_TEXT['study_description']} 腰椎 {PLANTED_TEXT['chinese_name']}"
    ds.SeriesDescription = PLANTED_TEXT["series_description"]
    ds.PerformingPhysicianName = PLANTED_TEXT["performer"]
    ds.OperatorsName = PLANTED_TEXT["operator"]
    ds.ManufacturerModelName = "Edge II"
    ds.PatientName = PLANTED_TEXT["name"]
    ds.PatientID = patient_id
    ds.PatientBirthDate = BIRTH_DATE
    ds.PatientSex = "F"
    ds.PatientAge = "077Y"
    ds.OtherPatientIDsSequence = Sequence([_other_id()])
    ds.PatientComments = PLANTED_TEXT["chinese_comment"]
    ds.BodyPartExamined = "LSPINE"
    ds.DeviceSerialNumber = PLANTED_TEXT["serial"]
    ds.ProtocolName = PLANTED_TEXT["protocol"]
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE_UID
    ds.PositionReferenceIndicator = ""
    ds.StudyID = PLANTED_TEXT["study_id"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance + 1
    ds.PatientOrientation = ""
    ds.ImageLaterality = "R"
    ds.BurnedInAnnotation = "YES"
    ds.ImageComments = PLANTED_TEXT["chinese_comment"]
    ds.RequestAttributesSequence = Sequence([_request()])
    ds.ProcedureCodeSequence = Sequence([_procedure_code()])
    if instance > 0:
        ds.ReferencedImageSequence = Sequence([_reference(INSTANCE_UIDS[0])])
    if regions:
        ds.SequenceOfUltrasoundRegions = Sequence([region_item()])
    ds.add_new(UNKNOWN_PUBLIC_TAG, "UN", PLANTED_TEXT["unknown"].encode("ascii"))
    _private(ds, PLANTED_TEXT["private"])
    _overlay(ds)
    _pixels(ds, planted_frames(seed=instance + 1))
    return ds


def _other_id() -> Dataset:
    item = Dataset()
    item.PatientID = PLANTED_TEXT["other_id"]
    item.TypeOfPatientID = "TEXT"
    return item


def _request() -> Dataset:
    item = Dataset()
    item.RequestedProcedureDescription = PLANTED_TEXT["request"]
    item.RequestedProcedureID = PLANTED_TEXT["accession"]
    item.ScheduledProcedureStepID = PLANTED_TEXT["accession"]
    return item


def _procedure_code() -> Dataset:
    # Unlisted sequence: kept, but what is identifying inside it must go.
    item = Dataset()
    item.CodeValue = "MBB-L4"
    item.CodingSchemeDesignator = "99LOCAL"
    item.CodeMeaning = "Lumbar medial branch block"
    item.PersonName = PLANTED_TEXT["nested_person"]
    item.InstitutionName = PLANTED_TEXT["nested_institution"]
    item.ObservationDateTime = f"{FOLLOW_UP_DATE}090000"
    item.TextValue = PLANTED_TEXT["free_text"]
    _private(item, PLANTED_TEXT["private_nested"])
    return item


def _reference(sop_instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = UltrasoundMultiFrameImageStorage
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


def _private(ds: Dataset, value: str) -> None:
    block = ds.private_block(0x0009, "ZQX PRIVATE CREATOR", create=True)
    block.add_new(0x01, "LO", value)
    block.add_new(0x02, "DA", STUDY_DATE)


def _overlay(ds: Dataset) -> None:
    ds.add_new(Tag(0x6000, 0x0010), "US", ROWS)
    ds.add_new(Tag(0x6000, 0x0011), "US", COLS)
    ds.add_new(Tag(0x6000, 0x0022), "LO", PLANTED_TEXT["overlay"])
    ds.add_new(Tag(0x6000, 0x0040), "CS", "G")
    ds.add_new(Tag(0x6000, 0x0050), "SS", [1, 1])
    ds.add_new(Tag(0x6000, 0x0100), "US", 1)
    ds.add_new(Tag(0x6000, 0x0102), "US", 0)
    ds.add_new(Tag(0x6000, 0x3000), "OW", b"\xff" * (ROWS * COLS // 8))


def _pixels(ds: Dataset, frames: npt.NDArray[np.uint8]) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLS
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = FRAMES
    ds.FrameTime = "50"
    ds.FrameIncrementPointer = Tag("FrameTime")
    ds.LossyImageCompression = "00"
    ds.PixelData = frames.tobytes()
    ds["PixelData"].VR = "OB"


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def roundtrip(ds: Dataset) -> Dataset:
    return dcmread(io.BytesIO(to_bytes(ds)))


def planted_needles(encoding: str = "utf-8") -> list[bytes]:
    """Every planted string as bytes (whole and per PN component), and every planted date."""
    needles: set[bytes] = set()
    for text in PLANTED_TEXT.values():
        needles.add(text.encode(encoding))
        needles.update(part.encode(encoding) for part in text.split("^"))
    needles.update(date.encode("ascii") for date in PLANTED_DATES)
    return sorted(needles)


def leaks(data: bytes, needles: list[bytes]) -> list[bytes]:
    return [needle for needle in needles if needle in data]


def dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert "US" in output, f"dciodvfy did not identify the IOD:\n{output}"
    return [line for line in output.splitlines() if line.startswith("Error")]
