"""Staff identity and free text in research exports: reviewers pseudonymised, free text withheld.

The DICOM header is de-identified by :mod:`archive.research.deid`; what the archive adds
to a research record needs the same care. Reviewers' user names are staff
names (PS3.15 removes Operators' Name and the like), so they become keyed
pseudonyms (``R-`` and 12 hex digits, :func:`archive.research.deid.pseudonym`): stable
across exports with the same secret, so inter-reviewer agreement can still be
computed, but not the names. Free text typed by staff (adverse-event notes of
an annotation, the adverse event of an outcome) may hold a patient's name or a
date, so it is withheld unless the exporter asks for it verbatim: what is
kept is *that* something was recorded (and at which frame), not what.
"""

from __future__ import annotations

from dataclasses import replace

from archive.analysis.outcomes.model import Outcome
from archive.research.deid import PseudonymKind, pseudonym
from archive.review import AdverseEvent, ClipAnnotation

#: Note of an exported adverse event when free text is withheld; ``number`` counts the
#: clip's adverse events from 1 (in frame order), so two events at one frame stay two.
WITHHELD_NOTE = "(note {number} withheld)"
#: Outcome ``adverse_event`` exported when one was recorded and free text is withheld.
WITHHELD_ADVERSE_EVENT = "yes (description withheld)"


def reviewer_pseudonym(secret: bytes, reviewer: str) -> str:
    """The keyed pseudonym of a reviewer's user name, e.g. ``"R-3F9A1C2D7E10"``.

    Parameters
    ----------
    secret : bytes
        The de-identification secret (at least 16 bytes).
    reviewer : str
        The user name as stored with the annotation.

    Returns
    -------
    str
        The same pseudonym for the same name and secret.

    Raises
    ------
    DeidentificationError
        If the secret is too short.
    """
    return pseudonym(secret, reviewer, PseudonymKind.REVIEWER)


def redact_annotation(
    annotation: ClipAnnotation, secret: bytes, *, include_free_text: bool = False
) -> ClipAnnotation:
    """The annotation as a research export may carry it.

    Parameters
    ----------
    annotation : ClipAnnotation
        A reviewer's annotation as stored.
    secret : bytes
        Keys the reviewer's pseudonym.
    include_free_text : bool
        Keep the adverse-event notes verbatim (NOT de-identified); by default
        every note becomes :data:`WITHHELD_NOTE` with its number (its frame is
        kept).

    Returns
    -------
    ClipAnnotation
        A copy with the reviewer replaced by :func:`reviewer_pseudonym`, the
        review comments removed and the notes withheld or kept; marks,
        events and status unchanged.
    """
    adverse = annotation.adverse_events
    if not include_free_text:
        adverse = tuple(
            AdverseEvent(event.frame, WITHHELD_NOTE.format(number=number))
            for number, event in enumerate(adverse, start=1)
        )
    return replace(
        annotation,
        reviewer=reviewer_pseudonym(secret, annotation.reviewer),
        adverse_events=adverse,
        comments=(),
    )


def redact_outcome(outcome: Outcome, *, include_free_text: bool = False) -> Outcome:
    """The outcome as a research export may carry it.

    Parameters
    ----------
    outcome : Outcome
        The stored outcome.
    include_free_text : bool
        Keep the adverse-event description verbatim (NOT de-identified); by
        default a recorded description becomes :data:`WITHHELD_ADVERSE_EVENT`
        (still a string, so the column keeps its type; ``None`` stays ``None``).

    Returns
    -------
    Outcome
        ``outcome`` itself or a copy with the description withheld; the
        scores are unchanged.
    """
    if include_free_text or outcome.adverse_event is None:
        return outcome
    return replace(outcome, adverse_event=WITHHELD_ADVERSE_EVENT)
