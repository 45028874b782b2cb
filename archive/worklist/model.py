"""Scheduled procedures (Modality Worklist entries) and performed procedure steps (MPPS): the model.

A :class:`ScheduledProcedure` is what the clinic asks for ("L4+L5 MBB right,
OT"): patient, accession, date and time, scanner (Scheduled Station AE
Title), modality and the procedure attributes. :class:`WorklistEntry` is one
stored entry: the request plus the identifiers the archive generated (Study
Instance UID, Requested Procedure ID, Scheduled Procedure Step ID) and its
status.

Codes (Scheduled Protocol Code Sequence (0040,0008)). Levels and laterality
use SNOMED CT (``SCT``) where DOMAIN.md gives a code (L3, L4, L5, C4, C5,
sacrum; left, right, bilateral). Everything else uses our local coding scheme
:data:`LOCAL_SCHEME` ``"99USARCH"`` (PS3.16 8.2: a private scheme's
designator starts with ``99``): the techniques ``TT`` and ``OT``, the needle
approaches ``IN-PLANE`` and ``OUT-OF-PLANE``, the procedure types
(``MBB``, ``RF``, ``EPIDURAL``, ``FACET``, ``OTHER``) and a level without a
listed SNOMED code (``LEVEL-L2``, ...). docs/worklist.md lists every code.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from archive.model import Approach, ProcedureType, Side, SpinalLevel, Technique, sort_levels

#: Designator of our local coding scheme (PS3.16 8.2: private schemes start with "99").
LOCAL_SCHEME = "99USARCH"
#: SNOMED CT's designator in DICOM.
SNOMED = "SCT"


@dataclass(frozen=True)
class Code:
    """One coded concept: value, scheme designator, meaning."""

    value: str
    scheme: str
    meaning: str

    def to_json(self) -> dict[str, str]:
        """``{"value", "scheme", "meaning"}``."""
        return {"value": self.value, "scheme": self.scheme, "meaning": self.meaning}


#: SNOMED CT codes of levels (DOMAIN.md §3); other levels use the local scheme.
LEVEL_CODES: dict[SpinalLevel, Code] = {
    SpinalLevel.L3: Code("36470004", SNOMED, "L3 vertebra"),
    SpinalLevel.L4: Code("11994002", SNOMED, "L4 vertebra"),
    SpinalLevel.L5: Code("49668003", SNOMED, "L5 vertebra"),
    SpinalLevel.S1: Code("54735007", SNOMED, "Sacrum"),
    SpinalLevel.C4: Code("5329002", SNOMED, "C4 vertebra"),
    SpinalLevel.C5: Code("36978003", SNOMED, "C5 vertebra"),
}
#: SNOMED CT laterality codes.
SIDE_CODES: dict[Side, Code] = {
    Side.LEFT: Code("7771000", SNOMED, "Left"),
    Side.RIGHT: Code("24028007", SNOMED, "Right"),
    Side.BILATERAL: Code("51440002", SNOMED, "Bilateral"),
}
#: Local codes of the techniques (DOMAIN.md §1).
TECHNIQUE_CODES: dict[Technique, Code] = {
    Technique.TT: Code("TT", LOCAL_SCHEME, "Two points via two punctures"),
    Technique.OT: Code("OT", LOCAL_SCHEME, "Two points via one puncture"),
    Technique.OTHER: Code("OTHER-TECHNIQUE", LOCAL_SCHEME, "Other technique"),
}
#: Local codes of the needle approaches.
APPROACH_CODES: dict[Approach, Code] = {
    Approach.IN_PLANE: Code("IN-PLANE", LOCAL_SCHEME, "In-plane needle approach"),
    Approach.OUT_OF_PLANE: Code("OUT-OF-PLANE", LOCAL_SCHEME, "Out-of-plane needle approach"),
}
#: Local codes and short names of the procedure types.
PROCEDURE_CODES: dict[ProcedureType, tuple[Code, str]] = {
    ProcedureType.MEDIAL_BRANCH_BLOCK: (Code("MBB", LOCAL_SCHEME, "Medial branch block"), "MBB"),
    ProcedureType.RADIOFREQUENCY: (Code("RF", LOCAL_SCHEME, "Radiofrequency ablation"), "RF"),
    ProcedureType.EPIDURAL: (Code("EPIDURAL", LOCAL_SCHEME, "Epidural injection"), "epidural"),
    ProcedureType.FACET_INJECTION: (Code("FACET", LOCAL_SCHEME, "Facet joint injection"), "facet injection"),
    ProcedureType.OTHER: (Code("OTHER", LOCAL_SCHEME, "Other procedure"), "procedure"),
}
_TECHNIQUE_WORDS = {Technique.TT: "two punctures", Technique.OT: "one puncture"}


def level_code(level: SpinalLevel) -> Code:
    """The code of a level: SNOMED CT when DOMAIN.md lists one, else ``LEVEL-<level>`` (local)."""
    return LEVEL_CODES.get(level) or Code(f"LEVEL-{level.value}", LOCAL_SCHEME, f"{level.value} vertebra")


class EntryStatus(enum.StrEnum):
    """Where a scheduled procedure is; the MWL Scheduled Procedure Step Status it is returned with."""

    SCHEDULED = "scheduled"
    IN_PROGRESS = "in progress"
    COMPLETED = "completed"
    DISCONTINUED = "discontinued"
    CANCELLED = "cancelled"

    @property
    def dicom(self) -> str:
        """(0040,0020): SCHEDULED, STARTED (PS3.3 C.4.10), COMPLETED, DISCONTINUED, CANCELED."""
        return _DICOM_STATUS[self]

    @classmethod
    def from_dicom(cls, value: str) -> EntryStatus | None:
        """The status of a (0040,0020) value, or ``None`` for one we never give an entry."""
        for member, text in _DICOM_STATUS.items():
            if text == value.strip().upper():
                return member
        return None

    @property
    def final(self) -> bool:
        """Completed, discontinued and cancelled entries change no more."""
        return self in (EntryStatus.COMPLETED, EntryStatus.DISCONTINUED, EntryStatus.CANCELLED)


_DICOM_STATUS = {
    EntryStatus.SCHEDULED: "SCHEDULED",
    EntryStatus.IN_PROGRESS: "STARTED",
    EntryStatus.COMPLETED: "COMPLETED",
    EntryStatus.DISCONTINUED: "DISCONTINUED",
    EntryStatus.CANCELLED: "CANCELED",
}


class StepStatus(enum.StrEnum):
    """Performed Procedure Step Status (0040,0252), PS3.3 C.4.14."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"


