"""The ``web_token`` table of the index (created by migration 11).

One row per bearer token of ``usarchive web``: its name (unique, what the
access log shows), role, the SHA-256 of its secret (the secret itself is
never stored), when it was made, when it expires and when it was revoked.
Rows are never deleted, so the access log's names stay explainable.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, String, Table

from archive.index import schema

web_token = Table(
    "web_token",
    schema.metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(80), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

#: Tables of this domain, for the migration that creates them.
TOKEN_TABLES = (web_token,)
