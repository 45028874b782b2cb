"""The course of a procedure over the frames of a clip, in millimetres.

Needle entry and advance (jerky, monotone), the frames of the key events,
probe motion (whole-pixel shifts of the anatomy) and the growing injectate
pool. Everything here is geometry: the renderer draws it, the ground truth
records it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from archive.errors import PhantomError
from archive.model import NeedleView
from archive.phantom.anatomy import Anatomy, Ellipse
from archive.phantom.geometry import Layout

#: Shortest in-plane shaft length counted as "needle visible", mm.
MIN_VISIBLE_SHAFT_MM = 2.0
#: Largest probe-motion shift in pixels, each direction.
MAX_SHIFT_PX = 3


@dataclass(frozen=True)
class Events:
    """0-based frame indices of the key moments; ``None`` if not in the clip."""

    needle_visible: int | None
    target_reached: int | None
    injection_start: int | None
    injection_end: int | None


@dataclass(frozen=True)
class Course:
    """What happens in each frame.

    Attributes
    ----------
    shifts_px : ndarray of shape (T, 2), int64
        Probe motion: ``(d_row, d_col)`` by which the anatomy moves in frame t.
    tips_mm : ndarray of shape (T, 2), float64
        Needle tip ``(x_mm, y_mm)`` in anatomy coordinates (before shift);
        NaN where the needle is not yet in the image.
    entry_mm : tuple of float
        Skin puncture point (in-plane) or the point above the target where the
        out-of-plane needle is first seen.
    direction : tuple of float
        Unit vector of needle advance in mm (in-plane); ``(0, 1)`` out-of-plane.
    spreads : tuple of (Ellipse or None)
        Injectate pool per frame, anatomy coordinates; the fluid is the part
        in soft tissue (:meth:`~archive.phantom.anatomy.Anatomy.soft_tissue`).
    events : Events
    tip_final_mm : tuple of float
        Where the tip rests from "target reached" on.
    """

    shifts_px: npt.NDArray[np.int64]
    tips_mm: npt.NDArray[np.float64]
    entry_mm: tuple[float, float]
    direction: tuple[float, float]
    spreads: tuple[Ellipse | None, ...]
    events: Events
    tip_final_mm: tuple[float, float]
    spread_max: Ellipse | None


def plan_course(
    anatomy: Anatomy,
    layout: Layout,
    *,
    frames: int,
    needle_view: NeedleView,
    angle_deg: float,
    tip_to_target_mm: float,
    rng: np.random.Generator,
) -> Course:
    """Lay out needle advance, events, probe motion and injectate over ``frames``.

    Parameters
    ----------
    anatomy : Anatomy
        The view; the needle heads for ``anatomy.target_mm``.
    layout : Layout
        Used to find where the needle enters the imaged sector.
    frames : int
        Number of frames; 1 gives a snapshot with the needle at rest before
        injection.
    needle_view : NeedleView
        In-plane (shaft from the lateral side) or out-of-plane (dot walking down).
    angle_deg : float
        In-plane angle to the skin line.
    tip_to_target_mm : float
        Final tip-to-target distance.
    rng : numpy.random.Generator
        Source of advance jitter, probe motion and pool size.

    Returns
    -------
    Course
    """
    tx, ty = anatomy.target_mm
    sign = anatomy.lateral_sign
    if needle_view is NeedleView.IN_PLANE:
        rad = math.radians(angle_deg)
        direction = (-sign * math.cos(rad), math.sin(rad))
        normal = (direction[1], -direction[0])
        perp = float(rng.uniform(-0.35, 0.35)) * tip_to_target_mm
        along = math.sqrt(max(tip_to_target_mm**2 - perp**2, 0.0))
        tip_final = (
            tx - direction[0] * along + normal[0] * perp,
            ty - direction[1] * along + normal[1] * perp,
        )
        path_mm = tip_final[1] / direction[1]
        entry = (tip_final[0] - direction[0] * path_mm, 0.0)
        s_enter = _first_in_fan(layout, entry, direction, path_mm) + MIN_VISIBLE_SHAFT_MM
        _check_path_clear(anatomy, entry, tip_final, angle_deg)
    else:
        direction = (0.0, 1.0)
        # the dot sits a little lateral of the target (the target is a bone corner)
        tip_final = _scaled_offset(anatomy.target_mm, (tx + sign * 0.6, ty - 0.8), tip_to_target_mm)
        entry = (tip_final[0], max(6.0, tip_final[1] * 0.3))
        path_mm = tip_final[1] - entry[1]
        s_enter = 0.0

    if frames == 1:
        events = timeline(1)
        tips = np.array([tip_final], dtype=np.float64)
        shifts = np.zeros((1, 2), dtype=np.int64)
        return Course(shifts, tips, entry, direction, (None,), events, tip_final, None)

    events = timeline(frames)
    f_vis, f_reach, f_start, f_end = (
        int(events.needle_visible or 0),
        int(events.target_reached or 0),
        int(events.injection_start or 0),
        int(events.injection_end or 0),
    )

    steps = rng.gamma(2.0, 1.0, size=f_reach - f_vis)
    progress = np.concatenate([[0.0], np.cumsum(steps) / np.sum(steps)])  # f_vis .. f_reach
    tips = np.full((frames, 2), np.nan, dtype=np.float64)
    for k, p in enumerate(progress):
        s = s_enter + (path_mm - s_enter) * p
        tips[f_vis + k] = (entry[0] + direction[0] * s, entry[1] + direction[1] * s)
    tips[f_reach:] = tip_final

    spread_max = Ellipse(
        centre_mm=(tip_final[0], tip_final[1] - 1.5),
        semi_axes_mm=(float(rng.uniform(5.5, 8.0)), float(rng.uniform(3.2, 4.5))),
    )
    spreads: list[Ellipse | None] = []
    for t in range(frames):
        if t < f_start:
            spreads.append(None)
            continue
        fraction = min(1.0, (t - f_start + 1) / (f_end - f_start + 1))
        scale = math.sqrt(fraction)
        a, b = spread_max.semi_axes_mm
        spreads.append(
            Ellipse(
                centre_mm=(spread_max.centre_mm[0], tip_final[1] - 1.5 * scale),
                semi_axes_mm=(a * scale, b * scale),
            )
        )
    return Course(
        shifts_px=_probe_motion(frames, rng),
        tips_mm=tips,
        entry_mm=entry,
        direction=direction,
        spreads=tuple(spreads),
        events=events,
        tip_final_mm=tip_final,
        spread_max=spread_max,
    )


def timeline(frames: int) -> Events:
    """Frames of the key events for a clip of ``frames`` frames (fixed fractions).

    One frame is a snapshot with the needle at rest before injection.
    """
    if frames == 1:
        return Events(needle_visible=0, target_reached=0, injection_start=None, injection_end=None)
    f_vis = max(1, round(0.12 * frames))
    f_reach = max(f_vis + 2, round(0.55 * frames))
    f_start = min(frames - 3, f_reach + max(1, round(0.08 * frames)))
    f_end = min(frames - 1, f_start + max(2, round(0.25 * frames)))
    return Events(needle_visible=f_vis, target_reached=f_reach, injection_start=f_start, injection_end=f_end)


def _scaled_offset(
    target: tuple[float, float], point: tuple[float, float], distance_mm: float
) -> tuple[float, float]:
    dx, dy = point[0] - target[0], point[1] - target[1]
    norm = math.hypot(dx, dy)
    if norm == 0.0:
        return target
    return target[0] + dx / norm * distance_mm, target[1] + dy / norm * distance_mm


def _check_path_clear(
    anatomy: Anatomy, entry: tuple[float, float], tip: tuple[float, float], angle_deg: float
) -> None:
    """Raise PhantomError if the in-plane shaft would pass through bone on its way to the tip."""
    a = np.array(entry)
    b = np.array(tip)
    length = float(np.hypot(*(b - a)))
    # the last 2 mm may touch the bone the target sits on
    b = a + (b - a) * max(0.0, (length - 2.0) / length)
    for name, polyline in zip(anatomy.bone_names, anatomy.bones, strict=True):
        for c, d in itertools.pairwise(polyline):
            if _segments_cross(a, b, c, d):
                raise PhantomError(
                    f"phantom needle_angle_deg: expected an angle whose in-plane path clears the bone, "
                    f"but at {angle_deg:g} deg the shaft crosses the {name}; use a steeper angle "
                    "(or an oblique view for L5)"
                )


def _segments_cross(
    a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    c: npt.NDArray[np.float64],
    d: npt.NDArray[np.float64],
) -> bool:
    def side(p: npt.NDArray[np.float64], q: npt.NDArray[np.float64], r: npt.NDArray[np.float64]) -> float:
        return float((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))

    return side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0


def _first_in_fan(
    layout: Layout, entry: tuple[float, float], direction: tuple[float, float], path_mm: float
) -> float:
    """Path length (mm) at which the needle line enters the sector."""
    s = np.arange(0.0, path_mm, 0.05)
    inside = layout.in_fan(entry[0] + direction[0] * s, entry[1] + direction[1] * s)
    if not inside.any():
        return path_mm
    return float(s[int(np.argmax(inside))])


def _probe_motion(frames: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Slow, smooth hand motion: sums of two sinusoids per axis, rounded to pixels."""
    t = np.arange(frames, dtype=np.float64)
    shifts = np.zeros((frames, 2), dtype=np.float64)
    for axis, amplitude in ((0, 1.2), (1, 2.4)):
        for _ in range(2):
            period = rng.uniform(0.6, 1.6) * frames
            phase = rng.uniform(0.0, 2.0 * np.pi)
            shifts[:, axis] += amplitude / 2.0 * np.sin(2.0 * np.pi * t / period + phase)
    rounded = np.clip(np.rint(shifts), -MAX_SHIFT_PX, MAX_SHIFT_PX).astype(np.int64)
    return rounded
