"""One reviewer's work on one archived clip, without any user interface.

A :class:`ReviewSession` holds the :class:`~archive.review.ClipAnnotation`
being edited (the single source of truth the napari layers show), the
version it was loaded from, and the last saved state, so the widget can say
whether there are unsaved edits. Saving follows the archive's optimistic
rule: a save based on an outdated version raises
:class:`~archive.errors.StaleAnnotationError` and the edits stay in the
session, never lost.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from archive.archive import Archive
from archive.errors import AnnotationError
from archive.model import ReviewStatus, SpinalLevel
from archive.review import ClipAnnotation
from archive.review.store import SavedVersion

logger = logging.getLogger(__name__)


def _instance_detail(archive: Archive, sop_instance_uid: str) -> dict[str, Any]:
    found = archive.index.show(sop_instance_uid)
    if found is None or found.kind != "instance":
        what = "nothing" if found is None else f"a {found.kind}"
        raise AnnotationError(
            f"open clip: expected the SOP Instance UID of an archived clip, but {sop_instance_uid!r} "
            f"names {what}; list clips with 'usarchive find' or import it first"
        )
    return found.data


def archived_clip_path(archive: Archive, sop_instance_uid: str) -> Path:
    """The stored file of an archived instance.

    Parameters
    ----------
    archive : Archive
        The open archive.
    sop_instance_uid : str
        SOP Instance UID of the clip.

    Returns
    -------
    Path
        Absolute path of the file in the archive's store.

    Raises
    ------
    AnnotationError
        If the archive has no instance with that UID.
    """
    return archive.store.absolute(str(_instance_detail(archive, sop_instance_uid)["path"]))


def archived_clip_levels(archive: Archive, sop_instance_uid: str) -> tuple[SpinalLevel, ...]:
    """The spinal levels the archive's index gives an instance, in anatomical order.

    Parameters
    ----------
    archive : Archive
        The open archive.
    sop_instance_uid : str
        SOP Instance UID of the clip.

    Returns
    -------
    tuple of SpinalLevel
        Empty when the index knows no level of the clip.

    Raises
    ------
    AnnotationError
        If the archive has no instance with that UID.
    """
    rows = _instance_detail(archive, sop_instance_uid).get("levels") or []
    return tuple(SpinalLevel(str(row["level"])) for row in rows)


class ReviewSession:
    """The annotation of one clip by one reviewer, as loaded, edited and saved.

    Parameters
    ----------
    archive : Archive
        Where the clip and its annotations are.
    sop_instance_uid : str
        The clip.
    reviewer : str
        Whose annotation is shown and edited.
    n_frames : int
        Frames of the clip.
    frame_shape : tuple of int
        ``(rows, cols)`` of one frame.
    user : str, optional
        Who works on it (recorded as saver and as author of status changes);
        by default ``reviewer``. An approver opens a reviewer's annotation
        with their own name here.

    Attributes
    ----------
    annotation : ClipAnnotation
        The annotation as edited now.
    base_version : int or None
        The stored version the edits are based on; ``None`` before a first save.
    """

    def __init__(
        self,
        archive: Archive,
        sop_instance_uid: str,
        reviewer: str,
        n_frames: int,
        frame_shape: tuple[int, int],
        *,
        user: str | None = None,
    ) -> None:
        self.archive = archive
        self.user = user or reviewer
        self.sop_instance_uid = sop_instance_uid
        self.reviewer = reviewer
        self.n_frames = n_frames
        self.frame_shape = frame_shape
        self.annotation = ClipAnnotation.new(sop_instance_uid, reviewer, n_frames, frame_shape)
        self.base_version: int | None = None
        self._saved = self.annotation
        self.reload()

    def reload(self) -> None:
        """Load the latest stored version (or start empty when there is none), dropping edits."""
        store = self.archive.annotations
        if self.reviewer in store.reviewers(self.sop_instance_uid):
            loaded = store.load(self.sop_instance_uid, self.reviewer)
            self.annotation, self.base_version = loaded.annotation, loaded.version
            logger.info("loaded version %d of %s by %s", loaded.version, self.sop_instance_uid, self.reviewer)
        else:
            self.annotation = ClipAnnotation.new(
                self.sop_instance_uid, self.reviewer, self.n_frames, self.frame_shape
            )
            self.base_version = None
        self._saved = self.annotation

    @property
    def dirty(self) -> bool:
        """Whether the annotation differs from what was last loaded or saved."""
        return self.annotation != self._saved

    @property
    def status(self) -> ReviewStatus:
        """Review status of the annotation being edited."""
        return self.annotation.status

    def save(self) -> SavedVersion:
        """Store the annotation as the next version.

        Returns
        -------
        SavedVersion
            The version now holding it.

        Raises
        ------
        StaleAnnotationError
            If another version was stored since this one was loaded; nothing
            is written and :attr:`annotation` keeps the edits.
        AnnotationError
            If the store refuses it (see :meth:`AnnotationStore.save`).
        """
        saved = self.archive.annotations.save(
            self.annotation, base_version=self.base_version, saved_by=self.user
        )
        self.base_version = saved.version
        self._saved = self.annotation
        return saved

    def set_status(self, status: ReviewStatus | str, comment: str | None = None) -> ReviewStatus:
        """Move the annotation to another review status, saving unsaved edits first.

        Parameters
        ----------
        status : ReviewStatus or str
            Wanted status (see :mod:`archive.review.workflow`).
        comment : str, optional
            Why; required for needs-rework.

        Returns
        -------
        ReviewStatus
            The new status.

        Raises
        ------
        StaleAnnotationError
            If the unsaved edits cannot be saved because someone saved in between.
        AnnotationError
            If the workflow does not allow the change or a comment is missing.
        """
        if self.dirty or self.base_version is None:
            self.save()
        new = self.archive.annotations.set_status(
            self.sop_instance_uid, self.reviewer, status, by=self.user, comment=comment
        )
        self.reload()
        return new
