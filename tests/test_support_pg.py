"""The PostgreSQL fixture really gives a server with isolated databases."""

from __future__ import annotations

import psycopg
import pytest


@pytest.mark.postgres
def test_fresh_databases_are_isolated(pg_database: str, pg_url: str) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE marker (x int)")
        conn.execute("INSERT INTO marker VALUES (42)")
        assert conn.execute("SELECT x FROM marker").fetchone() == (42,)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        tables = admin.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'marker'").fetchone()
    assert tables == (0,)
