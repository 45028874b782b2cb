"""Parameters of the proposal method in millimetres and seconds, and their pixel form.

Every size the detectors use is stated physically in :class:`MethodParameters`
(mm, mm², s, degrees) and converted once, by :func:`to_pixels`, with the pixel
spacing of the imaging region as :mod:`archive.calibration` reports it:
``(row spacing, column spacing)`` in mm per pixel
(:attr:`archive.calibration.UltrasoundRegion.pixel_size_mm`). Lengths along an
arbitrary direction use the geometric mean of the two spacings; the phantom
and every scanner we have seen are isotropic.

An uncalibrated clip (no Sequence of Ultrasound Regions) has no spacing: then
the documented pixel defaults in :data:`PIXEL_DEFAULTS` apply (they equal the
millimetre defaults at a nominal 0.2 mm per pixel, a typical lumbar B-mode
image of 8 cm depth on 400 rows), and results are reported in pixels. Without
a frame interval, durations use :data:`FRAME_DEFAULTS` (frame counts at a
nominal 15 frames per second).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archive.analysis.proposals.errors import ProposalInputError


@dataclass(frozen=True)
class MethodParameters:
    """Physical parameters of the detectors.

    Attributes
    ----------
    reference_s : float
        Length of the needle-free stretch at the start of the clip whose
        median is the background the frames are differenced against.
    shaft_sigma_mm : float
        Scale of the ridge filter and of the smoothing (about the half
        thickness of a 21-22 G shaft echo).
    min_shaft_mm : float
        Shortest visible shaft claimed as a needle.
    line_tolerance_mm : float
        Largest distance of a RANSAC inlier from the fitted line.
    search_radius_mm : float
        Half width of the band around the predicted shaft searched while a
        needle is tracked.
    reverb_search_mm : float
        How far above the fitted line a brighter parallel line (the real
        shaft over its reverberation copies) is looked for.
    tip_gap_mm : float
        Longest gap in the shaft echo bridged when walking to the tip.
    max_angle_rate_deg_s : float
        Fastest plausible change of the shaft angle; faster measurements are
        treated as outliers of the tracker.
    dot_sigma_mm : tuple of float
        Smallest and largest scale of an out-of-plane needle dot.
    spread_radius_mm : float
        Half size of the box around the tip in which the spread is segmented.
    spread_reach_mm : float
        Parts of the segmented pool (the needle may cut it) are kept when they
        come this close to the tip.
    spread_min_area_mm2 : float
        Darkened area near the tip that marks the onset of injection.
    spread_persist_s : float
        How long a pixel must stay darker before it counts as pool (fluid
        stays where it pooled, speckle decorrelation comes and goes).
    rest_s : float
        How long the tip must stay put before an injection onset is looked for.
    rest_mm : float
        How far the tip may move and still count as at rest.
    motion_margin_mm : float
        Band along the edge of the imaged sector left out of the needle
        search (the static sector edge shows as change once probe motion is
        compensated).
    """

    reference_s: float = 0.25
    shaft_sigma_mm: float = 0.3
    min_shaft_mm: float = 2.0
    line_tolerance_mm: float = 0.45
    search_radius_mm: float = 4.0
    reverb_search_mm: float = 3.0
    tip_gap_mm: float = 1.0
    max_angle_rate_deg_s: float = 90.0
    dot_sigma_mm: tuple[float, float] = (0.3, 1.0)
    spread_radius_mm: float = 14.0
    spread_reach_mm: float = 2.5
    spread_min_area_mm2: float = 3.0
    spread_persist_s: float = 0.1
    rest_s: float = 0.3
    rest_mm: float = 1.0
    motion_margin_mm: float = 1.5


@dataclass(frozen=True)
class PixelParameters:
    """:class:`MethodParameters` in pixels and frames for one clip (see :func:`to_pixels`)."""

    reference_frames: int
    shaft_sigma: float
    min_shaft: float
    line_tolerance: float
    search_radius: float
    reverb_search: float
    tip_gap: float
    max_angle_step_deg: float
    dot_sigma: tuple[float, float]
    spread_radius: float
    spread_reach: float
    spread_min_area: float
    spread_persist_frames: int
    rest_frames: int
    rest: float
    motion_margin: int
    pixel_area_mm2: float | None
    spacing_mm: tuple[float, float] | None


#: Nominal spacing (mm per pixel) that defines the pixel defaults of uncalibrated clips.
NOMINAL_SPACING_MM = 0.2
#: Nominal frame interval (s) that defines the frame-count defaults without a frame time.
NOMINAL_FRAME_INTERVAL_S = 1.0 / 15.0

DEFAULTS = MethodParameters()


def _frames(duration_s: float, interval_s: float, minimum: int) -> int:
    return max(minimum, round(duration_s / interval_s))


def to_pixels(
    params: MethodParameters,
    spacing_mm: tuple[float, float] | None,
    frame_interval_s: float | None,
) -> PixelParameters:
    """Convert physical parameters to pixels and frames for one clip.

    Parameters
    ----------
    params : MethodParameters
        Physical parameters.
    spacing_mm : tuple of float or None
        ``(row, col)`` mm per pixel of the imaging region; ``None`` for an
        uncalibrated clip (the nominal :data:`NOMINAL_SPACING_MM` is used).
    frame_interval_s : float or None
        Seconds between frames; ``None`` uses :data:`NOMINAL_FRAME_INTERVAL_S`.

    Returns
    -------
    PixelParameters

    Raises
    ------
    ProposalInputError
        If a spacing or the frame interval is not a positive finite number.
    """
    if spacing_mm is not None:
        if len(spacing_mm) != 2 or not all(math.isfinite(s) and s > 0 for s in spacing_mm):
            raise ProposalInputError(
                f"spacing_mm: expected (row, col) mm per pixel, two positive numbers, "
                f"but got {spacing_mm!r}; "
                "pass the region's pixel_size_mm, or None for an uncalibrated clip"
            )
        mm_per_px = math.sqrt(spacing_mm[0] * spacing_mm[1])
    else:
        mm_per_px = NOMINAL_SPACING_MM
    if frame_interval_s is not None and not (math.isfinite(frame_interval_s) and frame_interval_s > 0):
        raise ProposalInputError(
            f"frame_interval_s: expected a positive number of seconds, but got {frame_interval_s!r}; "
            "pass the clip's frame time in seconds, or None if unknown"
        )
    interval = frame_interval_s if frame_interval_s is not None else NOMINAL_FRAME_INTERVAL_S

    def px(mm: float) -> float:
        return mm / mm_per_px

    return PixelParameters(
        reference_frames=_frames(params.reference_s, interval, 2),
        shaft_sigma=max(0.8, px(params.shaft_sigma_mm)),
        min_shaft=px(params.min_shaft_mm),
        line_tolerance=max(1.0, px(params.line_tolerance_mm)),
        search_radius=px(params.search_radius_mm),
        reverb_search=px(params.reverb_search_mm),
        tip_gap=max(2.0, px(params.tip_gap_mm)),
        max_angle_step_deg=params.max_angle_rate_deg_s * interval,
        dot_sigma=(max(1.0, px(params.dot_sigma_mm[0])), max(1.5, px(params.dot_sigma_mm[1]))),
        spread_radius=px(params.spread_radius_mm),
        spread_reach=px(params.spread_reach_mm),
        spread_min_area=params.spread_min_area_mm2 / mm_per_px**2,
        spread_persist_frames=_frames(params.spread_persist_s, interval, 1),
        rest_frames=_frames(params.rest_s, interval, 3),
        rest=px(params.rest_mm),
        motion_margin=math.ceil(px(params.motion_margin_mm)),
        pixel_area_mm2=None if spacing_mm is None else spacing_mm[0] * spacing_mm[1],
        spacing_mm=spacing_mm,
    )


#: The pixel parameters an uncalibrated clip at the nominal frame rate gets (documentation).
PIXEL_DEFAULTS = to_pixels(DEFAULTS, None, None)
