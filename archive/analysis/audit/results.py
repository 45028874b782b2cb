"""What an audit gives out: rates, groups, comparisons, safety, per-clip rows and the report.

Plain frozen dataclasses, no I/O. :class:`AuditReport` is the whole result,
whose :meth:`AuditReport.to_dict` is the stable JSON of ``usarchive --json
audit`` documented in ``docs/audit.md``; its inputs are in
:mod:`archive.analysis.audit.model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archive.analysis.audit.model import (
    ALL_LEVELS,
    AUDIT_FORMAT,
    AuditConfig,
    CaseIds,
    Procedure,
    json_float,
)
from archive.analysis.statistics import Summary, TestResult


@dataclass(frozen=True)
class Rate:
    """``count`` of ``n`` assessed cases (``n`` excludes the not assessable)."""

    count: int
    n: int
    not_assessable: int = 0

    @property
    def rate(self) -> float | None:
        """``count / n``, ``None`` when nothing was assessed."""
        return self.count / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {"count": self.count, "n": self.n, "rate": self.rate, "not_assessable": self.not_assessable}


@dataclass(frozen=True)
class GroupResult:
    """Figures of one technique × level group.

    ``level`` is ``"all"`` for the group of every level of the technique.
    Clip metrics count every (clip, reviewer) input with the level; outcomes,
    effectiveness and procedure time count the procedures that treated it
    (archived, reviewed or not); ``n_procedures_reviewed`` of them have a
    reviewed clip.
    """

    technique: str
    level: str
    n_clips: int
    n_procedures: int
    metrics: dict[str, Summary]
    rates: dict[str, Rate]
    outcomes: dict[str, Summary]
    effective: Rate
    procedure_time_s: Summary
    n_procedures_reviewed: int = 0
    procedure_time_sources: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "technique": self.technique,
            "level": self.level,
            "n_clips": self.n_clips,
            "n_procedures": self.n_procedures,
            "n_procedures_reviewed": self.n_procedures_reviewed,
            "metrics": {name: s.to_dict() for name, s in self.metrics.items()},
            "rates": {name: r.to_dict() for name, r in self.rates.items()},
            "outcomes": {name: s.to_dict() for name, s in self.outcomes.items()},
            "effective": self.effective.to_dict(),
            "procedure_time_s": self.procedure_time_s.to_dict(),
            "procedure_time_sources": dict(self.procedure_time_sources),
        }


@dataclass(frozen=True)
class Comparison:
    """A comparison of one variable between techniques, in one scope (all levels or one level).

    ``results`` is empty and ``error`` says why when the test cannot be
    computed (e.g. a group with fewer values than the test needs).
    ``planned`` is true for the comparisons of the seed study (technique TT vs
    OT over all levels: effectiveness, procedure time, VAS and ODI); the rest
    are exploratory. ``p_holm`` holds, aligned with ``results``, each P value
    Holm-adjusted within its family (planned or exploratory).
    """

    scope: str
    variable: str
    groups: tuple[str, ...]
    results: tuple[TestResult, ...]
    error: str | None = None
    planned: bool = False
    p_holm: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "scope": self.scope,
            "variable": self.variable,
            "groups": list(self.groups),
            "planned": self.planned,
            "results": [
                {**r.to_dict(), "p_holm": json_float(self.p_holm[i]) if i < len(self.p_holm) else None}
                for i, r in enumerate(self.results)
            ],
            "error": self.error,
        }


@dataclass(frozen=True)
class SafetyClip:
    """A clip whose tip came within the danger margin of a danger structure, or breached one.

    ``frame`` (of the minimum tip-to-danger distance) and ``breach_frames`` are
    frame numbers, 1-based, as the review widget and its overlay show them.
    """

    sop_instance_uid: str
    study_uid: str
    reviewer: str
    technique: str
    levels: tuple[str, ...]
    min_tip_to_danger_mm: float | None
    danger_class: str | None
    frame: int | None
    breach: bool
    breach_frames: tuple[int, ...]
    ids: CaseIds = field(default_factory=CaseIds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            **self.ids.to_dict(),
            "sop_instance_uid": self.sop_instance_uid,
            "study_uid": self.study_uid,
            "reviewer": self.reviewer,
            "technique": self.technique,
            "levels": list(self.levels),
            "min_tip_to_danger_mm": json_float(self.min_tip_to_danger_mm),
            "danger_class": self.danger_class,
            "frame": self.frame,
            "breach": self.breach,
            "breach_frames": list(self.breach_frames),
        }


#: What the safety section says where no danger structure was marked.
NOT_ASSESSABLE = "not assessable: no danger structure was marked"


@dataclass(frozen=True)
class SafetyGroup:
    """Safety of one technique × level, with its denominators.

    ``min_tip_to_danger_mm`` and ``breaches`` count only the reviews with a
    danger structure marked; with none, the group is :attr:`assessable` no
    more and the report says :data:`NOT_ASSESSABLE` instead of a number.
    """

    technique: str
    level: str
    clips: int
    clips_reviewed: int
    reviews: int
    reviews_with_danger: int
    min_tip_to_danger_mm: Summary
    breaches: int

    @property
    def assessable(self) -> bool:
        """Whether any review marked a danger structure."""
        return self.reviews_with_danger > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (``null`` figures and a ``not_assessable`` reason when nothing was marked)."""
        return {
            "technique": self.technique,
            "level": self.level,
            "clips": self.clips,
            "clips_reviewed": self.clips_reviewed,
            "reviews": self.reviews,
            "reviews_with_danger_marked": self.reviews_with_danger,
            "min_tip_to_danger_mm": self.min_tip_to_danger_mm.to_dict() if self.assessable else None,
            "breaches": self.breaches if self.assessable else None,
            "not_assessable": None if self.assessable else NOT_ASSESSABLE,
        }


