"""The audit computation: clip inputs and outcomes in, an :class:`AuditReport` out (pure).

Groups are technique × level (plus "all" levels per technique). Comparisons
between techniques, over all levels and per level: Welch's t-test (with
Mann–Whitney U when skewed) for every numeric metric, outcome score and the
procedure time; Pearson χ² without continuity correction (Fisher's exact test
when an expected count is below 5) for effectiveness and yes/no metrics; a
mixed-design repeated-measures ANOVA for VAS and ODI over (before, 1 h,
2 weeks) × technique. A test that cannot be computed is kept with the reason.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from archive.audit.model import (
    ALL_LEVELS,
    MIXED_TECHNIQUE,
    NUMERIC_METRICS,
    OUTCOME_SCORES,
    RATE_METRICS,
    TIME_POINTS,
    AdverseEventEntry,
    AuditConfig,
    AuditReport,
    ClipAuditInput,
    ClipRow,
    Comparison,
    GroupResult,
    OutcomeRow,
    Procedure,
    Rate,
    SafetyClip,
)
from archive.audit.procedures import group_procedures
from archive.errors import StatisticsError
from archive.metrics.clip import to_plain
from archive.model import Side, Technique
from archive.outcomes import Outcome, is_effective
from archive.stats import LongRow, TestResult, compare_means, compare_rates, describe, rm_anova

logger = logging.getLogger(__name__)

#: Comparison variable names besides the metric and score names.
PROCEDURE_TIME = "procedure_time_s"
EFFECTIVE = "effective"
VAS_OVER_TIME = "vas_over_time"
ODI_OVER_TIME = "odi_over_time"


def technique_label(technique: Technique | None) -> str:
    """The group label of a clip's technique: its value, or ``"unknown"``."""
    return technique.value if technique is not None else Technique.UNKNOWN.value


class _Scope:
    """The clips and procedures of one technique in one scope (all levels or one level)."""

    def __init__(self, clips: list[ClipAuditInput], procedures: list[tuple[Procedure, Outcome | None]]):
        self.clips = clips
        self.procedures = procedures

    def metric(self, name: str) -> list[float | None]:
        return [getattr(c.metrics, name) for c in self.clips]

    def flags(self, name: str) -> list[bool | None]:
        return [getattr(c.metrics, name) for c in self.clips]

    def scores(self, name: str) -> list[float | None]:
        return [getattr(o, name) for _, o in self.procedures if o is not None]

    def times(self) -> list[float | None]:
        return [p.time_s for p, _ in self.procedures]


def _rate(flags: Iterable[bool | None]) -> Rate:
    values = list(flags)
    assessed = [v for v in values if v is not None]
    return Rate(count=sum(assessed), n=len(assessed), not_assessable=len(values) - len(assessed))


def _group(technique: str, level: str, scope: _Scope, config: AuditConfig) -> GroupResult:
    effective = _rate(is_effective(o, config.criteria) if o else None for _, o in scope.procedures)
    return GroupResult(
        technique=technique,
        level=level,
        n_clips=len(scope.clips),
        n_procedures=len(scope.procedures),
        metrics={name: describe(scope.metric(name)) for name in NUMERIC_METRICS},
        rates={name: _rate(scope.flags(name)) for name in RATE_METRICS},
        outcomes={name: describe(scope.scores(name)) for name in OUTCOME_SCORES},
        effective=effective,
        procedure_time_s=describe(scope.times()),
    )


def _attempt(
    scope: str, variable: str, groups: tuple[str, ...], test: Callable[[], list[TestResult]]
) -> Comparison:
    try:
        return Comparison(scope, variable, groups, tuple(test()))
    except StatisticsError as exc:
        logger.debug("audit: %s %s %s not computed: %s", scope, variable, groups, exc)
        return Comparison(scope, variable, groups, (), str(exc))


def _rates_test(a: Rate, b: Rate) -> Callable[[], list[TestResult]]:
    return lambda: [compare_rates(a.count, a.n, b.count, b.n)]


