"""A harder synthetic corpus for the needle and spread proposals, with exact ground truth.

The phantom (:func:`archive.phantom.generate_clip`) draws clean anatomy with
static speckle. These clips add what makes real needle guidance hard, each
switchable in :class:`HardSpec`:

- *correlated speckle*: coarse, laterally elongated grains (which look like
  short ridges) that also decorrelate over time (tissue motion, breathing),
  as an AR(1) process of the complex speckle field;
- *reverberation copies* of the shaft below it along the beam, stronger than
  the phantom's;
- a *bone surface* with its *acoustic shadow*, the tip resting just above it
  (the brightest thing in the image sits where the tip is);
- *gain drift*: the overall gain wanders by several dB over the clip;
- *fade-out*: frames where the needle leaves the beam plane and its echo
  fades to nothing and comes back;
- *steep angles* (up to 55°), with the specular shaft echo weaker the steeper
  the needle;
- probe motion by whole pixels;
- optionally *no needle at all*.

Geometry: a linear probe, the image is the imaging region, ``spacing_mm``
isotropic; ``x`` lateral, ``y`` depth, both in mm from the top-left pixel
centre. Ground truth is in image pixels ``(row, col)`` and includes the
probe motion. The needle counts as *visible* on a frame when its echo is at
least half its full strength (:attr:`HardClip.visible`) and as *absent* when
there is no echo at all (:attr:`HardClip.absent`); frames in between are
neither. The injectate pool is an ellipse at the tip that cannot enter bone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy import ndimage, special

from archive.errors import PhantomError

F32 = npt.NDArray[np.float32]
Point = tuple[float, float]

#: Dynamic range of the log compression, dB (as the phantom).
DYNAMIC_RANGE_DB = 50.0
#: Level mapped to white, dB re amplitude 1.
WHITE_DB = 20.0
#: Largest probe-motion shift, pixels.
MAX_SHIFT_PX = 3
#: Spacing of the shaft's reverberation copies along the beam, mm.
REVERB_SPACING_MM = 1.1
#: Amplitudes of the reverberation copies relative to the shaft.
REVERB_ECHOES = (0.45, 0.28, 0.15, 0.08)


@dataclass(frozen=True)
class HardSpec:
    """What one hard clip shows.

    Parameters
    ----------
    frames, rows, cols : int
        Clip size (frames ≥ 16, rows and cols ≥ 120).
    spacing_mm : float
        Pixel size, mm (0.05-0.5).
    frame_interval_s : float
        Seconds between frames.
    angle_deg : float
        Needle angle to the skin line, 10-60 degrees.
    needle : bool
        False gives a clip with no needle (and no injection).
    from_left : bool
        Needle enters from the left (True) or the right edge.
    fade : tuple of int
        ``(first, count)``: 0-based first frame and number of frames of a
        fade-out of the needle echo (ramps down to zero and back); ``count``
        0 for none.
    gain_drift_db : float
        Peak-to-peak wander of the overall gain.
    speckle_correlation : float
        Frame-to-frame correlation of the speckle field (1 = static).
    motion : bool
        Probe motion by whole pixels.
    """

    frames: int = 48
    rows: int = 240
    cols: int = 320
    spacing_mm: float = 0.2
    frame_interval_s: float = 0.066
    angle_deg: float = 35.0
    needle: bool = True
    from_left: bool = True
    fade: tuple[int, int] = (0, 0)
    gain_drift_db: float = 6.0
    speckle_correlation: float = 0.9
    motion: bool = True

    def __post_init__(self) -> None:
        checks = (
            ("frames", self.frames >= 16, "at least 16"),
            ("rows", self.rows >= 120, "at least 120"),
            ("cols", self.cols >= 120, "at least 120"),
            ("spacing_mm", 0.05 <= self.spacing_mm <= 0.5, "0.05 to 0.5"),
            ("frame_interval_s", self.frame_interval_s > 0, "positive"),
            ("angle_deg", 10.0 <= self.angle_deg <= 60.0, "10 to 60"),
            ("speckle_correlation", 0.0 <= self.speckle_correlation <= 1.0, "0 to 1"),
            ("fade", self.fade[1] >= 0 and 0 <= self.fade[0] < self.frames, "(first frame, count >= 0)"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise PhantomError(
                    f"hard phantom {name}: expected {expected}, but got {getattr(self, name)!r}; "
                    "change that argument"
                )


@dataclass(frozen=True)
class HardClip:
    """A rendered hard clip and its ground truth.

    Attributes
    ----------
    frames : ndarray of shape (T, rows, cols), uint8
    spacing_mm : tuple of float
        ``(row, col)`` mm per pixel.
    frame_interval_s : float
    tips, entries : list of (row, col) or None
        Needle tip and the superficial end of the visible shaft per frame
        (image pixels, probe motion included); None while the needle is out.
    echo : ndarray of shape (T,), float64
        Needle echo strength per frame, 0..1 (fade-out, and 0 before entry).
    spread : ndarray of shape (T, rows, cols), bool
        Injectate pool per frame.
    injection_start, injection_end : int or None
        0-based frames of the injection events.
    angle_deg : float
        Needle angle to the skin line.
    """

    frames: npt.NDArray[np.uint8]
    spacing_mm: tuple[float, float]
    frame_interval_s: float
    tips: list[Point | None]
    entries: list[Point | None]
    echo: npt.NDArray[np.float64]
    spread: npt.NDArray[np.bool_]
    injection_start: int | None
    injection_end: int | None
    angle_deg: float

    @property
    def visible(self) -> npt.NDArray[np.bool_]:
        """Frames with the needle echo at ≥ half strength."""
        visible: npt.NDArray[np.bool_] = (self.echo >= 0.5) & np.array([t is not None for t in self.tips])
        return visible

    @property
    def absent(self) -> npt.NDArray[np.bool_]:
        """Frames with no needle echo at all."""
        absent: npt.NDArray[np.bool_] = (self.echo <= 0.0) | np.array([t is None for t in self.tips])
        return absent


def generate_hard_clip(spec: HardSpec, seed: int) -> HardClip:
    """Render a hard clip with its ground truth.

    Parameters
    ----------
    spec : HardSpec
        What the clip shows.
    seed : int
        Non-negative; the same spec and seed give the same clip.

    Returns
    -------
    HardClip
    """
    if not isinstance(seed, int) or seed < 0:
        raise PhantomError(f"hard phantom seed: expected a non-negative integer, but got {seed!r}")
    rng = np.random.default_rng([seed, 20])
    t_count, rows, cols, sp = spec.frames, spec.rows, spec.cols, spec.spacing_mm
    m = MAX_SHIFT_PX
    y = (np.arange(-m, rows + m, dtype=np.float32) * sp)[:, None] * np.ones((1, cols + 2 * m), np.float32)
    x = (np.arange(-m, cols + m, dtype=np.float32) * sp)[None, :] * np.ones((rows + 2 * m, 1), np.float32)
    depth = rows * sp
    bone_y = _bone_depth(x[0], depth, rng)
    echo = _tissue(x, y, bone_y, sp, rng)
    shifts = _motion(t_count, rng) if spec.motion else np.zeros((t_count, 2), dtype=np.int64)

    f_vis, f_reach = round(0.15 * t_count), round(0.55 * t_count)
    f_start, f_end = round(0.62 * t_count), min(t_count - 1, round(0.9 * t_count))
    geometry = _needle_geometry(spec, bone_y, x[0], rng, (f_vis, f_reach)) if spec.needle else None
    echo_t = _echo_strength(spec, f_vis)
    gain_db = _gain(spec, rng)

    sigma = (max(0.5, 0.3 / sp), max(1.0, 0.9 / sp))
    field_re = ndimage.gaussian_filter(rng.standard_normal(x.shape, dtype=np.float32), sigma)
    field_im = ndimage.gaussian_filter(rng.standard_normal(x.shape, dtype=np.float32), sigma)
    rho = np.float32(spec.speckle_correlation)
    frames = np.zeros((t_count, rows, cols), dtype=np.uint8)
    spread = np.zeros((t_count, rows, cols), dtype=bool)
    tips: list[Point | None] = []
    entries: list[Point | None] = []
    pool_final = None
    if geometry is not None:
        tip_final = geometry[1][-1]
        pool_final = (
            tip_final[0] - 1.0,
            tip_final[1] - 0.8,
            float(rng.uniform(4.5, 6.5)),
            float(rng.uniform(2.5, 3.5)),
        )
    for t in range(t_count):
        if t > 0 and rho < 1:
            scale = np.float32(math.sqrt(1.0 - float(rho) ** 2))
            field_re = rho * field_re + scale * ndimage.gaussian_filter(
                rng.standard_normal(x.shape, dtype=np.float32), sigma
            )
            field_im = rho * field_im + scale * ndimage.gaussian_filter(
                rng.standard_normal(x.shape, dtype=np.float32), sigma
            )
        speckle = np.hypot(field_re, field_im)
        speckle /= np.float32(np.mean(speckle))
        amp = echo * speckle
        d_row, d_col = (int(v) for v in shifts[t])
        # anatomy moves by (d_row, d_col): image pixel (r, c) shows anatomy pixel (r - d_row, c - d_col)
        view = (slice(m - d_row, m - d_row + rows), slice(m - d_col, m - d_col + cols))
        amp = amp[view].copy()
        gx, gy = x[view], y[view]
        if pool_final is not None and f_start <= t:
            frac = math.sqrt(min(1.0, (t - f_start + 1) / (f_end - f_start + 1)))
            cx, cy, ax, ay = pool_final
            inside = ((gx - cx) / (ax * frac)) ** 2 + (
                (gy - (cy + 0.8 * (1 - frac))) / (ay * frac)
            ) ** 2 <= 1.0
            inside &= gy < bone_y[view[1]][None, :] - 0.3
            spread[t] = inside
            soft = ndimage.gaussian_filter(inside.astype(np.float32), 1.0)
            amp *= 1.0 - 0.85 * soft
        if geometry is not None and echo_t[t] > 0 and not math.isnan(geometry[1][t][0]):
            entry_mm, tip_mm = geometry[0], geometry[1][t]
            amp += echo_t[t] * _needle(gx, gy, entry_mm, tip_mm, spec.angle_deg, sp)
        if geometry is not None and not math.isnan(geometry[1][t][0]):
            tips.append((geometry[1][t][1] / sp + d_row, geometry[1][t][0] / sp + d_col))
            entry = _visible_entry(geometry[0], geometry[1][t], rows, cols, sp)
            entries.append((entry[1] / sp + d_row, entry[0] / sp + d_col))
        else:
            tips.append(None)
            entries.append(None)
        amp *= np.float32(10.0 ** (gain_db[t] / 20.0))
        amp += np.float32(0.04) * np.abs(rng.standard_normal(amp.shape, dtype=np.float32))
        db = np.float32(20.0) * np.log10(np.maximum(amp, np.float32(1e-6)))
        grey = np.clip(
            (db - np.float32(WHITE_DB - DYNAMIC_RANGE_DB)) * np.float32(255.0 / DYNAMIC_RANGE_DB), 0, 255
        )
        frames[t] = np.rint(grey).astype(np.uint8)
    shown = np.array([e if tip is not None else 0.0 for e, tip in zip(echo_t, tips, strict=True)])
    return HardClip(
        frames=frames,
        spacing_mm=(sp, sp),
        frame_interval_s=spec.frame_interval_s,
        tips=tips,
        entries=entries,
        echo=shown,
        spread=spread,
        injection_start=f_start if spec.needle else None,
        injection_end=f_end if spec.needle else None,
        angle_deg=spec.angle_deg,
    )


def _bone_depth(x_mm: F32, depth_mm: float, rng: np.random.Generator) -> F32:
    """Depth of the bone surface under each column: a sloping surface with a rounded bump."""
    width = float(x_mm[-1] - x_mm[0])
    base = 0.72 * depth_mm + 0.06 * depth_mm * np.sin(x_mm / width * math.pi * rng.uniform(0.8, 1.4))
    centre = float(rng.uniform(0.35, 0.65)) * width
    bump = 0.12 * depth_mm * np.exp(-(((x_mm - centre) / (0.12 * width)) ** 2))
    surface: F32 = (base - bump).astype(np.float32)
    return surface


def _tissue(x: F32, y: F32, bone_y: F32, sp: float, rng: np.random.Generator) -> F32:
    """Echogenicity: skin, fat, striated muscle with fascia, bone surface and its shadow."""
    echo = np.full(x.shape, 0.5, dtype=np.float32)
    fat = float(rng.uniform(5.0, 9.0))
    echo[y < fat] = 0.25
    echo[y < 1.2] = 1.4
    texture = ndimage.gaussian_filter(rng.standard_normal(x.shape, dtype=np.float32), (0.3 / sp, 3.0 / sp))
    texture /= float(np.std(texture)) + 1e-6
    echo *= np.where(y >= fat, 0.75 + 0.6 * np.clip(texture - 0.5, 0, None), 1.0).astype(np.float32)
    for depth, strength in ((fat, 2.0), (fat + rng.uniform(6, 10), 1.1), (fat + rng.uniform(13, 18), 0.9)):
        wave = 0.8 * np.sin(x / rng.uniform(6.0, 11.0) + rng.uniform(0, 2 * np.pi))
        echo += strength * np.exp(-(((y - depth - wave) / 0.4) ** 2))
    surface = bone_y[None, :]
    echo += 5.0 * np.exp(-(((y - surface) / 0.45) ** 2))
    shadow = special.expit((y - surface - 0.8) / 0.25)
    out: F32 = (echo * (1.0 - 0.97 * shadow)).astype(np.float32)
    return out


def _motion(frames: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    t = np.arange(frames, dtype=np.float64)
    shifts = np.zeros((frames, 2))
    for axis, amplitude in ((0, 1.5), (1, 2.5)):
        period = rng.uniform(0.5, 1.5) * frames
        shifts[:, axis] = amplitude * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    moved: npt.NDArray[np.int64] = np.clip(np.rint(shifts), -MAX_SHIFT_PX, MAX_SHIFT_PX).astype(np.int64)
    return moved


def _needle_geometry(
    spec: HardSpec, bone_y: F32, x_axis: F32, rng: np.random.Generator, span: tuple[int, int]
) -> tuple[Point, list[Point]]:
    """Entry point (mm, on the skin) and the tip per frame (NaN before entry)."""
    width = spec.cols * spec.spacing_mm
    rad = math.radians(spec.angle_deg)
    sign = 1.0 if spec.from_left else -1.0
    tip_x = width * (0.5 + sign * float(rng.uniform(0.0, 0.12)))
    column = int(np.argmin(np.abs(x_axis - tip_x)))
    tip_y = float(bone_y[column]) - float(rng.uniform(0.8, 1.6))
    entry = (tip_x - sign * tip_y / math.tan(rad), 0.0)
    path = tip_y / math.sin(rad)
    f_vis, f_reach = span
    steps = rng.gamma(2.0, 1.0, size=f_reach - f_vis)
    progress = np.concatenate([[0.0], np.cumsum(steps) / np.sum(steps)])
    start = _first_inside(entry, rad, sign, width, path) + 2.5
    tips: list[Point] = []
    for t in range(spec.frames):
        if t < f_vis:
            tips.append((math.nan, math.nan))
            continue
        p = progress[min(t - f_vis, len(progress) - 1)]
        s = start + (path - start) * p
        tips.append((entry[0] + sign * math.cos(rad) * s, entry[1] + math.sin(rad) * s))
    return entry, tips


def _first_inside(entry: Point, rad: float, sign: float, width: float, path: float) -> float:
    """Path length at which the needle line enters the image (x within 0..width)."""
    for s in np.arange(0.0, path, 0.05):
        x = entry[0] + sign * math.cos(rad) * s
        if 0.0 <= x <= width:
            return float(s)
    return path


def _visible_entry(entry: Point, tip: Point, rows: int, cols: int, sp: float) -> Point:
    """Where the shaft enters the image rectangle (anatomy mm)."""
    dx, dy = tip[0] - entry[0], tip[1] - entry[1]
    width, height = (cols - 1) * sp, (rows - 1) * sp
    lo = 0.0
    for bound, d, origin in (
        (0.0, dx, entry[0]),
        (width, dx, entry[0]),
        (0.0, dy, entry[1]),
        (height, dy, entry[1]),
    ):
        if d != 0:
            s = (bound - origin) / d
            point = (entry[0] + s * dx, entry[1] + s * dy)
            if 0 <= s <= 1 and -1e-6 <= point[0] <= width + 1e-6 and -1e-6 <= point[1] <= height + 1e-6:
                lo = max(lo, s) if s < 1 else lo
    return entry[0] + lo * dx, entry[1] + lo * dy


def _echo_strength(spec: HardSpec, f_vis: int) -> npt.NDArray[np.float64]:
    """Needle echo 0..1 per frame: 0 before entry, a fade-out ramp if asked."""
    strength = np.where(np.arange(spec.frames) >= f_vis, 1.0, 0.0)
    first, count = spec.fade
    if count > 0:
        ramp = np.abs(np.linspace(-1.0, 1.0, count + 2))[1:-1]
        ramp = np.clip((ramp - 0.3) / 0.7, 0.0, 1.0)  # a few frames fully faded in the middle
        stop = min(spec.frames, first + count)
        strength[first:stop] *= ramp[: stop - first]
    return strength


def _gain(spec: HardSpec, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    t = np.linspace(0.0, 1.0, spec.frames)
    drift: npt.NDArray[np.float64] = (
        0.5 * spec.gain_drift_db * np.sin(2 * np.pi * (0.6 * t + rng.uniform(0, 1)))
    )
    relative: npt.NDArray[np.float64] = drift - float(drift[0])
    return relative


def _needle(gx: F32, gy: F32, entry: Point, tip: Point, angle_deg: float, sp: float) -> F32:
    """Shaft echo with its reverberation copies below, weaker for steep needles."""
    ax, ay = entry
    bx, by = tip
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    out = np.zeros(gx.shape, dtype=np.float32)
    rows = np.nonzero((gy[:, 0] >= min(ay, by) - 8.0) & (gy[:, 0] <= max(ay, by) + 8.0))[0]
    if rows.size == 0:
        return out
    box = (slice(rows[0], rows[-1] + 1), slice(None))
    strength = 7.0 * (0.45 + 0.55 * math.cos(math.radians(angle_deg)) ** 2)
    for k, echo in enumerate((1.0, *REVERB_ECHOES)):
        px, py = gx[box], gy[box] - k * REVERB_SPACING_MM
        u = np.clip(((px - ax) * dx + (py - ay) * dy) / length2, 0.0, 1.0)
        dist = np.hypot(px - (ax + u * dx), py - (ay + u * dy))
        out[box] += strength * echo * np.exp(-((dist / 0.28) ** 2)).astype(np.float32)
    return out


#: The hard corpus of the tests and the benchmark: (name, spec) pairs; seeds are their index.
def hard_corpus(
    *, frames: int = 40, rows: int = 200, cols: int = 260, spacing_mm: float = 0.2
) -> list[tuple[str, HardSpec]]:
    """The hard corpus: every feature at least once, angles 20-55°, one clip without a needle.

    Parameters
    ----------
    frames, rows, cols : int
        Clip size (small in tests, 640×480 in the benchmark).
    spacing_mm : float
        Pixel size.

    Returns
    -------
    list of (str, HardSpec)
    """
    base = HardSpec(frames=frames, rows=rows, cols=cols, spacing_mm=spacing_mm)
    fade = (round(0.3 * frames), max(5, round(0.15 * frames)))
    return [
        ("shallow-20", replace(base, angle_deg=20.0)),
        ("mid-35-right", replace(base, angle_deg=35.0, from_left=False)),
        ("steep-45-fade", replace(base, angle_deg=45.0, fade=fade)),
        ("steep-55", replace(base, angle_deg=55.0, from_left=False, gain_drift_db=9.0)),
        ("mid-30-decorrelated", replace(base, angle_deg=30.0, speckle_correlation=0.7, fade=fade)),
        ("no-needle", replace(base, needle=False)),
    ]
