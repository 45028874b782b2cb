"""Generate one synthetic clip and its ground truth; write both to disk."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from archive.errors import PhantomError
from archive.model import ClipEvent, NeedleView
from archive.phantom.anatomy import Anatomy, Ellipse, build_anatomy
from archive.phantom.banner import banner_lines, draw_annotation
from archive.phantom.course import Course, plan_course
from archive.phantom.encode import build_dataset, clip_uids
from archive.phantom.geometry import BANNER_ROWS, Layout, make_layout
from archive.phantom.render import render_region
from archive.phantom.spec import ClipSpec
from archive.phantom.truth import GroundTruth, Metrics

logger = logging.getLogger(__name__)

#: Largest seed accepted (numpy accepts more; DICOM UIDs and JSON stay readable).
MAX_SEED = 2**63 - 1


def generate_clip(spec: ClipSpec, seed: int) -> tuple[Dataset, GroundTruth]:
    """Render a clip as a DICOM dataset with its ground truth.

    Parameters
    ----------
    spec : ClipSpec
        What the clip shows and how it is coded.
    seed : int
        0 to 2**63 − 1; the same spec and seed give the same output.

    Returns
    -------
    dataset : pydicom.dataset.Dataset
        With file meta; pixel data of shape (T, rows, cols[, 3]).
    truth : GroundTruth
        Per-frame geometry and audit metrics; pixels agree with it.

    Raises
    ------
    PhantomError
        If ``seed`` is out of range.
    """
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise PhantomError(f"phantom seed: expected an integer from 0 to 2**63-1, but got {seed!r}")
    layout = make_layout(spec.rows, spec.cols, spec.depth_mm)
    anatomy = build_anatomy(
        spec.level,
        spec.side,
        spec.target_depth,
        danger=spec.danger,
        oblique=spec.oblique,
        rng=np.random.default_rng([seed, 1]),
    )
    course_rng = np.random.default_rng([seed, 2])
    tip_to_target_mm = (
        spec.tip_to_target_mm if spec.tip_to_target_mm is not None else float(course_rng.uniform(0.5, 6.0))
    )
    course = plan_course(
        anatomy,
        layout,
        frames=spec.frames,
        needle_view=spec.needle_view,
        angle_deg=spec.needle_angle_deg,
        tip_to_target_mm=tip_to_target_mm,
        rng=course_rng,
    )
    region = render_region(layout, anatomy, course, spec.needle_view, np.random.default_rng([seed, 3]))
    grey = np.zeros((spec.frames, spec.rows, spec.cols), dtype=np.uint8)
    min_col, min_row, max_col, max_row = layout.region
    grey[:, min_row : max_row + 1, min_col : max_col + 1] = region
    overlay = draw_annotation(spec, layout)
    dataset = build_dataset(spec, seed, layout, grey, overlay)
    truth = _truth(spec, seed, layout, anatomy, course)
    logger.debug("generated %s frames=%d seed=%d", spec.level, spec.frames, seed)
    return dataset, truth


def write_clip(spec: ClipSpec, out_dir: Path, seed: int, stem: str | None = None) -> tuple[Path, Path]:
    """Generate a clip and write ``<stem>.dcm`` and ``<stem>.json`` into ``out_dir``.

    Parameters
    ----------
    spec : ClipSpec
        What the clip shows.
    out_dir : Path
        Created if missing.
    seed : int
        0 to 2**63 − 1.
    stem : str, optional
        File name stem; default ``<level>_<side>_<seed>``.

    Returns
    -------
    dcm_path, json_path : Path
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset, truth = generate_clip(spec, seed)
    name = stem or f"{spec.level.value}_{spec.side.laterality}_{seed}"
    dcm_path = out_dir / f"{name}.dcm"
    json_path = out_dir / f"{name}.json"
    dataset.save_as(dcm_path, enforce_file_format=True)
    json_path.write_text(truth.to_json(), encoding="utf-8")
    logger.info("wrote %s and %s", dcm_path, json_path)
    return dcm_path, json_path


