"""Review workflow of one reviewer's annotation of one clip.

The allowed transitions of :class:`~archive.model.ReviewStatus`:

==============  =====================================  ==========================================
from            to                                     meaning
==============  =====================================  ==========================================
draft           draft                                  re-save while working
draft           submitted                              reviewer hands in the annotation
submitted       draft                                  reviewer withdraws it before it is judged
submitted       approved                               the approver accepts it
submitted       needs-rework                           the approver sends it back (with a comment)
needs-rework    needs-rework                           re-save while reworking
needs-rework    submitted                              reviewer hands in the rework
approved        needs-rework                           the approver re-opens it (with a comment)
==============  =====================================  ==========================================

Every other pair is refused. Marks may be edited only in the *editable* states,
draft and needs-rework.

Automatic proposals (:mod:`archive.review.proposals`) are stored as the
annotation of the reserved reviewer :data:`PROPOSAL_REVIEWER` (``auto``),
always in draft: they are never a review. No person may save under that name,
and listings, ``usarchive find --status``, the audit, research exports and
inter-reviewer agreement leave it out (:func:`is_proposal_reviewer`).
"""

from __future__ import annotations

from types import MappingProxyType

from archive.errors import AnnotationError
from archive.model import ReviewStatus

_S = ReviewStatus

#: The reviewer identity automatic proposals are stored under; reserved, never a person.
PROPOSAL_REVIEWER = "auto"


def is_proposal_reviewer(reviewer: str) -> bool:
    """Whether ``reviewer`` names the proposals' identity (:data:`PROPOSAL_REVIEWER`, any case)."""
    return reviewer.strip().casefold() == PROPOSAL_REVIEWER


#: Allowed transitions: for each current status, the statuses it may move to.
TRANSITIONS: MappingProxyType[ReviewStatus, frozenset[ReviewStatus]] = MappingProxyType(
    {
        _S.DRAFT: frozenset({_S.DRAFT, _S.SUBMITTED}),
        _S.SUBMITTED: frozenset({_S.DRAFT, _S.APPROVED, _S.NEEDS_REWORK}),
        _S.NEEDS_REWORK: frozenset({_S.NEEDS_REWORK, _S.SUBMITTED}),
        _S.APPROVED: frozenset({_S.NEEDS_REWORK}),
    }
)

#: States in which the marks of an annotation may be changed.
EDITABLE_STATUSES: frozenset[ReviewStatus] = frozenset({_S.DRAFT, _S.NEEDS_REWORK})

#: Transitions that must come with a review comment saying why.
COMMENT_REQUIRED: frozenset[ReviewStatus] = frozenset({_S.NEEDS_REWORK})


def allowed_transitions(current: ReviewStatus | str) -> frozenset[ReviewStatus]:
    """The statuses an annotation in ``current`` may move to.

    Parameters
    ----------
    current : ReviewStatus or str
        Present status.

    Returns
    -------
    frozenset of ReviewStatus
    """
    return TRANSITIONS[ReviewStatus.parse(current)]


def transition(current: ReviewStatus | str, new: ReviewStatus | str) -> ReviewStatus:
    """Check a review-status change and return the new status.

    Parameters
    ----------
    current, new : ReviewStatus or str
        Present and wanted status (members, values such as ``"needs-rework"``
        or names).

    Returns
    -------
    ReviewStatus
        ``new`` as a member.

    Raises
    ------
    AnnotationError
        If the workflow does not allow ``current -> new`` (see the module table);
        the message lists what ``current`` may move to.
    ValueError
        If either value names no status.
    """
    current_status = ReviewStatus.parse(current)
    new_status = ReviewStatus.parse(new)
    allowed = TRANSITIONS[current_status]
    if new_status not in allowed:
        options = ", ".join(sorted(s.value for s in allowed))
        raise AnnotationError(
            f"review status: cannot go from {current_status.value!r} to {new_status.value!r}; "
            f"from {current_status.value!r} the allowed next statuses are: {options}"
        )
    return new_status
