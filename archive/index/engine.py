"""Engines and write transactions for the index, on SQLite and PostgreSQL.

SQLite runs in WAL mode with ``busy_timeout`` and ``synchronous=FULL`` (a commit
is on disk when it returns, which storage commitment relies on), foreign keys
on, and every write transaction begins with ``BEGIN IMMEDIATE`` so writers queue
for the lock at the start instead of failing half-way. Beginning a write is
retried with back-off when SQLite still reports "database is locked".

PostgreSQL URLs (``postgresql://`` or ``postgres://``) are given the psycopg 3
driver.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError

from archive.errors import ConfigError

logger = logging.getLogger(__name__)

#: Seconds SQLite waits for a lock before reporting "database is locked".
SQLITE_BUSY_TIMEOUT_S = 60.0
_WRITE_OPTION = "usarchive_write"
_AUTOCOMMIT_OPTION = "usarchive_autocommit"
_BEGIN_ATTEMPTS = 20


def normalise_url(url: str) -> str:
    """Give plain PostgreSQL URLs the psycopg 3 driver; leave others unchanged.

    Parameters
    ----------
    url : str
        For example ``postgresql://user@host/db`` or ``sqlite:////path/index.sqlite``.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(_AUTOCOMMIT_OPTION, False):
            return  # autocommit_reads: the driver runs each statement in its own implicit transaction
        immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_index_engine(url: str) -> Engine:
    """An engine for the index at ``url``, configured for concurrent use.

    Parameters
    ----------
    url : str
        SQLAlchemy URL; ``postgresql://`` is given the psycopg driver.

    Returns
    -------
    sqlalchemy.Engine

    Raises
    ------
    ConfigError
        If the URL's database driver is not installed (the message names the extra to install).
    """
    url = normalise_url(url)
    if url.startswith("postgresql"):
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"index {url.split('://', 1)[0]}://...: expected the PostgreSQL driver psycopg, but it is "
                "not installed; run: pip install 'usarchive[postgres]'"
            ) from exc
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def is_sqlite(engine: Engine) -> bool:
    """Whether ``engine`` talks to SQLite."""
    return engine.dialect.name == "sqlite"


def _is_lock_error(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read-only unit of work that ends with COMMIT rather than the pool's rollback.

    On PostgreSQL, psycopg forgets its prepared statements whenever a
    transaction is rolled back, so queries read through a pooled connection
    that is merely returned would be parsed and planned again every time.
    Ending reads with a commit keeps them prepared, and the server reuses their
    plans (for ``find``: several milliseconds of planning per call).

    Yields
    ------
    sqlalchemy.Connection
    """
    with engine.connect() as connection:
        yield connection
        connection.commit()


@contextmanager
def autocommit_reads(engine: Engine) -> Iterator[Connection]:
    """A connection whose statements each run in their own implicit transaction, for short reads.

    No ``BEGIN`` or ``COMMIT`` round trips, and nothing to roll back, so on
    PostgreSQL psycopg keeps its prepared statements (see
    :func:`read_transaction`). For reads that need no snapshot across
    statements, such as ``find``.

    Yields
    ------
    sqlalchemy.Connection
    """
    if is_sqlite(engine):
        # The driver is in autocommit already (isolation_level None, set on connect); only the "begin"
        # listener's BEGIN is skipped. AUTOCOMMIT would issue BEGIN and ROLLBACK anyway (the listener)
        # plus a PRAGMA each way to switch the isolation level.
        options: dict[str, Any] = {_AUTOCOMMIT_OPTION: True}
    else:
        options = {"isolation_level": "AUTOCOMMIT"}
    with engine.connect().execution_options(**options) as connection:
        yield connection


_LOCK_WAIT = threading.local()


@contextmanager
def bounded_lock_wait(seconds: float) -> Iterator[None]:
    """On this thread, make every SQLite write transaction in the block wait at most ``seconds`` for the lock.

    The wait is counted over all of a transaction's attempts (the busy
    timeout of each attempt is what is left), so a caller with a deadline of
    its own (the DICOM receiver answers within a scanner's DIMSE timeout)
    gets the "database is locked" ``OperationalError`` in time instead of
    after :data:`SQLITE_BUSY_TIMEOUT_S` per attempt. PostgreSQL is unaffected.

    Parameters
    ----------
    seconds : float
        The longest wait for the write lock of each transaction in the block.
    """
    previous = getattr(_LOCK_WAIT, "seconds", None)
    _LOCK_WAIT.seconds = seconds
    try:
        yield
    finally:
        _LOCK_WAIT.seconds = previous


def is_lock_error(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (or busy), after the busy timeout."""
    return isinstance(exc, OperationalError) and _is_lock_error(exc)


def _set_busy_timeout(connection: Connection, seconds: float) -> None:
    # On the DB-API connection: through SQLAlchemy the statement would begin a transaction.
    dbapi = connection.connection.driver_connection
    if dbapi is not None:
        dbapi.execute(f"PRAGMA busy_timeout = {max(1, int(seconds * 1000))}")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction, committed when the block ends without an exception.

    On SQLite it begins with ``BEGIN IMMEDIATE`` (retried with back-off while
    the database stays locked), so the block holds the write lock throughout
    and a read-check-insert inside it is atomic across processes.

    Yields
    ------
    sqlalchemy.Connection
    """
    connection: Connection | None = None
    limit_s: float | None = getattr(_LOCK_WAIT, "seconds", None) if is_sqlite(engine) else None
    deadline = time.monotonic() + limit_s if limit_s is not None else None
    for attempt in range(_BEGIN_ATTEMPTS):
        candidate = engine.connect().execution_options(**{_WRITE_OPTION: True})
        if deadline is not None:
            _set_busy_timeout(candidate, deadline - time.monotonic())
        try:
            transaction = candidate.begin()
        except OperationalError as exc:
            if deadline is not None:
                _set_busy_timeout(candidate, SQLITE_BUSY_TIMEOUT_S)
            candidate.close()
            out_of_time = deadline is not None and time.monotonic() >= deadline - 0.01
            if not _is_lock_error(exc) or attempt == _BEGIN_ATTEMPTS - 1 or out_of_time:
                raise
            delay = min(2.0, 0.01 * 2**attempt) * (0.5 + random.random())
            logger.info("index is locked, retrying in %.3f s (attempt %d)", delay, attempt + 1)
            time.sleep(delay)
            continue
        connection = candidate
        break
    assert connection is not None
    try:
        yield connection
        transaction.commit()
    except BaseException:
        if transaction.is_active:
            transaction.rollback()
        raise
    finally:
        if deadline is not None:
            _set_busy_timeout(connection, SQLITE_BUSY_TIMEOUT_S)
        connection.close()
