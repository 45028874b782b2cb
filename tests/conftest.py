"""Fixtures shared by the whole suite.

Database fixtures
-----------------
``pg_url``
    Session-wide admin URL (``postgresql://…``) of a real PostgreSQL server: the
    one in ``USARCHIVE_TEST_PG``, else 127.0.0.1:5432 if it answers, else a
    throwaway cluster started for the session (see ``tests/support/pg.py``).
    Never skipped: if no server can be had, the tests error with the reason.
``orthanc``
    A running Orthanc (Debian package) for one test, on free ports, with its
    own configuration and storage in ``tmp_path`` (see ``tests/support/orthanc.py``);
    stopped on teardown. ``orthanc_factory`` starts more (or differently configured) ones.
``db_url``
    Parametrized over ``sqlite`` and ``postgresql``: a URL of an empty index
    database for one test (SQLite file in ``tmp_path``; a fresh PostgreSQL
    database, dropped afterwards). Plain ``postgresql://`` URLs: the archive
    picks the driver (psycopg 3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import pg
from support.orthanc import OrthancServer


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with pg.server_url() as url:
        yield url


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with pg.fresh_database(pg_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.sqlite'}"
        return
    admin = request.getfixturevalue("pg_url")
    with pg.fresh_database(admin) as url:
        yield url


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sample_dir(repo_root: Path) -> Path:
    """The committed sample clips (``sample_dicom/``)."""
    return repo_root / "sample_dicom"


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[..., OrthancServer]]:
    """Start Orthancs (options as ``OrthancServer``'s); every one is stopped after the test."""
    started: list[OrthancServer] = []

    def start(name: str = "orthanc", **options: Any) -> OrthancServer:
        server = OrthancServer(tmp_path / name, **options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def orthanc(orthanc_factory: Callable[..., OrthancServer]) -> OrthancServer:
    """A running Orthanc with the DICOMweb plugin, AE title ``ORTHANC``."""
    from support.orthanc import DICOMWEB_PLUGIN

    return orthanc_factory(plugins=(DICOMWEB_PLUGIN,))
