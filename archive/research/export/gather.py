"""Choose the clips of an export: the ``find`` filters plus the review status of their annotations.

``status`` selects which reviewers' annotations go with a clip. With a status
(default :attr:`ReviewStatus.APPROVED`) only clips with at least one
annotation in that status are selected, each with the reviewers whose latest
annotation is in it. With ``status=None`` (``--status any`` on the command
line) every clip matching the filters is selected, each with all its
reviewers' annotations whatever their status, and clips nobody has annotated
yet come with none (frames and metadata only).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from archive.archive import Archive
from archive.index.queries import InstanceRow, Query
from archive.model import ReviewStatus
from archive.review import ClipAnnotation
from archive.review.sql import ReviewRow

logger = logging.getLogger(__name__)

#: No export is limited the way ``find``'s listing is.
UNLIMITED = 2**62


@dataclass(frozen=True)
class SelectedClip:
    """One archived clip chosen for export, with the reviews that go with it.

    Attributes
    ----------
    row : InstanceRow
        The clip as the index describes it (original identifiers: never write
        them into a research export).
    path : Path
        The stored DICOM file.
    reviews : tuple of ReviewRow
        Reviewers' annotations selected with the clip, sorted by reviewer;
        empty for a clip nobody has annotated (only with ``status=None``).
    """

    row: InstanceRow
    path: Path
    reviews: tuple[ReviewRow, ...]

    @property
    def sop_instance_uid(self) -> str:
        """The clip's original SOP Instance UID (for messages to the exporting user)."""
        return self.row.sop_instance_uid


def select_clips(
    archive: Archive, query: Query, *, status: ReviewStatus | None = ReviewStatus.APPROVED
) -> list[SelectedClip]:
    """The clips ``query`` finds, each with its reviews in ``status``.

    Parameters
    ----------
    archive : Archive
        The open archive.
    query : Query
        Filters as in ``usarchive find``; its ``review_status`` is replaced
        by ``status`` and its limit is lifted. ``query.reviewer`` restricts
        the reviews (and, with a status, the clips) to that reviewer's.
    status : ReviewStatus or None
        Review status of the annotations to export; ``None`` selects every
        clip, annotated or not, with all its reviews.

    Returns
    -------
    list of SelectedClip
        In the order of ``find`` (newest study first).
    """
    wanted = replace(query, review_status=status, limit=UNLIMITED)
    if status is None:
        wanted = replace(wanted, reviewer=None)
    rows = archive.index.find(wanted)
    by_clip: dict[str, list[ReviewRow]] = defaultdict(list)
    for review in archive.annotations.list_reviews(status=status, reviewer=query.reviewer):
        by_clip[review.sop_instance_uid].append(review)
    selected = [
        SelectedClip(
            row=row,
            path=archive.store.absolute(row.path),
            reviews=tuple(sorted(by_clip.get(row.sop_instance_uid, []), key=lambda r: r.reviewer)),
        )
        for row in rows
    ]
    logger.info(
        "export selection: %d clip(s), %d review(s) (status %s)",
        len(selected),
        sum(len(clip.reviews) for clip in selected),
        "any" if status is None else status.value,
    )
    return selected


def load_annotation(archive: Archive, review: ReviewRow) -> ClipAnnotation:
    """The latest version of the annotation ``review`` lists.

    Raises
    ------
    AnnotationError
        If it is no longer stored (e.g. the clip was removed meanwhile).
    """
    return archive.annotations.load(review.sop_instance_uid, review.reviewer).annotation