def _pair_comparisons(
    scope_name: str, a_name: str, a: _Scope, b_name: str, b: _Scope, config: AuditConfig
) -> list[Comparison]:
    pair = (a_name, b_name)
    found: list[Comparison] = []
    for name in NUMERIC_METRICS:
        x, y = a.metric(name), b.metric(name)
        found.append(_attempt(scope_name, name, pair, functools.partial(compare_means, x, y)))
    for name in RATE_METRICS:
        found.append(
            _attempt(scope_name, name, pair, _rates_test(_rate(a.flags(name)), _rate(b.flags(name))))
        )
    found.append(_attempt(scope_name, PROCEDURE_TIME, pair, lambda: compare_means(a.times(), b.times())))
    eff_a = _rate(is_effective(o, config.criteria) if o else None for _, o in a.procedures)
    eff_b = _rate(is_effective(o, config.criteria) if o else None for _, o in b.procedures)
    found.append(_attempt(scope_name, EFFECTIVE, pair, _rates_test(eff_a, eff_b)))
    for name in OUTCOME_SCORES:
        x, y = a.scores(name), b.scores(name)
        found.append(_attempt(scope_name, name, pair, functools.partial(compare_means, x, y)))
    return found


def _long_table(score: str, scopes: Mapping[str, _Scope]) -> list[LongRow]:
    rows: list[LongRow] = []
    for technique, scope in scopes.items():
        for procedure, outcome in scope.procedures:
            if outcome is None:
                continue
            subject = f"{procedure.study_uid}/{procedure.side.value}"
            for time in TIME_POINTS:
                rows.append(LongRow(subject, technique, time, getattr(outcome, f"{score}_{time}")))
    return rows


def _scope_comparisons(
    scope_name: str, scopes: Mapping[str, _Scope], config: AuditConfig
) -> list[Comparison]:
    names = sorted(scopes)
    found: list[Comparison] = []
    for a_name, b_name in itertools.combinations(names, 2):
        found += _pair_comparisons(scope_name, a_name, scopes[a_name], b_name, scopes[b_name], config)
    if len(names) >= 2:
        for variable, score in ((VAS_OVER_TIME, "vas"), (ODI_OVER_TIME, "odi")):
            table = _long_table(score, scopes)
            found.append(_attempt(scope_name, variable, tuple(names), functools.partial(rm_anova, table)))
    return found


def _safety(inputs: Sequence[ClipAuditInput], config: AuditConfig) -> list[SafetyClip]:
    found: list[SafetyClip] = []
    for item in inputs:
        m = item.metrics
        near = m.min_tip_to_danger_mm is not None and m.min_tip_to_danger_mm <= config.danger_margin_mm
        if not (near or m.breach):
            continue
        found.append(
            SafetyClip(
                sop_instance_uid=item.sop_instance_uid,
                study_uid=item.study_uid,
                reviewer=item.reviewer,
                technique=technique_label(item.technique),
                levels=tuple(lv.value for lv in item.levels),
                min_tip_to_danger_mm=m.min_tip_to_danger_mm,
                danger_class=m.min_tip_to_danger_class,
                # frame numbers, 1-based, as the review widget and the overlay show them
                frame=None if m.min_tip_to_danger_frame is None else m.min_tip_to_danger_frame + 1,
                breach=bool(m.breach),
                breach_frames=tuple(sorted({b.frame + 1 for b in m.breaches})),
            )
        )
    found.sort(key=lambda s: (not s.breach, s.min_tip_to_danger_mm or 0.0, s.sop_instance_uid, s.reviewer))
    return found


def _adverse_events(
    inputs: Sequence[ClipAuditInput], procedures: Sequence[tuple[Procedure, Outcome | None]]
) -> list[AdverseEventEntry]:
    found = [
        AdverseEventEntry(p.study_uid, p.side.value, p.technique_label, o.adverse_event, "outcome")
        for p, o in procedures
        if o is not None and o.adverse_event
    ]
    for item in inputs:
        for note in item.adverse_events:
            side = item.side.value if item.side else None
            found.append(
                AdverseEventEntry(
                    item.study_uid,
                    side,
                    technique_label(item.technique),
                    note,
                    f"clip annotation by {item.reviewer}",
                    item.sop_instance_uid,
                )
            )
    return found


