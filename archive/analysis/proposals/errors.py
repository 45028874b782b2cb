"""Errors raised by the proposal (assisted review) functions."""

from __future__ import annotations

from archive.errors import ArchiveError


class ProposalCancelled(ArchiveError):  # noqa: N818 (the API name: a cancellation is not an error)
    """The caller's ``cancelled`` callback returned True; no proposal was made.

    Raised by :func:`~archive.analysis.proposals.propose_clip` between frames,
    so nothing partial is returned.
    """


class ProposalInputError(ArchiveError, ValueError):
    """The frames or options given to the proposal functions are invalid.

    The message names the argument, what was expected and what came.
    """
