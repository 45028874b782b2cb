"""The phantom writes a worklist entry as a scanner does, and dciodvfy finds no error in the clip."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from archive.model import Approach, ProcedureType, Side, SpinalLevel, Technique
from archive.phantom.generate import write_clip
from archive.phantom.spec import ClipSpec
from archive.worklist.classify import identifiers_of
from archive.worklist.model import EntryStatus, ScheduledProcedure, WorklistEntry

ENTRY = WorklistEntry(
    pk=7,
    procedure=ScheduledProcedure(
        patient_id="PW7",
        patient_name="张^伟",
        birth_date=None,
        sex="M",
        accession_number="ACC7",
        start=datetime(2026, 12, 2, 9, 0),
        station_aet="SCANNER",
        modality="US",
        procedure_type=ProcedureType.MEDIAL_BRANCH_BLOCK,
        levels=(SpinalLevel.L4, SpinalLevel.L5),
        side=Side.LEFT,
        technique=Technique.TT,
        approach=Approach.IN_PLANE,
    ),
    study_instance_uid="2.25.123456789",
    requested_procedure_id="RP0123456789ABCD",
    step_id="SPS0123456789AB",
    status=EntryStatus.SCHEDULED,
    created_at=datetime(2026, 12, 1),
    updated_at=datetime(2026, 12, 1),
)


def test_the_clip_carries_the_entry_and_validates(tmp_path: Path) -> None:
    spec = ClipSpec(level=SpinalLevel.L4, side=Side.LEFT, frames=8, rows=160, cols=200, worklist=ENTRY)
    clip, _ = write_clip(spec, tmp_path, seed=9)
    ds = pydicom.dcmread(clip)
    assert ds.StudyInstanceUID == ENTRY.study_instance_uid and ds.AccessionNumber == "ACC7"
    assert str(ds.PatientName) == "张^伟" and ds.SpecificCharacterSet == "ISO_IR 192"
    (item,) = ds.RequestAttributesSequence
    assert isinstance(item, Dataset)
    assert (item.RequestedProcedureID, item.ScheduledProcedureStepID) == (
        ENTRY.requested_procedure_id,
        ENTRY.step_id,
    )
    assert item.ScheduledProcedureStepDescription == "L4+L5 MBB left, TT (two punctures), in-plane"
    assert [c.CodeValue for c in item.ScheduledProtocolCodeSequence] == [
        "MBB", "11994002", "49668003", "7771000", "TT", "IN-PLANE"
    ]  # fmt: skip
    ids = identifiers_of(ds)
    assert ids.step_ids == (ENTRY.step_id,) and ids.accession_numbers == ("ACC7",)
    result = subprocess.run(["dciodvfy", str(clip)], capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert "US" in output, output
    assert [line for line in output.splitlines() if line.startswith("Error")] == [], output
