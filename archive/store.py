"""The file store: where instance files live and how they get there durably.

Layout (relative to ``<data_dir>/store``)::

    <aa>/<study>/<series>/<sop>.dcm          first version of an instance
    <aa>/<study>/<series>/<sop>.<h16>.dcm    a replacement (h16: 16 hex of its sha256)
    .tmp/                                    staging (temp files, same filesystem)
    .replaced/<same relative path>.<stamp>   old files kept by the "replace" policy
    .orphans/                                stray files set aside by ``verify --repair``

Each of ``<study>``, ``<series>``, ``<sop>`` is the UID itself when it is a
plausible UID (digits and dots, starting with a digit, at most 64 characters)
and otherwise ``x`` followed by 32 hex digits of the UID's SHA-256, so no UID
can escape the store (``/``, ``..``, NUL, very long values). ``<aa>`` is the
first two hex digits of the SHA-256 of the study component, to spread studies
over 256 directories.

Writes follow temp file in the same filesystem → fsync file → atomic rename →
fsync directory; new directories are fsynced into their parents. The index row
is committed only after that (see :mod:`archive.archive`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import queue
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from archive.fsutil import fsync_directory, fsync_file

logger = logging.getLogger(__name__)

_PLAIN_UID = re.compile(r"[0-9][0-9.]{0,63}")
_CHUNK = 1024 * 1024
#: Files larger than this are hashed on a second thread while they are copied.
_BACKGROUND_HASH_BYTES = 4 * _CHUNK
#: Bytes handed to the hashing thread at a time.
_HASH_BATCH_BYTES = 4 * _CHUNK
_SYNC_THREADS = 8

#: errno values meaning "the disk or quota is full" (mapped to OUT_OF_RESOURCES).
RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENOMEM})


def safe_component(uid: str) -> str:
    """A file-name component for ``uid`` that cannot leave its directory.

    Parameters
    ----------
    uid : str
        Any string (it comes from the sender).

    Returns
    -------
    str
        ``uid`` itself when it matches ``[0-9][0-9.]{0,63}``, else ``"x"`` and
        32 hex digits of its SHA-256.
    """
    if _PLAIN_UID.fullmatch(uid):
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def relative_path(study_uid: str, series_uid: str, sop_uid: str, *, sha256: str | None = None) -> str:
    """The store-relative path (POSIX separators) of an instance file.

    Parameters
    ----------
    study_uid, series_uid, sop_uid : str
        The instance's UIDs, unsanitised.
    sha256 : str, optional
        Given for a replacement version: 16 hex digits of it are added to the
        name, so the first version and a replacement never share a path.
    """
    study = safe_component(study_uid)
    bucket = hashlib.sha256(study.encode()).hexdigest()[:2]
    name = safe_component(sop_uid)
    suffix = f".{sha256[:16]}" if sha256 else ""
    return f"{bucket}/{study}/{safe_component(series_uid)}/{name}{suffix}.dcm"


def make_directories(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each new entry into its parent."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
        fsync_directory(directory.parent)


def hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size in bytes of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            size += count
    return digest.hexdigest(), size


class StreamingSha256:
    """SHA-256 of blocks fed in order; past ``inline_bytes`` the hashing moves to a worker thread.

    hashlib releases the GIL while it hashes a large block, so once the worker
    runs, hashing overlaps with whatever the feeding thread does next (reading
    a socket, copying a file). Blocks go to the worker joined into batches of
    a few MiB: the worker needs the GIL between blocks, and with small blocks
    it would spend more time waiting for a busy Python thread to hand it over
    than hashing. Small inputs never start a thread.

    Parameters
    ----------
    inline_bytes : int
        Bytes hashed on the caller's thread before the worker takes over.

    Examples
    --------
    >>> digest = StreamingSha256(inline_bytes=0)
    >>> digest.update(b"abc")
    >>> digest.hexdigest()[:16]
    'ba7816bf8f01cfea'
    """

    def __init__(self, *, inline_bytes: int = _BACKGROUND_HASH_BYTES) -> None:
        self._digest = hashlib.sha256()
        self._inline_left = inline_bytes
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._batches: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        self._hex: str | None = None

    def update(self, block: bytes | bytearray | memoryview) -> None:
        """Add ``block`` (copied when it is not ``bytes``, since the caller may reuse its buffer)."""
        if self._hex is not None:
            raise RuntimeError("StreamingSha256.update: the digest is already final")
        if self._batches is None and len(block) <= self._inline_left:
            self._digest.update(block)
            self._inline_left -= len(block)
            return
        self._inline_left = 0  # from now on everything goes through the worker, in order
        self._pending.append(block if isinstance(block, bytes) else bytes(block))
        self._pending_bytes += len(block)
        if self._pending_bytes >= _HASH_BATCH_BYTES:
            self._hand_over()

    def _hand_over(self) -> None:
        if not self._pending:
            return
        if self._batches is None:
            self._batches = queue.Queue(maxsize=2)
            self._thread = threading.Thread(target=self._run, name="usarchive-sha256", daemon=True)
            self._thread.start()
        batch = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        self._batches.put(batch)

    def _run(self) -> None:
        assert self._batches is not None
        while (batch := self._batches.get()) is not None:
            self._digest.update(batch)

    def hexdigest(self) -> str:
        """The final digest (hex); waits for the worker to hash what it was given."""
        if self._hex is None:
            if self._batches is None:
                for block in self._pending:  # less than one batch past the inline part
                    self._digest.update(block)
            else:
                self._hand_over()
                self._stop()
            self._hex = self._digest.hexdigest()
        return self._hex

    def abandon(self) -> None:
        """Stop the worker without needing the digest (the data is being discarded)."""
        if self._hex is None:
            self._pending = []
            self._stop()
            self._hex = ""

    def _stop(self) -> None:
        if self._batches is not None and self._thread is not None:
            self._batches.put(None)
            self._thread.join()
            self._batches = None


def sync_files(paths: Iterable[Path]) -> None:
    """Flush several files to disk in parallel (the filesystem journal can flush them together)."""
    _run_parallel(fsync_file, list(paths))


def sync_directories(paths: Iterable[Path]) -> None:
    """Flush several directories' entries to disk in parallel."""
    _run_parallel(fsync_directory, sorted(set(paths)))