@dataclass(frozen=True)
class ApproachGroup:
    """Clip metrics of one technique × needle approach (the split by approach; descriptive only)."""

    technique: str
    approach: str
    n_clips: int
    metrics: dict[str, Summary]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "technique": self.technique,
            "approach": self.approach,
            "n_clips": self.n_clips,
            "metrics": {name: s.to_dict() for name, s in self.metrics.items()},
        }


@dataclass(frozen=True)
class OperatorRow:
    """One operator's procedures of one technique, in the order they did them."""

    operator: str
    technique: str
    procedures: int
    procedures_reviewed: int
    effective: Rate
    procedure_time_s: Summary
    tip_to_target_mm: Summary
    procedure_time_sources: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "operator": self.operator,
            "technique": self.technique,
            "procedures": self.procedures,
            "procedures_reviewed": self.procedures_reviewed,
            "effective": self.effective.to_dict(),
            "procedure_time_s": self.procedure_time_s.to_dict(),
            "procedure_time_sources": dict(self.procedure_time_sources),
            "tip_to_target_at_injection_start_mm": self.tip_to_target_mm.to_dict(),
        }


@dataclass(frozen=True)
class AdverseEventEntry:
    """An adverse event: from a procedure's outcome or marked by a reviewer on a clip."""

    study_uid: str
    side: str | None
    technique: str
    description: str
    source: str
    sop_instance_uid: str | None = None
    ids: CaseIds = field(default_factory=CaseIds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            **self.ids.to_dict(),
            "study_uid": self.study_uid,
            "side": self.side,
            "technique": self.technique,
            "description": self.description,
            "source": self.source,
            "sop_instance_uid": self.sop_instance_uid,
        }


@dataclass(frozen=True)
class ClipRow:
    """One (clip, reviewer) of the audit, as listed in the report and its tip-to-target strip."""

    sop_instance_uid: str
    study_uid: str
    side: str | None
    levels: tuple[str, ...]
    technique: str
    reviewer: str
    status: str
    metrics: dict[str, Any]
    ids: CaseIds = field(default_factory=CaseIds)
    approach: str = "unknown"
    danger_marked: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            **self.ids.to_dict(),
            "approach": self.approach,
            "danger_marked": self.danger_marked,
            "sop_instance_uid": self.sop_instance_uid,
            "study_uid": self.study_uid,
            "side": self.side,
            "levels": list(self.levels),
            "technique": self.technique,
            "reviewer": self.reviewer,
            "status": self.status,
            "metrics": self.metrics,
        }


@dataclass(frozen=True)
class OutcomeRow:
    """A procedure's outcome as the audit used it: scores by name and its effectiveness."""

    study_uid: str
    side: str
    technique: str
    scores: dict[str, float | None]
    effective: bool | None
    ids: CaseIds = field(default_factory=CaseIds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            **self.ids.to_dict(),
            "study_uid": self.study_uid,
            "side": self.side,
            "technique": self.technique,
            "scores": dict(self.scores),
            "effective": self.effective,
        }


@dataclass(frozen=True)
class AuditReport:
    """The result of an audit (see ``docs/audit.md`` for its JSON)."""

    config: AuditConfig
    filters: dict[str, Any]
    groups: tuple[GroupResult, ...]
    comparisons: tuple[Comparison, ...]
    safety_clips: tuple[SafetyClip, ...]
    adverse_events: tuple[AdverseEventEntry, ...]
    procedures: tuple[Procedure, ...]
    outcomes: tuple[OutcomeRow, ...]
    clips: tuple[ClipRow, ...]
    notes: tuple[str, ...] = ()
    safety_groups: tuple[SafetyGroup, ...] = ()
    operators: tuple[OperatorRow, ...] = ()
    approach_groups: tuple[ApproachGroup, ...] = ()

    def group(self, technique: str, level: str = ALL_LEVELS) -> GroupResult | None:
        """The group of ``technique`` (a value such as ``"OT"``) and ``level``, or ``None``."""
        for g in self.groups:
            if g.technique == technique and g.level == level:
                return g
        return None

    def comparison(self, variable: str, scope: str = ALL_LEVELS) -> Comparison | None:
        """The comparison of ``variable`` in ``scope`` (``"all"`` or a level), or ``None``."""
        for c in self.comparisons:
            if c.variable == variable and c.scope == scope:
                return c
        return None

    def to_dict(self) -> dict[str, Any]:
        """The whole report as stable, JSON-ready data (documented in ``docs/audit.md``)."""
        return {
            "format": AUDIT_FORMAT,
            "config": self.config.to_dict(),
            "filters": dict(self.filters),
            "counts": {
                "clips": len(self.clips),
                "procedures": len(self.procedures),
                "procedures_with_reviewed_clip": sum(1 for p in self.procedures if p.reviewed_clips),
                "outcomes": len(self.outcomes),
            },
            "groups": [g.to_dict() for g in self.groups],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "safety": {
                "danger_margin_mm": self.config.danger_margin_mm,
                "groups": [g.to_dict() for g in self.safety_groups],
                "clips": [s.to_dict() for s in self.safety_clips],
                "adverse_events": [a.to_dict() for a in self.adverse_events],
            },
            "procedures": [p.to_dict() for p in self.procedures],
            "outcomes": [o.to_dict() for o in self.outcomes],
            "clips": [c.to_dict() for c in self.clips],
            "operators": [o.to_dict() for o in self.operators],
            "approach_groups": [g.to_dict() for g in self.approach_groups],
            "notes": list(self.notes),
        }
