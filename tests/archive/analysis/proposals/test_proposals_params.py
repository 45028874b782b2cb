"""Physical parameters are converted to pixels through the region's spacing, never fixed pixels."""

from __future__ import annotations

import pytest

from archive.analysis.proposals import DEFAULTS, PIXEL_DEFAULTS, MethodParameters, ProposalInputError
from archive.analysis.proposals.background import working_factor
from archive.analysis.proposals.params import NOMINAL_SPACING_MM, to_pixels


def test_lengths_scale_with_the_spacing_and_durations_with_the_frame_time() -> None:
    fine = to_pixels(DEFAULTS, (0.1, 0.1), 0.05)
    coarse = to_pixels(DEFAULTS, (0.4, 0.4), 0.2)
    assert fine.min_shaft == pytest.approx(DEFAULTS.min_shaft_mm / 0.1)
    assert coarse.min_shaft == pytest.approx(DEFAULTS.min_shaft_mm / 0.4)
    assert fine.search_radius == pytest.approx(4 * coarse.search_radius)
    assert fine.reference_frames == round(DEFAULTS.reference_s / 0.05)
    assert coarse.max_angle_step_deg == pytest.approx(DEFAULTS.max_angle_rate_deg_s * 0.2)
    assert fine.pixel_area_mm2 == pytest.approx(0.01)


def test_anisotropic_spacing_uses_the_geometric_mean() -> None:
    pixels = to_pixels(DEFAULTS, (0.1, 0.4), None)
    assert pixels.min_shaft == pytest.approx(DEFAULTS.min_shaft_mm / 0.2)
    assert pixels.pixel_area_mm2 == pytest.approx(0.04)


def test_uncalibrated_clips_get_the_documented_pixel_defaults() -> None:
    assert PIXEL_DEFAULTS.spacing_mm is None and PIXEL_DEFAULTS.pixel_area_mm2 is None
    assert PIXEL_DEFAULTS.min_shaft == pytest.approx(DEFAULTS.min_shaft_mm / NOMINAL_SPACING_MM)
    assert working_factor(None) == 1


def test_changed_physical_parameters_change_the_pixels() -> None:
    wider = MethodParameters(search_radius_mm=8.0)
    assert to_pixels(wider, (0.2, 0.2), None).search_radius == pytest.approx(40.0)


@pytest.mark.parametrize("spacing", [(0.0, 0.2), (0.2,), (float("nan"), 0.2)])
def test_bad_spacing_is_refused(spacing) -> None:
    with pytest.raises(ProposalInputError, match="spacing_mm"):
        to_pixels(DEFAULTS, spacing, None)  # type: ignore[arg-type]
