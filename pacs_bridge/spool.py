"""Spool files: where an incoming dataset streams to disk while it arrives.

pynetdicom, with ``_config.STORE_RECV_CHUNKED_DATASET = True``, writes each
C-STORE data set as it arrives into a file created by
``pynetdicom.dimse_messages.NamedTemporaryFile`` (``tempfile.NamedTemporaryFile``
imported into that module): a Part 10 file (preamble, ``DICM``, file meta that
pynetdicom builds from the command set and the accepted transfer syntax, then
the data set bytes exactly as received). The handler gets its path as
``event.dataset_path`` and pynetdicom deletes it after the handler returns.

We replace that one name with :func:`spool_file_factory` (installed once per
process by :func:`install`) rather than setting ``tempfile.tempdir`` for the
whole process, because it lets us

* put the file in a per-process directory under ``Archive.staging_dir`` (same
  filesystem as the store, so ``Archive.ingest(move=True)`` is a rename),
  chosen per receiving application entity, so several servers in one process
  each spool into their own archive;
* absorb write errors (``ENOSPC``, ``EDQUOT``): pynetdicom aborts the
  association on any exception while receiving; we instead drop the partial
  data, keep reading the stream and let the handler answer "out of resources";
* delete the file of a data set whose association was aborted mid-way
  (pynetdicom leaves it behind) and, at the next start, the files of a
  process that was killed.

Associations of other application entities in the process (tests' own SCPs)
get an ordinary ``NamedTemporaryFile``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any

from archive.store import StreamingSha256
from pacs_bridge import _pynetdicom_compat

LOGGER = logging.getLogger(__name__)

#: Sub-directory of ``Archive.staging_dir`` holding one directory per running receiver.
SPOOL_ROOT_NAME = "pacs_bridge"
_LOCK_NAME = ".lock"
#: Bytes of a data set hashed on the receiving thread; the rest on a worker, while more arrives.
_INLINE_HASH_BYTES = 1024 * 1024
#: Every this many bytes the kernel is asked to start writing the spool file to disk.
_WRITEBACK_BYTES = 8 * 1024 * 1024


class SpoolUnavailableError(OSError):
    """The spool directory cannot be created (a read-only or missing data directory)."""


class SpoolFile:
    """A file receiving one data set; looks like the ``NamedTemporaryFile`` pynetdicom expects.

    Write errors are recorded in :attr:`error` instead of raised; after one, the
    partial data is truncated away and further data is discarded. Every byte
    written is also hashed (SHA-256; past the first MiB on a worker thread, so
    hashing overlaps with receiving): :meth:`seal` returns the digest, which
    the handler passes to ``Archive.ingest(sha256=...)`` instead of letting it
    re-read the file. Every 8 MiB the kernel is asked to start writing what
    arrived so far (``posix_fadvise(POSIX_FADV_DONTNEED)`` starts writeback
    without waiting for it), so the fsync at ingest has only the tail of a
    large clip left to write.

    Attributes
    ----------
    name : str
        Path of the file.
    owner : object or None
        The association whose data set this is.
    bytes_written : int
        Bytes written so far (preamble and file meta included).
    error : OSError or None
        The first write error, if any.
    """

    def __init__(self, path: Path, owner: object | None) -> None:
        self.name = str(path)
        self.owner = owner
        self.bytes_written = 0
        self.error: OSError | None = None
        self._handle: IO[bytes] = path.open("wb")
        self._sha256 = StreamingSha256(inline_bytes=_INLINE_HASH_BYTES)
        self._written_back = 0  # bytes before this offset have had writeback started

    @property
    def file(self) -> SpoolFile:
        """Itself: pynetdicom calls ``NamedTemporaryFile(...).file.flush()``."""
        return self

    def write(self, data: bytes) -> int:
        """Append ``data``; on an OS error remember it and discard data from then on."""
        if self.error is None:
            try:
                self._handle.write(data)
                self.bytes_written += len(data)
            except OSError as exc:
                self._fail(exc)
            else:
                self._sha256.update(data)
                if self.bytes_written - self._written_back >= _WRITEBACK_BYTES:
                    self._start_writeback()
        return len(data)

    def _start_writeback(self) -> None:
        """Ask the kernel to start writing the bytes received so far (it does not wait)."""
        self.flush()
        if self.error is not None or not hasattr(os, "posix_fadvise"):
            return
        with contextlib.suppress(OSError):  # only a hint: the fsync at ingest is what counts
            length = self.bytes_written - self._written_back
            os.posix_fadvise(self._handle.fileno(), self._written_back, length, os.POSIX_FADV_DONTNEED)
        self._written_back = self.bytes_written

    def flush(self) -> None:
        """Flush the buffer to the OS (durability is the archive's job, at ingest); no-op once closed."""
        if self.error is None and not self._handle.closed:
            try:
                self._handle.flush()
            except OSError as exc:
                self._fail(exc)

    def seal(self) -> str | None:
        """Flush and close the complete data set; return the SHA-256 (hex) of every byte written.

        Returns
        -------
        str or None
            ``None`` after a write error (see :attr:`error`): the file is not
            the data set that arrived.
        """
        self._close_handle()
        if self.error is not None:
            self._sha256.abandon()
            return None
        return self._sha256.hexdigest()

    def close(self) -> None:
        """Close the file and stop hashing (errors are recorded, not raised)."""
        self._close_handle()
        self._sha256.abandon()  # no-op once sealed

    def _close_handle(self) -> None:
        if self._handle.closed:
            return
        try:
            self._handle.close()
        except OSError as exc:
            if self.error is None:
                self.error = exc

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        LOGGER.warning("spool %s: write failed (%s); discarding the rest of this data set", self.name, exc)
        with contextlib.suppress(OSError):
            self._handle.truncate(0)
        # The buffered writer may still hold data it cannot write; drop it with the handle.
        with contextlib.suppress(OSError):
            os.ftruncate(self._handle.fileno(), 0)
        with contextlib.suppress(OSError, ValueError):
            self._handle.close()

    @property
    def out_of_space(self) -> bool:
        """Whether the write error was a full disk or an exceeded quota."""
        return self.error is not None and self.error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class SpoolDirectory:
    """A receiver's own spool directory, locked while the receiver runs.

    Parameters
    ----------
    staging_dir : Path
        ``Archive.staging_dir``; the spool directory is created inside
        ``staging_dir / "pacs_bridge"``. Directories there whose lock is free
        (their receiver died) are removed first.
    """

    def __init__(self, staging_dir: Path) -> None:
        root = staging_dir / SPOOL_ROOT_NAME
        try:
            root.mkdir(parents=True, exist_ok=True)
            sweep_stale(root)
            self.path = root / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self.path.mkdir()
            self._lock_handle = (self.path / _LOCK_NAME).open("wb")
        except OSError as exc:
            raise SpoolUnavailableError(
                f"cannot create the receiver's spool directory under {str(root)!r}: {exc.strerror or exc}; "
                "expected a data directory this user can write"
            ) from exc
        fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._files: dict[str, SpoolFile] = {}
        self._mutex = threading.Lock()

    def create(self, owner: object | None) -> SpoolFile:
        """Create and register a new spool file for ``owner`` (an association)."""
        fd, name = tempfile.mkstemp(suffix=".dcm", dir=self.path)
        os.close(fd)
        spool = SpoolFile(Path(name), owner)
        with self._mutex:
            self._files[spool.name] = spool
        return spool

    @property
    def busy(self) -> bool:
        """Whether a data set is being received or stored (a spool file is registered)."""
        with self._mutex:
            return bool(self._files)

    def lookup(self, path: str | os.PathLike[str]) -> SpoolFile | None:
        """The registered spool file at ``path``, if any."""
        with self._mutex:
            return self._files.get(str(path))

    def release(self, path: str | os.PathLike[str]) -> None:
        """Forget the spool file at ``path`` (pynetdicom deletes it after the handler)."""
        with self._mutex:
            self._files.pop(str(path), None)

    def discard(self, owner: object) -> int:
        """Delete the unfinished spool files of ``owner`` (an association that ended).

        Returns
        -------
        int
            How many files were deleted.
        """
        with self._mutex:
            mine = [spool for spool in self._files.values() if spool.owner is owner]
            for spool in mine:
                del self._files[spool.name]
        for spool in mine:
            spool.close()
            with contextlib.suppress(FileNotFoundError):
                Path(spool.name).unlink()
        return len(mine)

    def sweep_orphans(self, is_live: Any, min_age_s: float = 60.0) -> int:
        """Delete spool files that belong to no live association.

        Parameters
        ----------
        is_live : callable
            ``is_live(owner)`` tells whether a registered file's association is still running.
        min_age_s : float
            Unregistered files (left between a handler's end and pynetdicom's
            delete, or by a bug) are removed once older than this.

        Returns
        -------
        int
            How many files were deleted.
        """
        with self._mutex:
            dead = [spool for spool in self._files.values() if not is_live(spool.owner)]
            for spool in dead:
                del self._files[spool.name]
            registered = set(self._files)
        for spool in dead:
            spool.close()
            with contextlib.suppress(FileNotFoundError):
                Path(spool.name).unlink()
        removed = len(dead)
        now = time.time()
        for path in self.path.glob("*.dcm"):
            if str(path) in registered:
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > min_age_s:
                    path.unlink()
                    removed += 1
        if removed:
            LOGGER.warning("self-check: removed %d spool file(s) of no live association", removed)
        return removed

    def close(self) -> None:
        """Delete the directory and everything left in it, and release the lock."""
        with self._mutex:
            spools = list(self._files.values())
            self._files.clear()
        for spool in spools:
            spool.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._lock_handle.close()


def sweep_stale(root: Path) -> int:
    """Remove spool directories under ``root`` whose receiver is gone (their lock is free).

    Returns
    -------
    int
        Number of directories removed.
    """
    removed = 0
    for directory in root.iterdir():
        lock_path = directory / _LOCK_NAME
        if not directory.is_dir():
            continue
        try:
            handle = lock_path.open("ab")
        except OSError:
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its receiver is alive
            LOGGER.info("removing stale spool directory %s", directory)
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
    return removed


_DIRECTORIES: dict[int, SpoolDirectory] = {}
_REGISTRY_LOCK = threading.Lock()


def register(application_entity: object, directory: SpoolDirectory) -> None:
    """Spool the data sets received by ``application_entity`` into ``directory``."""
    with _REGISTRY_LOCK:
        _DIRECTORIES[id(application_entity)] = directory


def unregister(application_entity: object) -> None:
    """Stop spooling for ``application_entity``."""
    with _REGISTRY_LOCK:
        _DIRECTORIES.pop(id(application_entity), None)


def spool_file_factory(*args: Any, **kwargs: Any) -> Any:
    """Stand-in for ``NamedTemporaryFile`` inside pynetdicom's DIMSE message decoder.

    Called on the association's DUL thread, whose ``assoc`` names the receiving
    application entity; its registered :class:`SpoolDirectory` creates the file.
    """
    assoc = getattr(threading.current_thread(), "assoc", None)
    ae = getattr(assoc, "ae", None)
    with _REGISTRY_LOCK:
        directory = _DIRECTORIES.get(id(ae)) if ae is not None else None
    if directory is None:
        return _pynetdicom_compat.original_named_temporary_file()(*args, **kwargs)
    return directory.create(assoc)


def install() -> None:
    """Make pynetdicom stream received data sets into spool files (until :func:`uninstall`).

    Reference-counted by :mod:`pacs_bridge._pynetdicom_compat`: each call needs one :func:`uninstall`.
    """
    _pynetdicom_compat.install_receiver_patches(spool_file_factory)


def uninstall() -> None:
    """Undo one :func:`install`; pynetdicom's own behaviour returns after the last one."""
    _pynetdicom_compat.remove_receiver_patches()
