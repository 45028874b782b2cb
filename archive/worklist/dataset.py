"""A worklist entry as DICOM: the MWL response's attributes and what a scanner copies into its images.

:func:`entry_attributes` gives every attribute the archive holds for an
entry, top level and Scheduled Procedure Step Sequence item apart (the MWL
SCP picks from them the keys a query asked for). :func:`request_attributes`
is the Request Attributes Sequence (0040,0275) item a scanner writes into
every image it makes for the entry (IHE Scheduled Workflow, RAD-8 / Table
4.8-1 of the Technical Framework): Requested Procedure ID and Description,
Scheduled Procedure Step ID and Description, Scheduled Protocol Code
Sequence; the scanner also copies Accession Number and Study Instance UID
at the top level (:func:`copy_into`).
"""

from __future__ import annotations

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from sqlalchemy import Connection, delete, insert

from archive.index.items import ItemSequence, code_sequence, item_values
from archive.worklist import sql
from archive.worklist.model import Code, ScheduledProcedure, WorklistEntry

_LO_MAX = 64

#: Attributes :func:`entry_attributes` fills: top level, and in the Scheduled Procedure Step item.
TOP_HELD = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyInstanceUID",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "RequestedProcedureCodeSequence",
)
STEP_HELD = (
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "Modality",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProtocolCodeSequence",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepStatus",
)
#: Their tags, ``(top, step)``.
HELD_TAGS: tuple[frozenset[int], frozenset[int]] = (
    frozenset(int(tag_for_keyword(k) or 0) for k in TOP_HELD),
    frozenset(int(tag_for_keyword(k) or 0) for k in STEP_HELD),
)


def code_item(code: Code) -> Dataset:
    """One item of a code sequence (Code Value, Coding Scheme Designator, Code Meaning)."""
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning[:_LO_MAX]
    return item


#: The sequences whose items the worklist keeps for matching: at the top level, in the step item.
TOP_SEQUENCES: dict[int, ItemSequence] = {
    0x00321064: code_sequence("RequestedProcedureCodeSequence", 0x00321064)
}
STEP_SEQUENCES: dict[int, ItemSequence] = {
    0x00400008: code_sequence("ScheduledProtocolCodeSequence", 0x00400008)
}


def code_sequences(procedure: ScheduledProcedure) -> tuple[DicomSequence, DicomSequence]:
    """``(Requested Procedure Code Sequence, Scheduled Protocol Code Sequence)`` of a procedure."""
    codes = procedure.protocol_codes
    return DicomSequence([code_item(codes[0])]), DicomSequence([code_item(code) for code in codes])


def write_entry_items(connection: Connection, entry_pk: int, procedure: ScheduledProcedure) -> None:
    """Keep the codes of entry ``entry_pk`` in ``worklist_item_value`` (replacing any)."""
    table = sql.worklist_item_value
    connection.execute(delete(table).where(table.c.entry_pk == entry_pk))
    requested, protocol = code_sequences(procedure)
    top, step = Dataset(), Dataset()
    top.RequestedProcedureCodeSequence, step.ScheduledProtocolCodeSequence = requested, protocol
    rows = [*item_values(top, TOP_SEQUENCES), *item_values(step, STEP_SEQUENCES)]
    if rows:
        connection.execute(insert(table), [{**row, "entry_pk": entry_pk} for row in rows])


def _description(entry: WorklistEntry) -> str:
    return entry.procedure.description[:_LO_MAX]


def entry_attributes(entry: WorklistEntry) -> tuple[Dataset, Dataset]:
    """``(top level, Scheduled Procedure Step item)`` of an entry, every attribute the archive holds."""
    p = entry.procedure
    top = Dataset()
    top.PatientName = p.patient_name
    top.PatientID = p.patient_id
    top.PatientBirthDate = p.birth_date.strftime("%Y%m%d") if p.birth_date else ""
    top.PatientSex = p.sex
    top.AccessionNumber = p.accession_number
    top.StudyInstanceUID = entry.study_instance_uid
    top.RequestedProcedureID = entry.requested_procedure_id
    top.RequestedProcedureDescription = _description(entry)
    requested, protocol = code_sequences(p)
    top.RequestedProcedureCodeSequence = requested
    step = Dataset()
    step.ScheduledStationAETitle = p.station_aet
    step.ScheduledProcedureStepStartDate = p.start.strftime("%Y%m%d")
    step.ScheduledProcedureStepStartTime = p.start.strftime("%H%M%S")
    step.Modality = p.modality
    step.ScheduledPerformingPhysicianName = p.physician
    step.ScheduledProcedureStepDescription = _description(entry)
    step.ScheduledProtocolCodeSequence = protocol
    step.ScheduledProcedureStepID = entry.step_id
    step.ScheduledProcedureStepStatus = entry.status.dicom
    return top, step


def request_attributes(entry: WorklistEntry) -> Dataset:
    """The Request Attributes Sequence item a scanner writes for ``entry``."""
    top, step = entry_attributes(entry)
    item = Dataset()
    item.RequestedProcedureID = top.RequestedProcedureID
    item.RequestedProcedureDescription = top.RequestedProcedureDescription
    item.ScheduledProcedureStepID = step.ScheduledProcedureStepID
    item.ScheduledProcedureStepDescription = step.ScheduledProcedureStepDescription
    item.ScheduledProtocolCodeSequence = step.ScheduledProtocolCodeSequence
    return item


def copy_into(dataset: Dataset, entry: WorklistEntry) -> None:
    """Write ``entry`` into an image as a scanner does: patient, accession, study UID, request attributes."""
    p = entry.procedure
    dataset.PatientName = p.patient_name
    dataset.PatientID = p.patient_id
    dataset.AccessionNumber = p.accession_number
    dataset.StudyInstanceUID = entry.study_instance_uid
    dataset.RequestAttributesSequence = DicomSequence([request_attributes(entry)])
    if p.physician:
        dataset.PerformingPhysicianName = p.physician
