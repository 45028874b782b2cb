"""Audit computation on in-memory inputs, checked against scipy and hand-computed values."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest
from audit_cases import START, clip, outcome, study_cohort, study_uid
from scipy import stats as sps

from archive.analysis.audit import AuditConfig, group_procedures, run_audit
from archive.analysis.outcomes.model import EffectivenessCriteria
from archive.model import Side, SpinalLevel, Technique
from archive.timing import unknown_frame_times


def test_study_counts_give_the_papers_chi_square() -> None:
    inputs, outcomes = study_cohort()
    report = run_audit(inputs, outcomes)
    comparison = report.comparison("effective")
    assert comparison is not None and comparison.groups == ("OT", "TT")
    (result,) = comparison.results
    assert result.test == "Pearson χ² test"
    assert result.note == "Pearson χ² without continuity correction"
    assert round(result.statistic, 2) == 5.32
    assert round(result.p_value, 3) == 0.021
    expected = sps.chi2_contingency(np.array([[24, 8], [15, 17]]), correction=False)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    ot, tt = report.group("OT"), report.group("TT")
    assert ot is not None and tt is not None
    assert (ot.effective.count, ot.effective.n) == (24, 32)
    assert (tt.effective.count, tt.effective.n) == (15, 32)


def test_metric_comparison_is_welchs_t_of_scipy() -> None:
    inputs, outcomes = study_cohort()
    report = run_audit(inputs, outcomes)
    name = "tip_to_target_at_injection_start_mm"
    ot = [c.metrics.tip_to_target_at_injection_start_mm for c in inputs if c.technique is Technique.OT]
    tt = [c.metrics.tip_to_target_at_injection_start_mm for c in inputs if c.technique is Technique.TT]
    expected = sps.ttest_ind(ot, tt, equal_var=False)
    comparison = report.comparison(name)
    assert comparison is not None
    welch = comparison.results[0]
    assert welch.test == "Welch's t-test"
    assert welch.statistic == pytest.approx(expected.statistic)
    assert welch.df == pytest.approx(expected.df)
    assert welch.p_value == pytest.approx(expected.pvalue)
    # per level too: every clip is L4, so the L4 comparison equals the overall one
    per_level = report.comparison(name, "L4")
    assert per_level is not None and per_level.results[0].statistic == pytest.approx(expected.statistic)


def test_group_summaries_match_numpy() -> None:
    inputs, outcomes = study_cohort()
    report = run_audit(inputs, outcomes)
    group = report.group("TT", "L4")
    assert group is not None
    angles = np.array([c.metrics.needle_angle_deg for c in inputs if c.technique is Technique.TT])
    summary = group.metrics["needle_angle_deg"]
    assert summary.n == 32
    assert summary.mean == pytest.approx(angles.mean())
    assert summary.sd == pytest.approx(angles.std(ddof=1))
    assert summary.median == pytest.approx(np.median(angles))
    vas = [o.vas_2w for o in outcomes[:32]]
    assert group.outcomes["vas_2w"].mean == pytest.approx(np.mean(vas))
    assert group.rates["spread_covers_target"].count == 32


def test_procedure_time_spans_clips_in_absolute_time() -> None:
    study = study_uid(0)
    first = clip("1.2.3.1", study, level=SpinalLevel.L4, start=START, visible=3, end=12)
    second = clip(
        "1.2.3.2", study, level=SpinalLevel.L5, start=START + dt.timedelta(seconds=200), visible=1, end=18
    )
    (procedure,), notes = group_procedures([second, first])
    assert notes == []
    # first needle visible: 0.3 s after START; last injection end: 200 s + 1.8 s after START
    assert procedure.time_s == pytest.approx(201.5)
    assert procedure.levels == (SpinalLevel.L4, SpinalLevel.L5)
    assert procedure.sop_instance_uids == ("1.2.3.1", "1.2.3.2")
    assert procedure.technique is Technique.OT


def test_procedure_without_content_time_or_events_says_why() -> None:
    study = study_uid(1)
    (undated,), _ = group_procedures([clip("1.2.4.1", study, start=None)])
    assert undated.time_s is None and "Content Date/Time" in (undated.time_note or "")
    (no_end,), _ = group_procedures([clip("1.2.4.2", study, end=None)])
    assert no_end.time_s is None and "injection-end" in (no_end.time_note or "")


def test_procedure_with_an_untimed_clip_has_no_time_and_says_not_assessable() -> None:
    study = study_uid(3)
    timed = clip("1.2.6.1", study, level=SpinalLevel.L4)
    untimed = dataclasses.replace(
        clip("1.2.6.2", study, level=SpinalLevel.L5, start=None),
        frame_times=unknown_frame_times(20),
    )
    (procedure,), _ = group_procedures([timed, untimed])
    assert procedure.time_s is None
    assert "1.2.6.2" in (procedure.time_note or "") and "not assessable" in (procedure.time_note or "")


def test_mixed_techniques_and_missing_side_are_reported() -> None:
    study = study_uid(2)
    inputs = [
        clip("1.2.5.1", study, technique=Technique.OT),
        clip("1.2.5.2", study, technique=Technique.TT, level=SpinalLevel.L5),
        clip("1.2.5.3", study, side=None),
    ]
    procedures, notes = group_procedures(inputs)
    (procedure,) = procedures
    assert procedure.technique is None and procedure.technique_label == "mixed"
    assert "OT, TT" in (procedure.technique_note or "")
    assert any("1.2.5.3" in note for note in notes)


def test_safety_lists_near_misses_breaches_and_adverse_events() -> None:
    study = study_uid(3)
    inputs = [
        clip("1.2.6.1", study, danger_mm=1.5),
        clip("1.2.6.2", study, danger_mm=3.0, level=SpinalLevel.L5),
        clip("1.2.6.3", study, danger_mm=0.0, breach=True, side=Side.LEFT, adverse=("sudden pain",)),
    ]
    outcomes = [outcome(study, Side.RIGHT, effective=False, adverse="nerve irritation")]
    report = run_audit(inputs, outcomes, AuditConfig(danger_margin_mm=2.0))
    assert [s.sop_instance_uid for s in report.safety_clips] == ["1.2.6.3", "1.2.6.1"]
    # frame numbers, 1-based: the breach on frame index 9 is frame 10
    assert report.safety_clips[0].breach and report.safety_clips[0].breach_frames == (10,)
    assert report.safety_clips[0].frame == 10
    assert {a.description for a in report.adverse_events} == {"nerve irritation", "sudden pain"}
    wider = run_audit(inputs, outcomes, AuditConfig(danger_margin_mm=3.0))
    assert len(wider.safety_clips) == 3


def test_effectiveness_thresholds_are_configurable() -> None:
    inputs, outcomes = study_cohort({Technique.OT: (3, 4), Technique.TT: (1, 4)})
    strict = AuditConfig(criteria=EffectivenessCriteria(vas_drop_fraction=0.9, odi_drop_fraction=0.9))
    group = run_audit(inputs, outcomes, strict).group("OT")
    assert group is not None and group.effective.count == 0 and group.effective.n == 4
    default = run_audit(inputs, outcomes).group("OT")
    assert default is not None and default.effective.count == 3
    # small counts: Fisher's exact test replaces χ²
    comparison = run_audit(inputs, outcomes).comparison("effective")
    assert comparison is not None and comparison.results[0].test == "Fisher's exact test"


def test_rm_anova_and_untestable_comparisons_are_in_the_json() -> None:
    inputs, outcomes = study_cohort()
    data = json.loads(json.dumps(run_audit(inputs, outcomes, filters={"status": "approved"}).to_dict()))
    assert data["format"] == "usarchive-audit/2"
    assert data["filters"] == {"status": "approved"}
    assert data["counts"] == {
        "clips": 64,
        "procedures": 64,
        "procedures_with_reviewed_clip": 64,
        "outcomes": 64,
    }
    vas = next(c for c in data["comparisons"] if c["variable"] == "vas_over_time" and c["scope"] == "all")
    assert [r["effect"] for r in vas["results"]] == ["time", "group", "time × group"]
    assert all(len(r["df"]) == 2 and r["p_value"] is not None for r in vas["results"])
    # no danger structure marked anywhere: the comparison is kept with its reason
    danger = next(c for c in data["comparisons"] if c["variable"] == "min_tip_to_danger_mm")
    assert danger["results"] == [] and "at least 2 values" in danger["error"]
    times = next(p["time_s"] for p in data["procedures"])
    assert isinstance(times, float)


def test_a_group_of_one_is_not_computed_and_says_why() -> None:
    inputs = [clip(f"1.2.9.{i}", study_uid(i), technique=Technique.TT) for i in range(4)]
    inputs.append(clip("1.2.9.9", study_uid(9), technique=Technique.OT))
    outcomes = [outcome(study_uid(i), Side.RIGHT, effective=i % 2 == 0) for i in (0, 1, 2, 3, 9)]
    report = run_audit(inputs, outcomes)
    effective = report.comparison("effective")
    assert effective is not None and effective.results == ()
    assert effective.error == (
        "not computed: each group needs at least 2 procedures with an assessable outcome, "
        "but there are OT 1, TT 4"
    )
    tip = report.comparison("tip_to_target_at_injection_start_mm")
    assert tip is not None and tip.results == () and "OT 1, TT 4" in str(tip.error)


def test_holm_column_and_planned_family() -> None:
    inputs, outcomes = study_cohort()
    report = run_audit(inputs, outcomes)
    planned = [c for c in report.comparisons if c.planned]
    assert {c.variable for c in planned} >= {"effective", "procedure_time_s", "vas_over_time"}
    assert all(c.scope == "all" and set(c.groups) == {"OT", "TT"} for c in planned)
    from archive.analysis.statistics import holm

    for family in (planned, [c for c in report.comparisons if not c.planned]):
        raw = [r.p_value for c in family for r in c.results]
        adjusted = [p for c in family for p in c.p_holm]
        assert adjusted == pytest.approx(holm(raw))
        assert all(a >= r for a, r in zip(adjusted, raw, strict=True))


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # identical made-up values
def test_approach_splits_clip_metrics_but_is_no_technique_group() -> None:
    from archive.model import Approach

    inputs = [
        clip(
            "1.2.7.1", study_uid(1), technique=Technique.TT, level=SpinalLevel.L4, approach=Approach.IN_PLANE
        ),
        clip(
            "1.2.7.2",
            study_uid(1),
            technique=Technique.TT,
            level=SpinalLevel.L5,
            approach=Approach.OUT_OF_PLANE,
        ),
        clip("1.2.7.3", study_uid(2), technique=Technique.OT, approach=Approach.IN_PLANE, tip_mm=2.0),
        clip("1.2.7.4", study_uid(3), technique=Technique.OT, approach=Approach.IN_PLANE, tip_mm=4.0),
    ]
    report = run_audit(inputs, [])  # a descriptive split: no test needs more than these four clips
    assert {g.technique for g in report.groups} == {"OT", "TT"}
    assert all(set(c.groups) == {"OT", "TT"} for c in report.comparisons)
    split = {(g.technique, g.approach): g for g in report.approach_groups}
    assert set(split) == {("TT", "in-plane"), ("TT", "out-of-plane"), ("OT", "in-plane")}
    assert split[("OT", "in-plane")].n_clips == 2
    assert split[("OT", "in-plane")].metrics["tip_to_target_at_injection_start_mm"].mean == 3.0
    vas = report.comparison("vas_over_time")
    assert vas is not None and vas.groups == ("OT", "TT")
