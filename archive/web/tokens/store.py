"""Bearer tokens of ``usarchive web``: created, listed, revoked, and checked on every request.

A token is ``usa_`` followed by 43 URL-safe characters (32 random bytes,
:func:`secrets.token_urlsafe`). Only its SHA-256 is stored, so a copy of the
index does not give access; the secret is shown once, by :meth:`TokenStore.create`.
Checking a token is one indexed lookup of the hash; a token is refused when
unknown, revoked or expired. Roles are ordered: a reviewer may do what a
reader may, an admin what a reviewer may.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from archive.index.engine import autocommit_reads, write_transaction
from archive.web.errors import TokenError
from archive.web.tokens.sql import web_token

TOKEN_PREFIX = "usa_"


class Role(enum.StrEnum):
    """What a token may do, each role including the ones before it."""

    READER = "reader"  # QIDO-RS and WADO-RS
    REVIEWER = "reviewer"  # also review status and annotations
    ADMIN = "admin"  # also STOW-RS

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class TokenInfo:
    """One token as listed (never its secret)."""

    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        now = now or datetime.now(UTC)
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def hash_secret(secret: str) -> str:
    """SHA-256 (hex) of a token's secret, as stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _info(row: object) -> TokenInfo:
    created = _aware(row.created_at)  # type: ignore[attr-defined]
    assert created is not None
    return TokenInfo(
        name=str(row.name),  # type: ignore[attr-defined]
        role=Role(row.role),  # type: ignore[attr-defined]
        created_at=created,
        expires_at=_aware(row.expires_at),  # type: ignore[attr-defined]
        revoked_at=_aware(row.revoked_at),  # type: ignore[attr-defined]
    )


class TokenStore:
    """The ``web_token`` table (``Archive.tokens``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self, name: str, role: Role | str, *, expires_at: datetime | None = None
    ) -> tuple[TokenInfo, str]:
        """Make a token; returns it and its secret (shown once, never stored).

        Raises
        ------
        TokenError
            For an empty or taken name, an unknown role, or an expiry in the past.
        """
        name = name.strip()
        if not name or len(name) > 80 or any(ch.isspace() for ch in name):
            raise TokenError(
                f"token name: expected 1 to 80 characters without spaces (it appears in the access log), "
                f"but got {name!r}"
            )
        try:
            role = Role(role)
        except ValueError:
            raise TokenError(
                f"token role: expected one of {[r.value for r in Role]}, but got {role!r}"
            ) from None
        now = datetime.now(UTC)
        expires_at = _aware(expires_at)
        if expires_at is not None and expires_at <= now:
            raise TokenError(f"--expires: expected a time in the future, but got {expires_at.isoformat()}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with write_transaction(self._engine) as connection:
                connection.execute(
                    insert(web_token).values(
                        name=name,
                        role=role.value,
                        secret_sha256=hash_secret(secret),
                        created_at=now,
                        expires_at=expires_at,
                    )
                )
        except IntegrityError:
            raise TokenError(
                f"token name {name!r}: a token of that name exists (names stay unique, also once revoked); "
                "choose another name"
            ) from None
        return TokenInfo(name, role, now, expires_at, None), secret

    def list(self) -> list[TokenInfo]:
        """Every token, oldest first."""
        with autocommit_reads(self._engine) as connection:
            rows = connection.execute(select(web_token).order_by(web_token.c.id)).all()
        return [_info(row) for row in rows]

    def revoke(self, name: str) -> TokenInfo:
        """Revoke the token ``name`` (at once: the next request with it gets 401).

        Raises
        ------
        TokenError
            If no token has that name.
        """
        with write_transaction(self._engine) as connection:
            row = connection.execute(select(web_token).where(web_token.c.name == name)).first()
            if row is None:
                raise TokenError(f"token {name!r}: no such token; `usarchive web token list` shows them")
            if row.revoked_at is None:
                connection.execute(
                    update(web_token).where(web_token.c.id == row.id).values(revoked_at=datetime.now(UTC))
                )
            row = connection.execute(select(web_token).where(web_token.c.id == row.id)).one()
        return _info(row)

    def authenticate(self, secret: str) -> tuple[TokenInfo | None, str]:
        """The active token with this secret, or ``None`` and why not.

        Returns
        -------
        (TokenInfo or None, str)
            The reason is ``""`` for an active token, else ``unknown``, ``revoked`` or ``expired``.
        """
        with autocommit_reads(self._engine) as connection:
            row = connection.execute(
                select(web_token).where(web_token.c.secret_sha256 == hash_secret(secret))
            ).first()
        if row is None:
            return None, "unknown"
        info = _info(row)
        state = info.state()
        return (info, "") if state == "active" else (None, state)
