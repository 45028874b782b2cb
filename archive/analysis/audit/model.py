"""What an audit takes in and gives out: clip inputs, procedures, groups, comparisons, safety.

Plain frozen dataclasses, no I/O. :class:`ClipAuditInput` is one reviewer's
measured annotation of one clip; :class:`AuditReport` is the whole result,
whose :meth:`AuditReport.to_dict` is the stable JSON of ``usarchive --json
audit`` documented in ``docs/audit.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from archive.analysis.metrics import ClipMetrics
from archive.analysis.outcomes.model import EffectivenessCriteria
from archive.analysis.statistics import Summary, TestResult
from archive.model import Approach, ReviewStatus, Side, SpinalLevel, Technique
from archive.timing import FrameTimes

#: Version tag of the JSON layout of :meth:`AuditReport.to_dict`.
AUDIT_FORMAT = "usarchive-audit/2"

#: Numeric clip metrics summarised and compared, with their labels for reports.
NUMERIC_METRICS: dict[str, str] = {
    "tip_to_target_at_injection_start_mm": "tip-to-target at injection start (mm)",
    "needle_angle_deg": "needle angle to skin (deg)",
    "needle_marked_fraction": "needle visible fraction",
    "needle_keyframe_fraction": "needle keyframe fraction",
    "max_spread_area_mm2": "max spread area (mm²)",
    "min_tip_to_danger_mm": "min tip-to-danger (mm)",
    "needle_visible_to_injection_end_s": "needle visible to injection end (s)",
}
#: Yes/no clip metrics given as rates and compared with :func:`archive.analysis.statistics.compare_rates`.
RATE_METRICS: dict[str, str] = {
    "spread_covers_target": "spread covers target",
    "breach": "danger breach",
}
#: Outcome scores summarised per group, in time order.
OUTCOME_SCORES: dict[str, str] = {
    "vas_pre": "VAS before",
    "vas_1h": "VAS 1 h",
    "vas_2w": "VAS 2 weeks",
    "odi_pre": "ODI before (%)",
    "odi_1h": "ODI 1 h (%)",
    "odi_2w": "ODI 2 weeks (%)",
}
#: Time points of the repeated-measures ANOVA and the outcome columns of each score.
TIME_POINTS = ("pre", "1h", "2w")
#: Label of a procedure whose clips have different techniques.
MIXED_TECHNIQUE = "mixed"
#: Label of the group of all levels of a technique.
ALL_LEVELS = "all"
#: Source of a procedure time measured from marked needle-visible and injection-end events.
TIME_FROM_EVENTS = "events"
#: Source of a procedure time measured as the acquisition span of the clips (no events marked).
TIME_FROM_CLIP_SPAN = "clip span, no events marked"


def json_float(value: float | None) -> float | None:
    """``value`` as a float, or ``None`` when missing, NaN or infinite (not valid JSON)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class CaseIds:
    """What identifies a case to the clinic: the report is a local clinical document.

    Read from the clip's stored header: Patient ID, Study Date, Accession
    Number, the operator (Performing Physician's Name, else Operators' Name)
    and Station Name; ``None`` where the header has none.
    """

    patient_id: str | None = None
    study_date: str | None = None
    accession_number: str | None = None
    operator: str | None = None
    station: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "patient_id": self.patient_id,
            "study_date": self.study_date,
            "accession_number": self.accession_number,
            "operator": self.operator,
            "station": self.station,
        }


#: Column names and labels of :class:`CaseIds` in the CSV and HTML tables.
CASE_ID_COLUMNS: dict[str, str] = {
    "patient_id": "patient ID",
    "study_date": "study date",
    "accession_number": "accession",
    "operator": "operator",
    "station": "station",
}


@dataclass(frozen=True)
class ArchivedClip:
    """A clip in the archive as the audit sees it, reviewed or not.

    Procedures (study × side) come from these, so outcomes and technique
    comparisons need no annotation.
    """

    sop_instance_uid: str
    study_uid: str
    side: Side | None
    levels: tuple[SpinalLevel, ...]
    technique: Technique | None
    approach: Approach | None
    ids: CaseIds
    frame_times: FrameTimes | None = None


