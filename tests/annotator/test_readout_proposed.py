"""The readout of a proposal: its needle and spread measured with the reviewer's target and danger."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.widget.panel import readout_text
from annotator.widget.readout import frame_readout, proposed_readout
from archive.calibration import Calibration, UltrasoundRegion
from archive.model import NeedleView
from archive.review import PROPOSAL_REVIEWER, ClipAnnotation, NeedleMark, TargetMark

ROWS, COLS = 40, 60
# 0.1 mm per column, 0.2 mm per row
CAL = Calibration(
    (
        UltrasoundRegion(
            min_x0=0,
            min_y0=0,
            max_x1=COLS - 1,
            max_y1=ROWS - 1,
            spatial_format=1,
            data_type=1,
            units_x=3,
            units_y=3,
            delta_x_cm=0.01,
            delta_y_cm=0.02,
        ),
    )
)


def test_proposed_values_use_the_proposal_marks_and_the_reviewers_target() -> None:
    mine = (
        ClipAnnotation.new("1.2.3", "alice", 5, (ROWS, COLS))
        .with_target(0, TargetMark((15.0, 20.0), "L5 SAP–TP junction"))
        .with_needle(2, NeedleMark(((0.0, 0.0), (15.0, 20.0)), NeedleView.IN_PLANE))
    )
    pool = np.zeros((ROWS, COLS), bool)
    pool[10:14, 20:25] = True  # 20 pixels of 0.02 mm²
    proposal = (
        ClipAnnotation.new("1.2.3", PROPOSAL_REVIEWER, 5, (ROWS, COLS))
        .with_needle(2, NeedleMark(((0.0, 40.0), (15.0, 30.0)), NeedleView.IN_PLANE))
        .with_spread(3, pool)
    )
    reviewed = frame_readout(mine, CAL, 2)
    proposed = proposed_readout(mine, proposal, CAL, 2)
    assert proposed is not None
    assert reviewed.tip_to_target_mm.value == pytest.approx(0.0)
    assert proposed.tip_to_target_mm.value == pytest.approx(1.0)  # 10 columns of 0.1 mm
    assert proposed.needle_angle_deg.value == pytest.approx(np.degrees(np.arctan2(3.0, 1.0)))
    assert proposed.spread_area_mm2.value is None  # no spread proposed on frame 3 yet
    on_three = proposed_readout(mine, proposal, CAL, 3)
    assert on_three is not None and on_three.spread_area_mm2.value == pytest.approx(0.4)
    assert on_three.tip_to_target_mm.value is None  # the proposal has no needle there
    assert proposed_readout(mine, proposal, CAL, 4) is None

    assert readout_text(reviewed, None, "tip_to_target_mm") == "0.0 mm"
    assert readout_text(reviewed, proposed, "tip_to_target_mm") == "reviewed: 0.0 mm · proposed: 1.0 mm"
    assert proposed_readout(mine, proposal, None, 2) is not None
