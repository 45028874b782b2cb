"""Scheduled procedures shared by the worklist tests."""

from __future__ import annotations

from datetime import date, datetime

from archive.model import Approach, ProcedureType, Side, SpinalLevel, Technique
from archive.worklist.model import ScheduledProcedure


def procedure(
    *,
    patient_id: str = "P001",
    patient_name: str = "DOE^JANE",
    accession: str = "ACC001",
    start: datetime | None = None,
    station: str = "SCANNER1",
    levels: tuple[SpinalLevel, ...] = (SpinalLevel.L4, SpinalLevel.L5),
    side: Side = Side.RIGHT,
    technique: Technique = Technique.OT,
    approach: Approach = Approach.UNKNOWN,
    modality: str = "US",
) -> ScheduledProcedure:
    """A medial branch block of ``levels`` on ``side`` (defaults: L4+L5 right, OT)."""
    return ScheduledProcedure(
        patient_id=patient_id,
        patient_name=patient_name,
        birth_date=date(1961, 3, 4),
        sex="F",
        accession_number=accession,
        start=start or datetime.now().replace(microsecond=0),
        station_aet=station,
        modality=modality,
        procedure_type=ProcedureType.MEDIAL_BRANCH_BLOCK,
        levels=levels,
        side=side,
        technique=technique,
        approach=approach,
        physician="SMITH^ANNA",
    )