_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_SEX = frozenset({"M", "F", "O", ""})


def parse_da(text: str, what: str) -> date:
    """A date given as ``YYYYMMDD`` or ``YYYY-MM-DD``; ``ValueError`` naming ``what`` otherwise."""
    value = text.strip().replace("-", "")
    try:
        if _DA.match(value):
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        pass
    raise ValueError(f"{what}: expected a date YYYYMMDD or YYYY-MM-DD, but got {text!r}")


def parse_tm(text: str, what: str) -> str:
    """A time given as ``HHMM[SS]`` or ``HH:MM[:SS]``, returned as ``HHMMSS``."""
    value = text.strip().replace(":", "")
    if _TM.match(value) and int(value[:2]) < 24 and (len(value) < 4 or int(value[2:4]) < 60):
        return (value + "0000")[:6] if len(value) < 6 else value
    raise ValueError(f"{what}: expected a time HHMM, HHMMSS or HH:MM, but got {text!r}")


def parse_levels(text: str) -> tuple[SpinalLevel, ...]:
    """``"L4,L5"`` (or ``L4+L5``, ``L4 L5``) as levels in anatomical order."""
    parts = [p for p in re.split(r"[,+\s/]+", text.strip()) if p]
    if not parts:
        raise ValueError(f"levels: expected levels such as L4,L5, but got {text!r}")
    levels = []
    for part in parts:
        try:
            levels.append(SpinalLevel.parse(part.upper()))
        except ValueError:
            raise ValueError(f"levels: expected levels such as L4,L5 (C1..S1), but got {part!r}") from None
    return sort_levels(levels)