@dataclass(frozen=True)
class ClipAuditInput:
    """One reviewer's measured annotation of one clip, with what the index knows of the clip.

    Parameters
    ----------
    sop_instance_uid, study_uid : str
        The clip and its study.
    side : Side or None
        Side of the procedure; a clip without one is not grouped into a procedure.
    levels : tuple of SpinalLevel
        Levels shown or treated in the clip (may be empty).
    technique : Technique or None
        Technique recorded for the clip.
    reviewer : str
        Whose annotation the metrics measure.
    status : ReviewStatus
        Review status of that annotation.
    metrics : ClipMetrics
        The clip's audit metrics (:func:`archive.analysis.metrics.clip_metrics`).
    frame_times : FrameTimes
        The clip's frame times; their ``start`` (Content Date/Time + Frame
        Delay) places the clip's events in absolute time.
    adverse_events : tuple of str
        Notes of the adverse events the reviewer marked on the clip.
    approach : Approach or None
        Needle approach recorded for the clip.
    danger_marked : bool
        Whether the reviewer marked any danger structure on the clip (without
        one, tip-to-danger and breaches are not assessable).
    """

    sop_instance_uid: str
    study_uid: str
    side: Side | None
    levels: tuple[SpinalLevel, ...]
    technique: Technique | None
    reviewer: str
    status: ReviewStatus
    metrics: ClipMetrics
    frame_times: FrameTimes
    adverse_events: tuple[str, ...] = ()
    approach: Approach | None = None
    danger_marked: bool = False


@dataclass(frozen=True)
class AuditConfig:
    """Settings of an audit.

    Parameters
    ----------
    danger_margin_mm : float
        A clip goes into the safety section when its tip came within this
        distance of a danger structure (or breached one).
    criteria : EffectivenessCriteria
        When a procedure counts as effective.

    Raises
    ------
    ValueError
        If ``danger_margin_mm`` is negative or not finite.
    """

    danger_margin_mm: float = 2.0
    criteria: EffectivenessCriteria = field(default_factory=EffectivenessCriteria)

    def __post_init__(self) -> None:
        if not math.isfinite(self.danger_margin_mm) or self.danger_margin_mm < 0:
            raise ValueError(
                f"danger_margin_mm: expected a distance of 0 mm or more such as 2, "
                f"but got {self.danger_margin_mm!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data."""
        return {
            "danger_margin_mm": self.danger_margin_mm,
            "vas_drop_fraction": self.criteria.vas_drop_fraction,
            "odi_drop_fraction": self.criteria.odi_drop_fraction,
        }


@dataclass(frozen=True)
class Procedure:
    """One side of one study treated: the clips of that study and side.

    Parameters
    ----------
    study_uid : str
    side : Side
    levels : tuple of SpinalLevel
        Levels treated, in anatomical order (union over the clips).
    technique : Technique or None
        The clips' technique; ``None`` when they differ or none is recorded
        (:attr:`technique_note` says which).
    technique_note : str or None
        Why :attr:`technique` is ``None``.
    sop_instance_uids : tuple of str
        The clips, in time order.
    time_s : float or None
        From the earliest needle-visible frame to the latest injection-end
        frame across the clips, in absolute time (Content Date/Time + Frame
        Delay + frame offsets).
    time_note : str or None
        Why :attr:`time_s` is ``None``.
    time_source : str or None
        Where :attr:`time_s` comes from: :data:`TIME_FROM_EVENTS` (marked
        needle-visible and injection-end events) or :data:`TIME_FROM_CLIP_SPAN`
        (first frame of the earliest clip to last frame of the latest, when no
        events are marked); ``None`` when :attr:`time_s` is ``None``.
    ids : CaseIds
        Patient ID, study date, accession number, operator and station.
    reviewed_clips : int
        How many of the clips have an audited (reviewed) annotation.
    """

    study_uid: str
    side: Side
    levels: tuple[SpinalLevel, ...]
    technique: Technique | None
    technique_note: str | None
    sop_instance_uids: tuple[str, ...]
    time_s: float | None
    time_note: str | None = None
    ids: CaseIds = field(default_factory=CaseIds)
    reviewed_clips: int = 0
    time_source: str | None = None

    @property
    def technique_label(self) -> str:
        """The technique's value, ``"mixed"`` for differing techniques, ``"unknown"`` for none."""
        if self.technique is not None:
            return self.technique.value
        if self.technique_note and self.technique_note.startswith(MIXED_TECHNIQUE):
            return MIXED_TECHNIQUE
        return Technique.UNKNOWN.value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "study_uid": self.study_uid,
            "side": self.side.value,
            "levels": [lv.value for lv in self.levels],
            "technique": self.technique_label,
            "technique_note": self.technique_note,
            "sop_instance_uids": list(self.sop_instance_uids),
            "time_s": json_float(self.time_s),
            "time_note": self.time_note,
            "time_source": self.time_source,
            "reviewed_clips": self.reviewed_clips,
            **self.ids.to_dict(),
        }


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
