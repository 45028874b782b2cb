"""Small DICOM instances built in memory for the archive's store, ingest and index tests."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

US_MULTIFRAME = UID("1.2.840.10008.5.1.4.1.1.3.1")
US_IMAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")


def us_dataset(
    *,
    frames: int = 2,
    rows: int = 8,
    columns: int = 10,
    patient_id: str = "P001",
    patient_name: str = "Doe^Jane",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    study_date: date = date(2024, 3, 5),
    description: str = "L4/5 MBB right OT",
    seed: int = 0,
    **extra: Any,
) -> Dataset:
    """A small ultrasound multi-frame dataset (MONOCHROME2, uint8 pixels)."""
    ds = Dataset()
    ds.SOPClassUID = US_MULTIFRAME if frames > 1 else US_IMAGE
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.StudyDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = "101500"
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = "101600"
    ds.Modality = "US"
    ds.StudyDescription = description
    ds.SeriesDescription = description
    ds.BodyPartExamined = "LSPINE"
    ds.Manufacturer = "Test"
    ds.InstanceNumber = 1
    ds.SeriesNumber = 1
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameTime = 33.3
        ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    rng = np.random.default_rng(seed)
    ds.PixelData = rng.integers(0, 255, size=(frames, rows, columns), dtype=np.uint8).tobytes()
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def part10_bytes(ds: Dataset, transfer_syntax: UID = ExplicitVRLittleEndian) -> bytes:
    """``ds`` as a Part 10 file (preamble, file meta, dataset) in ``transfer_syntax``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", US_IMAGE)
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "1.2.3.4")
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, implicit_vr=transfer_syntax == ImplicitVRLittleEndian)
    return buffer.getvalue()


def bare_bytes(ds: Dataset, transfer_syntax: UID = ExplicitVRLittleEndian) -> bytes:
    """``ds`` without preamble or file meta, as a network peer sends it."""
    buffer = io.BytesIO()
    ds.save_as(
        buffer,
        implicit_vr=transfer_syntax == ImplicitVRLittleEndian,
        little_endian=True,
    )
    return buffer.getvalue()


def write_instance(directory: Path, ds: Dataset, name: str | None = None) -> Path:
    """Write ``ds`` as a Part 10 file into ``directory``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or f"{ds.SOPInstanceUID}.dcm")
    path.write_bytes(part10_bytes(ds))
    return path
