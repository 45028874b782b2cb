"""Index tables and queries for reviewers' annotations of clips (created by migration 2).

Tables
------
``annotation_version``
    Every saved version of one reviewer's annotation of one instance: the
    canonical JSON (:func:`archive.review.canonical_json`; masks are
    compressed inside), its SHA-256, the review status it carries, the version
    it was based on (``parent_version``), who saved it and when. Versions count
    1, 2, … per ``(instance, reviewer)`` and are never changed or deleted.
``review_state``
    One row per ``(instance, reviewer)``: the latest version and the review
    status. Saving reads and updates this row inside one write transaction, which
    is what refuses a stale save (optimistic concurrency).
``review_comment``
    Review comments and status changes (who, when, from → to, the version that
    recorded them).

The functions here take a :class:`sqlalchemy.Connection` and do no checking of
the workflow; :class:`archive.review.store.AnnotationStore` does that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    insert,
    select,
    update,
)

from archive.index import schema
from archive.model import ReviewStatus
from archive.review.workflow import PROPOSAL_REVIEWER

_USER = 80

annotation_version = Table(
    "annotation_version",
    schema.metadata,
    Column("id", Integer, primary_key=True),
    Column("instance_pk", Integer, ForeignKey("instance.id", ondelete="CASCADE"), nullable=False),
    Column("reviewer", String(_USER), nullable=False),
    Column("version", Integer, nullable=False),
    Column("parent_version", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("saved_by", String(_USER), nullable=False),
    Column("content", Text, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    UniqueConstraint("instance_pk", "reviewer", "version", name="uq_annotation_version"),
)

review_state = Table(
    "review_state",
    schema.metadata,
    Column("instance_pk", Integer, ForeignKey("instance.id", ondelete="CASCADE"), primary_key=True),
    Column("reviewer", String(_USER), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("latest_version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_review_state_status", "status", "reviewer", "instance_pk"),
    Index("ix_review_state_reviewer", "reviewer", "status", "instance_pk"),
)

review_comment = Table(
    "review_comment",
    schema.metadata,
    Column("id", Integer, primary_key=True),
    Column("instance_pk", Integer, ForeignKey("instance.id", ondelete="CASCADE"), nullable=False),
    Column("reviewer", String(_USER), nullable=False),
    Column("author", String(_USER), nullable=False),
    Column("text", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status_from", String(16)),
    Column("status_to", String(16)),
    Column("version", Integer),
    Index("ix_review_comment_key", "instance_pk", "reviewer", "id"),
)

#: The tables migration 2 creates, in creation order.
ANNOTATION_TABLES: tuple[Table, ...] = (annotation_version, review_state, review_comment)

_i, _v, _s, _c = schema.instance, annotation_version, review_state, review_comment


def utc(moment: datetime) -> datetime:
    """``moment`` with UTC attached when the database returned it naive (SQLite stores UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class StateRow:
    """The ``review_state`` of one reviewer's annotation of one instance."""

    status: ReviewStatus
    latest_version: int
    updated_at: datetime


@dataclass(frozen=True)
class VersionRow:
    """One stored version (``annotation_version`` row), content included."""

    version: int
    parent_version: int | None
    created_at: datetime
    saved_by: str
    content: str
    content_sha256: str
    status: ReviewStatus


@dataclass(frozen=True)
class InstanceRef:
    """The index id and image size of an instance an annotation refers to."""

    pk: int
    frames: int | None
    rows: int | None
    columns: int | None


def find_instance_ref(
    connection: Connection, sop_instance_uid: str, *, lock: bool = False
) -> InstanceRef | None:
    """The instance with this SOP Instance UID, or ``None``.

    With ``lock`` the instance row is locked until the transaction ends (``FOR
    UPDATE`` on PostgreSQL; on SQLite the write transaction already holds the
    database lock), which serialises saves of annotations of this instance.
    """
    statement = select(_i.c.id, _i.c.frames, _i.c.rows, _i.c.columns).where(
        _i.c.sop_instance_uid == sop_instance_uid
    )
    if lock and connection.dialect.name == "postgresql":
        statement = statement.with_for_update()
    row = connection.execute(statement).first()
    if row is None:
        return None
    return InstanceRef(int(row.id), row.frames, row.rows, row.columns)


def read_state(connection: Connection, pk: int, reviewer: str) -> StateRow | None:
    """The review state of ``reviewer`` on instance ``pk``, or ``None`` if nothing was saved."""
    row = connection.execute(
        select(_s.c.status, _s.c.latest_version, _s.c.updated_at).where(
            _s.c.instance_pk == pk, _s.c.reviewer == reviewer
        )
    ).first()
    if row is None:
        return None
    return StateRow(ReviewStatus(row.status), int(row.latest_version), utc(row.updated_at))


def _version_row(row: Any) -> VersionRow:
    return VersionRow(
        version=int(row.version),
        parent_version=None if row.parent_version is None else int(row.parent_version),
        created_at=utc(row.created_at),
        saved_by=row.saved_by,
        content=row.content,
        content_sha256=row.content_sha256,
        status=ReviewStatus(row.status),
    )


def read_version(connection: Connection, pk: int, reviewer: str, version: int) -> VersionRow | None:
    """Version ``version`` of ``reviewer``'s annotation of instance ``pk``, or ``None``."""
    row = connection.execute(
        select(_v).where(_v.c.instance_pk == pk, _v.c.reviewer == reviewer, _v.c.version == version)
    ).first()
    return None if row is None else _version_row(row)


def list_versions(connection: Connection, pk: int, reviewer: str) -> list[VersionRow]:
    """Every version of ``reviewer``'s annotation of instance ``pk``, oldest first."""
    rows = connection.execute(
        select(_v).where(_v.c.instance_pk == pk, _v.c.reviewer == reviewer).order_by(_v.c.version)
    )
    return [_version_row(row) for row in rows]


@dataclass(frozen=True)
class NewVersion:
    """What :func:`record_version` writes: one version and the state it leads to."""

    reviewer: str
    version: int
    parent_version: int | None
    saved_by: str
    content: str
    content_sha256: str
    status: ReviewStatus


def record_version(connection: Connection, pk: int, new: NewVersion, *, now: datetime) -> None:
    """Insert a version and make it the latest in ``review_state`` (inside a write transaction)."""
    connection.execute(
        insert(_v).values(
            instance_pk=pk,
            reviewer=new.reviewer,
            version=new.version,
            parent_version=new.parent_version,
            created_at=now,
            saved_by=new.saved_by,
            content=new.content,
            content_sha256=new.content_sha256,
            status=new.status.value,
        )
    )
    state = {"status": new.status.value, "latest_version": new.version, "updated_at": now}
    if new.version == 1:
        connection.execute(insert(_s).values(instance_pk=pk, reviewer=new.reviewer, **state))
    else:
        connection.execute(
            update(_s).where(_s.c.instance_pk == pk, _s.c.reviewer == new.reviewer).values(**state)
        )


@dataclass(frozen=True)
class CommentRow:
    """A review comment and/or status change, as stored in ``review_comment``."""

    author: str
    text: str | None
    created_at: datetime
    status_from: ReviewStatus | None
    status_to: ReviewStatus | None
    version: int | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``created_at`` as ISO 8601 UTC, statuses as values)."""
        return {
            "author": self.author,
            "text": self.text,
            "created_at": self.created_at.isoformat(),
            "status_from": None if self.status_from is None else self.status_from.value,
            "status_to": None if self.status_to is None else self.status_to.value,
            "version": self.version,
        }


def record_comment(connection: Connection, pk: int, reviewer: str, comment: CommentRow) -> None:
    """Insert a review comment or status change (inside a write transaction)."""
    connection.execute(
        insert(_c).values(
            instance_pk=pk,
            reviewer=reviewer,
            author=comment.author,
            text=comment.text,
            created_at=comment.created_at,
            status_from=None if comment.status_from is None else comment.status_from.value,
            status_to=None if comment.status_to is None else comment.status_to.value,
            version=comment.version,
        )
    )


def list_comments(connection: Connection, pk: int, reviewer: str) -> list[CommentRow]:
    """Comments and status changes on ``reviewer``'s annotation of instance ``pk``, oldest first."""
    rows = connection.execute(
        select(_c).where(_c.c.instance_pk == pk, _c.c.reviewer == reviewer).order_by(_c.c.id)
    )
    return [
        CommentRow(
            author=row.author,
            text=row.text,
            created_at=utc(row.created_at),
            status_from=None if row.status_from is None else ReviewStatus(row.status_from),
            status_to=None if row.status_to is None else ReviewStatus(row.status_to),
            version=row.version,
        )
        for row in rows
    ]


