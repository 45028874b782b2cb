"""Sample studies for the Query/Retrieve tests, as Part 10 files (usarchive and Orthanc load the same).

=====  =======  ==================================  ==========  ========  =========================
study  patient  name                                date        modality  description (rules → tags)
=====  =======  ==================================  ==========  ========  =========================
A      P001     Doe^Jane                            2024-03-05  US        L5 MBB left OT (2 series, 3 inst.)
B      P002     Roe^Rick                            2024-03-10  US        L4 MBB right TT
C      P003     Yamada^Tarou=山田^太郎=やまだ^たろう    2024-04-01  US        L5 MBB right TT
D      P001     Doe^Jane                            2024-05-01  US        L4/5 MBB right OT
E      P004     Wang^Xiaodong=王^小东                2024-06-01  OT        photograph of the site
=====  =======  ==================================  ==========  ========  =========================
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import Engine, insert

from archive.index import schema

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"
CHINESE = "Wang^Xiaodong=王^小东"


@dataclass(frozen=True)
class StudySpec:
    letter: str
    patient_id: str
    patient_name: str
    study_date: str
    study_time: str
    modality: str
    description: str
    accession: str
    series: tuple[int, ...]  # instances per series


SPECS = (
    StudySpec("A", "P001", "Doe^Jane", "20240305", "101500", "US", "L5 MBB left OT", "ACC1", (2, 1)),
    StudySpec("B", "P002", "Roe^Rick", "20240310", "230000", "US", "L4 MBB right TT", "ACC2", (1,)),
    StudySpec("C", "P003", JAPANESE, "20240401", "003000", "US", "L5 MBB right TT", "ACC3", (1,)),
    StudySpec("D", "P001", "Doe^Jane", "20240501", "101500", "US", "L4/5 MBB right OT", "ACC4", (1,)),
    StudySpec("E", "P004", CHINESE, "20240601", "120000", "OT", "photograph of the site", "ACC5", (1,)),
)


@dataclass(frozen=True)
class Samples:
    files: list[Path]
    studies: dict[str, str]  # letter -> Study Instance UID
    series: dict[str, list[str]]
    instances: dict[str, list[str]]


def _dataset(spec: StudySpec, study_uid: str, series_uid: str, number: int, series_number: int) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = spec.patient_id
    ds.PatientName = spec.patient_name
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.StudyDate = spec.study_date
    ds.StudyTime = spec.study_time
    ds.StudyID = spec.letter
    ds.AccessionNumber = spec.accession
    ds.ReferringPhysicianName = "Referring^Doctor"
    ds.InstitutionName = "Pain Clinic"
    ds.Modality = spec.modality
    ds.StudyDescription = spec.description
    ds.SeriesDescription = spec.description
    ds.SeriesNumber = series_number
    ds.InstanceNumber = number
    ds.BodyPartExamined = "LSPINE"
    ds.Rows, ds.Columns = 8, 10
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = 2
    ds.FrameTime = 33.3
    ds.FrameIncrementPointer = 0x00181063
    rng = np.random.default_rng(number)
    ds.PixelData = rng.integers(0, 255, size=(2, 8, 10), dtype=np.uint8).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def write_samples(directory: Path) -> Samples:
    """Write the studies of the table as Part 10 files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    studies: dict[str, str] = {}
    series: dict[str, list[str]] = {}
    instances: dict[str, list[str]] = {}
    for spec in SPECS:
        study_uid = str(generate_uid())
        studies[spec.letter] = study_uid
        series[spec.letter] = []
        instances[spec.letter] = []
        number = 0
        for series_number, count in enumerate(spec.series, start=1):
            series_uid = str(generate_uid())
            series[spec.letter].append(series_uid)
            for _ in range(count):
                number += 1
                ds = _dataset(spec, study_uid, series_uid, number, series_number)
                instances[spec.letter].append(str(ds.SOPInstanceUID))
                buffer = io.BytesIO()
                ds.save_as(buffer, enforce_file_format=True)
                path = directory / f"{spec.letter}{number}.dcm"
                path.write_bytes(buffer.getvalue())
                files.append(path)
    return Samples(files, studies, series, instances)


def bulk_index(
    engine: Engine, studies: int, *, instances_per_study: int = 1, first_date: date = date(2020, 1, 1)
) -> None:
    """Fill the index with ``studies`` synthetic studies by bulk SQL inserts (rows only, no files).

    Patient ``BULK{n % 1000:04d}``, one series per study, study dates one per day
    from ``first_date`` (cycling over ~27 years). For C-FIND load: nothing here is
    retrievable.
    """
    now = datetime.now(UTC)
    with engine.begin() as connection:
        patients = [
            {"id": 10_000_000 + n, "patient_id": f"BULK{n:04d}", "issuer": "", "name": f"Bulk^Patient{n}"}
            for n in range(min(studies, 1000))
        ]
        connection.execute(insert(schema.patient), patients)
        batch = 5000
        for start in range(0, studies, batch):
            rows = range(start, min(studies, start + batch))
            day = [first_date + timedelta(days=n % 10_000) for n in rows]
            connection.execute(
                insert(schema.study),
                [
                    {
                        "id": 10_000_000 + n,
                        "study_instance_uid": f"2.25.{n}",
                        "patient_pk": 10_000_000 + n % 1000,
                        "study_date": d,
                        "study_time": "120000",
                        "accession_number": f"BA{n}",
                    }
                    for n, d in zip(rows, day, strict=True)
                ],
            )
            connection.execute(
                insert(schema.series),
                [
                    {
                        "id": 10_000_000 + n,
                        "series_instance_uid": f"2.25.{n}.1",
                        "study_pk": 10_000_000 + n,
                        "modality": "US",
                    }
                    for n in rows
                ],
            )
            connection.execute(
                insert(schema.instance),
                [
                    {
                        "id": 10_000_000 + n * instances_per_study + k,
                        "sop_instance_uid": f"2.25.{n}.1.{k}",
                        "sop_class_uid": US_MULTIFRAME,
                        "series_pk": 10_000_000 + n,
                        "path": f"bulk/{n}/{k}.dcm",
                        "size": 0,
                        "sha256": "0" * 64,
                        "transfer_syntax": ExplicitVRLittleEndian,
                        "received_at": now,
                        "source_kind": "file",
                        "calibrated": False,
                        "sort_date": d,
                    }
                    for n, d in zip(rows, day, strict=True)
                    for k in range(instances_per_study)
                ],
            )
