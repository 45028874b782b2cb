"""Versioned storage of reviewers' annotations in the archive index.

Each save of one reviewer's annotation of one clip is a new version; versions
are kept for ever and the latest is what :meth:`AnnotationStore.load` returns by
default. Reviewers never share versions, so two reviewers cannot overwrite
each other.

Saving is optimistic: the editor says which version it loaded
(``base_version``); if another version was stored since, the save is refused
with :class:`~archive.errors.StaleAnnotationError` and nothing is written; the
editor still holds its annotation, reloads the latest, re-applies its edits
and saves again on top of it.

The review status (:class:`~archive.model.ReviewStatus`) travels inside the
annotation and is mirrored in the index for listings and ``usarchive find``.
A status change made by :meth:`AnnotationStore.set_status` (an approver's
decision) is itself a new version, so the stored content always carries the
current status and comments.

Approval is four-eyes by default: the person approving an annotation must
not be its reviewer (``four_eyes=False``, the setting
``[review] four_eyes = false`` in ``usarchive.toml``, allows self-approval, e.g. for a single-person
practice).

The reviewer's identity comes from :func:`resolve_reviewer`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from archive.errors import AnnotationError, StaleAnnotationError
from archive.index.engine import write_transaction
from archive.model import ReviewStatus
from archive.review import (
    EDITABLE_STATUSES,
    PROPOSAL_REVIEWER,
    ClipAnnotation,
    ReviewComment,
    canonical_json,
    from_json,
    is_proposal_reviewer,
    transition,
)
from archive.review import sql as idx
from archive.review.sql import CommentRow, ReviewRow
from archive.settings import ArchiveSettings

__all__ = [
    "ENV_REVIEWER",
    "OPTION_REVIEWER",
    "AnnotationStore",
    "CommentRow",
    "LoadedAnnotation",
    "ReviewRow",
    "SavedVersion",
    "VersionInfo",
    "resolve_reviewer",
]

logger = logging.getLogger(__name__)

#: Where the reviewer is configured, for messages (``usarchive.toml``).
OPTION_REVIEWER = "[review] reviewer"
#: Environment variable the configuration reads the reviewer from (:mod:`archive.config`).
ENV_REVIEWER = "USARCHIVE_REVIEWER"


def resolve_reviewer(settings: ArchiveSettings) -> str | None:
    """The reviewer's user name from the configuration.

    Parameters
    ----------
    settings : ArchiveSettings
        :attr:`~ArchiveSettings.reviewer`: ``[review] reviewer``, overridden by
        ``USARCHIVE_REVIEWER`` when the configuration was built (library code
        reads no environment variable).

    Returns
    -------
    str or None
        The name; ``None`` when none is configured. The operating system's
        login is deliberately not used: several reviewers may share a
        workstation account, so a missing identity must be asked for (the
        annotator asks once and may offer the login as the default answer).
    """
    return settings.reviewer


@dataclass(frozen=True)
class SavedVersion:
    """The outcome of :meth:`AnnotationStore.save`.

    Attributes
    ----------
    version : int
        The stored version that now holds the annotation.
    created : bool
        ``False`` when the content was identical to the latest version and no
        new version was written.
    """

    sop_instance_uid: str
    reviewer: str
    version: int
    content_sha256: str
    status: ReviewStatus
    saved_at: datetime
    created: bool


@dataclass(frozen=True)
class LoadedAnnotation:
    """An annotation read back from the archive.

    Attributes
    ----------
    annotation : ClipAnnotation
        Equal to the annotation that was saved.
    version : int
        Which version it is.
    status : ReviewStatus
        The review status stored with that version (for the latest version,
        the current status).
    saved_at : datetime
        When that version was saved (UTC).
    """

    annotation: ClipAnnotation
    version: int
    status: ReviewStatus
    saved_at: datetime


@dataclass(frozen=True)
class VersionInfo:
    """One entry of :meth:`AnnotationStore.history` (no content)."""

    version: int
    parent_version: int | None
    saved_at: datetime
    saved_by: str
    status: ReviewStatus
    content_sha256: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``saved_at`` as ISO 8601 UTC)."""
        return {
            "version": self.version,
            "parent_version": self.parent_version,
            "saved_at": self.saved_at.isoformat(),
            "saved_by": self.saved_by,
            "status": self.status.value,
            "content_sha256": self.content_sha256,
        }


