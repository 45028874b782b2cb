"""Temporal consistency of the in-plane shaft: a scalar Kalman filter on its angle.

The shaft angle changes slowly (the operator steers a stiff needle), while
a short shaft seen just after entry gives a noisy angle. The filter weighs
each frame's angle by the visible length (the angular error of a line fitted
over ``L`` pixels with ``e`` pixels of lateral error is about ``e / L``
radians), rejects jumps faster than ``max_angle_step_deg`` per frame, and
puts the measured entry and tip back on the line through their midpoint at
the filtered angle. The tip itself is not smoothed: the needle advances in
jerks and may be withdrawn, but it always moves along the shaft.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archive.analysis.proposals.inplane import LinePrior, ShaftMeasurement
from archive.analysis.proposals.params import PixelParameters

#: Frames without a measurement after which the track is dropped.
MAX_MISSED = 3
#: A rejected measurement this many times longer than the track's longest shaft restarts the track.
OUTGROWN_FACTOR = 2.0


def _wrap(angle_deg: float) -> float:
    """Angle difference folded into (-180, 180]."""
    return (angle_deg + 180.0) % 360.0 - 180.0


@dataclass
class ShaftTracker:
    """Follows one in-plane shaft from frame to frame.

    Parameters
    ----------
    params : PixelParameters
        Supplies ``max_angle_step_deg`` and ``line_tolerance``.
    """

    params: PixelParameters
    angle_deg: float | None = None
    variance: float = 0.0
    point: tuple[float, float] | None = None
    missed: int = 0
    length: float = 0.0

    def reset(self) -> None:
        """Forget the track."""
        self.angle_deg = None
        self.point = None
        self.variance = 0.0
        self.missed = 0
        self.length = 0.0

    def outgrown(self, measurement: ShaftMeasurement) -> bool:
        """Whether a rejected measurement is so much longer than the track's shaft that the track is wrong."""
        return measurement.length > OUTGROWN_FACTOR * max(self.length, 1.0)

    def prior(self) -> LinePrior | None:
        """The expected line, or None when there is no live track."""
        if self.angle_deg is None or self.point is None or self.missed > MAX_MISSED:
            return None
        return LinePrior(point=self.point, angle_deg=self.angle_deg)

    def miss(self) -> None:
        """Record a frame without a measurement."""
        self.missed += 1
        if self.missed > MAX_MISSED:
            self.angle_deg = None
            self.point = None

    def gate(self, measurement: ShaftMeasurement) -> bool:
        """Whether a measurement is consistent with the track (always True without one)."""
        if self.angle_deg is None:
            return True
        allowed = self.params.max_angle_step_deg * (self.missed + 1) + 3.0 * math.sqrt(
            self.variance + self._measurement_variance(measurement)
        )
        return abs(_wrap(measurement.angle_deg - self.angle_deg)) <= allowed

    def _measurement_variance(self, measurement: ShaftMeasurement) -> float:
        error_rad = 1.5 * self.params.line_tolerance / max(measurement.length, 1.0)
        return math.degrees(error_rad) ** 2

    def update(self, measurement: ShaftMeasurement) -> ShaftMeasurement:
        """Fold in one measurement; return it with its ends on the filtered line."""
        r = self._measurement_variance(measurement)
        if self.angle_deg is None:
            self.angle_deg = measurement.angle_deg
            self.variance = r
        else:
            q = (self.params.max_angle_step_deg / 3.0) ** 2 * (self.missed + 1)
            p = self.variance + q
            gain = p / (p + r)
            self.angle_deg = self.angle_deg + gain * _wrap(measurement.angle_deg - self.angle_deg)
            self.variance = (1.0 - gain) * p
        self.missed = 0
        self.length = max(self.length, measurement.length)
        rad = math.radians(self.angle_deg)
        direction = (math.sin(rad), math.cos(rad))
        mid = (
            0.5 * (measurement.entry[0] + measurement.tip[0]),
            0.5 * (measurement.entry[1] + measurement.tip[1]),
        )

        def project(p: tuple[float, float]) -> tuple[float, float]:
            t = (p[0] - mid[0]) * direction[0] + (p[1] - mid[1]) * direction[1]
            return (mid[0] + t * direction[0], mid[1] + t * direction[1])

        tip = project(measurement.tip)
        self.point = tip
        return ShaftMeasurement(
            entry=project(measurement.entry),
            tip=tip,
            angle_deg=self.angle_deg,
            contrast=measurement.contrast,
        )
