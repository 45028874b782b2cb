"""Procedure times without annotations: the clip span, labelled, and compared by technique.

An archive of rule-tagged clips, none reviewed, gives each procedure the span
from its earliest clip's first frame to its latest clip's last frame (Content
Date/Time + frame offsets), checked against a hand computation from the clips'
Content Time and Frame Time; the TT vs OT comparison of those times is
computed and matches scipy. A procedure whose reviewed clips mark events is
timed by the events, and untimed or undated clips leave the span not
assessable with the reason.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy.stats import ttest_ind

from archive.analysis.audit import group_procedures
from archive.analysis.audit.model import TIME_FROM_CLIP_SPAN, TIME_FROM_EVENTS, ArchivedClip, CaseIds
from archive.archive import Archive
from archive.cli.main import main
from archive.ingest import Origin
from archive.model import Side, SpinalLevel, Technique
from archive.settings import ArchiveSettings
from archive.timing import unknown_frame_times
from tests.archive.analysis.audit.audit_cases import START, clip, frame_times, study_uid
from tests.archive.ingest_helpers import part10_bytes, us_dataset

FRAME_TIME_MS = 33.3  # us_dataset's Frame Time
#: Per technique, per procedure: two clips as (Content Time, number of frames).
PLAN: dict[str, list[tuple[tuple[str, int], tuple[str, int]]]] = {
    "TT": [
        (("101600", 4), ("102010.5", 6)),
        (("090000", 3), ("090730", 5)),
        (("140512.25", 2), ("141100", 9)),
    ],
    "OT": [
        (("101600", 3), ("101815", 4)),
        (("083000", 5), ("083240.75", 2)),
        (("120000", 7), ("120310", 3)),
    ],
}


def _seconds(content_time: str) -> float:
    """Seconds since midnight of a DICOM TM ``HHMMSS[.frac]``, by hand."""
    return int(content_time[:2]) * 3600 + int(content_time[2:4]) * 60 + float(content_time[4:])


def _hand_span(clips: tuple[tuple[str, int], ...]) -> float:
    firsts = [_seconds(t) for t, _ in clips]
    lasts = [_seconds(t) + (n - 1) * FRAME_TIME_MS / 1000 for t, n in clips]
    return max(lasts) - min(firsts)


def _build(data_dir: Path, db_url: str) -> dict[str, tuple[str, float]]:
    """Two unreviewed clips per study; study UID → (technique, hand-computed span in s)."""
    studies: dict[str, tuple[str, float]] = {}
    with Archive.open(ArchiveSettings(data_dir, db_url)) as archive:
        for technique, procedures in PLAN.items():
            for clips in procedures:
                seed = len(studies)
                study = f"1.2.826.0.1.3680043.10.543.9{seed}"
                for k, (content_time, frames) in enumerate(clips):
                    ds = us_dataset(
                        frames=frames,
                        description=f"L4/5 MBB right {technique}",
                        patient_id=f"P{seed:03d}",
                        study_uid=study,
                        study_date=date(2021, 5, 1 + seed),
                        seed=10 * seed + k,
                        AccessionNumber=f"A{seed:04d}",
                    )
                    ds.ContentTime = content_time
                    archive.ingest(part10_bytes(ds), origin=Origin("file"))
                studies[study] = (technique, _hand_span(clips))
    return studies


def _cli(data_dir: Path, db_url: str, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["--data-dir", str(data_dir), "--db", db_url, *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_times_per_technique_come_from_the_clip_span_without_annotations(tmp_path: Path, db_url: str) -> None:
    data_dir = tmp_path / "data"
    studies = _build(data_dir, db_url)
    html, csv_path = tmp_path / "audit.html", tmp_path / "audit.csv"
    report = json.loads(
        _cli(data_dir, db_url, "--json", "audit", "--html", str(html), "--csv", str(csv_path))
    )
    assert report["counts"]["clips"] == 0, "no clip is reviewed"
    assert len(report["procedures"]) == 6
    by_technique: dict[str, list[float]] = {"TT": [], "OT": []}
    for procedure in report["procedures"]:
        technique, span = studies[procedure["study_uid"]]
        assert procedure["technique"] == technique
        assert procedure["time_source"] == TIME_FROM_CLIP_SPAN
        assert procedure["time_note"] is None
        assert procedure["time_s"] == pytest.approx(span, abs=1e-6)
        by_technique[technique].append(span)
    groups = {(g["technique"], g["level"]): g for g in report["groups"]}
    for technique, spans in by_technique.items():
        group = groups[(technique, "all")]
        assert group["procedure_time_s"]["n"] == 3
        assert group["procedure_time_s"]["mean"] == pytest.approx(sum(spans) / 3, abs=1e-6)
        assert group["procedure_time_sources"] == {TIME_FROM_CLIP_SPAN: 3}
    assert report["operators"] and all(
        o["procedure_time_sources"] == {TIME_FROM_CLIP_SPAN: o["procedures"]} for o in report["operators"]
    )
    time = next(
        c for c in report["comparisons"] if c["variable"] == "procedure_time_s" and c["scope"] == "all"
    )
    assert time["planned"] is True and time["error"] is None
    welch = time["results"][0]
    assert welch["test"] == "Welch's t-test"
    expected = ttest_ind(by_technique["OT"], by_technique["TT"], equal_var=False)
    assert welch["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert abs(welch["statistic"]) == pytest.approx(abs(expected.statistic), rel=1e-9)
    # The source is named wherever the time is shown: HTML, both CSVs, terminal.
    assert html.read_text("utf-8").count(TIME_FROM_CLIP_SPAN) >= 6
    rows = list(csv.DictReader(io.StringIO(csv_path.with_name("audit-procedures.csv").read_text("utf-8"))))
    assert {row["time_source"] for row in rows} == {TIME_FROM_CLIP_SPAN}
    group_rows = list(csv.DictReader(io.StringIO(csv_path.read_text("utf-8"))))
    time_rows = [r for r in group_rows if r["variable"] == "procedure_time_s"]
    assert time_rows and all(r["source"] == f"{TIME_FROM_CLIP_SPAN}: 3" for r in time_rows)
    assert TIME_FROM_CLIP_SPAN in " ".join(_cli(data_dir, db_url, "audit").split())


def _archived(uid: str, study: str, start: dt.datetime | None, n_frames: int = 20) -> ArchivedClip:
    return ArchivedClip(
        sop_instance_uid=uid,
        study_uid=study,
        side=Side.RIGHT,
        levels=(SpinalLevel.L5,),
        technique=Technique.OT,
        approach=None,
        ids=CaseIds(),
        frame_times=frame_times(start, n_frames),
    )


def test_events_win_over_the_clip_span_when_marked() -> None:
    study = study_uid(40)
    reviewed = clip("1.2.9.1", study, start=START, visible=3, end=12)
    # An unreviewed clip of the same procedure, 100 s later, would lengthen the span.
    later = _archived("1.2.9.2", study, START + dt.timedelta(seconds=100))
    (procedure,), _ = group_procedures([reviewed], [later])
    assert procedure.time_source == TIME_FROM_EVENTS
    assert procedure.time_s == pytest.approx(0.9)  # frames 3 → 12 at 100 ms
    # Without events marked, the same procedure gets the span: 0 s → 100 s + 19 × 100 ms.
    unmarked = clip("1.2.9.1", study, start=START, visible=None, end=None)
    (spanned,), _ = group_procedures([unmarked], [later])
    assert spanned.time_source == TIME_FROM_CLIP_SPAN
    assert spanned.time_s == pytest.approx(101.9)


def test_untimed_or_undated_clips_leave_the_span_not_assessable() -> None:
    study = study_uid(41)
    dated = _archived("1.2.9.3", study, START)
    undated = _archived("1.2.9.4", study, None)
    (procedure,), _ = group_procedures([], [dated, undated])
    assert procedure.time_s is None and procedure.time_source is None
    assert "Content Date/Time in clip 1.2.9.4" in (procedure.time_note or "")
    untimed = dataclasses.replace(undated, frame_times=unknown_frame_times(20))
    (procedure,), _ = group_procedures([], [dated, untimed])
    assert procedure.time_s is None
    assert "1.2.9.4" in (procedure.time_note or "") and "not assessable" in (procedure.time_note or "")
    unread = dataclasses.replace(undated, frame_times=None)
    (procedure,), _ = group_procedures([], [dated, unread])
    assert procedure.time_s is None and "unreadable" in (procedure.time_note or "")
