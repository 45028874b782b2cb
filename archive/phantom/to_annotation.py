"""A reviewer's annotation that marks exactly what a synthetic clip's ground truth says.

Used to test measurement code (audit metrics, agreement) against the numbers
the phantom generator put in: every frame of the truth becomes a keyframe, so
nothing is interpolated.
"""

from __future__ import annotations

from archive.model import ClipEvent, NeedleView
from archive.phantom.truth import GroundTruth
from archive.review import ClipAnnotation, NeedleMark, TargetMark


def annotation_from_truth(truth: GroundTruth, reviewer: str) -> ClipAnnotation:
    """Build the annotation a perfect reviewer would make of a synthetic clip.

    Parameters
    ----------
    truth : GroundTruth
        Ground truth of the clip (:meth:`GroundTruth.read`).
    reviewer : str
        User name recorded as the annotation's reviewer.

    Returns
    -------
    ClipAnnotation
        A draft with: a needle keyframe on every frame where the needle is
        visible (the truth's polyline, in the truth's view); a target keyframe
        on every frame, named ``truth.target_name``; a spread mask on every
        frame whose truth spread has a pixel; a danger mask of class
        ``truth.danger_name`` on every frame when the truth has a danger
        structure; and the truth's events that occur in the clip.
    """
    n_frames, rows, cols = truth.spread.shape
    view = NeedleView.parse(truth.needle_view)
    needle = {
        frame: NeedleMark.oriented(line, view) for frame, line in enumerate(truth.needle) if line is not None
    }
    target = {frame: TargetMark((p[0], p[1]), truth.target_name) for frame, p in enumerate(truth.targets)}
    spread = {frame: truth.spread[frame] for frame in range(n_frames) if truth.spread[frame].any()}
    danger = {}
    if truth.danger is not None:
        danger = {frame: {truth.danger_name: truth.danger[frame]} for frame in range(n_frames)}
    events = {ClipEvent.parse(name): frame for name, frame in truth.events.items() if frame is not None}
    return ClipAnnotation(
        sop_instance_uid=truth.sop_instance_uid,
        reviewer=reviewer,
        n_frames=n_frames,
        frame_shape=(rows, cols),
        needle=needle,
        target=target,
        spread=spread,
        danger=danger,
        events=events,
    )
