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

Sequences (only when :func:`write_samples` is given them, as the differential
test against Orthanc does): :class:`StudySequences` puts a Procedure Code
Sequence, a Request Attributes Sequence made from a worklist entry (per
series) and a Referenced Study Sequence into a study's instances.
:func:`schedule_examples` schedules the two worklist entries the sequence
tests make clips from.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import Engine, insert

from archive.archive import Archive
from archive.index import schema
from archive.model import ProcedureType, Side, SpinalLevel, Technique
from archive.worklist.dataset import code_item, request_attributes
from archive.worklist.model import PROCEDURE_CODES, ScheduledProcedure, WorklistEntry

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
#: Referenced SOP Class UID of a Referenced Study Sequence item (Detached Study Management, retired).
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"
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
class StudySequences:
    """Sequences the instances of one sample study carry (sequence matching, PS3.4 C.2.2.2.6).

    Attributes
    ----------
    procedure : ProcedureType or None
        Procedure Code Sequence (0008,1032) of every instance: the type's local code.
    requests : mapping of int to WorklistEntry
        Series number → the entry its instances were made from (Request Attributes Sequence (0040,0275),
        the item a scanner writes: :func:`archive.worklist.dataset.request_attributes`).
    referenced_study : str
        Letter of the sample study the Referenced Study Sequence (0008,1110) of every instance names
        (``""``: none).
    """

    procedure: ProcedureType | None = None
    requests: Mapping[int, WorklistEntry] = field(default_factory=dict)
    referenced_study: str = ""


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


def scheduled(accession: str, level: SpinalLevel, side: Side, technique: Technique) -> ScheduledProcedure:
    """A medial branch block of one level, scheduled on ``SCANNER`` for patient ``P-{accession}``."""
    return ScheduledProcedure(
        patient_id=f"P-{accession}",
        patient_name="DOE^JANE",
        birth_date=None,
        sex="F",
        accession_number=accession,
        start=datetime(2030, 1, 1, 9, 0),
        station_aet="SCANNER",
        modality="US",
        procedure_type=ProcedureType.MEDIAL_BRANCH_BLOCK,
        levels=(level,),
        side=side,
        technique=technique,
    )


def schedule_examples(archive: Archive) -> dict[str, WorklistEntry]:
    """Schedule the two example procedures in the worklist of ``archive``: ``L5`` right OT, ``L4`` left TT."""
    l5, l4 = archive.worklist.schedule(
        [
            scheduled("ACC-L5", SpinalLevel.L5, Side.RIGHT, Technique.OT),
            scheduled("ACC-L4", SpinalLevel.L4, Side.LEFT, Technique.TT),
        ]
    )
    return {"L5": l5, "L4": l4}


def procedure_codes(procedure: ProcedureType) -> DicomSequence:
    """A Procedure Code Sequence (0008,1032) of one item: the local code of ``procedure``."""
    return DicomSequence([code_item(PROCEDURE_CODES[procedure][0])])


def _add_sequences(
    ds: Dataset, wanted: StudySequences, series_number: int, studies: Mapping[str, str]
) -> None:
    if wanted.procedure is not None:
        ds.ProcedureCodeSequence = procedure_codes(wanted.procedure)
    entry = wanted.requests.get(series_number)
    if entry is not None:
        ds.RequestAttributesSequence = DicomSequence([request_attributes(entry)])
    if wanted.referenced_study:
        item = Dataset()
        item.ReferencedSOPClassUID = DETACHED_STUDY_MANAGEMENT
        item.ReferencedSOPInstanceUID = studies[wanted.referenced_study]
        ds.ReferencedStudySequence = DicomSequence([item])


def write_samples(directory: Path, sequences: Mapping[str, StudySequences] | None = None) -> Samples:
    """Write the studies of the table as Part 10 files into ``directory``.

    Parameters
    ----------
    directory : Path
        Created if missing; one file per instance, ``{letter}{number}.dcm``.
    sequences : mapping of str to StudySequences, optional
        Study letter → the sequences its instances carry (none by default).

    Returns
    -------
    Samples
        The files and the UIDs of every study, series and instance by study letter.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    studies = {spec.letter: str(generate_uid()) for spec in SPECS}
    series: dict[str, list[str]] = {}
    instances: dict[str, list[str]] = {}
    for spec in SPECS:
        study_uid = studies[spec.letter]
        wanted = (sequences or {}).get(spec.letter, StudySequences())
        series[spec.letter] = []
        instances[spec.letter] = []
        number = 0
        for series_number, count in enumerate(spec.series, start=1):
            series_uid = str(generate_uid())
            series[spec.letter].append(series_uid)
            for _ in range(count):
                number += 1
                ds = _dataset(spec, study_uid, series_uid, number, series_number)
                _add_sequences(ds, wanted, series_number, studies)
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