def _truth(spec: ClipSpec, seed: int, layout: Layout, anatomy: Anatomy, course: Course) -> GroundTruth:
    frames = spec.frames
    spacing = layout.spacing_mm
    full_x, full_y = _full_grid_mm(layout)
    fan = layout.in_fan(full_x, full_y)
    spread = np.zeros((frames, spec.rows, spec.cols), dtype=bool)
    danger = np.zeros((frames, spec.rows, spec.cols), dtype=bool) if anatomy.danger is not None else None
    targets: list[list[float]] = []
    needle: list[list[list[float]] | None] = []
    for t, (d_row, d_col) in enumerate(course.shifts_px.tolist()):
        shift_x, shift_y = d_col * spacing, d_row * spacing
        row, col = layout.to_pixel(*anatomy.target_mm)
        targets.append([row + d_row, col + d_col])
        needle.append(_needle_polyline(layout, course, spec.needle_view, t, (d_row, d_col)))
        shape = course.spreads[t]
        if shape is not None:
            x_mm, y_mm = full_x - shift_x, full_y - shift_y
            spread[t] = _mask(shape, x_mm, y_mm) & anatomy.soft_tissue(x_mm, y_mm) & fan
        if danger is not None and anatomy.danger is not None:
            danger[t] = _mask(anatomy.danger, full_x - shift_x, full_y - shift_y) & fan

    events = course.events
    target = np.array(anatomy.target_mm)
    start = events.injection_start
    tip_at_start = None if start is None else float(np.hypot(*(course.tips_mm[start] - target)))
    min_danger = None
    if anatomy.danger is not None:
        tips = course.tips_mm[~np.isnan(course.tips_mm[:, 0])]
        min_danger = min(anatomy.danger.distance_mm(float(x), float(y)) for x, y in tips)
    duration = None
    if events.needle_visible is not None and events.injection_end is not None:
        duration = (events.injection_end - events.needle_visible) * spec.frame_time_ms / 1000.0
    metrics = Metrics(
        tip_to_target_at_injection_start_mm=tip_at_start,
        tip_to_target_final_mm=float(np.hypot(*(np.array(course.tip_final_mm) - target))),
        needle_angle_to_skin_deg=spec.needle_angle_deg if spec.needle_view is NeedleView.IN_PLANE else None,
        max_spread_area_mm2=None if course.spread_max is None else anatomy.fluid_area_mm2(course.spread_max),
        min_tip_to_danger_mm=min_danger,
        needle_visible_to_injection_end_s=duration,
        frame_time_ms=spec.frame_time_ms,
    )
    calibration: dict[str, object] = dict(layout.calibration_record())
    calibration.update(
        spacing_mm=spacing,
        probe_radius_mm=layout.probe_radius_mm,
        fan_half_angle_deg=layout.half_angle_deg,
        depth_mm=layout.depth_mm,
    )
    return GroundTruth(
        seed=seed,
        sop_instance_uid=str(clip_uids(spec, seed)[2]),
        level=spec.level.value,
        side=spec.side.value,
        technique=spec.technique.value,
        needle_view=spec.needle_view.value,
        target_name=anatomy.target_name,
        target_mm=[float(v) for v in anatomy.target_mm],
        targets=targets,
        needle=needle,
        events={
            ClipEvent.NEEDLE_VISIBLE.value: events.needle_visible,
            ClipEvent.TARGET_REACHED.value: events.target_reached,
            ClipEvent.INJECTION_START.value: events.injection_start,
            ClipEvent.INJECTION_END.value: events.injection_end,
        },
        spread=spread,
        danger=danger,
        danger_name=anatomy.danger_name,
        calibration=calibration,
        banner={"rows": [0, BANNER_ROWS], "lines": list(banner_lines(spec))},
        metrics=metrics,
        shifts_px=course.shifts_px.tolist(),
    )


def _full_grid_mm(layout: Layout) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rows = (np.arange(layout.rows, dtype=np.float64) - layout.ref_row) * layout.spacing_mm
    cols = (np.arange(layout.cols, dtype=np.float64) - layout.ref_col) * layout.spacing_mm
    grid_y, grid_x = np.meshgrid(rows, cols, indexing="ij")
    return grid_x, grid_y


def _mask(
    shape: Ellipse, x_mm: npt.NDArray[np.float64], y_mm: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    return shape.contains(x_mm, y_mm)


def _needle_polyline(
    layout: Layout, course: Course, view: NeedleView, t: int, shift: tuple[int, int]
) -> list[list[float]] | None:
    """Visible needle in full-image pixels for frame ``t``, superficial end first."""
    tip_x, tip_y = course.tips_mm[t]
    if np.isnan(tip_x):
        return None
    d_row, d_col = shift
    tip_row, tip_col = layout.to_pixel(tip_x, tip_y)
    tip = [tip_row + d_row, tip_col + d_col]
    if view is NeedleView.OUT_OF_PLANE:
        return [tip]
    ex, ey = course.entry_mm
    length = float(np.hypot(tip_x - ex, tip_y - ey))
    s = np.arange(0.0, length, 0.02)
    xs = ex + course.direction[0] * s
    ys = ey + course.direction[1] * s
    inside = layout.in_fan(xs + d_col * layout.spacing_mm, ys + d_row * layout.spacing_mm)
    first = int(np.argmax(inside)) if inside.any() else len(s) - 1
    start_row, start_col = layout.to_pixel(float(xs[first]), float(ys[first]))
    return [[start_row + d_row, start_col + d_col], tip]
