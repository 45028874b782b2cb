"""Proposals as annotations of the reserved reviewer 'auto': stored, accepted, never a review.

The proposals here are built by hand (test data for the storage side); the
run on a stored clip calls the real detector
(:func:`archive.analysis.proposals.propose_clip`) on a phantom sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from archive.analysis.audit.gather import gather_inputs
from archive.analysis.metrics import agreement
from archive.analysis.proposals import ClipProposal, FrameProposal, ProposalCancelled, SpreadProposal
from archive.archive import Archive
from archive.errors import AnnotationError, MetricsError
from archive.index.queries import Query
from archive.ingest import IngestOutcome, Origin
from archive.model import NeedleView, ReviewStatus
from archive.phantom.truth import GroundTruth
from archive.research.export.gather import select_clips
from archive.review import PROPOSAL_REVIEWER, ClipAnnotation, NeedleMark, is_proposal_reviewer
from archive.review.proposals import accept_proposal, frame_range, proposal_annotation
from archive.settings import ArchiveSettings

CLIP = "l4_tt_inplane_mono"  # 30 frames of 280 x 380, calibrated, in-plane
N_FRAMES, SHAPE = 30, (280, 380)


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as opened:
        yield opened


@pytest.fixture
def uid(archive: Archive, sample_dir: Path) -> str:
    source = sample_dir / f"{CLIP}.dcm"
    assert archive.ingest(source, origin=Origin("file")).outcome is IngestOutcome.STORED
    return GroundTruth.read(source.with_suffix(".json")).sop_instance_uid


def _pool(frame: int) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[150 : 150 + frame, 200:230] = True
    return mask


def _proposal(approach: str = "in-plane") -> ClipProposal:
    """Needle on frames 5..25 moving deeper; frame 12 without a needle; spread from frame 18."""
    frames = []
    for n in range(1, N_FRAMES + 1):
        if 5 <= n <= 25 and n != 12:
            tip = (100.0 + 3 * n, 250.0 - 2 * n)
            shaft = ((60.0, 300.0), tip) if approach == "in-plane" else None
            frames.append(FrameProposal(n, tip, shaft, 0.9))
        else:
            frames.append(FrameProposal(n, None, None, 0.0))
    spread = tuple(SpreadProposal(n, _pool(n), float(n)) for n in range(18, N_FRAMES + 1))
    return ClipProposal(tuple(frames), spread, approach, "mm", "test-method/1")


def _stored(uid: str) -> ClipAnnotation:
    return proposal_annotation(
        _proposal(), sop_instance_uid=uid, n_frames=N_FRAMES, frame_shape=SHAPE, requested_by="alice"
    )


def test_a_proposal_becomes_keyframes_of_reviewer_auto_in_draft() -> None:
    stored = _stored("1.2.3")
    assert stored.reviewer == PROPOSAL_REVIEWER and stored.status is ReviewStatus.DRAFT
    # 1-based proposal frames are stored as 0-based keyframes; frame 12 (no needle) has none
    assert stored.keyframes("needle") == tuple(n - 1 for n in range(5, 26) if n != 12)
    assert stored.needle[4] == NeedleMark(((60.0, 300.0), (115.0, 240.0)), NeedleView.IN_PLANE)
    assert stored.keyframes("spread") == tuple(range(17, N_FRAMES))
    assert np.array_equal(stored.spread[20], _pool(21))
    # the needle temporal mode interpolates the gap (frame 12) and extrapolates nothing
    assert stored.mark_state("needle", 11) is not None and stored.needle_at(26) is None
    (comment,) = stored.comments
    assert comment.author == PROPOSAL_REVIEWER
    assert "test-method/1" in comment.text and "run by alice" in comment.text
    assert "needle on 20 of 30" in comment.text


def test_out_of_plane_tips_are_dots_and_points_are_kept_inside_the_frame() -> None:
    frames = (
        FrameProposal(1, (10.0, 20.0), None, 0.8),
        FrameProposal(2, (300.0, -3.0), None, 0.7),  # off the image: clamped to its edge
    )
    stored = proposal_annotation(
        ClipProposal(frames, (), "out-of-plane", "px", "m"),
        sop_instance_uid="1.2.3",
        n_frames=2,
        frame_shape=SHAPE,
        requested_by="bob",
    )
    assert stored.needle[0] == NeedleMark(((10.0, 20.0),), NeedleView.OUT_OF_PLANE)
    assert stored.needle[1].tip == (279.5, -0.5)


def test_a_shaft_with_its_tip_above_the_entry_is_levelled_or_dropped() -> None:
    frames = (
        FrameProposal(1, (99.5, 200.0), ((100.0, 100.0), (99.5, 200.0)), 0.9),  # 0.5 px: level it
        FrameProposal(2, (50.0, 200.0), ((100.0, 100.0), (50.0, 200.0)), 0.9),  # 50 px: impossible
    )
    stored = proposal_annotation(
        ClipProposal(frames, (), "in-plane", "mm", "m"),
        sop_instance_uid="1.2.3",
        n_frames=2,
        frame_shape=SHAPE,
        requested_by="bob",
    )
    assert stored.needle[0].points == ((99.5, 100.0), (99.5, 200.0))
    assert 1 not in stored.needle


def test_accepting_a_range_copies_only_those_frames_and_keeps_the_reviewers_other_marks() -> None:
    proposal = _stored("1.2.3")
    own_mark = NeedleMark(((50.0, 50.0), (70.0, 90.0)), NeedleView.IN_PLANE)
    mine = (
        ClipAnnotation.new("1.2.3", "carol", N_FRAMES, SHAPE)
        .with_needle(2, own_mark)
        .with_needle(14, own_mark)
    )
    accepted, needle, spread = accept_proposal(mine, proposal, range(10, 21))
    assert needle == tuple(n for n in range(10, 21) if n != 12)
    assert spread == tuple(range(18, 21))
    assert accepted.reviewer == "carol"
    assert set(accepted.keyframes("needle")) == {2, *(n - 1 for n in needle)}
    # frame 15 (index 14) had the reviewer's mark and a proposal: the proposal replaces it
    assert accepted.needle[14] == proposal.needle[14]
    assert accepted.needle[2] == own_mark  # outside the range: untouched
    assert accepted.keyframes("spread") == (17, 18, 19)
    with pytest.raises(AnnotationError, match="expected the proposal of clip"):
        accept_proposal(ClipAnnotation.new("9.9", "carol", N_FRAMES, SHAPE), proposal, [1])


def test_frame_range_checks_the_clip() -> None:
    assert frame_range(None, None, 30) == (1, 30)
    assert frame_range(10, None, 30) == (10, 30)
    for first, last in ((0, 5), (5, 31), (20, 10)):
        with pytest.raises(AnnotationError, match="1 <= FIRST <= LAST <= 30"):
            frame_range(first, last, 30)


def test_nobody_saves_or_reviews_under_the_proposal_identity(archive: Archive, uid: str) -> None:
    for name in ("auto", "Auto", " AUTO "):
        assert is_proposal_reviewer(name)
        with pytest.raises(AnnotationError, match="reserved for automatic proposals"):
            archive.annotations.save(ClipAnnotation.new(uid, name, N_FRAMES, SHAPE), base_version=None)
    human = ClipAnnotation.new(uid, "alice", N_FRAMES, SHAPE)
    with pytest.raises(AnnotationError, match="expected a proposal"):
        archive.annotations.save_proposal(human, saved_by="alice")
    archive.annotations.save_proposal(_stored(uid), saved_by="alice")
    with pytest.raises(AnnotationError, match="never a review"):
        archive.annotations.set_status(uid, PROPOSAL_REVIEWER, "submitted", by="alice")
    submitted = _stored(uid).with_status(ReviewStatus.SUBMITTED)
    with pytest.raises(AnnotationError, match="expected a proposal"):
        archive.annotations.save_proposal(submitted, saved_by="alice")


def test_a_new_run_is_a_new_version_without_a_stale_check(archive: Archive, uid: str) -> None:
    first = archive.annotations.save_proposal(_stored(uid), saved_by="alice")
    other = proposal_annotation(
        _proposal("out-of-plane"),
        sop_instance_uid=uid,
        n_frames=N_FRAMES,
        frame_shape=SHAPE,
        requested_by="bob",
    )
    second = archive.annotations.save_proposal(other, saved_by="bob")
    assert (first.version, second.version) == (1, 2)
    loaded = archive.proposals.load(uid)
    assert loaded is not None and loaded.version == 2 and loaded.annotation == other
    history = archive.annotations.history(uid, PROPOSAL_REVIEWER)
    assert [(v.saved_by, v.status) for v in history] == [
        ("alice", ReviewStatus.DRAFT),
        ("bob", ReviewStatus.DRAFT),
    ]


def test_listings_find_audit_and_agreement_leave_proposals_out(archive: Archive, uid: str) -> None:
    archive.annotations.save_proposal(_stored(uid), saved_by="alice")
    assert archive.annotations.reviewers(uid) == []
    assert archive.annotations.reviewers(uid, proposals=True) == [PROPOSAL_REVIEWER]
    assert archive.annotations.list_reviews() == []
    assert archive.annotations.list_reviews(reviewer=PROPOSAL_REVIEWER) == []
    assert [r.reviewer for r in archive.annotations.list_reviews(proposals=True)] == [PROPOSAL_REVIEWER]
    # find --status draft: a clip with only a proposal has no draft review
    assert archive.index.find(Query(review_status=ReviewStatus.DRAFT)) == []
    # the audit, over every status, has no input from the proposal
    gathered = gather_inputs(archive, Query(), status=None)
    assert gathered.inputs == () and len(gathered.archived) == 1
    # research exports of any status select the clip without the proposal as a review
    assert [clip.reviews for clip in select_clips(archive, Query(), status=None)] == [()]
    assert select_clips(archive, Query(), status=ReviewStatus.DRAFT) == []

    accepted = archive.proposals.accept(uid, "carol", first=10, last=20)
    assert accepted.saved.reviewer == "carol" and accepted.saved.version == 1
    assert [row.sop_instance_uid for row in archive.index.find(Query(review_status=ReviewStatus.DRAFT))] == [
        uid
    ]
    gathered = gather_inputs(archive, Query(), status=None)
    assert [item.reviewer for item in gathered.inputs] == ["carol"]

    carol = archive.annotations.load(uid, "carol").annotation
    proposal = archive.proposals.load(uid)
    assert proposal is not None
    with pytest.raises(MetricsError, match="never a review"):
        agreement(carol, proposal.annotation, None)
    assert agreement(carol, carol, None).reviewers == ("carol", "carol")


def test_accept_needs_a_proposal_and_an_editable_annotation(archive: Archive, uid: str) -> None:
    with pytest.raises(AnnotationError, match="has no proposal; run 'usarchive propose"):
        archive.proposals.accept(uid, "carol")
    archive.annotations.save_proposal(_stored(uid), saved_by="alice")
    first = archive.proposals.accept(uid, "carol", first=5, last=6)
    assert (first.needle_frames, first.saved.version) == ((5, 6), 1)
    again = archive.proposals.accept(uid, "carol", first=5, last=6)
    assert (again.saved.version, again.saved.created) == (1, False)  # identical: no new version
    archive.annotations.set_status(uid, "carol", "submitted", by="carol")
    with pytest.raises(AnnotationError, match="cannot be edited"):
        archive.proposals.accept(uid, "carol", first=7, last=8)


def test_run_calls_the_detector_on_the_stored_clip_and_stores_what_it_found(
    archive: Archive, uid: str
) -> None:
    seen: list[tuple[int, int]] = []
    run = archive.proposals.run(
        uid, requested_by="alice", first=3, last=20, progress=lambda d, t: seen.append((d, t))
    )
    assert [f.frame for f in run.proposal.frames] == list(range(3, 21))
    assert seen[-1] == (18, 18) and run.proposal.units == "mm"
    assert run.proposal.approach == "in-plane"  # the clip's indexed approach
    stored = archive.proposals.load(uid)
    assert stored is not None and stored.version == run.saved.version == 1
    found = {f.frame - 1 for f in run.proposal.frames if f.tip is not None}
    assert found and set(stored.annotation.keyframes("needle")) == found
    for frame in found:
        proposed = next(f for f in run.proposal.frames if f.frame == frame + 1)
        assert stored.annotation.needle[frame].tip == pytest.approx(proposed.tip)


def test_a_cancelled_run_stores_nothing(archive: Archive, uid: str) -> None:
    with pytest.raises(ProposalCancelled):
        archive.proposals.run(uid, requested_by="alice", cancelled=lambda: True)
    assert archive.proposals.load(uid) is None


def test_a_region_one_past_the_frame_is_kept_inside_it(
    archive: Archive, sample_dir: Path, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(sample_dir / f"{CLIP}.dcm")
    region = ds.SequenceOfUltrasoundRegions[0]
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = int(ds.Columns), int(ds.Rows)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / "wide_region.dcm"
    ds.save_as(path)
    assert archive.ingest(path, origin=Origin("file")).outcome is IngestOutcome.STORED
    run = archive.proposals.run(str(ds.SOPInstanceUID), requested_by="alice", first=1, last=3)
    assert [f.frame for f in run.proposal.frames] == [1, 2, 3] and run.proposal.units == "mm"
