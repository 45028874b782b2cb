"""MPPS with pynetdicom as the scanner's SCU: N-CREATE, N-SET COMPLETED / DISCONTINUED, refused transitions.

Real associations on loopback against ``usarchive``'s receiver; SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]
from worklist_peers import SCANNER
from worklist_peers import scheduled as scheduled_procedure

from archive.archive import Archive
from archive.model import Side, Technique
from archive.worklist.model import EntryStatus, StepStatus, WorklistEntry
from archive.worklist.steps import get_step, steps_of_entry
from pacs_bridge.config import BridgeSettings
from pacs_bridge.peers import AllowedPeer, PeerPermissions, Permission
from pacs_bridge.server import BridgeServer

START = datetime(2026, 12, 2, 9, 30, 0)


@pytest.fixture
def entry(archive: Archive) -> WorklistEntry:
    procedure = scheduled_procedure(start=START, side=Side.LEFT, technique=Technique.TT)
    (scheduled,) = archive.worklist.schedule([procedure])
    return scheduled


@pytest.fixture
def server(start_bridge: Callable[..., BridgeServer], bridge_settings: BridgeSettings) -> BridgeServer:
    other = PeerPermissions(AllowedPeer("STORER"), frozenset({Permission.ECHO, Permission.STORE}))
    return start_bridge(bridge_settings, permissions=(SCANNER, other))


@pytest.fixture
def assoc(server: BridgeServer) -> Iterator[Association]:
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    association = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
    assert association.is_established
    yield association
    association.release()


def _in_progress(entry: WorklistEntry) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    item = Dataset()
    item.StudyInstanceUID = entry.study_instance_uid
    item.AccessionNumber = entry.procedure.accession_number
    item.RequestedProcedureID = entry.requested_procedure_id
    item.ScheduledProcedureStepID = entry.step_id
    ds.ScheduledStepAttributesSequence = [item]
    ds.PatientName = entry.procedure.patient_name
    ds.PatientID = entry.procedure.patient_id
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "SCANNER"
    ds.PerformedProcedureStepStartDate = "20261202"
    ds.PerformedProcedureStepStartTime = "093512"
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "US"
    ds.PerformedSeriesSequence = []
    return ds


def _final(status: str, instances: list[tuple[str, str]], end: str = "094217") -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261202"
    ds.PerformedProcedureStepEndTime = end
    series = Dataset()
    series.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    series.PerformingPhysicianName = ""
    series.ProtocolName = "MBB"
    series.RetrieveAETitle = ""
    series.SeriesDescription = ""
    series.ReferencedImageSequence = []
    for sop_class, uid in instances:
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = uid
        series.ReferencedImageSequence.append(ref)
    ds.PerformedSeriesSequence = [series]
    return ds


def _status(reply: tuple[Dataset | None, Dataset | None]) -> int:
    status, _ = reply
    assert status is not None
    return int(status.Status)


_US_MF = "1.2.840.10008.5.1.4.1.1.3.1"


def test_create_then_complete_stores_times_and_instances(
    archive: Archive, entry: WorklistEntry, assoc: Association
) -> None:
    uid = generate_uid()
    assert _status(assoc.send_n_create(_in_progress(entry), ModalityPerformedProcedureStep, uid)) == 0x0000
    step = get_step(archive.engine, uid)
    assert step.status is StepStatus.IN_PROGRESS and step.entry_pk == entry.pk
    assert step.start == datetime(2026, 12, 2, 9, 35, 12) and step.end is None
    assert archive.worklist.get(entry.pk).status is EntryStatus.IN_PROGRESS
    made = [(_US_MF, "1.2.3.4.1"), (_US_MF, "1.2.3.4.2")]
    assert _status(assoc.send_n_set(_final("COMPLETED", made), ModalityPerformedProcedureStep, uid)) == 0x0000
    done = get_step(archive.engine, uid)
    assert done.status is StepStatus.COMPLETED
    assert done.duration_s == 7 * 60 + 5
    assert [i[2] for i in done.instances] == ["1.2.3.4.1", "1.2.3.4.2"]
    assert archive.worklist.get(entry.pk).status is EntryStatus.COMPLETED
    assert steps_of_entry(archive.engine, entry.pk) == [done]
    # Neither clip arrived: both are a clip the scanner made and never sent.
    assert archive.worklist.unsent_instances(entry.pk) == [(uid, "1.2.3.4.1"), (uid, "1.2.3.4.2")]


def test_discontinued_with_a_reason(archive: Archive, entry: WorklistEntry, assoc: Association) -> None:
    uid = generate_uid()
    assert _status(assoc.send_n_create(_in_progress(entry), ModalityPerformedProcedureStep, uid)) == 0x0000
    stop = _final("DISCONTINUED", [])
    reason = Dataset()
    reason.CodeValue = "110514"
    reason.CodingSchemeDesignator = "DCM"
    reason.CodeMeaning = "Incorrect worklist entry selected"
    stop.PerformedProcedureStepDiscontinuationReasonCodeSequence = [reason]
    assert _status(assoc.send_n_set(stop, ModalityPerformedProcedureStep, uid)) == 0x0000
    step = get_step(archive.engine, uid)
    assert step.status is StepStatus.DISCONTINUED
    assert step.discontinuation is not None
    assert (step.discontinuation.value, step.discontinuation.meaning) == (
        "110514",
        "Incorrect worklist entry selected",
    )
    assert archive.worklist.get(entry.pk).status is EntryStatus.DISCONTINUED


def test_invalid_transitions_are_refused_with_the_standard_statuses(
    archive: Archive, entry: WorklistEntry, assoc: Association
) -> None:
    uid = generate_uid()
    completed = _in_progress(entry)
    completed.PerformedProcedureStepStatus = "COMPLETED"
    assert _status(assoc.send_n_create(completed, ModalityPerformedProcedureStep, uid)) == 0x0106
    no_start = _in_progress(entry)
    del no_start.PerformedProcedureStepStartTime
    assert _status(assoc.send_n_create(no_start, ModalityPerformedProcedureStep, uid)) == 0x0120
    assert _status(assoc.send_n_create(_in_progress(entry), ModalityPerformedProcedureStep, uid)) == 0x0000
    assert _status(assoc.send_n_create(_in_progress(entry), ModalityPerformedProcedureStep, uid)) == 0x0111
    unknown = generate_uid()
    assert (
        _status(assoc.send_n_set(_final("COMPLETED", []), ModalityPerformedProcedureStep, unknown)) == 0x0112
    )
    bad = _final("FINISHED", [])
    assert _status(assoc.send_n_set(bad, ModalityPerformedProcedureStep, uid)) == 0x0106
    no_end = _final("COMPLETED", [])
    del no_end.PerformedProcedureStepEndTime
    assert _status(assoc.send_n_set(no_end, ModalityPerformedProcedureStep, uid)) == 0x0110
    assert get_step(archive.engine, uid).status is StepStatus.IN_PROGRESS  # nothing of the refused N-SETs
    assert _status(assoc.send_n_set(_final("COMPLETED", []), ModalityPerformedProcedureStep, uid)) == 0x0000
    status, _ = assoc.send_n_set(_final("DISCONTINUED", []), ModalityPerformedProcedureStep, uid)
    assert status is not None and int(status.Status) == 0x0110
    assert int(status.ErrorID) == 0xA710  # PS3.4 F.7.2.2: may no longer be updated
    assert "may no longer be updated" in str(status.ErrorComment)
    assert get_step(archive.engine, uid).status is StepStatus.COMPLETED


def test_a_step_without_an_instance_uid_gets_one_and_an_unscheduled_exam_is_kept(
    archive: Archive, entry: WorklistEntry, server: BridgeServer
) -> None:
    received: list[str] = []

    def on_message(
        event: Event,
    ) -> None:  # the N-CREATE-RSP's command set: pynetdicom returns only the status
        uid = getattr(event.message.command_set, "AffectedSOPInstanceUID", None)
        if uid:
            received.append(str(uid))

    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate(
        "127.0.0.1", server.port, ae_title="USARCHIVE", evt_handlers=[(evt.EVT_DIMSE_RECV, on_message)]
    )
    assert assoc.is_established
    unscheduled = _in_progress(entry)
    item = unscheduled.ScheduledStepAttributesSequence[0]
    item.StudyInstanceUID, item.AccessionNumber = "1.2.3.999", ""
    item.RequestedProcedureID, item.ScheduledProcedureStepID = "", ""
    try:
        assert _status(assoc.send_n_create(unscheduled, ModalityPerformedProcedureStep, None)) == 0x0000
    finally:
        assoc.release()
    (uid,) = received
    assert uid.startswith("2.25.")
    step = get_step(archive.engine, uid)
    assert step.entry_pk is None and step.study_instance_uid == "1.2.3.999"
    assert archive.worklist.get(entry.pk).status is EntryStatus.SCHEDULED


def test_an_ae_without_the_mpps_permission_is_refused_the_context(server: BridgeServer) -> None:
    ae = AE(ae_title="STORER")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    association = ae.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
    # Its only context is refused, so there is nothing to associate for (pynetdicom aborts then).
    assert not association.is_established or association.accepted_contexts == []
    if association.is_established:
        association.release()
    scanner = AE(ae_title="SCANNER")
    scanner.add_requested_context(ModalityPerformedProcedureStep)
    allowed = scanner.associate("127.0.0.1", server.port, ae_title="USARCHIVE")
    assert allowed.is_established and len(allowed.accepted_contexts) == 1
    allowed.release()