class _Latest:
    """Marker base version of :meth:`AnnotationStore.save_proposal`: whatever is stored latest."""


_LATEST = _Latest()


def _clip_name(uid: str, reviewer: str) -> str:
    return f"annotation of clip {uid} by reviewer {reviewer!r}"


def _sha256(content: str) -> str:
    # the same digest as archive.review.content_sha256, from the text already rendered
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _parse(content: str) -> ClipAnnotation:
    return from_json(json.loads(content))


def _same_marks(old: ClipAnnotation, new: ClipAnnotation) -> bool:
    return dataclasses.replace(new, status=old.status, comments=old.comments) == old


class AnnotationStore:
    """Versioned annotations per clip and reviewer, in the index at ``engine``.

    Get one from :attr:`archive.archive.Archive.annotations`. Every write runs in
    one write transaction (:func:`archive.index.engine.write_transaction`), so
    concurrent editors in several processes are safe on SQLite and PostgreSQL.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Engine of an index migrated to version 2 or later.
    four_eyes : bool
        Refuse an approval by the annotation's own reviewer (``[review] four_eyes``, on by default).
    """

    def __init__(self, engine: Engine, *, four_eyes: bool = True) -> None:
        self.engine = engine
        self.four_eyes = four_eyes

    # -- writing --------------------------------------------------------------------------------

    def _instance(self, connection: Connection, uid: str, *, lock: bool = False) -> idx.InstanceRef:
        ref = idx.find_instance_ref(connection, uid, lock=lock)
        if ref is None:
            raise AnnotationError(
                f"annotation: expected a clip in the archive, but there is no instance with SOP "
                f"Instance UID {uid}; import the clip first (usarchive import)"
            )
        return ref

    @staticmethod
    def _check_fits(annotation: ClipAnnotation, ref: idx.InstanceRef) -> None:
        frames = ref.frames or 1
        if ref.rows is None or ref.columns is None:
            return  # the index has no image size to compare with
        if annotation.n_frames != frames or annotation.frame_shape != (ref.rows, ref.columns):
            raise AnnotationError(
                f"{_clip_name(annotation.sop_instance_uid, annotation.reviewer)}: expected "
                f"{frames} frame(s) of {ref.rows} x {ref.columns} pixels as the archived clip has, but "
                f"the annotation has {annotation.n_frames} frame(s) of {annotation.frame_shape[0]} x "
                f"{annotation.frame_shape[1]}; it was made on another clip"
            )

    def save(
        self, annotation: ClipAnnotation, *, base_version: int | None, saved_by: str | None = None
    ) -> SavedVersion:
        """Store ``annotation`` as the next version of its reviewer's annotation of its clip.

        Parameters
        ----------
        annotation : ClipAnnotation
            The annotation; its ``sop_instance_uid`` and ``reviewer`` say where it goes.
        base_version : int or None
            The version the editor loaded and edited; ``None`` for a first save.
        saved_by : str, optional
            Who saves (default: the annotation's reviewer).

        Returns
        -------
        SavedVersion
            The new version (``latest + 1``). If the content is identical to the
            latest stored version, no version is written and that version is
            returned with ``created=False``; this is never refused as stale, since
            nothing could be lost.

        Raises
        ------
        StaleAnnotationError
            If ``base_version`` is not the latest stored version (someone saved
            in between). Nothing is written; reload, re-apply, save again.
        AnnotationError
            If the clip is not in the archive or has another size; if the status
            in ``annotation`` differs from the stored one by a transition the
            workflow does not allow; if the marks were changed while the
            stored annotation is submitted or approved (not editable); or if
            the reviewer is the proposals' reserved identity
            (:data:`~archive.review.PROPOSAL_REVIEWER`; see :meth:`save_proposal`).
        """
        if is_proposal_reviewer(annotation.reviewer):
            raise AnnotationError(
                f"{_clip_name(annotation.sop_instance_uid, annotation.reviewer)}: the reviewer name "
                f"{PROPOSAL_REVIEWER!r} is reserved for automatic proposals, which are never a review; "
                "nothing was saved: save under your own user name (accept a proposal into it with "
                "'usarchive review accept-proposal')"
            )
        return self._save(annotation, base_version, saved_by)

    def save_proposal(self, annotation: ClipAnnotation, *, saved_by: str) -> SavedVersion:
        """Store an automatic proposal as the next version of the clip's proposal annotation.

        A proposal is machine output: a new run replaces the previous proposal
        (as a new version, the old ones are kept) without a stale check.

        Parameters
        ----------
        annotation : ClipAnnotation
            Reviewer :data:`~archive.review.PROPOSAL_REVIEWER`, status draft
            (built by :func:`archive.review.proposals.proposal_annotation`).
        saved_by : str
            Who ran the proposal.

        Returns
        -------
        SavedVersion

        Raises
        ------
        AnnotationError
            If the annotation is not the proposals' identity's, not a draft, or
            does not fit the archived clip.
        """
        if annotation.reviewer != PROPOSAL_REVIEWER or annotation.status is not ReviewStatus.DRAFT:
            raise AnnotationError(
                f"{_clip_name(annotation.sop_instance_uid, annotation.reviewer)}: expected a proposal "
                f"(reviewer {PROPOSAL_REVIEWER!r}, status draft), but got reviewer "
                f"{annotation.reviewer!r} in status {annotation.status.value!r}; save reviews with save()"
            )
        return self._save(annotation, _LATEST, saved_by)

    def _save(
        self, annotation: ClipAnnotation, base_version: int | _Latest | None, saved_by: str | None
    ) -> SavedVersion:
        uid, reviewer = annotation.sop_instance_uid, annotation.reviewer
        content = canonical_json(annotation)
        sha = _sha256(content)
        now = datetime.now(UTC)
        with write_transaction(self.engine) as connection:
            ref = self._instance(connection, uid, lock=True)
            self._check_fits(annotation, ref)
            state = idx.read_state(connection, ref.pk, reviewer)
            latest = (
                None
                if state is None
                else idx.read_version(connection, ref.pk, reviewer, state.latest_version)
            )
            if latest is not None and latest.content_sha256 == sha:
                logger.info(
                    "%s: identical to version %d, nothing saved", _clip_name(uid, reviewer), latest.version
                )
                return SavedVersion(
                    uid, reviewer, latest.version, sha, latest.status, latest.created_at, False
                )
            latest_version = None if latest is None else latest.version
            if isinstance(base_version, _Latest):
                base_version = latest_version
            if base_version != latest_version:
                raise self._stale(uid, reviewer, base_version, latest)
            old_status = ReviewStatus.DRAFT if latest is None else latest.status
            if annotation.status is not old_status:
                transition(old_status, annotation.status)
            frozen = latest is not None and old_status not in EDITABLE_STATUSES
            if frozen and latest is not None and not _same_marks(_parse(latest.content), annotation):
                raise AnnotationError(
                    f"{_clip_name(uid, reviewer)}: the marks cannot change while the annotation is "
                    f"{old_status.value!r}; move it back to draft or needs-rework first"
                )
            version = 1 if latest_version is None else latest_version + 1
            author = saved_by or reviewer
            new = idx.NewVersion(reviewer, version, latest_version, author, content, sha, annotation.status)
            idx.record_version(connection, ref.pk, new, now=now)
            if annotation.status is not old_status:
                change = idx.CommentRow(author, None, now, old_status, annotation.status, version)
                idx.record_comment(connection, ref.pk, reviewer, change)
        logger.info("%s: saved version %d (%s)", _clip_name(uid, reviewer), version, annotation.status.value)
        return SavedVersion(uid, reviewer, version, sha, annotation.status, now, True)

    @staticmethod
    def _stale(
        uid: str, reviewer: str, base: int | None, latest: idx.VersionRow | None
    ) -> StaleAnnotationError:
        based = "no saved version (a first save)" if base is None else f"version {base}"
        if latest is None:
            return StaleAnnotationError(
                f"{_clip_name(uid, reviewer)}: your edit is based on {based}, but no version is stored; "
                "nothing was saved and your edits are kept: save again with base_version=None",
                sop_instance_uid=uid,
                reviewer=reviewer,
                base_version=base,
                stored_version=0,
            )
        return StaleAnnotationError(
            f"{_clip_name(uid, reviewer)}: your edit is based on {based}, but version "
            f"{latest.version} is now stored (saved by {latest.saved_by!r} at "
            f"{latest.created_at.isoformat()}); nothing was saved and your edits are kept: reload "
            f"version {latest.version}, re-apply your changes and save again",
            sop_instance_uid=uid,
            reviewer=reviewer,
            base_version=base,
            stored_version=latest.version,
        )

    def set_status(
        self,
        sop_instance_uid: str,
        reviewer: str,
        new_status: ReviewStatus | str,
        *,
        by: str,
        comment: str | None = None,
    ) -> ReviewStatus:
        """Change the review status of the latest version (e.g. an approver's decision).

        The change (with the comment appended to the annotation's comments) is
        stored as a new version and recorded in the review comments. Moving to
        the present status without a comment changes nothing.

        Parameters
        ----------
        sop_instance_uid, reviewer : str
            Whose annotation of which clip.
        new_status : ReviewStatus or str
            For example ``"submitted"``, ``"approved"``, ``"needs-rework"``.
        by : str
            Who makes the change.
        comment : str, optional
            Why; required for needs-rework.

        Returns
        -------
        ReviewStatus
            The new status.

        Raises
        ------
        AnnotationError
            If the clip is not archived, the reviewer has saved nothing for it,
            a reviewer approves their own annotation under ``four_eyes``,
            the workflow does not allow the transition
            (:func:`archive.review.workflow.transition`), a required comment
            is missing, or (four-eyes review) ``by`` approves their own annotation.
        ValueError
            If ``new_status`` names no status.
        """
        wanted = ReviewStatus.parse(new_status)
        if is_proposal_reviewer(reviewer):
            raise AnnotationError(
                f"{_clip_name(sop_instance_uid, reviewer)}: a proposal is never a review and stays a "
                "draft; nothing was changed: accept it into your own annotation "
                "('usarchive review accept-proposal') and submit that"
            )
        if (
            self.four_eyes
            and wanted is ReviewStatus.APPROVED
            and by.strip().casefold() == reviewer.strip().casefold()
        ):
            raise AnnotationError(
                f"{_clip_name(sop_instance_uid, reviewer)}: expected an approver other than the reviewer, "
                f"but {by!r} is approving their own annotation (four-eyes review); nothing was changed: "
                "ask another person to approve it, or set [review] four_eyes = false in usarchive.toml"
            )
        note = ReviewComment(by, comment) if comment is not None and comment.strip() else None
        now = datetime.now(UTC)
        with write_transaction(self.engine) as connection:
            ref = self._instance(connection, sop_instance_uid, lock=True)
            latest = self._latest(connection, ref.pk, sop_instance_uid, reviewer)
            annotation = _parse(latest.content).with_status(wanted, note)
            if annotation.status is latest.status and note is None:
                return latest.status
            version = latest.version + 1
            content = canonical_json(annotation)
            new = idx.NewVersion(
                reviewer, version, latest.version, by, content, _sha256(content), annotation.status
            )
            idx.record_version(connection, ref.pk, new, now=now)
            change = idx.CommentRow(
                by, None if note is None else note.text, now, latest.status, annotation.status, version
            )
            idx.record_comment(connection, ref.pk, reviewer, change)
        logger.info(
            "%s: %s -> %s by %s (version %d)",
            _clip_name(sop_instance_uid, reviewer),
            latest.status.value,
            annotation.status.value,
            by,
            version,
        )
        return annotation.status

    # -- reading --------------------------------------------------------------------------------

    def _latest(self, connection: Connection, pk: int, uid: str, reviewer: str) -> idx.VersionRow:
        state = idx.read_state(connection, pk, reviewer)
        if state is None:
            known = ", ".join(idx.list_reviewers(connection, pk)) or "none"
            raise AnnotationError(
                f"{_clip_name(uid, reviewer)}: expected a saved annotation, but this reviewer has saved "
                f"none for the clip (reviewers with annotations: {known})"
            )
        row = idx.read_version(connection, pk, reviewer, state.latest_version)
        assert row is not None, "review_state names a version that annotation_version lacks"
        return row

    def load(self, sop_instance_uid: str, reviewer: str, version: int | None = None) -> LoadedAnnotation:
        """Read one version (default: the latest) of a reviewer's annotation of a clip.

        Parameters
        ----------
        sop_instance_uid, reviewer : str
            Whose annotation of which clip.
        version : int, optional
            A version from :meth:`history`; ``None`` for the latest.

        Returns
        -------
        LoadedAnnotation

        Raises
        ------
        AnnotationError
            If the clip is not archived, nothing was saved, or ``version`` does not exist.
        """
        with self.engine.connect() as connection:
            ref = self._instance(connection, sop_instance_uid)
            row = self._latest(connection, ref.pk, sop_instance_uid, reviewer)
            if version is not None and version != row.version:
                found = idx.read_version(connection, ref.pk, reviewer, version)
                if found is None:
                    raise AnnotationError(
                        f"{_clip_name(sop_instance_uid, reviewer)}: expected a version from 1 to "
                        f"{row.version}, but got {version}"
                    )
                row = found
        return LoadedAnnotation(_parse(row.content), row.version, row.status, row.created_at)

    def history(self, sop_instance_uid: str, reviewer: str) -> list[VersionInfo]:
        """Every version of a reviewer's annotation of a clip, oldest first (empty if none).

        Raises
        ------
        AnnotationError
            If the clip is not archived.
        """
        with self.engine.connect() as connection:
            ref = self._instance(connection, sop_instance_uid)
            rows = idx.list_versions(connection, ref.pk, reviewer)
        return [
            VersionInfo(r.version, r.parent_version, r.created_at, r.saved_by, r.status, r.content_sha256)
            for r in rows
        ]

    def reviewers(self, sop_instance_uid: str, *, proposals: bool = False) -> list[str]:
        """Reviewers who saved an annotation of the clip, sorted.

        Parameters
        ----------
        sop_instance_uid : str
            The clip.
        proposals : bool
            Also list :data:`~archive.review.PROPOSAL_REVIEWER` when the clip has a proposal.

        Raises
        ------
        AnnotationError
            If the clip is not archived.
        """
        with self.engine.connect() as connection:
            ref = self._instance(connection, sop_instance_uid)
            names = idx.list_reviewers(connection, ref.pk)
        return [name for name in names if proposals or not is_proposal_reviewer(name)]

    def comments(self, sop_instance_uid: str, reviewer: str) -> list[CommentRow]:
        """Review comments and status changes of a reviewer's annotation of a clip, oldest first.

        Raises
        ------
        AnnotationError
            If the clip is not archived.
        """
        with self.engine.connect() as connection:
            ref = self._instance(connection, sop_instance_uid)
            return idx.list_comments(connection, ref.pk, reviewer)

    def list_reviews(
        self,
        status: ReviewStatus | str | None = None,
        reviewer: str | None = None,
        *,
        proposals: bool = False,
    ) -> list[ReviewRow]:
        """Each reviewer's annotation of each clip with its status, newest change first.

        Parameters
        ----------
        status : ReviewStatus or str, optional
            Only annotations in this status.
        reviewer : str, optional
            Only this reviewer's annotations.
        proposals : bool
            Also list the automatic proposals (reviewer
            :data:`~archive.review.PROPOSAL_REVIEWER`); they are left out by
            default, even when ``reviewer`` names that identity, so nothing
            that counts reviews (audit, exports) can count one.
        """
        wanted = None if status is None else ReviewStatus.parse(status)
        with self.engine.connect() as connection:
            rows = idx.list_reviews(connection, status=wanted, reviewer=reviewer)
        return [row for row in rows if proposals or not is_proposal_reviewer(row.reviewer)]
