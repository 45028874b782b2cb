"""The scanned anatomy of a synthetic clip, in millimetres.

Transverse views of the lumbar spine at the medial branch targets (lamina,
superior articular process, transverse process or sacral ala, iliac crest) and
of the cervical spine at C4/5 (articular pillar, laminae, the spinal canal with
the cord in the interlaminar window). Bone surfaces are polylines; the renderer
draws them bright and shadows everything deeper along the beam.

Each bone polyline runs from medial to lateral with its lateral coordinate
strictly monotone, so it is a depth profile over its lateral span: what lies
deeper than the profile is bone (or tissue that can only be reached through
bone). :meth:`Anatomy.soft_tissue` is the rest, where injectate can pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from archive.model import Side, SpinalLevel

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Ellipse:
    """An axis-aligned ellipse in mm: centre ``(x_mm, y_mm)`` and semi-axes."""

    centre_mm: tuple[float, float]
    semi_axes_mm: tuple[float, float]

    def contains(self, x_mm: npt.ArrayLike, y_mm: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether points (mm) lie inside; broadcasting like numpy."""
        dx = (np.asarray(x_mm, dtype=np.float64) - self.centre_mm[0]) / self.semi_axes_mm[0]
        dy = (np.asarray(y_mm, dtype=np.float64) - self.centre_mm[1]) / self.semi_axes_mm[1]
        inside: npt.NDArray[np.bool_] = dx * dx + dy * dy <= 1.0
        return inside

    def distance_mm(self, x_mm: float, y_mm: float) -> float:
        """Distance from a point to the ellipse (0 inside), by dense boundary sampling."""
        if bool(self.contains(x_mm, y_mm)):
            return 0.0
        t = np.linspace(0.0, 2.0 * np.pi, 4096, endpoint=False)
        bx = self.centre_mm[0] + self.semi_axes_mm[0] * np.cos(t)
        by = self.centre_mm[1] + self.semi_axes_mm[1] * np.sin(t)
        return float(np.min(np.hypot(bx - x_mm, by - y_mm)))

    @property
    def area_mm2(self) -> float:
        """Area of the ellipse in mm²."""
        return float(np.pi * self.semi_axes_mm[0] * self.semi_axes_mm[1])


