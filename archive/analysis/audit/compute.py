"""The audit computation: clip inputs and outcomes in, an :class:`AuditReport` out (pure).

Groups are technique × level (plus "all" levels per technique). Comparisons
between techniques, over all levels and per level: Welch's t-test (with
Mann–Whitney U when skewed) for every numeric metric, outcome score and the
procedure time; Pearson χ² without continuity correction (Fisher's exact test
when an expected count is below 5) for effectiveness and yes/no metrics; a
mixed-design repeated-measures ANOVA for VAS and ODI over (before, 1 h,
2 weeks) × technique. A test that cannot be computed, or whose groups are
smaller than it needs (:data:`MIN_PER_GROUP`), is kept with the reason and no
numbers.

Procedures come from the archived clips, reviewed or not: outcomes and
techniques need no annotation. The seed study's comparisons (TT vs OT over
all levels: effectiveness, procedure time, VAS and ODI) are *planned*; every
other comparison is *exploratory*. Each family gets Holm-adjusted P values.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from archive.analysis.audit.model import (
    ALL_LEVELS,
    MIXED_TECHNIQUE,
    NUMERIC_METRICS,
    OUTCOME_SCORES,
    RATE_METRICS,
    TIME_FROM_CLIP_SPAN,
    TIME_FROM_MPPS,
    TIME_POINTS,
    ArchivedClip,
    AuditConfig,
    CaseIds,
    ClipAuditInput,
    Procedure,
)
from archive.analysis.audit.procedures import group_procedures
from archive.analysis.audit.results import (
    AdverseEventEntry,
    ApproachGroup,
    AuditReport,
    ClipRow,
    Comparison,
    GroupResult,
    OperatorRow,
    OutcomeRow,
    Rate,
    SafetyClip,
    SafetyGroup,
)
from archive.analysis.metrics.clip import to_plain
from archive.analysis.outcomes.model import Outcome, is_effective
from archive.analysis.statistics import (
    LongRow,
    TestResult,
    compare_means,
    compare_rates,
    describe,
    holm,
    rm_anova,
)
from archive.errors import StatisticsError
from archive.model import Side, Technique

logger = logging.getLogger(__name__)

#: Comparison variable names besides the metric and score names.
PROCEDURE_TIME = "procedure_time_s"
EFFECTIVE = "effective"
VAS_OVER_TIME = "vas_over_time"
ODI_OVER_TIME = "odi_over_time"

#: Fewest values (or cases, or complete subjects) each group needs for a comparison.
MIN_PER_GROUP = 2
#: The seed study's technique comparisons: planned when they compare TT and OT over all levels.
PLANNED_VARIABLES = frozenset(
    {EFFECTIVE, PROCEDURE_TIME, VAS_OVER_TIME, ODI_OVER_TIME, "vas_1h", "vas_2w", "odi_1h", "odi_2w"}
)
PLANNED_GROUPS = (Technique.OT.value, Technique.TT.value)


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

    def time_sources(self) -> dict[str, int]:
        found = Counter(p.time_source for p, _ in self.procedures if p.time_source is not None)
        return dict(sorted(found.items()))


def _rate(flags: Iterable[bool | None]) -> Rate:
    values = list(flags)
    assessed = [v for v in values if v is not None]
    return Rate(count=sum(assessed), n=len(assessed), not_assessable=len(values) - len(assessed))


def _group(technique: str, level: str, scope: _Scope, config: AuditConfig) -> GroupResult:
    effective = _rate(is_effective(o, config.criteria) if o else None for _, o in scope.procedures)
    return GroupResult(
        n_procedures_reviewed=sum(1 for p, _ in scope.procedures if p.reviewed_clips),
        technique=technique,
        level=level,
        n_clips=len(scope.clips),
        n_procedures=len(scope.procedures),
        metrics={name: describe(scope.metric(name)) for name in NUMERIC_METRICS},
        rates={name: _rate(scope.flags(name)) for name in RATE_METRICS},
        outcomes={name: describe(scope.scores(name)) for name in OUTCOME_SCORES},
        effective=effective,
        procedure_time_s=describe(scope.times()),
        procedure_time_sources=scope.time_sources(),
    )


def _attempt(
    scope: str,
    variable: str,
    groups: tuple[str, ...],
    test: Callable[[], list[TestResult]],
    sizes: Sequence[int] | None = None,
    unit: str = "values",
) -> Comparison:
    if sizes is not None and min(sizes) < MIN_PER_GROUP:
        shown = ", ".join(f"{g} {n}" for g, n in zip(groups, sizes, strict=True))
        reason = f"not computed: each group needs at least {MIN_PER_GROUP} {unit}, but there are {shown}"
        return Comparison(scope, variable, groups, (), reason)
    try:
        return Comparison(scope, variable, groups, tuple(test()))
    except StatisticsError as exc:
        logger.debug("audit: %s %s %s not computed: %s", scope, variable, groups, exc)
        return Comparison(scope, variable, groups, (), str(exc))


def _rates_test(a: Rate, b: Rate) -> Callable[[], list[TestResult]]:
    return lambda: [compare_rates(a.count, a.n, b.count, b.n)]


def _present(values: Iterable[float | None]) -> int:
    return sum(1 for v in values if v is not None)


def _means(
    scope: str, name: str, pair: tuple[str, ...], x: list[float | None], y: list[float | None]
) -> Comparison:
    return _attempt(scope, name, pair, functools.partial(compare_means, x, y), (_present(x), _present(y)))


def _rates(scope: str, name: str, pair: tuple[str, ...], a: Rate, b: Rate, unit: str) -> Comparison:
    return _attempt(scope, name, pair, _rates_test(a, b), (a.n, b.n), unit)


def _pair_comparisons(
    scope_name: str, a_name: str, a: _Scope, b_name: str, b: _Scope, config: AuditConfig
) -> list[Comparison]:
    pair = (a_name, b_name)
    found: list[Comparison] = []
    for name in NUMERIC_METRICS:
        found.append(_means(scope_name, name, pair, a.metric(name), b.metric(name)))
    for name in RATE_METRICS:
        found.append(
            _rates(
                scope_name, name, pair, _rate(a.flags(name)), _rate(b.flags(name)), "assessed clip reviews"
            )
        )
    found.append(_means(scope_name, PROCEDURE_TIME, pair, a.times(), b.times()))
    eff_a = _rate(is_effective(o, config.criteria) if o else None for _, o in a.procedures)
    eff_b = _rate(is_effective(o, config.criteria) if o else None for _, o in b.procedures)
    found.append(_rates(scope_name, EFFECTIVE, pair, eff_a, eff_b, "procedures with an assessable outcome"))
    for name in OUTCOME_SCORES:
        found.append(_means(scope_name, name, pair, a.scores(name), b.scores(name)))
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
            complete = _complete_subjects(table)
            sizes = [complete.get(name, 0) for name in names]
            found.append(
                _attempt(
                    scope_name,
                    variable,
                    tuple(names),
                    functools.partial(rm_anova, table),
                    sizes,
                    "procedures with every time point recorded",
                )
            )
    return found


def _complete_subjects(table: Sequence[LongRow]) -> dict[str, int]:
    """Per group, the subjects with a value at every time point."""
    seen: dict[tuple[str, str], int] = {}
    for row in table:
        if row[3] is not None:
            seen[(row[1], row[0])] = seen.get((row[1], row[0]), 0) + 1
    counts: dict[str, int] = {}
    for (group, _), n in seen.items():
        if n == len(TIME_POINTS):
            counts[group] = counts.get(group, 0) + 1
    return counts


def _is_planned(comparison: Comparison) -> bool:
    return (
        comparison.scope == ALL_LEVELS
        and comparison.variable in PLANNED_VARIABLES
        and tuple(sorted(comparison.groups)) == PLANNED_GROUPS
    )


def adjust_comparisons(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """Mark planned comparisons and add Holm-adjusted P values, planned and exploratory apart.

    Every P value of a family (each result of each computed comparison)
    counts once in that family's Holm adjustment.

    Parameters
    ----------
    comparisons : sequence of Comparison
        Every comparison of one report.

    Returns
    -------
    list of Comparison
        The same comparisons, in order, with ``planned`` and ``p_holm`` set.
    """
    marked = [dataclasses.replace(c, planned=_is_planned(c)) for c in comparisons]
    adjusted: dict[tuple[int, int], float] = {}
    for planned in (True, False):
        members = [
            (i, j)
            for i, c in enumerate(marked)
            if c.planned is planned
            for j, r in enumerate(c.results)
            if r.p_value == r.p_value  # NaN never enters a family
        ]
        values = holm([marked[i].results[j].p_value for i, j in members])
        adjusted.update(zip(members, values, strict=True))
    return [
        dataclasses.replace(
            c, p_holm=tuple(adjusted.get((i, j), float("nan")) for j in range(len(c.results)))
        )
        for i, c in enumerate(marked)
    ]


def _safety_groups(
    archived: Sequence[ArchivedClip], inputs: Sequence[ClipAuditInput], procedures: Sequence[Procedure]
) -> list[SafetyGroup]:
    """Per technique × level (and all levels): clips, reviewed clips, reviews, danger marked, breaches."""
    technique_of = {uid: p.technique_label for p in procedures for uid in p.sop_instance_uids}
    clips = {c.sop_instance_uid: c for c in archived}
    for item in inputs:
        clips.setdefault(
            item.sop_instance_uid,
            ArchivedClip(
                item.sop_instance_uid,
                item.study_uid,
                item.side,
                item.levels,
                item.technique,
                item.approach,
                CaseIds(),
            ),
        )

    def label(uid: str) -> str:
        return technique_of.get(uid) or technique_label(clips[uid].technique)

    found: list[SafetyGroup] = []
    for technique in sorted({label(uid) for uid in clips}):
        uids = {uid for uid in clips if label(uid) == technique}
        levels = sorted({lv for uid in uids for lv in clips[uid].levels}, key=lambda lv: lv.ordinal)
        scopes: list[tuple[str, set[str]]] = [(ALL_LEVELS, uids)]
        scopes += [(lv.value, {uid for uid in uids if lv in clips[uid].levels}) for lv in levels]
        for level_name, scope_uids in scopes:
            reviews = [i for i in inputs if i.sop_instance_uid in scope_uids]
            marked = [i for i in reviews if i.danger_marked]
            found.append(
                SafetyGroup(
                    technique=technique,
                    level=level_name,
                    clips=len(scope_uids),
                    clips_reviewed=len({i.sop_instance_uid for i in reviews}),
                    reviews=len(reviews),
                    reviews_with_danger=len(marked),
                    min_tip_to_danger_mm=describe(i.metrics.min_tip_to_danger_mm for i in marked),
                    breaches=sum(1 for i in marked if i.metrics.breach),
                )
            )
    return found


def _approach_groups(
    inputs: Sequence[ClipAuditInput], procedures: Sequence[Procedure]
) -> list[ApproachGroup]:
    """Clip metrics per technique × needle approach (descriptive: the split by approach)."""
    technique_of = {uid: p.technique_label for p in procedures for uid in p.sop_instance_uids}
    by_key: dict[tuple[str, str], list[ClipAuditInput]] = {}
    for item in inputs:
        technique = technique_of.get(item.sop_instance_uid) or technique_label(item.technique)
        approach = item.approach.value if item.approach is not None else "unknown"
        by_key.setdefault((technique, approach), []).append(item)
    return [
        ApproachGroup(
            technique,
            approach,
            len(items),
            {name: describe(getattr(i.metrics, name) for i in items) for name in NUMERIC_METRICS},
        )
        for (technique, approach), items in sorted(by_key.items())
    ]


def _operators(
    procedures: Sequence[tuple[Procedure, Outcome | None]],
    inputs: Sequence[ClipAuditInput],
    config: AuditConfig,
) -> list[OperatorRow]:
    """Per operator and technique: procedures, effectiveness, time and tip-to-target."""
    tip: dict[str, list[float | None]] = {}
    for item in inputs:
        tip.setdefault(item.sop_instance_uid, []).append(item.metrics.tip_to_target_at_injection_start_mm)
    by_key: dict[tuple[str, str], list[tuple[Procedure, Outcome | None]]] = {}
    for procedure, outcome in procedures:
        operator = procedure.ids.operator or "(not recorded)"
        by_key.setdefault((operator, procedure.technique_label), []).append((procedure, outcome))
    rows: list[OperatorRow] = []
    for (operator, technique), items in sorted(by_key.items()):
        rows.append(
            OperatorRow(
                operator=operator,
                technique=technique,
                procedures=len(items),
                procedures_reviewed=sum(1 for p, _ in items if p.reviewed_clips),
                effective=_rate(is_effective(o, config.criteria) if o else None for _, o in items),
                procedure_time_s=describe(p.time_s for p, _ in items),
                procedure_time_sources=dict(
                    sorted(Counter(p.time_source for p, _ in items if p.time_source is not None).items())
                ),
                tip_to_target_mm=describe(
                    v for p, _ in items for uid in p.sop_instance_uids for v in tip.get(uid, [])
                ),
            )
        )
    return rows


def _safety(
    inputs: Sequence[ClipAuditInput], config: AuditConfig, ids: Mapping[str, CaseIds]
) -> list[SafetyClip]:
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
                ids=ids.get(item.study_uid, CaseIds()),
            )
        )
    found.sort(key=lambda s: (not s.breach, s.min_tip_to_danger_mm or 0.0, s.sop_instance_uid, s.reviewer))
    return found


def _adverse_events(
    inputs: Sequence[ClipAuditInput],
    procedures: Sequence[tuple[Procedure, Outcome | None]],
    ids: Mapping[str, CaseIds],
) -> list[AdverseEventEntry]:
    found = [
        AdverseEventEntry(p.study_uid, p.side.value, p.technique_label, o.adverse_event, "outcome", ids=p.ids)
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
                    ids.get(item.study_uid, CaseIds()),
                )
            )
    return found


def _clip_row(item: ClipAuditInput, ids: Mapping[str, CaseIds]) -> ClipRow:
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
        ids=ids.get(item.study_uid, CaseIds()),
        approach=item.approach.value if item.approach is not None else "unknown",
        danger_marked=item.danger_marked,
    )


def run_audit(
    inputs: Sequence[ClipAuditInput],
    outcomes: Iterable[Outcome],
    config: AuditConfig | None = None,
    filters: Mapping[str, Any] | None = None,
    archived: Sequence[ArchivedClip] | None = None,
    step_times: Mapping[str, float] | None = None,
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
    archived : sequence of ArchivedClip, optional
        Every archived clip the filters select, reviewed or not: procedures,
        outcomes, techniques and the safety denominators come from these.
        Without them only the reviewed clips (``inputs``) make procedures.
    step_times : mapping of str to float, optional
        Study Instance UID → seconds from its MPPS start to end (procedure time, source MPPS).

    Returns
    -------
    AuditReport
        Groups, comparisons, safety section, procedures, outcomes and clips.
    """
    config = config if config is not None else AuditConfig()
    procedures, notes = group_procedures(inputs, archived, step_times)
    ids: dict[str, CaseIds] = {p.study_uid: p.ids for p in procedures}
    for clip in archived or ():
        ids.setdefault(clip.study_uid, clip.ids)
    by_key: dict[tuple[str, Side], Outcome] = {(o.study_uid, o.side): o for o in outcomes}
    paired = [(p, by_key.get((p.study_uid, p.side))) for p in procedures]
    missing = sum(1 for _, o in paired if o is None)
    if missing:
        notes.append(f"{missing} of {len(paired)} procedures have no outcome recorded")
    reviewed = sum(1 for p in procedures if p.reviewed_clips)
    notes.append(
        f"{reviewed} of {len(procedures)} procedures have a reviewed clip; clip metrics come from those, "
        "outcomes and techniques from every archived procedure"
    )
    sources = Counter(p.time_source or "no time" for p in procedures)
    notes.append(
        "procedure times: "
        + "; ".join(f"{count} from {name}" for name, count in sorted(sources.items()))
        + f" ({TIME_FROM_MPPS} when the scanner sent one, else events when marked, "
        f"else the clip span: {TIME_FROM_CLIP_SPAN})"
    )

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
    comparisons = adjust_comparisons(comparisons)

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
        safety_clips=tuple(_safety(inputs, config, ids)),
        adverse_events=tuple(_adverse_events(inputs, paired, ids)),
        procedures=tuple(procedures),
        outcomes=tuple(
            OutcomeRow(
                p.study_uid,
                p.side.value,
                p.technique_label,
                {name: getattr(o, name) for name in OUTCOME_SCORES},
                is_effective(o, config.criteria),
                p.ids,
            )
            for p, o in paired
            if o is not None
        ),
        clips=tuple(_clip_row(c, ids) for c in inputs),
        notes=tuple(notes),
        safety_groups=tuple(_safety_groups(archived or (), inputs, procedures)),
        operators=tuple(_operators(paired, inputs, config)),
        approach_groups=tuple(_approach_groups(inputs, procedures)),
    )
