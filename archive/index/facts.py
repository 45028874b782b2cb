"""Values the index keeps about a patient, study, series and instance, read from a header.

Every reader here is forgiving: a missing or malformed attribute becomes
``None`` (a scanner's odd value must never lose an instance), and strings are
cut to the column widths of :mod:`archive.index.schema`.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from pydicom.dataset import Dataset

from archive.calibration import calibration_or_none

logger = logging.getLogger(__name__)


def _text(ds: Dataset, keyword: str, width: int) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed value raises on conversion
        return None
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text[:width] or None


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except Exception:
        return None


def _float(ds: Dataset, keyword: str) -> float | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else float(value)
    except Exception:
        return None


def parse_da(value: str | None) -> date | None:
    """A DICOM DA value (``YYYYMMDD``, or the old ``YYYY.MM.DD``) as a date, else ``None``."""
    if not value:
        return None
    digits = value.strip().replace(".", "")
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def patient_values(ds: Dataset) -> dict[str, Any]:
    """Columns of ``patient``: patient_id and issuer (``""`` when absent), name, birth date, sex."""
    return {
        "patient_id": _text(ds, "PatientID", 64) or "",
        "issuer": _text(ds, "IssuerOfPatientID", 64) or "",
        "name": _text(ds, "PatientName", 324),
        "birth_date": parse_da(_text(ds, "PatientBirthDate", 16)),
        "sex": _text(ds, "PatientSex", 16),
    }


def study_values(ds: Dataset) -> dict[str, Any]:
    """Columns of ``study`` except the keys."""
    return {
        "study_date": parse_da(_text(ds, "StudyDate", 16)),
        "study_time": _text(ds, "StudyTime", 32),
        "accession_number": _text(ds, "AccessionNumber", 64),
        "study_id": _text(ds, "StudyID", 64),
        "description": _text(ds, "StudyDescription", 256),
    }


def series_values(ds: Dataset) -> dict[str, Any]:
    """Columns of ``series`` except the keys."""
    return {
        "modality": _text(ds, "Modality", 16),
        "series_number": _int(ds, "SeriesNumber"),
        "description": _text(ds, "SeriesDescription", 256),
        "body_part": _text(ds, "BodyPartExamined", 64),
        "laterality": _text(ds, "Laterality", 16),
        "manufacturer": _text(ds, "Manufacturer", 64),
        "model": _text(ds, "ManufacturerModelName", 64),
        "protocol_name": _text(ds, "ProtocolName", 256),
    }


def _frame_time_ms(ds: Dataset) -> float | None:
    frame_time = _float(ds, "FrameTime")
    if frame_time is not None:
        return frame_time
    cine_rate = _float(ds, "CineRate")
    if cine_rate:
        return 1000.0 / cine_rate
    return None


def instance_values(ds: Dataset) -> dict[str, Any]:
    """Image facts of ``instance``: frames, size, photometric, frame time, calibration, content time."""
    calibration = calibration_or_none(ds)
    row_mm: float | None = None
    col_mm: float | None = None
    if calibration is not None:
        try:
            row_mm, col_mm = calibration.pixel_size_mm
        except Exception as exc:  # calibration bugs must not lose the instance
            logger.warning("calibration of %s failed: %s", ds.get("SOPInstanceUID"), exc)
            calibration = None
    frames = _int(ds, "NumberOfFrames")
    has_image = "Rows" in ds
    return {
        "instance_number": _int(ds, "InstanceNumber"),
        "frames": frames if frames is not None else (1 if has_image else None),
        "rows": _int(ds, "Rows"),
        "columns": _int(ds, "Columns"),
        "photometric": _text(ds, "PhotometricInterpretation", 32),
        "frame_time_ms": _frame_time_ms(ds),
        "row_spacing_mm": row_mm,
        "column_spacing_mm": col_mm,
        "calibrated": calibration is not None,
        "content_date": parse_da(_text(ds, "ContentDate", 16)),
        "content_time": _text(ds, "ContentTime", 32),
        "image_laterality": _text(ds, "ImageLaterality", 16),
        "patient_id": _text(ds, "PatientID", 64) or "",
        "patient_name": _text(ds, "PatientName", 324),
    }
