"""Who may do what, and the access log.

Every request but the CORS preflight needs ``Authorization: Bearer <token>``
(:class:`~archive.web.tokens.TokenStore`). 401 (with ``WWW-Authenticate``)
for a missing, unknown, expired or revoked token, 403 for a role below the
endpoint's; neither carries data. The access log has one line per request,
for a privacy officer: UTC time, client address, token name (``-`` when
none was accepted), role, method, endpoint, study UID (``-``), status,
bytes announced, duration.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path

from archive.web.errors import WebRequestError
from archive.web.tokens import Role, TokenInfo, TokenStore

ACCESS_LOGGER = "archive.web.access"
_STUDY = re.compile(r"/studies/([0-9.]+)")


@dataclass(frozen=True)
class Caller:
    """The token a request was accepted with."""

    token: TokenInfo

    @property
    def name(self) -> str:
        """The token's name."""
        return self.token.name

    def require(self, role: Role) -> None:
        """Refuse with 403 unless the token's role includes ``role``."""
        if not self.token.role.allows(role):
            raise WebRequestError(
                403,
                f"token {self.token.name!r} has role {self.token.role.value}; this needs {role.value} "
                f"(`usarchive web token create --role {role.value}`)",
            )


def authenticate(tokens: TokenStore, authorization: str | None) -> Caller:
    """The caller of a request from its Authorization header.

    Raises
    ------
    WebRequestError
        401 without a bearer token, or for an unknown, expired or revoked one.
    """
    if not authorization:
        raise WebRequestError(401, "no Authorization header: send Authorization: Bearer <token>")
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise WebRequestError(
            401, f"Authorization: expected the Bearer scheme with a token, but got {scheme!r}"
        )
    token, why = tokens.authenticate(secret.strip())
    if token is None:
        raise WebRequestError(401, f"bearer token not accepted: {why}")
    return Caller(token)


def study_of(path: str) -> str:
    """The study UID in a request path, or ``-``."""
    found = _STUDY.search(path)
    return found.group(1) if found else "-"


def access_line(
    *,
    client: str,
    caller: Caller | None,
    method: str,
    path: str,
    status: int,
    size: str,
    duration_ms: float,
) -> str:
    """One line of the access log."""
    name = caller.name if caller else "-"
    role = caller.token.role.value if caller else "-"
    return (
        f"{datetime.now(UTC).isoformat(timespec='milliseconds')} {client} token={name} role={role} "
        f"{method} {path} study={study_of(path)} status={status} bytes={size} ms={duration_ms:.1f}"
    )


def open_access_log(path: Path) -> logging.Logger:
    """The access logger, writing to ``path`` (rotated at 50 MB, 10 kept)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not any(
        isinstance(h, RotatingFileHandler) and Path(h.baseFilename) == path.resolve() for h in logger.handlers
    ):
        handler = RotatingFileHandler(path, maxBytes=50 * 1024 * 1024, backupCount=10, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
