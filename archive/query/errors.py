"""Errors of the query matcher: each carries the failure class a DIMSE (or HTTP) answer needs."""

from __future__ import annotations

import enum

from archive.errors import ArchiveError


class QueryFailure(enum.Enum):
    """Why a query cannot be answered; the C-FIND status each maps to (PS3.4 C.4.1.1.4)."""

    #: The identifier is not a valid query of this model (0xA900 "Identifier does not match SOP Class").
    INVALID_IDENTIFIER = 0xA900
    #: A key the archive cannot match on was given a value (0xC000 "Unable to process").
    UNSUPPORTED_KEY = 0xC000
    #: More entities match than the configured limit (0xA700 "Out of resources").
    TOO_MANY_MATCHES = 0xA700


class QueryError(ArchiveError):
    """A query that cannot be answered; ``failure`` says which class of failure.

    Parameters
    ----------
    failure : QueryFailure
        The failure class (and so the DIMSE status).
    message : str
        What was wrong, what was expected and what to do; sent as the Error Comment
        (cut to 64 characters there) and logged in full.
    """

    def __init__(self, failure: QueryFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure

    @property
    def status(self) -> int:
        """The C-FIND failure status of this error."""
        return self.failure.value
