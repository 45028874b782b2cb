"""Small inline clips for the research HDF5 export tests."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from archive.analysis.metrics.clip import Breach, BreachBy, ClipMetrics
from archive.analysis.outcomes.model import Outcome
from archive.model import (
    ClipEvent,
    NeedleView,
    ProcedureType,
    ReviewStatus,
    Side,
    SpinalLevel,
    Technique,
)
from archive.research.export.card import CardInfo
from archive.research.export.records import ClipRecord
from archive.review import ClipAnnotation, NeedleMark, ReviewComment, TargetMark

T, H, W = 7, 12, 16
CARD = CardInfo(
    title="Test MBB clips",
    description="Inline clips for the export tests.",
    source="unit tests",
    selection="--status approved",
    deidentification=("PS3.15 Basic Profile", "Clean Pixel Data outside the 2D regions"),
    created_by="tester",
)


def frames_of(array: npt.NDArray[np.uint8]) -> Iterator[npt.NDArray[np.uint8]]:
    """Yield the frames of ``array`` one at a time, as a decoder would."""
    for frame in array:
        yield frame.copy()


def random_frames(seed: int, shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def box(top: int, left: int, bottom: int, right: int) -> npt.NDArray[np.bool_]:
    mask = np.zeros((H, W), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def full_annotation(uid: str = "1.2.3.4") -> ClipAnnotation:
    """An approved annotation using every kind of mark, with interpolated frames."""
    ann = ClipAnnotation.new(uid, "dr.a", T, (H, W))
    ann = ann.with_needle(1, NeedleMark(((0.5, 1.25), (3.0, 4.0)), NeedleView.IN_PLANE))
    ann = ann.with_needle(3, NeedleMark(((0.5, 1.25), (4.0, 6.0), (6.125, 7.5)), NeedleView.IN_PLANE))
    ann = ann.with_needle(5, NeedleMark(((7.0, 9.0),), NeedleView.OUT_OF_PLANE))
    ann = ann.with_target(0, TargetMark((8.0, 10.0), "L4 SAP–TP junction"))
    ann = ann.with_target(2, TargetMark((8.5, 10.5), "L4 SAP–TP junction"))
    ann = ann.with_target(5, TargetMark((9.0, 3.0), "L5 S1 SAP–ala junction"))
    ann = ann.with_spread(2, np.zeros((H, W), dtype=bool))  # checked, nothing seen
    ann = ann.with_spread(4, box(6, 8, 9, 12))
    ann = ann.with_danger(3, "nerve root", box(2, 2, 5, 6))
    ann = ann.with_danger(3, "vessel", box(4, 4, 8, 8))  # overlaps the nerve root
    ann = ann.with_danger(4, "spinal canal", box(9, 0, 12, 16))
    ann = ann.with_event(ClipEvent.NEEDLE_VISIBLE, 1)
    ann = ann.with_event(ClipEvent.TARGET_REACHED, 3)
    ann = ann.with_event(ClipEvent.INJECTION_START, 4)
    ann = ann.with_event(ClipEvent.INJECTION_END, 6)
    ann = ann.with_adverse_event(4, "lower-limb paraesthesia")
    ann = ann.with_adverse_event(4, "patient reports pain")
    ann = ann.with_comment(ReviewComment("dr.b", "check frame 3", 3))
    return ann.with_status(ReviewStatus.SUBMITTED).with_status(ReviewStatus.APPROVED)


def metrics_dict(uid: str) -> dict[str, object]:
    return ClipMetrics(
        sop_instance_uid=uid,
        reviewer="dr.a",
        calibrated=True,
        needle_visible_frame=1,
        injection_start_frame=4,
        injection_end_frame=6,
        tip_to_target_at_injection_start_mm=3.25,
        needle_angle_deg=41.5,
        needle_angle_frame=4,
        needle_marked_fraction=0.8,
        max_spread_area_mm2=1.2,
        max_spread_frame=4,
        spread_covers_target=False,
        min_tip_to_danger_mm=0.7,
        min_tip_to_danger_frame=3,
        min_tip_to_danger_class="nerve root",
        breach=True,
        breaches=(Breach(3, "nerve root", BreachBy.TIP),),
        needle_visible_to_injection_end_s=0.5,
        notes=("one note",),
    ).to_dict()


def annotated_record(key: str = "2.25.1", patient: str = "PAT-A") -> tuple[ClipRecord, npt.NDArray[np.uint8]]:
    frames = random_frames(1, (T, H, W))
    record = ClipRecord(
        clip_key=key,
        patient_pseudonym=patient,
        frames=lambda: frames_of(frames),
        n_frames=T,
        frame_shape=(H, W),
        frame_times_ms=tuple(33.25 * i for i in range(T)),
        pixel_size_mm=(0.2, 0.15),
        levels=(SpinalLevel.L5, SpinalLevel.L4),
        side=Side.LEFT,
        technique=Technique.OT,
        procedure_type=ProcedureType.MEDIAL_BRANCH_BLOCK,
        annotation=full_annotation("1.2.840.99.7"),
        metrics=metrics_dict("1.2.840.99.7"),
        outcome=Outcome("1.2.840.99", Side.LEFT, 8.0, 3.0, 2.0, 60.0, 40.0, 30.0, "nerve irritation"),
    )
    return record, frames


def rgb_record(key: str = "2.25.2", patient: str = "PAT-A") -> tuple[ClipRecord, npt.NDArray[np.uint8]]:
    frames = random_frames(2, (3, H, W, 3))
    record = ClipRecord(
        clip_key=key,
        patient_pseudonym=patient,
        frames=lambda: frames_of(frames),
        n_frames=3,
        frame_shape=(H, W, 3),
        frame_times_ms=(0.0, 40.0, 80.5),
        pixel_size_mm=(0.3, 0.3),
        technique=Technique.TT,
    )
    return record, frames


def uncleaned_record(key: str = "2.25.3", patient: str = "PAT-B") -> tuple[ClipRecord, npt.NDArray[np.uint8]]:
    frames = random_frames(3, (2, H, W))
    record = ClipRecord(
        clip_key=key,
        patient_pseudonym=patient,
        frames=lambda: frames_of(frames),
        n_frames=2,
        frame_shape=(H, W),
        frame_times_ms=(0.0, 50.0),
        pixel_size_mm=None,
        pixels_cleaned=False,
    )
    return record, frames


def tiny_record(key: str, patient: str) -> ClipRecord:
    frames = np.zeros((2, 4, 4), dtype=np.uint8)
    return ClipRecord(
        clip_key=key,
        patient_pseudonym=patient,
        frames=lambda: frames_of(frames),
        n_frames=2,
        frame_shape=(4, 4),
        frame_times_ms=(0.0, 30.0),
        pixel_size_mm=(0.1, 0.1),
    )