@dataclass(frozen=True)
class ScheduledProcedure:
    """What is scheduled: one procedure of one patient on one scanner.

    Attributes
    ----------
    patient_id, patient_name : str
        Patient ID (0010,0020) and Patient's Name (0010,0010, DICOM ``^`` form; any script).
    birth_date : date or None
    sex : str
        ``M``, ``F``, ``O`` or ``""``.
    accession_number : str
        (0008,0050), up to 16 characters.
    start : datetime
        Scheduled Procedure Step Start Date/Time (local time, naive).
    station_aet : str
        Scheduled Station AE Title: the scanner that will query for it.
    modality : str
    procedure_type : ProcedureType
    levels : tuple of SpinalLevel
    side : Side
    technique : Technique
    approach : Approach
    physician : str
        Scheduled Performing Physician's Name (``""``: none).
    """

    patient_id: str
    patient_name: str
    birth_date: date | None
    sex: str
    accession_number: str
    start: datetime
    station_aet: str
    modality: str
    procedure_type: ProcedureType
    levels: tuple[SpinalLevel, ...]
    side: Side
    technique: Technique = Technique.UNKNOWN
    approach: Approach = Approach.UNKNOWN
    physician: str = ""

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with this request (empty: nothing)."""
        found = []
        if not self.patient_id.strip() or len(self.patient_id) > 64:
            found.append(f"patient id: expected 1 to 64 characters, but got {self.patient_id!r}")
        if not self.patient_name.strip() or len(self.patient_name) > 64 * 5:
            found.append(f"patient name: expected a name such as DOE^JANE, but got {self.patient_name!r}")
        if self.sex not in _SEX:
            found.append(f"sex: expected M, F, O or empty, but got {self.sex!r}")
        if not self.accession_number.strip() or len(self.accession_number) > 16:
            found.append(f"accession: expected 1 to 16 characters, but got {self.accession_number!r}")
        if not self.station_aet.strip() or len(self.station_aet) > 16 or "\\" in self.station_aet:
            found.append(f"station AE title: expected 1 to 16 characters, but got {self.station_aet!r}")
        if not re.match(r"^[A-Z0-9_ ]{1,16}$", self.modality):
            found.append(f"modality: expected a modality code such as US, but got {self.modality!r}")
        if not self.levels:
            found.append("levels: expected at least one level, but got none")
        return found

    @property
    def description(self) -> str:
        """Readable text: ``"L4+L5 MBB right, OT (one puncture), in-plane"``."""
        text = "+".join(level.value for level in self.levels)
        text += f" {PROCEDURE_CODES[self.procedure_type][1]} {self.side.value}"
        if self.technique in _TECHNIQUE_WORDS:
            text += f", {self.technique.value} ({_TECHNIQUE_WORDS[self.technique]})"
        elif self.technique is Technique.OTHER:
            text += ", other technique"
        if self.approach is not Approach.UNKNOWN:
            text += f", {self.approach.value}"
        return text

    @property
    def protocol_codes(self) -> list[Code]:
        """The Scheduled Protocol Code Sequence: procedure, levels, side, technique, approach."""
        codes = [PROCEDURE_CODES[self.procedure_type][0], *(level_code(level) for level in self.levels)]
        codes.append(SIDE_CODES[self.side])
        if self.technique in TECHNIQUE_CODES:
            codes.append(TECHNIQUE_CODES[self.technique])
        if self.approach in APPROACH_CODES:
            codes.append(APPROACH_CODES[self.approach])
        return codes


@dataclass(frozen=True)
class WorklistEntry:
    """One stored worklist entry.

    Attributes
    ----------
    pk : int
        Its id (provenance ``worklist:<pk>``).
    procedure : ScheduledProcedure
    study_instance_uid, requested_procedure_id, step_id : str
        Generated when scheduled.
    status : EntryStatus
    created_at, updated_at : datetime
    note : str
        Why it was cancelled or discontinued (``""``: nothing said).
    """

    pk: int
    procedure: ScheduledProcedure
    study_instance_uid: str
    requested_procedure_id: str
    step_id: str
    status: EntryStatus
    created_at: datetime
    updated_at: datetime
    note: str = ""

    @property
    def provenance(self) -> str:
        """The source name written on the values it gives a clip: ``worklist:<pk>``."""
        return f"worklist:{self.pk}"

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON (docs/json-output.md)."""
        p = self.procedure
        return {
            "entry": self.pk,
            "status": self.status.value,
            "patient_id": p.patient_id,
            "patient_name": p.patient_name,
            "birth_date": p.birth_date.isoformat() if p.birth_date else None,
            "sex": p.sex or None,
            "accession_number": p.accession_number,
            "study_instance_uid": self.study_instance_uid,
            "requested_procedure_id": self.requested_procedure_id,
            "scheduled_procedure_step_id": self.step_id,
            "start": p.start.isoformat(),
            "station_aet": p.station_aet,
            "modality": p.modality,
            "procedure_type": p.procedure_type.value,
            "levels": [level.value for level in p.levels],
            "side": p.side.value,
            "technique": p.technique.value,
            "approach": p.approach.value,
            "physician": p.physician or None,
            "description": p.description,
            "protocol_codes": [code.to_json() for code in p.protocol_codes],
            "note": self.note or None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class PerformedStep:
    """One MPPS instance as stored.

    Attributes
    ----------
    sop_instance_uid : str
        The MPPS SOP Instance UID (the SCU's, or ours when it left it to us).
    status : StepStatus
    entry_pk : int or None
        The worklist entry it refers to (by Scheduled Procedure Step ID, Study UID or accession).
    start, end : datetime or None
        Performed Procedure Step Start / End Date and Time.
    discontinuation : Code or None
        Performed Procedure Step Discontinuation Reason Code Sequence (0040,0281).
    instances : tuple of (series UID, SOP class UID, SOP instance UID)
        Performed Series Sequence > Referenced Image Sequence.
    """

    pk: int
    sop_instance_uid: str
    status: StepStatus
    entry_pk: int | None
    study_instance_uid: str
    station_aet: str
    start: datetime | None
    end: datetime | None
    discontinuation: Code | None
    instances: tuple[tuple[str, str, str], ...]

    @property
    def duration_s(self) -> float | None:
        """End minus start in seconds, when both are known."""
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()

    def to_json(self) -> dict[str, Any]:
        """The step as JSON."""
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "status": self.status.value,
            "entry": self.entry_pk,
            "study_instance_uid": self.study_instance_uid or None,
            "station_aet": self.station_aet or None,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "duration_s": self.duration_s,
            "discontinuation_reason": self.discontinuation.to_json() if self.discontinuation else None,
            "instances": [
                {"series_instance_uid": s, "sop_class_uid": c, "sop_instance_uid": i}
                for s, c, i in self.instances
            ],
        }


@dataclass(frozen=True)
class WorklistSettings:
    """``[worklist]``: expiry and the MWL result limit.

    Attributes
    ----------
    expire_after_hours : int
        A scheduled entry this long past its start is expired (not offered to scanners).
    max_results : int
        An MWL query matching more entries is refused (0xA700), nothing sent.
    """

    expire_after_hours: int = 24
    max_results: int = 500

    def __post_init__(self) -> None:
        for name in ("expire_after_hours", "max_results"):
            if getattr(self, name) < 1:
                raise ValueError(f"[worklist] {name}: expected at least 1, but got {getattr(self, name)}")


def combine(day: date | None, clock: str | None) -> datetime | None:
    """A DA and a TM (``HHMMSS[.f]``) as a naive datetime (``None`` without the date)."""
    if day is None:
        return None
    text = (clock or "").strip().replace(":", "")
    if not text:
        return datetime.combine(day, time())
    whole, _, fraction = text.partition(".")
    whole = (whole + "0000")[:6]
    micro = int((fraction + "000000")[:6]) if fraction else 0
    return datetime.combine(day, time(int(whole[:2]), int(whole[2:4]), int(whole[4:6]), micro))