def _clip_row(item: ClipAuditInput) -> ClipRow:
    metrics = {name: to_plain(getattr(item.metrics, name)) for name in (*NUMERIC_METRICS, *RATE_METRICS)}
    return ClipRow(
        sop_instance_uid=item.sop_instance_uid,
        study_uid=item.study_uid,
        side=item.side.value if item.side else None,
        levels=tuple(lv.value for lv in item.levels),
        technique=technique_label(item.technique),
        reviewer=item.reviewer,
        status=item.status.value,
        metrics=metrics,
    )


def run_audit(
    inputs: Sequence[ClipAuditInput],
    outcomes: Iterable[Outcome],
    config: AuditConfig | None = None,
    filters: Mapping[str, Any] | None = None,
) -> AuditReport:
    """Audit clips and their procedures' outcomes, grouped by technique × level.

    Parameters
    ----------
    inputs : sequence of ClipAuditInput
        One entry per (clip, reviewer) to audit, already filtered.
    outcomes : iterable of Outcome
        Outcomes by (study, side); those of procedures not among ``inputs``
        are ignored.
    config : AuditConfig, optional
        Danger margin and effectiveness criteria (defaults: 2 mm, VAS ≥ 50 %
        and ODI ≥ 40 %).
    filters : mapping, optional
        The filters that selected ``inputs``, recorded in the report as given.

    Returns
    -------
    AuditReport
        Groups, comparisons, safety section, procedures, outcomes and clips.
    """
    config = config if config is not None else AuditConfig()
    procedures, notes = group_procedures(inputs)
    by_key: dict[tuple[str, Side], Outcome] = {(o.study_uid, o.side): o for o in outcomes}
    paired = [(p, by_key.get((p.study_uid, p.side))) for p in procedures]
    missing = sum(1 for _, o in paired if o is None)
    if missing:
        notes.append(f"{missing} of {len(paired)} procedures have no outcome recorded")

    techniques = sorted(
        {technique_label(c.technique) for c in inputs} | {p.technique_label for p in procedures}
    )
    groups: list[GroupResult] = []
    scopes_by_level: dict[str, dict[str, _Scope]] = {}
    for technique in techniques:
        clips = [c for c in inputs if technique_label(c.technique) == technique]
        procs = [(p, o) for p, o in paired if p.technique_label == technique]
        levels = sorted(
            {lv for c in clips for lv in c.levels} | {lv for p, _ in procs for lv in p.levels},
            key=lambda lv: lv.ordinal,
        )
        scopes = {ALL_LEVELS: _Scope(clips, procs)}
        for level in levels:
            scopes[level.value] = _Scope(
                [c for c in clips if level in c.levels], [(p, o) for p, o in procs if level in p.levels]
            )
        for level_name, scope in scopes.items():
            groups.append(_group(technique, level_name, scope, config))
            if technique not in (MIXED_TECHNIQUE, Technique.UNKNOWN.value):
                scopes_by_level.setdefault(level_name, {})[technique] = scope

    comparisons: list[Comparison] = []
    for level_name, scopes in scopes_by_level.items():
        if len(scopes) >= 2:
            comparisons += _scope_comparisons(level_name, scopes, config)

    logger.info(
        "audit: %d clip inputs, %d procedures, %d groups, %d comparisons",
        len(inputs),
        len(procedures),
        len(groups),
        len(comparisons),
    )
    return AuditReport(
        config=config,
        filters=dict(filters or {}),
        groups=tuple(groups),
        comparisons=tuple(comparisons),
        safety_clips=tuple(_safety(inputs, config)),
        adverse_events=tuple(_adverse_events(inputs, paired)),
        procedures=tuple(procedures),
        outcomes=tuple(
            OutcomeRow(
                p.study_uid,
                p.side.value,
                p.technique_label,
                {name: getattr(o, name) for name in OUTCOME_SCORES},
                is_effective(o, config.criteria),
            )
            for p, o in paired
            if o is not None
        ),
        clips=tuple(_clip_row(c) for c in inputs),
        notes=tuple(notes),
    )
