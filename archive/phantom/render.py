"""B-mode frames of the 2D region from the anatomy and the course (pure numpy).

The static scene (tissue layers, speckle, bone surfaces with their acoustic
shadows, the spinal canal) is simulated once on a grid slightly larger than
the region and cut out per frame at the probe-motion shift. Per frame the
injectate pool darkens the tissue, the needle (shaft with reverberation, or an
out-of-plane dot) is added, then depth attenuation, electronic noise, log
compression and the fan mask are applied.

The injectate is fluid in soft tissue: the pool is the course's ellipse
clipped to :meth:`~archive.phantom.anatomy.Anatomy.soft_tissue` (it does not
enter bone), the same region the ground truth records. Fluid is anechoic, so
the pool removes the tissue echo wherever it lies; where it lies in the
acoustic shadow the beam does not reach it and nothing changes there. The
bone surface's own echo is kept (the interface still reflects).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from archive.model import NeedleView
from archive.phantom.anatomy import Anatomy, Ellipse
from archive.phantom.course import MAX_SHIFT_PX, Course
from archive.phantom.geometry import Layout

F32 = npt.NDArray[np.float32]

#: Amplitude of a bone surface (tissue is about 0.5).
BONE_AMPLITUDE = 6.0
#: Amplitude of the needle shaft.
NEEDLE_AMPLITUDE = 9.0
#: Dynamic range of the log compression, dB.
DYNAMIC_RANGE_DB = 50.0
#: Level mapped to white, dB re amplitude 1.
WHITE_DB = 20.0
#: Electronic noise floor (amplitude).
NOISE_AMPLITUDE = 0.045
#: Spacing of needle reverberation echoes, mm.
REVERB_SPACING_MM = 1.4


def render_region(
    layout: Layout,
    anatomy: Anatomy,
    course: Course,
    needle_view: NeedleView,
    rng: np.random.Generator,
) -> npt.NDArray[np.uint8]:
    """Render every frame of the 2D region.

    Parameters
    ----------
    layout : Layout
        Region rectangle, spacing and fan.
    anatomy : Anatomy
        Bones, target, danger structure (mm).
    course : Course
        Needle, injectate and probe motion per frame.
    needle_view : NeedleView
        Shaft or dot.
    rng : numpy.random.Generator
        Speckle and noise.

    Returns
    -------
    ndarray of shape (T, H, W), uint8
        Grey levels of the region rectangle; zero outside the fan.
    """
    margin = MAX_SHIFT_PX
    body_x, body_y = layout.region_grid_mm(margin)
    bone_weight, bone_echo = _bone_weight(anatomy, body_x, body_y)
    echo = _tissue(anatomy, body_x, body_y, layout.spacing_mm, rng)
    echo = echo * _shadow(layout, bone_weight, body_x, body_y) + BONE_AMPLITUDE * bone_echo
    body = (echo * _speckle(echo.shape, layout.spacing_mm, rng)).astype(np.float32)

    height, width = layout.region_shape
    region_x, region_y = layout.region_grid_mm()
    gain = (np.exp(-0.022 * region_y) * (1.0 + 0.35 * np.exp(-region_y / 3.0))).astype(np.float32)
    fan = layout.fan_mask()
    frames = np.zeros((len(course.shifts_px), height, width), dtype=np.uint8)
    min_col, min_row, _, _ = layout.region
    for t, (d_row, d_col) in enumerate(course.shifts_px):
        rows = slice(margin - d_row, margin - d_row + height)
        cols = slice(margin - d_col, margin - d_col + width)
        amp = body[rows, cols].copy()
        shift_x, shift_y = d_col * layout.spacing_mm, d_row * layout.spacing_mm
        spread = course.spreads[t]
        if spread is not None:
            box = _ellipse_box(layout, spread, (min_row - d_row, min_col - d_col), (height, width))
            x_mm, y_mm = region_x[box] - shift_x, region_y[box] - shift_y
            pool = (_ellipse_mask(spread, x_mm, y_mm) & anatomy.soft_tissue(x_mm, y_mm)).astype(np.float32)
            soft = ndimage.gaussian_filter(pool, 1.0)
            amp[box] *= 1.0 - 0.92 * soft * (1.0 - bone_weight[rows, cols][box])
        tip = course.tips_mm[t]
        if not np.isnan(tip[0]):
            origin = (min_row - d_row, min_col - d_col)
            amp += NEEDLE_AMPLITUDE * _needle_overlay(layout, course, t, needle_view, origin, (height, width))
        amp *= gain
        amp += NOISE_AMPLITUDE * np.abs(rng.standard_normal(amp.shape, dtype=np.float32))
        db = np.float32(20.0) * np.log10(np.maximum(amp, np.float32(1e-6)))
        grey = np.clip(
            (db - np.float32(WHITE_DB - DYNAMIC_RANGE_DB)) * np.float32(255.0 / DYNAMIC_RANGE_DB), 0, 255
        )
        grey[~fan] = 0.0
        frames[t] = np.rint(grey).astype(np.uint8)
    return frames


def _ellipse_box(
    layout: Layout, ellipse: Ellipse, origin: tuple[int, int], shape: tuple[int, int]
) -> tuple[slice, slice]:
    """Region-pixel bounding box (with a 4-pixel margin) of an ellipse at a shift."""
    cx, cy = ellipse.centre_mm
    ax, ay = ellipse.semi_axes_mm
    row0 = layout.ref_row + (cy - ay) / layout.spacing_mm - origin[0] - 4
    row1 = layout.ref_row + (cy + ay) / layout.spacing_mm - origin[0] + 5
    col0 = layout.ref_col + (cx - ax) / layout.spacing_mm - origin[1] - 4
    col1 = layout.ref_col + (cx + ax) / layout.spacing_mm - origin[1] + 5
    return (
        slice(max(0, int(row0)), min(shape[0], int(row1) + 1)),
        slice(max(0, int(col0)), min(shape[1], int(col1) + 1)),
    )


def _ellipse_mask(ellipse: Ellipse, x_mm: F32, y_mm: F32) -> npt.NDArray[np.bool_]:
    return ellipse.contains(x_mm, y_mm)


def _segment_distance(x: F32, y: F32, a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> F32:
    ab = b - a
    length2 = float(ab @ ab)
    t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1]) / length2, 0.0, 1.0)
    distance: F32 = np.hypot(x - (a[0] + t * ab[0]), y - (a[1] + t * ab[1])).astype(np.float32)
    return distance


def _bone_weight(anatomy: Anatomy, x: F32, y: F32) -> tuple[F32, F32]:
    """Bone surfaces on the grid: geometric weight and echo brightness.

    Returns
    -------
    surface : ndarray, float32
        1 on a bone surface, falling off over ~0.5 mm (drives the shadow).
    echo : ndarray, float32
        ``surface`` scaled by specular reflection: surfaces facing the probe
        return most, steep walls less (anisotropy).
    """
    surface = np.zeros(x.shape, dtype=np.float32)
    echo = np.zeros(x.shape, dtype=np.float32)
    x_axis, y_axis = x[0], y[:, 0]
    for polyline in anatomy.bones:
        for a, b in itertools.pairwise(polyline):
            cols = np.nonzero((x_axis >= min(a[0], b[0]) - 2.0) & (x_axis <= max(a[0], b[0]) + 2.0))[0]
            rows = np.nonzero((y_axis >= min(a[1], b[1]) - 2.0) & (y_axis <= max(a[1], b[1]) + 2.0))[0]
            if cols.size == 0 or rows.size == 0:
                continue
            box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            distance = _segment_distance(x[box], y[box], a, b)
            weight = np.exp(-((distance / 0.55) ** 2))
            dx, dy = b - a
            facing = abs(dx) / max(float(np.hypot(dx, dy)), 1e-9)  # 1 for a horizontal surface
            surface[box] = np.maximum(surface[box], weight)
            echo[box] = np.maximum(echo[box], weight * (0.35 + 0.65 * facing**2))
    return surface, echo


def _tissue(anatomy: Anatomy, x: F32, y: F32, spacing_mm: float, rng: np.random.Generator) -> F32:
    """Echogenicity of soft tissue: skin, fat with septa, fascia, striated muscle, canal."""
    fat_depth, *_ = anatomy.fascia_depths_mm
    echo = np.full(x.shape, 0.5, dtype=np.float32)
    echo[y < fat_depth] = 0.24
    echo[y < 1.6] = 1.5
    texture = ndimage.gaussian_filter(
        rng.standard_normal(x.shape, dtype=np.float32), (0.35 / spacing_mm, 4.0 / spacing_mm)
    )
    texture /= float(np.std(texture)) + 1e-6
    streaks = np.clip(texture - 0.6, 0.0, None)
    muscle = y >= fat_depth
    echo = np.where(
        muscle, echo * (0.75 + 0.55 * streaks), echo * (1.0 + 1.8 * np.clip(texture - 1.6, 0, None))
    )
    for k, depth in enumerate(anatomy.fascia_depths_mm):
        phase = rng.uniform(0.0, 2.0 * np.pi)
        wave = 0.9 * np.sin(x / rng.uniform(7.0, 12.0) + phase)
        strength = 2.4 if k == 0 else 1.2
        echo += strength * np.exp(-(((y - depth - wave) / 0.45) ** 2))
    if anatomy.danger is not None:
        canal = anatomy.danger
        cx, cy = canal.centre_mm
        ax, ay = canal.semi_axes_mm
        rho = np.hypot((x - cx) / ax, (y - cy) / ay)
        cord = rho < 0.62
        echo = np.where(rho < 1.0, np.where(cord, 0.16, 0.05), echo)
        echo += 2.2 * np.exp(-(((rho - 1.0) * min(ax, ay) / 0.5) ** 2))
        echo += 0.8 * np.exp(-(((y - cy) / 0.35) ** 2)) * (np.abs(x - cx) < 0.25 * ax)
    return echo.astype(np.float32)


def _shadow(layout: Layout, bone_weight: F32, x: F32, y: F32) -> F32:
    """Multiplier under 1 behind bone along the beam (rays from the apex)."""
    spacing = layout.spacing_mm
    apex_y = y + layout.probe_radius_mm
    radius = np.hypot(x, apex_y)
    angle = np.arctan2(x, apex_y)
    d_angle = spacing / (layout.probe_radius_mm + 0.5 * layout.depth_mm)
    n_angle = int(2.0 * math.radians(layout.half_angle_deg + 5.0) / d_angle) + 2
    n_radius = int((layout.depth_mm + 10.0) / spacing) + 2
    a_idx = np.clip(np.rint((angle + math.radians(layout.half_angle_deg + 5.0)) / d_angle), 0, n_angle - 1)
    r_idx = np.clip(np.rint((radius - layout.probe_radius_mm) / spacing), 0, n_radius - 1)
    a_idx = a_idx.astype(np.int64)
    r_idx = r_idx.astype(np.int64)
    polar = np.zeros((n_angle, n_radius), dtype=np.float32)
    bone = bone_weight > 0.5
    np.maximum.at(polar, (a_idx[bone], r_idx[bone]), 1.0)
    polar = ndimage.maximum_filter1d(polar, 3, axis=0)
    polar = np.maximum.accumulate(polar, axis=1)
    behind = max(1, math.ceil(0.9 / spacing))
    shadowed = polar[a_idx, np.clip(r_idx - behind, 0, None)]
    shade: F32 = (1.0 - 0.985 * ndimage.gaussian_filter(shadowed, 1.0)).astype(np.float32)
    return shade


def _speckle(shape: tuple[int, ...], spacing_mm: float, rng: np.random.Generator) -> F32:
    """Fully developed speckle: envelope of a band-limited complex Gaussian field, mean 1."""
    sigma = (max(0.5, 0.18 / spacing_mm), max(1.0, 0.45 / spacing_mm))
    real = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    imag = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    envelope = np.hypot(real, imag)
    speckle: F32 = (envelope / float(np.mean(envelope))).astype(np.float32)
    return speckle


def _needle_overlay(
    layout: Layout,
    course: Course,
    t: int,
    needle_view: NeedleView,
    origin: tuple[int, int],
    shape: tuple[int, int],
) -> F32:
    """Needle echo (0..1 scale) in region pixels for frame ``t``.

    ``origin`` is the full-image pixel of region pixel (0, 0) after the shift,
    i.e. region pixel = full-image pixel of the unshifted anatomy − origin.
    """
    tip_x, tip_y = course.tips_mm[t]
    if needle_view is NeedleView.IN_PLANE:
        ex, ey = course.entry_mm
        length = math.hypot(tip_x - ex, tip_y - ey)
        s = np.arange(0.0, length, layout.spacing_mm / 4.0)
        xs = ex + course.direction[0] * s
        ys = ey + course.direction[1] * s
        weights = np.ones_like(s)
        weights[-max(1, int(0.8 / (layout.spacing_mm / 4.0))) :] = 1.4  # bevel echo at the tip
    else:
        angles = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
        radii = np.linspace(0.0, 1.0, 5)
        xs = (tip_x + np.outer(radii, 1.2 * np.cos(angles))).ravel()
        ys = (tip_y + np.outer(radii, 0.7 * np.sin(angles))).ravel()
        weights = np.full(xs.shape, 0.5)
    all_rows, all_cols, all_values = [], [], []
    for k, echo in enumerate((1.0, 0.2, 0.09, 0.04)):
        all_rows.append(layout.ref_row + (ys + k * REVERB_SPACING_MM) / layout.spacing_mm - origin[0])
        all_cols.append(layout.ref_col + xs / layout.spacing_mm - origin[1])
        all_values.append(echo * weights)
    canvas = _splat(shape, np.concatenate(all_rows), np.concatenate(all_cols), np.concatenate(all_values))
    rows_hit, cols_hit = np.nonzero(canvas)
    if rows_hit.size == 0:
        return canvas
    box = (
        slice(max(0, int(rows_hit.min()) - 4), int(rows_hit.max()) + 5),
        slice(max(0, int(cols_hit.min()) - 4), int(cols_hit.max()) + 5),
    )
    canvas[box] = ndimage.gaussian_filter(canvas[box], 0.7)
    peak = float(canvas[box].max())
    if peak > 0:
        canvas[box] /= peak
    return canvas


def _splat(
    shape: tuple[int, int],
    rows: npt.NDArray[np.float64],
    cols: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
) -> F32:
    """Canvas of ``shape`` with point values added bilinearly; points outside are ignored."""
    height, width = shape
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    fr = rows - r0
    fc = cols - c0
    index_parts, weight_parts = [], []
    for dr, dc, w in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        rr = r0 + dr
        cc = c0 + dc
        ok = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        index_parts.append(rr[ok] * width + cc[ok])
        weight_parts.append((values * w)[ok])
    flat = np.bincount(np.concatenate(index_parts), np.concatenate(weight_parts), minlength=height * width)
    return flat.reshape(shape).astype(np.float32)
