"""The forwarding task model: states, a task as a worker sees it, an attempt's result, a summary.

A task moves ``scheduled`` → ``in-progress`` (claimed, leased) → ``completed`` /
``warning`` / back to ``scheduled`` (retry with backoff) / ``failed`` (after the
destination's ``max_attempts``, or at once for a permanent refusal); with storage
commitment ``in-progress`` → ``awaiting-commitment`` → ``completed`` (or retry).
``cancelled`` is set by a person (``forward cancel``); ``forward retry`` brings
``failed`` and ``cancelled`` tasks back to ``scheduled``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


class TaskStatus(enum.StrEnum):
    """State of a forwarding task (the ``status`` column)."""

    SCHEDULED = "scheduled"
    IN_PROGRESS = "in-progress"
    AWAITING_COMMITMENT = "awaiting-commitment"
    COMPLETED = "completed"
    WARNING = "warning"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: States a worker still has to act on.
PENDING_STATES = (TaskStatus.SCHEDULED, TaskStatus.IN_PROGRESS, TaskStatus.AWAITING_COMMITMENT)
#: States ``forward retry`` brings back to ``scheduled``.
RETRYABLE_STATES = (TaskStatus.FAILED, TaskStatus.CANCELLED)
#: States ``forward cancel`` may leave.
CANCELLABLE_STATES = (*PENDING_STATES, TaskStatus.FAILED)


class AttemptKind(enum.StrEnum):
    """What one attempt at a task came to (:func:`archive.forward.retry.classify_store_status`)."""

    COMPLETED = "completed"
    WARNING = "warning"
    RETRY = "retry"
    FAILED = "failed"
    AWAITING_COMMITMENT = "awaiting-commitment"


@dataclass(frozen=True)
class ForwardTask:
    """One instance to send to one destination.

    Attributes
    ----------
    id : int
    destination : str
        Name in the destination table.
    sop_instance_uid, sop_class_uid, study_uid : str
    batch_key : str
        The study UID (study granularity) or the SOP Instance UID (instance granularity).
    status : TaskStatus
    scheduled_at : datetime
        When it is due (UTC).
    attempts : int
        Attempts begun so far (a claim counts one).
    last_status : int or None
        DIMSE status of the last attempt.
    last_comment : str
        What the last attempt came to, for people.
    lease_owner : str or None
    lease_expires : datetime or None
    path : Path
        Absolute path of the file to send: the stored instance, or the file
        :meth:`~archive.forward.store.ForwardStore.enqueue_file` kept.
    transfer_syntax : str
        The file's transfer syntax UID.
    route : int or None
        Index of the route that made it; ``None`` for a manual resend or an export.
    commitment_uid : str or None
        Transaction UID of the storage commitment request it awaits.
    created_at, updated_at : datetime
    completed_at : datetime or None
    """

    id: int
    destination: str
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    batch_key: str
    status: TaskStatus
    scheduled_at: datetime
    attempts: int
    last_status: int | None
    last_comment: str
    lease_owner: str | None
    lease_expires: datetime | None
    path: Path
    transfer_syntax: str
    route: int | None = None
    commitment_uid: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None

    def to_json(self) -> dict[str, object]:
        """JSON-ready fields (times as ISO 8601 UTC)."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


@dataclass(frozen=True)
class AttemptResult:
    """A worker's report of one attempt at a task (:meth:`~archive.forward.store.ForwardStore.finish`).

    Attributes
    ----------
    task_id : int
    kind : AttemptKind
    dimse_status : int or None
        The C-STORE response status, ``None`` when none came.
    comment : str
        What happened, for people (an error comment, the refused transfer syntax, ...).
    """

    task_id: int
    kind: AttemptKind
    dimse_status: int | None = None
    comment: str = ""


@dataclass(frozen=True)
class DestinationSummary:
    """One line of ``usarchive forward status``.

    Attributes
    ----------
    destination : str
    configured : bool
        Whether the destination is in the destination table (tasks may outlive it).
    pending : int
        Tasks scheduled (waiting for their time or a worker).
    in_progress : int
        Tasks being sent or awaiting storage commitment.
    failed, completed, warning, cancelled : int
    oldest_pending_age_s : float or None
        Age of the oldest pending or in-progress task.
    last_error : str or None
        The comment of the most recently updated task whose last attempt failed.
    """

    destination: str
    configured: bool
    pending: int
    in_progress: int
    failed: int
    completed: int
    warning: int
    cancelled: int
    oldest_pending_age_s: float | None
    last_error: str | None
