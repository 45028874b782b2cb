"""Annotation domain model: what a reviewer marks on a clip, pure and in memory.

:class:`ClipAnnotation` holds one reviewer's needle and target keyframes,
spread and danger-structure masks, events and review status for one clip;
:mod:`~archive.review.serialise` turns it into canonical JSON and back;
:mod:`~archive.review.workflow` holds the review workflow. Storage of
versions in the index is not part of this package.
"""

from __future__ import annotations

from archive.review.clip import ClipAnnotation
from archive.review.events import EVENT_ORDER
from archive.review.marks import (
    DANGER_CLASSES,
    AdverseEvent,
    MarkKind,
    NeedleMark,
    ReviewComment,
    TargetMark,
)
from archive.review.serialise import (
    FORMAT_VERSION,
    canonical_json,
    content_sha256,
    decode_mask,
    encode_mask,
    from_json,
    to_json,
)
from archive.review.workflow import (
    EDITABLE_STATUSES,
    PROPOSAL_REVIEWER,
    TRANSITIONS,
    allowed_transitions,
    is_proposal_reviewer,
    transition,
)

__all__ = [
    "DANGER_CLASSES",
    "EDITABLE_STATUSES",
    "EVENT_ORDER",
    "FORMAT_VERSION",
    "PROPOSAL_REVIEWER",
    "TRANSITIONS",
    "AdverseEvent",
    "ClipAnnotation",
    "MarkKind",
    "NeedleMark",
    "ReviewComment",
    "TargetMark",
    "allowed_transitions",
    "canonical_json",
    "content_sha256",
    "decode_mask",
    "encode_mask",
    "from_json",
    "is_proposal_reviewer",
    "to_json",
    "transition",
]
