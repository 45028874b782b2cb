"""Errors of ``usarchive web``: tokens, requests a client got wrong, and their HTTP statuses."""

from __future__ import annotations

from archive.errors import ArchiveError


class TokenError(ArchiveError, ValueError):
    """A token command or lookup that cannot be done (unknown name, duplicate name, bad expiry)."""


class WebRequestError(ArchiveError):
    """A request refused with an HTTP status; the message says what was wrong and what to do.

    Parameters
    ----------
    status : int
        The HTTP status (400, 401, 403, 404, 406, 413, 415, ...).
    message : str
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
