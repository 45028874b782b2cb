"""Procedure time from MPPS in the audit: an MPPS-timed synthetic cohort reproduces the seed's times.

64 patients, one side each, half OT and half TT (as the seed study): each is
scheduled, its clip (a short phantom carrying the worklist entry) ingested,
and its MPPS step created and completed with a start and end drawn from the
study's figures (OT 306 ± 25 s, TT 485 ± 56 s, :data:`PROCEDURE_TIME_S` of
the phantom cohort). The clips themselves last under a second, so a time
near 300 s can only come from the MPPS; the audit names that source. SQLite
and PostgreSQL.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from archive.analysis.audit.compute import run_audit
from archive.analysis.audit.gather import gather_inputs
from archive.analysis.audit.model import TIME_FROM_CLIP_SPAN, TIME_FROM_MPPS
from archive.archive import Archive
from archive.index.queries import Query
from archive.ingest import IngestOutcome, Origin
from archive.model import ProcedureType, Side, SpinalLevel, Technique
from archive.phantom.cohort import PROCEDURE_TIME_S
from archive.phantom.generate import write_clip
from archive.phantom.spec import ClipSpec
from archive.settings import ArchiveSettings
from archive.worklist.model import ScheduledProcedure
from archive.worklist.steps import create_step, set_step

N_PATIENTS = 64
DAY = datetime(2026, 12, 2, 8, 0, 0)


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as opened:
        yield opened


def _step(entry_study: str, step_id: str, start: datetime) -> Dataset:
    ds = Dataset()
    item = Dataset()
    item.StudyInstanceUID = entry_study
    item.ScheduledProcedureStepID = step_id
    ds.ScheduledStepAttributesSequence = [item]
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepStartDate = start.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = start.strftime("%H%M%S.%f")
    return ds


def _end(end: datetime) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepEndDate = end.strftime("%Y%m%d")
    ds.PerformedProcedureStepEndTime = end.strftime("%H%M%S.%f")
    return ds


def test_the_audit_times_procedures_from_mpps_and_reproduces_the_seed(
    archive: Archive, tmp_path: Path
) -> None:
    rng = np.random.default_rng(20261202)
    order = rng.permutation(
        [Technique.OT.value] * (N_PATIENTS // 2) + [Technique.TT.value] * (N_PATIENTS // 2)
    )
    techniques = [Technique(str(value)) for value in order]
    drawn: dict[Technique, list[float]] = {Technique.OT: [], Technique.TT: []}
    for index, technique in enumerate(techniques):
        start = DAY + timedelta(minutes=15 * index)
        (entry,) = archive.worklist.schedule(
            [
                ScheduledProcedure(
                    patient_id=f"C{index:03d}",
                    patient_name=f"COHORT^{index:03d}",
                    birth_date=None,
                    sex="",
                    accession_number=f"ACC{index:03d}",
                    start=start,
                    station_aet="SCANNER",
                    modality="US",
                    procedure_type=ProcedureType.MEDIAL_BRANCH_BLOCK,
                    levels=(SpinalLevel.L4, SpinalLevel.L5),
                    side=Side.RIGHT if index % 2 else Side.LEFT,
                    technique=technique,
                )
            ]
        )
        spec = ClipSpec(
            level=SpinalLevel.L4, frames=8, rows=160, cols=200, worklist=entry, study_date=start.date()
        )
        clip, _ = write_clip(spec, tmp_path / "clips", seed=index + 1)
        result = archive.ingest(clip, origin=Origin("file", path=str(clip)))
        assert result.outcome is IngestOutcome.STORED, result
        mean, sd = PROCEDURE_TIME_S[technique]
        seconds = round(float(rng.normal(mean, sd)), 3)
        drawn[technique].append(seconds)
        uid = f"2.25.{index + 1000}"
        began = start + timedelta(minutes=2)
        create_step(archive.engine, uid, _step(entry.study_instance_uid, entry.step_id, began))
        set_step(archive.engine, uid, _end(began + timedelta(seconds=seconds)))
    gathered = gather_inputs(archive, Query(limit=10_000), status=None)
    assert len(gathered.step_times) == N_PATIENTS
    report = run_audit(
        gathered.inputs, gathered.outcomes, archived=gathered.archived, step_times=gathered.step_times
    )
    assert len(report.procedures) == N_PATIENTS
    assert {p.time_source for p in report.procedures} == {TIME_FROM_MPPS}
    times = {t: [p.time_s for p in report.procedures if p.technique is t] for t in drawn}
    for technique, values in drawn.items():
        found = sorted(float(v) for v in times[technique] if v is not None)
        assert found == pytest.approx(sorted(values), abs=1e-3)  # each procedure's MPPS time, to the ms
        mean, sd = PROCEDURE_TIME_S[technique]
        assert abs(statistics.mean(found) - mean) < 3 * sd / len(found) ** 0.5  # the seed's mean, within 3 SE
        assert 0.6 * sd < statistics.stdev(found) < 1.5 * sd
    assert statistics.mean(times[Technique.TT]) - statistics.mean(times[Technique.OT]) > 120  # 485 vs 306 s
    assert any(TIME_FROM_MPPS in note for note in report.notes)


def test_without_mpps_the_clip_span_is_used(archive: Archive, tmp_path: Path) -> None:
    spec = ClipSpec(level=SpinalLevel.L4, frames=8, rows=160, cols=200)
    clip, _ = write_clip(spec, tmp_path / "clips", seed=3)
    archive.ingest(clip, origin=Origin("file", path=str(clip)))
    gathered = gather_inputs(archive, Query(limit=100), status=None)
    assert gathered.step_times == {}
    report = run_audit(
        gathered.inputs, gathered.outcomes, archived=gathered.archived, step_times=gathered.step_times
    )
    assert [p.time_source for p in report.procedures] == [TIME_FROM_CLIP_SPAN]


def test_verify_lists_instances_a_completed_mpps_made_that_never_arrived(
    archive: Archive, tmp_path: Path
) -> None:
    from archive.verify import verify

    spec = ClipSpec(level=SpinalLevel.L4, frames=8, rows=160, cols=200)
    clip, _ = write_clip(spec, tmp_path / "clips", seed=4)
    arrived = str(archive.ingest(clip, origin=Origin("file", path=str(clip))).sop_instance_uid)
    step = _step("1.2.3", "SPS1", DAY)
    create_step(archive.engine, "2.25.77", step)
    done = _end(DAY + timedelta(seconds=300))
    series = Dataset()
    series.SeriesInstanceUID = "1.2.3.1"
    refs = []
    for uid in (arrived, "1.2.3.1.99"):
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
        ref.ReferencedSOPInstanceUID = uid
        refs.append(ref)
    series.ReferencedImageSequence = refs
    done.PerformedSeriesSequence = [series]
    set_step(archive.engine, "2.25.77", done)
    report = verify(archive)
    assert report.not_received == [{"mpps": "2.25.77", "sop_instance_uid": "1.2.3.1.99"}]
    assert report.ok  # listed for a person; the store is not at fault
