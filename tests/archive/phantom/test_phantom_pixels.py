"""The pixels agree with the ground truth; the banner stays outside the region."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from phantom_cases import SPECS, Generated
from pydicom.pixels import pixel_array

from archive.model import ClipEvent
from archive.phantom import GroundTruth, PatientIdentity, generate_clip
from archive.phantom.banner import draw_annotation
from archive.phantom.geometry import make_layout
from archive.phantom.scoring import observable_area

IN_PLANE = ["l4_mono_in_plane", "l3_jpeg_in_plane", "c4_danger_chinese"]


def grey_frames(gen: Generated) -> npt.NDArray[np.float64]:
    arr = pixel_array(str(gen.dcm)).astype(np.float64)
    if gen.spec.frames == 1:
        arr = arr[np.newaxis]
    return arr.mean(axis=-1) if arr.ndim == 4 else arr


def sample(
    frame: npt.NDArray[np.float64], rows: npt.NDArray[np.float64], cols: npt.NDArray[np.float64]
) -> float:
    return float(frame[np.rint(rows).astype(int), np.rint(cols).astype(int)].mean())


@pytest.mark.parametrize("name", IN_PLANE)
def test_in_plane_needle_is_brighter_than_tissue_above_it(generated: dict[str, Generated], name: str) -> None:
    gen = generated[name]
    frames = grey_frames(gen)
    spacing = gen.truth.calibration["spacing_mm"]
    checked = 0
    for t, line in enumerate(gen.truth.needle):
        if line is None:
            continue
        (r0, c0), (r1, c1) = line
        length = math.hypot(r1 - r0, c1 - c0)
        if length * spacing < 4.0:
            continue
        s = np.linspace(0.15, 0.85, 40)
        rows, cols = r0 + s * (r1 - r0), c0 + s * (c1 - c0)
        # shallower side of the shaft: reverberation lies deeper
        offset = 2.5 / spacing
        needle = sample(frames[t], rows, cols)
        above = sample(frames[t], rows - offset, cols)
        assert needle > above + 40, f"frame {t}: needle {needle:.0f} vs tissue above {above:.0f}"
        checked += 1
    assert checked >= 5


def test_out_of_plane_dot_is_brighter_than_its_ring(generated: dict[str, Generated]) -> None:
    gen = generated["l5_rgb_out_of_plane"]
    frames = grey_frames(gen)
    spacing = gen.truth.calibration["spacing_mm"]
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    visible = [(t, tip) for t, tip in enumerate(gen.truth.tips) if tip is not None]
    assert len(visible) >= 5
    for t, (row, col) in visible:
        radius = 2.5 / spacing
        ring = sample(frames[t], row - radius * np.abs(np.sin(angles)), col + radius * np.cos(angles))
        dot = sample(frames[t], np.array([row]), np.array([col]))
        assert dot > ring + 40, f"frame {t}: dot {dot:.0f} vs ring {ring:.0f}"


@pytest.mark.parametrize("name", ["l4_mono_in_plane", "l5_rgb_out_of_plane", "l3_jpeg_in_plane"])
def test_spread_is_darker_than_before_injection(generated: dict[str, Generated], name: str) -> None:
    gen = generated[name]
    frames = grey_frames(gen)
    events = gen.truth.events
    start, end = events[ClipEvent.INJECTION_START.value], events[ClipEvent.INJECTION_END.value]
    assert start is not None and end is not None and end > start
    mask = gen.truth.spread[end]
    assert mask.sum() > 50
    assert not gen.truth.spread[start - 1].any()
    before = frames[start - 1][mask].mean()
    after = frames[end][mask].mean()
    assert after < before - 25, f"spread {after:.0f} not darker than before {before:.0f}"
    # the pool grows
    areas = gen.truth.spread[start : end + 1].sum(axis=(1, 2))
    assert np.all(np.diff(areas) >= -5) and areas[-1] > areas[0]


@pytest.mark.parametrize("name", ["l4_mono_in_plane", "l3_jpeg_in_plane", "c4_danger_chinese"])
def test_spread_truth_lies_where_the_beam_shows_tissue(generated: dict[str, Generated], name: str) -> None:
    """Injectate pools in soft tissue: its truth is not in bone or the acoustic shadow behind it."""
    gen = generated[name]
    frames = grey_frames(gen)
    start, end = gen.truth.events["injection start"], gen.truth.events["injection end"]
    assert start is not None and end is not None
    mask = gen.truth.spread[end]
    observable = observable_area(frames[start - 1].astype(np.uint8), gen.truth.calibration["spacing_mm"])
    assert mask.sum() > 50
    assert np.count_nonzero(mask & observable) >= 0.95 * np.count_nonzero(mask)


def test_black_outside_fan_and_region_without_banner(generated: dict[str, Generated]) -> None:
    gen = generated["l4_mono_in_plane"]
    frames = grey_frames(gen)
    cal = gen.truth.calibration
    min_col, min_row = cal["RegionLocationMinX0"], cal["RegionLocationMinY0"]
    max_col = cal["RegionLocationMaxX1"]
    # the region's top corners are outside the convex fan: black
    assert frames[:, min_row : min_row + 3, min_col : min_col + 3].max() == 0
    assert frames[:, min_row : min_row + 3, max_col - 2 : max_col + 1].max() == 0
    # the banner rows hold text
    top, bottom = gen.truth.banner["rows"]
    assert bottom <= min_row
    assert frames[0, top:bottom].max() > 200


def test_banner_text_is_drawn_only_outside_the_region() -> None:
    spec = SPECS["l4_mono_in_plane"]
    layout = make_layout(spec.rows, spec.cols, spec.depth_mm)
    overlay = draw_annotation(spec, layout).any(axis=-1)
    min_col, min_row, max_col, max_row = layout.region
    assert overlay.any()
    assert not overlay[min_row : max_row + 1, min_col : max_col + 1].any()


def test_patient_identity_changes_pixels_only_outside_the_region() -> None:
    base = dataclasses.replace(SPECS["l4_mono_in_plane"], frames=8)
    other = dataclasses.replace(
        base,
        identity=PatientIdentity(
            patient_name="LEAKCHECK^ZULU", patient_id="ZZ987654", birth_date=dt.date(1950, 1, 2)
        ),
    )
    ds_a, truth = generate_clip(base, seed=3)
    ds_b, _ = generate_clip(other, seed=3)
    diff = np.asarray(ds_a.pixel_array) != np.asarray(ds_b.pixel_array)
    rows, cols = np.nonzero(diff.any(axis=0))
    assert rows.size > 0, "patient text is not burned in"
    cal = truth.calibration
    inside = (
        (rows >= cal["RegionLocationMinY0"])
        & (rows <= cal["RegionLocationMaxY1"])
        & (cols >= cal["RegionLocationMinX0"])
        & (cols <= cal["RegionLocationMaxX1"])
    )
    assert not inside.any()
    assert ds_b.PatientName == "LEAKCHECK^ZULU"


def test_calibration_maps_ground_truth_pixels_to_model_mm(generated: dict[str, Generated]) -> None:
    gen = generated["l4_mono_in_plane"]
    ds = pydicom.dcmread(gen.dcm, stop_before_pixels=True)
    region = ds.SequenceOfUltrasoundRegions[0]

    def to_mm(row: float, col: float) -> tuple[float, float]:
        # DOMAIN.md: x_mm = 10 * (RefPhysX + (x - (MinX0 + RefPixX0)) * DeltaX)
        x = 10 * (
            region.ReferencePixelPhysicalValueX
            + (col - (region.RegionLocationMinX0 + region.ReferencePixelX0)) * region.PhysicalDeltaX
        )
        y = 10 * (
            region.ReferencePixelPhysicalValueY
            + (row - (region.RegionLocationMinY0 + region.ReferencePixelY0)) * region.PhysicalDeltaY
        )
        return x, y

    for (row, col), (d_row, d_col) in zip(gen.truth.targets, gen.truth.shifts_px, strict=True):
        x, y = to_mm(row - d_row, col - d_col)
        assert x == pytest.approx(gen.truth.target_mm[0], abs=1e-6)
        assert y == pytest.approx(gen.truth.target_mm[1], abs=1e-6)


def _px_to_mm(truth: GroundTruth, point: list[float], t: int) -> npt.NDArray[np.float64]:
    spacing = truth.calibration["spacing_mm"]
    d_row, d_col = truth.shifts_px[t]
    return np.array([(point[1] - d_col), (point[0] - d_row)]) * spacing


def test_metrics_agree_with_per_frame_geometry(generated: dict[str, Generated]) -> None:
    truth = generated["l4_mono_in_plane"].truth
    metrics = truth.metrics
    start = truth.events[ClipEvent.INJECTION_START.value]
    assert start is not None
    tip = truth.tips[start]
    assert tip is not None
    distance = np.hypot(*(_px_to_mm(truth, tip, start) - _px_to_mm(truth, truth.targets[start], start)))
    assert metrics.tip_to_target_at_injection_start_mm == pytest.approx(distance, abs=1e-6)
    assert 0.5 <= distance <= 6.0
    (r0, c0), (r1, c1) = truth.needle[start]  # type: ignore[misc]
    angle = math.degrees(math.atan2(r1 - r0, abs(c1 - c0)))
    assert metrics.needle_angle_to_skin_deg == pytest.approx(angle, abs=0.5)
    spacing = truth.calibration["spacing_mm"]
    area = truth.spread.sum(axis=(1, 2)).max() * spacing**2
    assert metrics.max_spread_area_mm2 == pytest.approx(area, rel=0.06)
    visible, end = truth.events["needle visible"], truth.events["injection end"]
    assert visible is not None and end is not None
    assert metrics.needle_visible_to_injection_end_s == pytest.approx((end - visible) * 0.05)


def test_danger_distance_agrees_with_mask(generated: dict[str, Generated]) -> None:
    truth = generated["c4_danger_chinese"].truth
    assert truth.danger is not None and truth.danger.any(axis=(1, 2)).all()
    assert truth.metrics.min_tip_to_danger_mm is not None
    spacing = truth.calibration["spacing_mm"]
    nearest = math.inf
    for t, tip in enumerate(truth.tips):
        if tip is None:
            continue
        rows, cols = np.nonzero(truth.danger[t])
        nearest = min(nearest, float(np.min(np.hypot(rows - tip[0], cols - tip[1]))) * spacing)
    assert truth.metrics.min_tip_to_danger_mm == pytest.approx(nearest, abs=0.5)
    assert 2.0 < truth.metrics.min_tip_to_danger_mm < 30.0


@pytest.mark.parametrize("name", ["l4_mono_in_plane", "l5_rgb_out_of_plane", "c4_danger_chinese"])
def test_events_agree_with_per_frame_geometry(generated: dict[str, Generated], name: str) -> None:
    truth = generated[name].truth
    ev = {k: v for k, v in truth.events.items() if v is not None}
    assert ev["needle visible"] < ev["target reached"] < ev["injection start"] < ev["injection end"]
    assert all(line is None for line in truth.needle[: ev["needle visible"]])
    assert all(line is not None for line in truth.needle[ev["needle visible"] :])
    resting = {
        tuple(np.round(_px_to_mm(truth, tip, t), 6))
        for t, tip in enumerate(truth.tips)
        if tip is not None and t >= ev["target reached"]
    }
    assert len(resting) == 1  # the tip rests from "target reached" on (only the probe moves)
    depths = [
        _px_to_mm(truth, tip, t)[1] for t, tip in enumerate(truth.tips[: ev["target reached"] + 1]) if tip
    ]
    assert all(b >= a for a, b in itertools.pairwise(depths))  # advancing, never withdrawn
    has_spread = truth.spread.any(axis=(1, 2))
    assert not has_spread[: ev["injection start"]].any() and has_spread[ev["injection start"] :].all()
