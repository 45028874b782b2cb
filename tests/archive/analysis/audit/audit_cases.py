"""Small in-memory audit inputs: clips with metrics and frame times, outcomes."""

from __future__ import annotations

import datetime as dt

from archive.analysis.audit import ClipAuditInput
from archive.analysis.metrics import Breach, BreachBy, ClipMetrics
from archive.analysis.outcomes.model import Outcome
from archive.model import Approach, ReviewStatus, Side, SpinalLevel, Technique
from archive.timing import FrameTimes

START = dt.datetime(2024, 3, 4, 9, 0, 0)


def study_uid(i: int) -> str:
    return f"1.2.826.0.1.3680043.10.543.{i + 1}"


def frame_times(start: dt.datetime | None, n_frames: int = 20, frame_time_ms: float = 100.0) -> FrameTimes:
    offsets = tuple(k * frame_time_ms for k in range(n_frames))
    return FrameTimes(offsets, start, "FrameTime", frame_time_ms)


def clip(
    uid: str,
    study: str,
    *,
    side: Side | None = Side.RIGHT,
    level: SpinalLevel = SpinalLevel.L4,
    technique: Technique | None = Technique.OT,
    reviewer: str = "ann",
    start: dt.datetime | None = START,
    visible: int | None = 2,
    end: int | None = 15,
    tip_mm: float | None = 1.0,
    angle_deg: float | None = 35.0,
    danger_mm: float | None = None,
    breach: bool | None = None,
    covers: bool | None = True,
    adverse: tuple[str, ...] = (),
    approach: Approach | None = None,
) -> ClipAuditInput:
    breaches = (Breach(frame=9, danger_class="nerve root", by=BreachBy.TIP),) if breach else ()
    metrics = ClipMetrics(
        sop_instance_uid=uid,
        reviewer=reviewer,
        calibrated=True,
        needle_visible_frame=visible,
        injection_start_frame=10,
        injection_end_frame=end,
        tip_to_target_at_injection_start_mm=tip_mm,
        needle_angle_deg=angle_deg,
        needle_marked_fraction=0.9,
        needle_keyframe_fraction=0.5,
        max_spread_area_mm2=40.0,
        spread_covers_target=covers,
        min_tip_to_danger_mm=danger_mm,
        min_tip_to_danger_frame=9 if danger_mm is not None else None,
        min_tip_to_danger_class="nerve root" if danger_mm is not None else None,
        breach=breach,
        breaches=breaches,
        needle_visible_to_injection_end_s=None if visible is None or end is None else (end - visible) / 10,
    )
    return ClipAuditInput(
        sop_instance_uid=uid,
        study_uid=study,
        side=side,
        levels=(level,),
        technique=technique,
        reviewer=reviewer,
        status=ReviewStatus.APPROVED,
        metrics=metrics,
        frame_times=frame_times(start),
        adverse_events=adverse,
        danger_marked=danger_mm is not None or bool(breach),
        approach=approach,
    )


def outcome(
    study: str, side: Side, *, effective: bool, adverse: str | None = None, shift: float = 0.0
) -> Outcome:
    if effective:
        return Outcome(study, side, 8.0, 5.0 + shift, 3.0 + shift, 50.0, 40.0, 20.0 + shift, adverse)
    return Outcome(study, side, 7.0, 6.0 + shift, 5.0 + shift, 48.0, 45.0, 40.0 + shift, adverse)


def study_cohort(
    counts: dict[Technique, tuple[int, int]] | None = None,
) -> tuple[list[ClipAuditInput], list[Outcome]]:
    """Procedures with one L4 clip each and outcomes with given effective counts.

    ``counts`` maps technique to (effective, n); the default is the study's
    15 of 32 (TT) and 24 of 32 (OT). Tip-to-target and angles differ between
    the techniques in a deterministic spread; TT procedures take longer.
    """
    counts = counts or {Technique.TT: (15, 32), Technique.OT: (24, 32)}
    inputs: list[ClipAuditInput] = []
    outcomes: list[Outcome] = []
    index = 0
    for technique, (effective, n) in counts.items():
        for k in range(n):
            study = study_uid(index)
            base = 1.0 if technique is Technique.OT else 2.0
            end = 12 + (k % 7) + (6 if technique is Technique.TT else 0)
            inputs.append(
                clip(
                    f"{study}.1",
                    study,
                    technique=technique,
                    tip_mm=base + 0.1 * (k % 9),
                    angle_deg=30.0 + (k % 11),
                    end=min(end, 19),
                    start=START + dt.timedelta(days=index),
                )
            )
            outcomes.append(outcome(study, Side.RIGHT, effective=k < effective, shift=0.1 * (k % 5)))
            index += 1
    return inputs, outcomes
