"""Proposals in the review widget: Propose in the background, accept a range, correct, save, audit.

The round trip of issue 20: propose → open in the widget → accept frames
10–20 → correct one frame → save as the reviewer → the audit uses the
reviewer's marks and ignores the rest (the proposal's other frames, the
proposal itself).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from app_model.types import KeyBinding
from PIL import Image
from widget_fixtures import ViewerFactory, click, ingest, open_clip_from_list, open_widget

from annotator.widget.layers import KEYFRAME_COLOUR
from annotator.widget.proposals import PROPOSAL_COLOUR, PROPOSAL_NEEDLE_LAYER, PROPOSAL_SPREAD_LAYER
from archive.analysis.audit.gather import gather_inputs
from archive.analysis.metrics import clip_metrics
from archive.archive import Archive
from archive.calibration import calibration_or_none
from archive.index.queries import Query
from archive.model import NeedleView, ReviewStatus
from archive.review import PROPOSAL_REVIEWER, NeedleMark
from archive.timing import frame_times_or_unknown

pytestmark = pytest.mark.gui

LUMBAR = "l4_tt_inplane_mono"  # 30 frames, calibrated, in-plane
RUN_TIMEOUT_MS = 120_000


def _propose(qtbot: Any, widget: Any) -> None:
    click(qtbot, widget, "propose")
    assert widget.proposals.worker is not None
    assert not widget.proposals.panel.buttons["propose"].isEnabled()
    qtbot.waitUntil(lambda: widget.proposals.worker is None, timeout=RUN_TIMEOUT_MS)


def test_round_trip_propose_accept_range_correct_save_audit(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path, tmp_path: Path
) -> None:
    uid = ingest(archive, sample_dir / f"{LUMBAR}.dcm")
    widget = open_widget(make_napari_viewer(), archive)
    open_clip_from_list(qtbot, widget, uid)
    assert "no proposal for this clip" in widget.proposals.panel.state.text()

    _propose(qtbot, widget)
    assert widget.proposals.panel.progress.value() == widget.proposals.panel.progress.maximum() == 30
    stored = archive.proposals.load(uid)
    assert stored is not None and stored.version == 1
    proposal = widget.proposals.proposal
    assert proposal is not None and proposal == stored.annotation
    proposed = set(proposal.keyframes("needle"))
    # the phantom's needle is found inside frames 10-20 and after them (what accepting 10-20 leaves out)
    assert len(proposed & set(range(9, 20))) >= 3 and proposed - set(range(9, 20))
    # nothing is the reviewer's yet: the proposal is drawn in its own layers and colour
    assert archive.annotations.reviewers(uid) == []
    frame = min(proposed & set(range(9, 20)))
    widget.go_to_frame(frame)
    layer = widget.viewer.layers[PROPOSAL_NEEDLE_LAYER]
    assert len(layer.data) == 1 and len(widget.marks.needle.data) == 0
    np.testing.assert_allclose(layer.edge_color[0], _rgba(PROPOSAL_COLOUR))
    assert PROPOSAL_COLOUR != KEYFRAME_COLOUR
    # the proposal layers lie under the reviewer's working layers, above the clip
    names = [lay.name for lay in widget.viewer.layers]
    assert names.index(PROPOSAL_NEEDLE_LAYER) < names.index(widget.marks.needle.name)
    assert names.index(PROPOSAL_SPREAD_LAYER) > names.index(widget.image.name)
    # empty proposal layers are left out of the canvas draw like the working layers
    assert widget._mark_skip is not None and layer in widget._mark_skip.layers
    # stepping between frames without a proposal does not rewrite the proposal layers
    spread_layer = widget.viewer.layers[PROPOSAL_SPREAD_LAYER]
    busy = proposed | set(proposal.keyframes("spread"))
    quiet = next(f for f in range(29) if not {f, f + 1} & busy)  # the phantom's needle enters at frame 5
    widget.go_to_frame(quiet)
    written = spread_layer.data
    widget.go_to_frame(quiet + 1)
    assert spread_layer.data is written
    widget.go_to_frame(frame)
    # the readout tells the reviewed value (none yet) from the proposed one
    angle = widget.panel.readout_labels["needle_angle_deg"].text()
    assert angle.startswith("reviewed: — (no needle on this frame) · proposed: ") and angle.endswith("°")
    _screenshot(widget, proposal, proposed, tmp_path)
    widget.go_to_frame(frame)

    # accept frames 10–20 (1-based) with the range boxes
    widget.proposals.panel.first.setValue(10)
    widget.proposals.panel.last.setValue(20)
    click(qtbot, widget, "accept_proposal_range")
    accepted = proposed & set(range(9, 20))
    annotation = widget.annotation
    assert annotation is not None and set(annotation.keyframes("needle")) == accepted
    assert widget.session is not None and widget.session.dirty
    widget.go_to_frame(frame)
    assert len(layer.data) == 0 and len(widget.marks.needle.data) == 1  # now the reviewer's mark
    assert "proposed" not in widget.panel.readout_labels["needle_angle_deg"].text()
    widget.go_to_frame(min(proposed - set(range(9, 20))))
    assert len(layer.data) == 1  # not accepted: still a proposal

    # correct frame 15: the reviewer draws the needle again; it replaces the accepted keyframe
    corrected = NeedleMark(((60.0, 330.0), (131.0, 262.0)), NeedleView.IN_PLANE)
    widget.go_to_frame(14)
    widget.tool_needle()
    widget.marks.needle.add_paths([np.asarray(corrected.points)])
    qtbot.waitUntil(lambda: widget.annotation is not None and widget.annotation.needle.get(14) == corrected)
    click(qtbot, widget, "save")
    assert "saved version 1" in widget.panel.message.text()

    mine = archive.annotations.load(uid, "alice").annotation
    assert set(mine.keyframes("needle")) == accepted | {14}
    assert mine.needle[14] == corrected
    for f in accepted - {14}:
        assert mine.needle[f] == proposal.needle[f]
    assert not set(mine.keyframes("needle")) - set(range(9, 20))  # nothing outside the range

    # submit, have it approved by someone else, and audit: only alice's marks are used
    archive.annotations.set_status(uid, "alice", "submitted", by="alice")
    archive.annotations.set_status(uid, "alice", "approved", by="bob")
    gathered = gather_inputs(archive, Query())
    assert [(i.reviewer, i.status) for i in gathered.inputs] == [("alice", ReviewStatus.APPROVED)]
    header = pydicom.dcmread(sample_dir / f"{LUMBAR}.dcm", stop_before_pixels=True)
    expected = clip_metrics(mine, calibration_or_none(header), frame_times_or_unknown(header))
    assert gathered.inputs[0].metrics == expected
    # every status, too: the proposal never becomes an audit input
    assert [i.reviewer for i in gather_inputs(archive, Query(), status=None).inputs] == ["alice"]
    assert PROPOSAL_REVIEWER in archive.annotations.reviewers(uid, proposals=True)


def test_reject_frame_and_reject_all_hide_the_proposal_and_accept_all_skips_rejected(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    uid = ingest(archive, sample_dir / f"{LUMBAR}.dcm")
    widget = open_widget(make_napari_viewer(), archive)
    open_clip_from_list(qtbot, widget, uid)
    _propose(qtbot, widget)
    proposal = widget.proposals.proposal
    assert proposal is not None
    frames = sorted(proposal.keyframes("needle"))
    rejected, kept, by_key = frames[0], frames[1], frames[2]
    widget.go_to_frame(rejected)
    layer = widget.viewer.layers[PROPOSAL_NEEDLE_LAYER]
    assert len(layer.data) == 1
    click(qtbot, widget, "reject_proposal_frame")
    assert len(layer.data) == 0 and rejected not in widget.proposals.pending()
    assert widget.annotation is not None and widget.annotation.needle == {}
    # the keys: Alt-A accepts the frame's proposal, Alt-X rejects it
    widget.go_to_frame(by_key)
    widget.viewer.keymap[KeyBinding.from_str("Alt-A")](widget.viewer)
    assert widget.annotation is not None and widget.annotation.needle == {by_key: proposal.needle[by_key]}
    widget.viewer.keymap[KeyBinding.from_str("Alt-X")](widget.viewer)
    assert by_key not in widget.proposals.pending()

    click(qtbot, widget, "accept_proposal_all")
    annotation = widget.annotation
    assert annotation is not None and rejected not in annotation.needle
    assert set(annotation.keyframes("needle")) == set(frames) - {rejected}
    assert set(annotation.keyframes("spread")) == set(proposal.keyframes("spread")) - {rejected}
    assert widget.proposals.pending() == ()
    widget.go_to_frame(kept)
    assert len(layer.data) == 0 and len(widget.marks.needle.data) == 1

    # a fresh look: reject all hides every frame, nothing is copied
    widget.proposals.reload()
    click(qtbot, widget, "reject_proposal_all")
    assert widget.proposals.pending() == ()
    # the stored proposal is untouched by decisions
    stored = archive.proposals.load(uid)
    assert stored is not None and stored.version == 1 and stored.annotation == proposal


def test_cancel_stops_the_run_and_stores_nothing(
    make_napari_viewer: ViewerFactory, qtbot: Any, archive: Archive, sample_dir: Path
) -> None:
    uid = ingest(archive, sample_dir / f"{LUMBAR}.dcm")
    widget = open_widget(make_napari_viewer(), archive)
    open_clip_from_list(qtbot, widget, uid)
    click(qtbot, widget, "propose")
    assert widget.proposals.panel.buttons["cancel_proposal"].isEnabled()
    click(qtbot, widget, "cancel_proposal")
    qtbot.waitUntil(lambda: widget.proposals.worker is None, timeout=RUN_TIMEOUT_MS)
    assert "proposal cancelled: nothing was stored" in widget.panel.message.text()
    assert archive.proposals.load(uid) is None and widget.proposals.proposal is None
    assert widget.proposals.panel.buttons["propose"].isEnabled()


def _screenshot(widget: Any, proposal: Any, proposed: set[int], tmp_path: Path) -> None:
    """The widget on the last frame with a proposed needle and spread (docs/images/review-proposals.png).

    Written to docs/images with ``USARCHIVE_UPDATE_DOCS=1``, else to ``tmp_path``.
    """
    both = proposed & set(proposal.keyframes("spread"))
    assert both, "the phantom's pool is proposed on frames with a proposed needle"
    widget.go_to_frame(max(both))
    assert np.asarray(widget.viewer.layers[PROPOSAL_SPREAD_LAYER].data).any()
    shots = Path("docs/images") if os.environ.get("USARCHIVE_UPDATE_DOCS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    widget.viewer.window.resize(1500, 950)  # the size of docs/images/review-widget.png
    widget.viewer.reset_view()
    widget.viewer.window._qt_window.grab().save(str(shots / "review-proposals.png"))
    with Image.open(shots / "review-proposals.png") as shot:
        assert shot.width >= 1000 and shot.height >= 600


def _rgba(colour: str) -> list[float]:
    from napari.utils.colormaps.standardize_color import transform_color

    return list(transform_color(colour)[0])