def _run_parallel(function: Callable[[Path], None], items: list[Path]) -> None:
    if len(items) <= 1:
        for item in items:
            function(item)
        return
    with ThreadPoolExecutor(max_workers=min(_SYNC_THREADS, len(items))) as pool:
        list(pool.map(function, items))


@dataclass(frozen=True)
class StagedFile:
    """Bytes made durable in the store's filesystem, ready to be renamed into place.

    Attributes
    ----------
    path : Path
        The durable file (in ``.tmp`` or, for a moved file, where the caller had it).
    sha256 : str
        Hex digest of its bytes.
    size : int
        Its size in bytes.
    owned : bool
        ``True`` when the store created it (and removes it if it is not kept);
        ``False`` for a caller's file offered with ``move=True``.
    """

    path: Path
    sha256: str
    size: int
    owned: bool


class FileStore:
    """The directory tree of instance files under ``root``.

    Parameters
    ----------
    root : Path
        ``<data_dir>/store``; created with its hidden subdirectories.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging_dir = root / ".tmp"
        self.replaced_dir = root / ".replaced"
        self.orphans_dir = root / ".orphans"
        for directory in (self.staging_dir, self.replaced_dir, self.orphans_dir):
            make_directories(directory)
        self._device = self.root.stat().st_dev
        self._tracking = threading.local()

    def absolute(self, relative: str) -> Path:
        """The absolute path of a store-relative path."""
        return self.root / relative

    def _new_temp(self) -> Path:
        temp = self.staging_dir / f"{uuid.uuid4().hex}.part"
        created: list[Path] | None = getattr(self._tracking, "created", None)
        if created is not None:
            created.append(temp)  # named before the file exists: no window in which it is untracked
        return temp

    @contextlib.contextmanager
    def temps_removed_on_interrupt(self) -> Iterator[None]:
        """Remove the temp files this thread stages inside the block if Ctrl-C (or exit) ends it.

        Ordinary exceptions are the caller's to handle; a ``KeyboardInterrupt``
        or ``SystemExit`` can arrive between any two statements, e.g. after a
        staged file was made but before its caller holds it. A file already
        placed has left ``.tmp`` and is not touched.
        """
        created: list[Path] = []
        previous = getattr(self._tracking, "created", None)
        self._tracking.created = created
        try:
            yield
        except BaseException as exc:
            if not isinstance(exc, Exception):
                for path in created:
                    path.unlink(missing_ok=True)
            raise
        finally:
            self._tracking.created = previous

    def stage_stream(
        self, chunks: list[bytes], stream: BinaryIO | None, *, sync: bool = True, size_hint: int = 0
    ) -> StagedFile:
        """Write ``chunks`` then the rest of ``stream`` to a durable temp file.

        Parameters
        ----------
        chunks : list of bytes
            Written first (e.g. preamble and file meta, or a whole instance).
        stream : binary file or None
            Copied to the end after ``chunks``.
        sync : bool
            fsync the file (``False`` when the caller syncs a batch with :func:`sync_files`).
        size_hint : int
            Expected size; large files are hashed on a second thread while copied.

        Returns
        -------
        StagedFile
            Owned by the store.

        Raises
        ------
        OSError
            On any write failure; the temp file is removed first.
        """
        temp = self._new_temp()
        large = size_hint > _BACKGROUND_HASH_BYTES
        hasher = StreamingSha256(inline_bytes=0 if large else _BACKGROUND_HASH_BYTES)
        size = 0
        try:
            with temp.open("xb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    hasher.update(chunk)
                    size += len(chunk)
                if stream is not None:
                    while block := stream.read(_CHUNK):
                        out.write(block)
                        hasher.update(block)
                        size += len(block)
                out.flush()
                if sync:
                    os.fsync(out.fileno())
        except BaseException:
            hasher.abandon()
            temp.unlink(missing_ok=True)
            raise
        return StagedFile(path=temp, sha256=hasher.hexdigest(), size=size, owned=True)

    def stage_file(
        self, source: Path, *, move: bool, sync: bool = True, sha256: str | None = None
    ) -> StagedFile:
        """Make a caller's file durable for ingest: in place when it may be moved, else copied.

        With ``move=True`` and ``source`` on the store's filesystem the file is
        hashed and fsynced where it is and renamed into place later; otherwise
        it is copied into ``.tmp``.

        Parameters
        ----------
        source : Path
            The caller's file.
        move : bool
            Whether the file may be renamed into the store.
        sync : bool
            fsync the file (``False`` when the caller syncs a batch).
        sha256 : str, optional
            The caller's SHA-256 (hex) of exactly the bytes of ``source``. A file
            staged in place is then not read at all and carries this digest; a
            copied file carries the digest of the bytes copied (the caller
            compares).
        """
        status = source.stat()
        if move and status.st_dev == self._device:
            if sha256 is None:
                digest, size = hash_file(source)
            else:
                digest, size = sha256, status.st_size
            if sync:
                sync_files([source])
            return StagedFile(path=source, sha256=digest, size=size, owned=False)
        with source.open("rb") as handle:
            return self.stage_stream([], handle, sync=sync, size_hint=status.st_size)

    def discard(self, staged: StagedFile) -> None:
        """Remove a staged file the store owns (a caller's moved file is left alone)."""
        if staged.owned:
            staged.path.unlink(missing_ok=True)

    def place(self, staged: StagedFile, relative: str, *, sync: bool = True) -> Path:
        """Rename a staged file to ``relative`` atomically and fsync the directory.

        The caller must hold the index claim on the instance: an existing file
        at ``relative`` is then a stray from an interrupted ingest and is
        replaced. With ``sync=False`` the caller fsyncs the directory (a batch
        does it once per directory with :func:`sync_directories`).
        """
        final = self.absolute(relative)
        make_directories(final.parent)
        staged.path.replace(final)
        if sync:
            fsync_directory(final.parent)
        return final

    def preserve(self, relative: str, stamp: str) -> str:
        """Hard-link a stored file into ``.replaced`` (durably); return that store-relative path.

        Parameters
        ----------
        relative : str
            Store-relative path of the file being superseded.
        stamp : str
            Distinguishes several replacements of one path (e.g. a UTC time).
        """
        kept = f".replaced/{relative}.{stamp}"
        target = self.absolute(kept)
        make_directories(target.parent)
        os.link(self.absolute(relative), target)
        fsync_directory(target.parent)
        return kept

    def remove(self, relative: str) -> None:
        """Delete a stored file (if present) and fsync its directory."""
        path = self.absolute(relative)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_directory(path.parent)

    def set_aside(self, path: Path) -> Path:
        """Move a stray file into ``.orphans`` (never deleting data); return its new path."""
        target = self.orphans_dir / f"{uuid.uuid4().hex[:8]}-{path.name}"
        path.replace(target)
        fsync_directory(self.orphans_dir)
        fsync_directory(path.parent)
        return target

    def iter_instance_files(self) -> list[str]:
        """Store-relative paths of every ``*.dcm`` outside the hidden directories, sorted."""
        found: list[str] = []
        for directory, subdirs, files in os.walk(self.root):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            base = Path(directory).relative_to(self.root)
            found.extend((base / name).as_posix() for name in files if name.endswith(".dcm"))
        return sorted(found)

    def stale_temp_files(self) -> list[Path]:
        """Files left in ``.tmp`` by interrupted ingests, and in its sub-directories whose owner is gone.

        A process that keeps files in a sub-directory of ``.tmp`` (the DICOM
        receiver's spool directory) holds an ``flock`` on the ``.lock`` file
        in it while it runs; the files of a directory whose lock is free (its
        process died) are left over. Those of a live owner are never listed.
        """
        found = [p for p in self.staging_dir.iterdir() if p.is_file()]
        for directory in self.staging_dir.iterdir():
            if directory.is_dir() and not directory.name.startswith("."):
                found.extend(_files_of_dead_owners(directory))
        return sorted(found)


def _files_of_dead_owners(root: Path) -> list[Path]:
    """Files (``.lock`` aside) under ``root``'s sub-directories whose ``.lock`` no process holds."""
    found: list[Path] = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        lock_path = directory / ".lock"
        try:
            handle = lock_path.open("rb")
        except OSError:
            continue  # no lock file: not a locked owner's directory; left alone
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its owner is alive
            fcntl.flock(handle, fcntl.LOCK_UN)
        found.extend(p for p in directory.iterdir() if p.is_file() and p.name != ".lock")
    return found
