"""Per-clip audit metrics against hand-computed values (archive.analysis.metrics.clip)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from metrics_cases import CAL, N_FRAMES, SHAPE, TIMES, base, box, with_danger

from archive.analysis.metrics import UNCALIBRATED_NOTE, UNTIMED_NOTE, Breach, BreachBy, clip_metrics
from archive.calibration import Calibration, UltrasoundRegion
from archive.errors import MetricsError
from archive.model import ClipEvent, NeedleView
from archive.review import ClipAnnotation, NeedleMark, TargetMark
from archive.timing import FrameTimes, unknown_frame_times


def test_full_annotation_hand_computed() -> None:
    m = clip_metrics(with_danger(base()), CAL, TIMES)
    assert (m.needle_visible_frame, m.injection_start_frame, m.injection_end_frame) == (2, 4, 8)
    # tip (30, 50) to target (50, 80): 20 rows * 0.2 = 4 mm, 30 cols * 0.1 = 3 mm
    assert m.tip_to_target_at_injection_start_mm == pytest.approx(5.0)
    # entry (10, 10) -> tip (30, 50): 4 mm deep over 4 mm across
    assert m.needle_angle_deg == pytest.approx(45.0)
    assert m.needle_angle_frame == 4
    # frames 2..8 (7 frames): needle shown on 2..6, keyframes 2 and 6
    assert m.needle_marked_fraction == pytest.approx(5 / 7)
    assert m.needle_keyframe_fraction == pytest.approx(2 / 7)
    # 400 px * 0.2 mm * 0.1 mm
    assert m.max_spread_area_mm2 == pytest.approx(8.0)
    assert m.max_spread_frame == 7
    assert m.spread_covers_target is True
    assert m.spread_covers_target_frame == 7
    # frame 4: tip (30, 50) to the nerve root's pixel (30, 60): 10 cols * 0.1 mm = 1 mm
    # frame 6: tip (40, 50) to nerve root (39, 60): hypot(0.2, 1.0) = 1.0198; to vessel (50, 50): 2 mm
    assert m.min_tip_to_danger_mm == pytest.approx(1.0)
    assert m.min_tip_to_danger_frame == 4
    assert m.min_tip_to_danger_class == "nerve root"
    assert m.breach is True
    # the vessel of frame 7 and the spread of frame 7 are both held on frames 8 and 9
    assert m.breaches == tuple(Breach(f, "vessel", BreachBy.SPREAD) for f in (7, 8, 9))
    assert m.needle_visible_to_injection_end_s == pytest.approx((345.0 - 80.0) / 1000.0)
    assert m.calibrated is True
    assert m.notes == ()


def test_to_dict_is_json_ready_and_complete() -> None:
    m = clip_metrics(with_danger(base()), CAL, TIMES)
    record = json.loads(json.dumps(m.to_dict()))
    assert record["tip_to_target_at_injection_start_mm"] == pytest.approx(5.0)
    # frame numbers in the plain data are 1-based: indices 7, 8, 9 are frames 8, 9, 10
    assert record["breaches"] == [{"frame": f, "danger_class": "vessel", "by": "spread"} for f in (8, 9, 10)]
    assert (record["injection_start_frame"], record["needle_angle_frame"], record["max_spread_frame"]) == (
        5,
        5,
        8,
    )
    assert record["reviewer"] == "alice"
    assert record["notes"] == []
    assert set(record) == set(m.__dataclass_fields__)


def test_uncalibrated_clip_has_no_mm_metrics_but_keeps_the_rest() -> None:
    m = clip_metrics(with_danger(base()), None, TIMES)
    assert UNCALIBRATED_NOTE in m.notes
    assert m.calibrated is False
    for name in ("tip_to_target_at_injection_start_mm", "needle_angle_deg", "max_spread_area_mm2"):
        assert getattr(m, name) is None, name
    assert m.min_tip_to_danger_mm is None
    assert m.max_spread_frame is None
    # pixel facts and times need no calibration
    assert m.needle_angle_frame == 4
    assert m.needle_marked_fraction == pytest.approx(5 / 7)
    assert m.spread_covers_target is True
    assert m.breach is True
    assert m.needle_visible_to_injection_end_s == pytest.approx(0.265)


def test_angle_falls_back_to_last_needle_before_injection_start() -> None:
    ann = base().with_event(ClipEvent.INJECTION_START, 8)  # needle last shown on frame 6
    m = clip_metrics(ann, CAL, TIMES)
    assert m.needle_angle_frame == 6
    # entry (10, 10) -> tip (40, 50): 30 rows * 0.2 = 6 mm deep, 40 cols * 0.1 = 4 mm across
    assert m.needle_angle_deg == pytest.approx(math.degrees(math.atan2(6.0, 4.0)))
    # no needle on the injection-start frame: no tip-to-target, said in a note
    assert m.tip_to_target_at_injection_start_mm is None
    assert any("no needle on the injection-start frame 8" in n for n in m.notes)
    # frames 8 and 9 hold the spread of frame 7 (rows 40..59) and the target of frame 8 (60, 80)
    assert m.spread_covers_target is False


def test_out_of_plane_needle_at_injection_start_has_no_angle() -> None:
    ann = base().with_needle(4, NeedleMark(((30, 50),), NeedleView.OUT_OF_PLANE))
    m = clip_metrics(ann, CAL, TIMES)
    assert m.needle_angle_deg is None
    assert m.needle_angle_frame is None
    assert any("out-of-plane on frame 4" in n for n in m.notes)
    # the dot is still a tip: tip-to-target is measured
    assert m.tip_to_target_at_injection_start_mm == pytest.approx(5.0)
    # frames 3 and 5 lie between keyframes of different views: no needle shown there
    assert m.needle_marked_fraction == pytest.approx(3 / 7)
    assert m.needle_keyframe_fraction == pytest.approx(3 / 7)


def test_no_events_gives_none_with_reasons() -> None:
    ann = base().without_event(ClipEvent.INJECTION_END).without_event(ClipEvent.INJECTION_START)
    ann = ann.without_event(ClipEvent.NEEDLE_VISIBLE)
    m = clip_metrics(ann, CAL, TIMES)
    assert m.tip_to_target_at_injection_start_mm is None
    assert m.needle_marked_fraction is None
    assert m.needle_visible_to_injection_end_s is None
    assert m.spread_covers_target is None
    # the angle is taken on the last needle of the clip and says so
    assert m.needle_angle_frame == 6
    assert any("no injection start marked: needle angle taken on frame 6" in n for n in m.notes)
    assert any("no needle visible and injection end marked" in n for n in m.notes)
    # spread area needs no events
    assert m.max_spread_area_mm2 == pytest.approx(8.0)


def test_injection_end_before_needle_visible_is_refused_as_a_span() -> None:
    ann = base().without_event(ClipEvent.INJECTION_START).without_event(ClipEvent.INJECTION_END)
    ann = ann.with_event(ClipEvent.INJECTION_END, 1)
    m = clip_metrics(ann, CAL, TIMES)
    assert m.needle_visible_to_injection_end_s is None
    assert m.needle_marked_fraction is None
    assert any("injection end (frame 1) before needle visible (frame 2)" in n for n in m.notes)


def test_spread_that_never_covers_the_target() -> None:
    ann = base().with_spread(7, box(0, 9, 0, 9))  # far from the target
    m = clip_metrics(ann, CAL, TIMES)
    assert m.spread_covers_target is False
    assert m.spread_covers_target_frame is None
    # the 100 px mask on frame 5 is now the largest: 100 * 0.02 mm²
    assert m.max_spread_area_mm2 == pytest.approx(2.0)
    assert m.max_spread_frame == 5


def test_spread_before_injection_start_does_not_count_as_coverage() -> None:
    ann = base().with_event(ClipEvent.INJECTION_START, 8).with_spread(8, box(0, 9, 0, 9))
    # frame 7 covers the target but lies before injection start (8); frame 8 misses it
    m = clip_metrics(ann, CAL, TIMES)
    assert m.spread_covers_target is False


def test_tip_inside_danger_is_a_breach_at_distance_zero() -> None:
    ann = base().with_danger(4, "spinal canal", box(25, 35, 45, 55))  # holds the tip (30, 50)
    m = clip_metrics(ann, CAL, TIMES)
    assert m.min_tip_to_danger_mm == 0.0
    assert m.min_tip_to_danger_class == "spinal canal"
    assert m.breach is True
    # the canal is held on frame 5, where the interpolated tip (35, 50) is still inside it
    assert m.breaches == (Breach(4, "spinal canal", BreachBy.TIP), Breach(5, "spinal canal", BreachBy.TIP))


def test_empty_danger_masks_mean_no_breach_and_no_distance() -> None:
    ann = base().with_danger(4, "nerve root", np.zeros(SHAPE, dtype=bool))
    m = clip_metrics(ann, CAL, TIMES)
    assert m.breach is False
    assert m.breaches == ()
    assert m.min_tip_to_danger_mm is None
    assert any("non-empty danger mask" in n for n in m.notes)


def test_no_danger_marked_means_breach_not_assessed() -> None:
    m = clip_metrics(base(), CAL, TIMES)
    assert m.breach is None
    assert m.min_tip_to_danger_mm is None
    assert any("breach not assessed" in n for n in m.notes)


def test_no_spread_marked() -> None:
    ann = base().without_spread(5).without_spread(7)
    m = clip_metrics(ann, CAL, TIMES)
    assert m.max_spread_area_mm2 is None
    assert "no spread marked: no spread area" in m.notes
    assert m.spread_covers_target is None


def test_measurement_across_regions_is_skipped_with_a_note() -> None:
    # the target sits in a second image beside the first: no distance across regions
    side = UltrasoundRegion(
        min_x0=150,
        min_y0=0,
        max_x1=199,
        max_y1=99,
        spatial_format=1,
        data_type=1,
        units_x=3,
        units_y=3,
        delta_x_cm=0.01,
        delta_y_cm=0.02,
    )
    left = UltrasoundRegion(
        min_x0=0,
        min_y0=0,
        max_x1=149,
        max_y1=99,
        spatial_format=1,
        data_type=1,
        units_x=3,
        units_y=3,
        delta_x_cm=0.01,
        delta_y_cm=0.02,
    )
    ann = base().with_target(0, TargetMark((40, 160), "L5")).with_target(8, TargetMark((60, 160), "L5"))
    m = clip_metrics(ann, Calibration((left, side)), TIMES)
    assert m.tip_to_target_at_injection_start_mm is None
    assert any(n.startswith("tip-to-target on frame 4 not measurable") for n in m.notes)
    assert m.needle_angle_deg == pytest.approx(45.0)


def test_frame_times_of_another_clip_are_refused() -> None:
    with pytest.raises(MetricsError, match="expected frame times for the annotation's 10 frames"):
        clip_metrics(base(), CAL, FrameTimes((0.0, 50.0), None, "FrameTime", 50.0))


def test_untimed_clip_has_no_time_metrics_but_keeps_the_rest() -> None:
    annotation = with_danger(base())
    timed = clip_metrics(annotation, CAL, TIMES)
    untimed = clip_metrics(annotation, CAL, unknown_frame_times(TIMES.number_of_frames))
    assert timed.needle_visible_to_injection_end_s is not None
    assert untimed.needle_visible_to_injection_end_s is None
    assert UNTIMED_NOTE in untimed.notes and UNTIMED_NOTE not in timed.notes
    assert untimed.tip_to_target_at_injection_start_mm == timed.tip_to_target_at_injection_start_mm
    assert untimed.breaches == timed.breaches


def test_metrics_on_held_target_and_danger_after_their_keyframes() -> None:
    # target and danger marked once, on frame 2; the injection starts on frame 4
    ann = ClipAnnotation.new("1.2.3", "alice", N_FRAMES, SHAPE)
    ann = ann.with_needle(2, NeedleMark(((10, 10), (20, 50)))).with_needle(
        6, NeedleMark(((10, 10), (40, 50)))
    )
    ann = ann.with_target(2, TargetMark((50, 80), "L5 SAP-TP junction"))
    ann = ann.with_danger(2, "nerve root", box(38, 45, 48, 52))
    ann = ann.with_event(ClipEvent.INJECTION_START, 4)
    assert ann.target_at(4) == TargetMark((50, 80), "L5 SAP-TP junction")
    m = clip_metrics(ann, CAL, TIMES)
    # interpolated tip (30, 50) to the held target (50, 80): 4 mm down, 3 mm across
    assert m.tip_to_target_at_injection_start_mm == pytest.approx(5.0)
    assert not any("no target" in n for n in m.notes)
    # the held nerve root (rows 38..45) is reached by the tip on frame 6 (40, 50): inside
    assert m.breaches == (Breach(6, "nerve root", BreachBy.TIP),)
    assert m.min_tip_to_danger_mm == 0.0
    assert m.min_tip_to_danger_frame == 6


def test_metrics_on_interpolated_and_held_spread() -> None:
    # a 10x10 spread on frame 2 growing to 30x30 on frame 6, both centred on (50, 100)
    small, large = box(45, 54, 95, 104), box(35, 64, 85, 114)
    ann = ClipAnnotation.new("1.2.3", "alice", N_FRAMES, SHAPE).with_spread(2, small).with_spread(6, large)
    ann = ann.with_target(0, TargetMark((37, 100), "L5 SAP-TP junction"))
    ann = ann.with_event(ClipEvent.INJECTION_START, 2)
    shown = {f: ann.spread_at(f) for f in range(N_FRAMES)}
    assert shown[0] is None and shown[1] is None
    areas = [int(shown[f].sum()) for f in range(2, N_FRAMES)]  # type: ignore[union-attr]
    assert areas[0] == 100 and areas[4:] == [900] * 4  # keyframes, then held after frame 6
    assert areas[0] < areas[1] < areas[2] < areas[3] < areas[4]  # grows between the keyframes
    m = clip_metrics(ann, CAL, TIMES)
    assert m.max_spread_area_mm2 == pytest.approx(900 * 0.02)
    assert m.max_spread_frame == 6
    # the target at row 37 (13 rows above the centre) is first covered on an interpolated frame
    assert m.spread_covers_target is True
    frame = m.spread_covers_target_frame
    assert frame is not None and 2 < frame < 6
    assert ann.is_interpolated("spread", frame)
    assert shown[frame][37, 100] and not shown[frame - 1][37, 100]  # type: ignore[index]
