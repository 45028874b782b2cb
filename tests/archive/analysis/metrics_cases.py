"""A small hand-built annotated clip shared by the metrics tests, with its calibration and times."""

from __future__ import annotations

import numpy as np

from archive.calibration import Calibration, UltrasoundRegion
from archive.model import ClipEvent
from archive.review import ClipAnnotation, NeedleMark, TargetMark
from archive.timing import FrameTimes

SHAPE = (100, 200)
N_FRAMES = 10

# rows 0..99, cols 0..199: 0.1 mm per column, 0.2 mm per row (anisotropic on purpose)
REGION = UltrasoundRegion(
    min_x0=0,
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
CAL = Calibration((REGION,))
# irregular frame times (a Frame Time Vector), so the time metric must use the offsets
OFFSETS_MS = (0.0, 40.0, 80.0, 130.0, 170.0, 210.0, 260.0, 300.0, 345.0, 390.0)
TIMES = FrameTimes(OFFSETS_MS, None, "FrameTimeVector", None)


def box(row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
    """A mask that is True on rows row0..row1 and cols col0..col1 inclusive."""
    mask = np.zeros(SHAPE, dtype=bool)
    mask[row0 : row1 + 1, col0 : col1 + 1] = True
    return mask


def base() -> ClipAnnotation:
    """Needle keyframes on 2 and 6, target keyframes on 0 and 8, spread on 5 and 7.

    Interpolated on frame 4 (injection start): tip (30, 50), entry (10, 10).
    The target is held: (50, 80) on frames 0..7, (60, 80) on 8 and 9. The
    spread is interpolated by shape on frame 6 and held from frame 7 on.
    """
    ann = ClipAnnotation.new("1.2.3", "alice", N_FRAMES, SHAPE)
    ann = ann.with_needle(2, NeedleMark(((10, 10), (20, 50))))
    ann = ann.with_needle(6, NeedleMark(((10, 10), (40, 50))))
    ann = ann.with_target(0, TargetMark((50, 80), "L5 SAP-TP junction"))
    ann = ann.with_target(8, TargetMark((60, 80), "L5 SAP-TP junction"))
    ann = ann.with_spread(5, box(70, 79, 75, 84))  # 100 px, misses the target (50, 80)
    ann = ann.with_spread(7, box(40, 59, 70, 89))  # 400 px, holds the target (50, 80)
    ann = ann.with_event(ClipEvent.NEEDLE_VISIBLE, 2)
    ann = ann.with_event(ClipEvent.INJECTION_START, 4)
    return ann.with_event(ClipEvent.INJECTION_END, 8)


def with_danger(ann: ClipAnnotation) -> ClipAnnotation:
    ann = ann.with_danger(4, "nerve root", box(30, 39, 60, 69))
    ann = ann.with_danger(6, "nerve root", box(30, 39, 60, 69))
    ann = ann.with_danger(6, "vessel", box(50, 59, 50, 59))
    return ann.with_danger(7, "vessel", box(58, 65, 85, 95))  # overlaps the spread of frame 7
