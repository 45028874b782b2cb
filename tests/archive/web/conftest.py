"""A live ``usarchive web`` on a free loopback port, with the sample clips and one token per role.

``served`` is module-scoped and parametrized over SQLite and PostgreSQL: the
archive is made once per module and index, the server runs in a thread
(uvicorn on a socket bound to port 0; :meth:`WebServer.start` returns once
uvicorn accepts connections, no sleep).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from web_served import Served, start_served  # noqa: E402


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("web")
    if request.param == "sqlite":
        context = nullcontext(f"sqlite:///{directory / 'index.sqlite'}")
    else:
        from support import pg

        context = pg.fresh_database(request.getfixturevalue("pg_url"))
    with context as url:
        running = start_served(directory, url)
        try:
            yield running
        finally:
            running.server.stop()
            running.archive.close()


@pytest.fixture(scope="module")
def sqlite_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The same on SQLite only (for what does not depend on the index's dialect)."""
    directory = tmp_path_factory.mktemp("web-sqlite")
    running = start_served(directory, f"sqlite:///{directory / 'index.sqlite'}")
    try:
        yield running
    finally:
        running.server.stop()
        running.archive.close()