def list_reviewers(connection: Connection, pk: int) -> list[str]:
    """Reviewers who saved an annotation of instance ``pk``, sorted."""
    return sorted(
        connection.execute(select(_s.c.reviewer).where(_s.c.instance_pk == pk)).scalars(),
    )


@dataclass(frozen=True)
class ReviewRow:
    """One reviewer's annotation of one clip in a review listing."""

    sop_instance_uid: str
    reviewer: str
    status: ReviewStatus
    latest_version: int
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``updated_at`` as ISO 8601 UTC)."""
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "reviewer": self.reviewer,
            "status": self.status.value,
            "latest_version": self.latest_version,
            "updated_at": self.updated_at.isoformat(),
        }


def list_reviews(
    connection: Connection, *, status: ReviewStatus | None = None, reviewer: str | None = None
) -> list[ReviewRow]:
    """Review states matching ``status`` and ``reviewer`` (``None``: any), newest change first."""
    conditions: list[Any] = []
    if status is not None:
        conditions.append(_s.c.status == status.value)
    if reviewer is not None:
        conditions.append(_s.c.reviewer == reviewer)
    statement = (
        select(_i.c.sop_instance_uid, _s.c.reviewer, _s.c.status, _s.c.latest_version, _s.c.updated_at)
        .select_from(_s)
        .join(_i, _i.c.id == _s.c.instance_pk)
        .order_by(_s.c.updated_at.desc(), _i.c.sop_instance_uid, _s.c.reviewer)
    )
    if conditions:
        statement = statement.where(and_(*conditions))
    return [
        ReviewRow(
            row.sop_instance_uid,
            row.reviewer,
            ReviewStatus(row.status),
            row.latest_version,
            utc(row.updated_at),
        )
        for row in connection.execute(statement)
    ]


def review_filter(instance_id: Any, *, status: ReviewStatus | Any | None, reviewer: str | Any | None) -> Any:
    """An ``EXISTS`` condition: the instance ``instance_id`` has a review state matching both filters.

    Parameters
    ----------
    instance_id : SQL column expression
        The instance id to test, e.g. ``schema.instance.c.id``.
    status, reviewer : optional
        A value, or a SQL expression such as a bound parameter; ``None`` means any
        (for ``reviewer``: any person, not the proposals' identity ``auto``).
    """
    conditions: list[Any] = [_s.c.instance_pk == instance_id]
    if status is not None:
        conditions.append(_s.c.status == (status.value if isinstance(status, ReviewStatus) else status))
    if reviewer is not None:
        conditions.append(_s.c.reviewer == reviewer)
    else:  # a proposal is never a review (archive.review.workflow)
        conditions.append(_s.c.reviewer != PROPOSAL_REVIEWER)
    return select(_s.c.instance_pk).where(*conditions).exists()
