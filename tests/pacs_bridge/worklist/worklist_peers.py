"""Peers of the worklist tests: dcmtk ``findscu -W`` as the scanner, read back what it received."""

from __future__ import annotations

import dataclasses
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from archive.model import ProcedureType, Side, SpinalLevel, Technique
from archive.worklist.model import ScheduledProcedure
from pacs_bridge.peers import AllowedPeer, PeerPermissions, Permission

#: The scanner: it stores, queries the worklist and sends MPPS.
SCANNER = PeerPermissions(
    AllowedPeer("SCANNER"),
    frozenset({Permission.ECHO, Permission.STORE, Permission.WORKLIST, Permission.MPPS}),
)


def scheduled(**changes: object) -> ScheduledProcedure:
    """A medial branch block, L4+L5 right, OT, for ``SCANNER`` now; ``changes`` override."""
    base = ScheduledProcedure(
        patient_id="P1",
        patient_name="DOE^JANE",
        birth_date=None,
        sex="F",
        accession_number="ACC1",
        start=datetime.now().replace(microsecond=0),
        station_aet="SCANNER",
        modality="US",
        procedure_type=ProcedureType.MEDIAL_BRANCH_BLOCK,
        levels=(SpinalLevel.L4, SpinalLevel.L5),
        side=Side.RIGHT,
        technique=Technique.OT,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class WorklistResult:
    """What one ``findscu -W`` run received."""

    process: subprocess.CompletedProcess[str]
    responses: list[Dataset]

    @property
    def output(self) -> str:
        return self.process.stdout + self.process.stderr

    @property
    def ok(self) -> bool:
        return self.process.returncode == 0 and "E: " not in self.output

    @property
    def accessions(self) -> list[str]:
        assert self.ok, self.output
        return [str(ds.AccessionNumber) for ds in self.responses]


def mwl_find(
    port: int,
    keys: list[str],
    out_dir: Path,
    *,
    query_file: Path | None = None,
    calling: str = "SCANNER",
) -> WorklistResult:
    """Run ``findscu -W`` against ``127.0.0.1:port`` and read every response (``-X``) back in order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"run{len(list(out_dir.iterdir())):03d}"
    target.mkdir()
    args = ["findscu", "-v", "-W", "-aet", calling, "-aec", "USARCHIVE", "-X", "-od", str(target)]
    for key in keys:
        args += ["-k", key]
    args += ["127.0.0.1", str(port)]
    if query_file is not None:
        args.append(str(query_file))
    process = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=60, check=False)
    responses = [pydicom.dcmread(path) for path in sorted(target.glob("rsp*.dcm"))]
    return WorklistResult(process, responses)


#: Return keys a scanner asks for (IHE Scheduled Workflow, RAD-5), empty: ``-k`` arguments.
RETURN_KEYS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyInstanceUID",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepSequence[0].Modality",
    "ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
    "ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence",
]


def with_value(keyword: str, value: str) -> list[str]:
    """:data:`RETURN_KEYS` with ``keyword`` given ``value``."""
    return [f"{key}={value}" if key == keyword else key for key in RETURN_KEYS]
