"""What an audit takes in: case identifiers, archived clips, clip inputs, configuration, procedures.

Plain frozen dataclasses, no I/O. :class:`ClipAuditInput` is one reviewer's
measured annotation of one clip; what the audit gives out (groups,
comparisons, safety, :class:`~archive.analysis.audit.results.AuditReport`) is
in :mod:`archive.analysis.audit.results`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from archive.analysis.metrics import ClipMetrics
from archive.analysis.outcomes.model import EffectivenessCriteria
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
#: :attr:`Procedure.time_source` of a time from the procedure's MPPS (Performed Procedure Step start to end).
TIME_FROM_MPPS = "MPPS start to end"


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
        Where :attr:`time_s` comes from: :data:`TIME_FROM_MPPS` (the scanner's
        performed procedure step), :data:`TIME_FROM_EVENTS` (marked
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
