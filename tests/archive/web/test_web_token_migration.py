"""Migration 11 adds ``web_token`` to an existing index (SQLite and PostgreSQL) and changes nothing else."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, insert, inspect, select

from archive.index import migrations, schema
from archive.index.engine import create_index_engine, write_transaction


def test_an_index_at_version_6_gains_the_token_table(db_url: str) -> None:
    engine = create_index_engine(db_url)
    try:
        for version, description, apply in migrations.MIGRATIONS:
            if version > 6:
                break
            with write_transaction(engine) as connection:
                migrations.current_version(connection)
                apply(connection)
                connection.execute(
                    insert(schema.schema_version).values(
                        version=version, description=description, applied_at=datetime.now(UTC)
                    )
                )
        assert not inspect(engine).has_table("web_token")
        assert migrations.migrate(engine) == migrations.LATEST_VERSION
        assert inspect(engine).has_table("web_token")
        columns = {c["name"] for c in inspect(engine).get_columns("web_token")}
        assert columns == {"id", "name", "role", "secret_sha256", "created_at", "expires_at", "revoked_at"}
        migrations.migrate(engine)  # again: nothing to do
        with engine.connect() as connection:
            versions = connection.execute(select(func.count()).select_from(schema.schema_version)).scalar()
        assert versions == len(migrations.MIGRATIONS)
    finally:
        engine.dispose()