@dataclass(frozen=True)
class Anatomy:
    """One transverse view.

    Attributes
    ----------
    bones : tuple of ndarray of shape (N, 2), float64
        Bone surface polylines, ``(x_mm, y_mm)`` points from medial to lateral.
    bone_names : tuple of str
        One name per polyline.
    target_mm : tuple of float
        The injection target ``(x_mm, y_mm)``.
    target_name : str
        Anatomical name, e.g. ``"L5 SAP–TP junction"``.
    lateral_sign : int
        +1 if lateral is toward the image right, −1 otherwise; the in-plane
        needle comes from the lateral side.
    fascia_depths_mm : tuple of float
        Depths of the bright fascial planes.
    danger : Ellipse or None
        Spinal canal / cord, when drawn.
    danger_name : str
        Name of the danger structure ("" without one).
    """

    bones: tuple[FloatArray, ...]
    bone_names: tuple[str, ...]
    target_mm: tuple[float, float]
    target_name: str
    lateral_sign: int
    fascia_depths_mm: tuple[float, ...]
    danger: Ellipse | None
    danger_name: str

    def soft_tissue(self, x_mm: npt.ArrayLike, y_mm: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether points (mm) lie in soft tissue: above every bone surface over them.

        A point is in bone (or behind it) when, over its lateral position, a
        bone surface lies shallower than the point. Injectate placed on the
        bone stays on this side of the surface.

        Parameters
        ----------
        x_mm, y_mm : array_like of float
            Lateral and depth coordinates; broadcast like numpy.

        Returns
        -------
        ndarray of bool, broadcast shape
        """
        x, y = np.broadcast_arrays(np.asarray(x_mm, dtype=np.float64), np.asarray(y_mm, dtype=np.float64))
        soft = np.ones(x.shape, dtype=bool)
        for polyline in self.bones:
            order = np.argsort(polyline[:, 0])
            xs, ys = polyline[order, 0], polyline[order, 1]
            over = (x >= xs[0]) & (x <= xs[-1])
            surface = np.interp(x, xs, ys)
            soft &= ~(over & (y > surface))
        return soft

    def fluid_area_mm2(self, pool: Ellipse, step_mm: float = 0.02) -> float:
        """Area (mm²) of the part of ``pool`` in soft tissue, by sampling on a ``step_mm`` grid."""
        cx, cy = pool.centre_mm
        ax, ay = pool.semi_axes_mm
        xs = np.arange(cx - ax, cx + ax + step_mm, step_mm)
        ys = np.arange(cy - ay, cy + ay + step_mm, step_mm)
        grid_x, grid_y = np.meshgrid(xs, ys)
        inside = pool.contains(grid_x, grid_y) & self.soft_tissue(grid_x, grid_y)
        return float(np.count_nonzero(inside)) * step_mm**2


_TARGET_NAMES = {
    SpinalLevel.L3: "L4 SAP–TP junction (L3 medial branch)",
    SpinalLevel.L4: "L5 SAP–TP junction (L4 medial branch)",
    SpinalLevel.L5: "S1 SAP–sacral ala junction (L5 dorsal ramus)",
    SpinalLevel.C4: "C4/5 articular pillar waist (medial branch)",
}


def build_anatomy(
    level: SpinalLevel,
    side: Side,
    target_depth_mm: float,
    *,
    danger: bool,
    oblique: bool,
    rng: np.random.Generator,
) -> Anatomy:
    """Bone surfaces, target and danger structure for one view.

    Parameters
    ----------
    level : SpinalLevel
        L3, L4, L5 or C4.
    side : Side
        LEFT or RIGHT; mirrors the view.
    target_depth_mm : float
        Depth of the target below the skin.
    danger : bool
        Add the spinal canal (cervical view only).
    oblique : bool
        Caudally tilted view (OT L5 in-plane): the iliac crest moves laterally.
    rng : numpy.random.Generator
        Source of the small anatomical variation.

    Returns
    -------
    Anatomy
    """
    sign = 1 if side is Side.RIGHT else -1
    depth = target_depth_mm
    target_u = float(rng.uniform(4.0, 10.0))  # lateral offset of the target from the probe centre
    jitter = rng.normal(0.0, 0.6, size=16)

    profiles: list[tuple[str, list[tuple[float, float]]]]
    if level is SpinalLevel.C4:
        profiles = [
            (
                "spinous process",
                [(-40.0, depth - 4.0), (-33.0, depth - 8.0 + jitter[0]), (-27.0, depth + 2.0)],
            ),
            ("lamina (medial)", [(-26.0, depth + 9.0), (-21.0, depth + 8.0 + jitter[1])]),
            (
                "lamina and articular pillar",
                [
                    (-8.0, depth + 8.0),
                    (-4.0, depth + 4.0 + jitter[2]),
                    (-1.5, depth + 0.6),
                    (0.0, depth),
                    (6.0, depth - 0.8 + jitter[3] * 0.5),
                    (12.0, depth + 1.5),
                    (15.0, depth + 6.0),
                ],
            ),
        ]
        fascia = (depth * 0.22, depth * 0.55)
    else:
        sap_top = depth - {SpinalLevel.L3: 11.0, SpinalLevel.L4: 13.0, SpinalLevel.L5: 15.0}[level]
        lateral_bone = "sacral ala" if level is SpinalLevel.L5 else "transverse process"
        profiles = [
            (
                f"spinous process, lamina, SAP and {lateral_bone}",
                [
                    (-44.0, depth - 6.0),
                    (-39.0, depth - 21.0 + jitter[0]),
                    (-35.0, depth - 20.0),
                    (-31.0, depth - 6.0),
                    (-28.0, depth - 5.0 + jitter[1]),
                    (-19.0, depth - 9.0 + jitter[2]),
                    (-11.0, sap_top + jitter[3] * 0.5),
                    (-6.0, sap_top + 1.0),
                    (-2.5, depth - 5.0),
                    (0.0, depth),
                    (8.0, depth + 1.0 + jitter[4] * 0.4),
                    (18.0, depth + 2.0 + jitter[5] * 0.4),
                    (26.0 if level is not SpinalLevel.L5 else 21.0, depth + 4.0),
                ],
            ),
        ]
        if level is SpinalLevel.L5:
            start = 40.0 if oblique else 24.0
            profiles.append(
                (
                    "iliac crest",
                    [
                        (start, depth - 2.0),
                        (start + 5.0, depth - 12.0 + jitter[6]),
                        (start + 14.0, depth - 18.0),
                        (start + 26.0, depth - 20.0),
                    ],
                )
            )
        fascia = (depth * 0.25, depth * 0.42)

    bones = tuple(
        _rounded(np.array([(sign * (u + target_u), y) for u, y in pts], dtype=np.float64))
        for _, pts in profiles
    )
    names = tuple(name for name, _ in profiles)
    danger_shape: Ellipse | None = None
    if danger:
        danger_shape = Ellipse(
            centre_mm=(sign * (-14.5 + target_u), depth + 15.0),
            semi_axes_mm=(6.5, 4.8),
        )
    return Anatomy(
        bones=bones,
        bone_names=names,
        target_mm=(sign * target_u, depth),
        target_name=_TARGET_NAMES[level],
        lateral_sign=sign,
        fascia_depths_mm=tuple(float(f) for f in fascia),
        danger=danger_shape,
        danger_name="spinal canal / cord" if danger else "",
    )


def _rounded(polyline: FloatArray, iterations: int = 2) -> FloatArray:
    """Chaikin corner cutting: bone outlines are smooth, not polygonal; ends are kept."""
    points = polyline
    for _ in range(iterations):
        a, b = points[:-1], points[1:]
        cut = np.empty((2 * len(a), 2), dtype=np.float64)
        cut[0::2] = 0.75 * a + 0.25 * b
        cut[1::2] = 0.25 * a + 0.75 * b
        points = np.vstack([points[:1], cut, points[-1:]])
    return points
