"""The vocabulary of ingest: where an instance came from and what became of it.

:meth:`archive.archive.Archive.ingest` is the only way a file enters the
archive; the network receiver (``pacs_bridge``) and ``usarchive import`` both
call it and read an :class:`IngestResult`. Ingest never raises for bad input:
a refusal is an ``IngestResult`` with ``outcome=REJECTED``, a human ``reason``
and a machine :class:`RejectCode` that the receiver maps to a DIMSE status.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from archive.errors import InstanceRejectedError


class DuplicatePolicy(enum.StrEnum):
    """What to do when a SOP Instance UID arrives again with a *different* data set.

    The same data set (identical bytes, or other file meta before it) is always
    a harmless duplicate (see :mod:`archive.duplicates`). ``KEEP_FIRST`` (default)
    keeps the stored instance and rejects the newcomer (code ``CONFLICT``);
    ``REPLACE`` stores the newcomer and keeps the old file recoverable under
    ``store/.replaced/``, recorded in the instance history.
    """

    KEEP_FIRST = "keep-first"
    REPLACE = "replace"

    @classmethod
    def parse(cls, value: str | DuplicatePolicy) -> DuplicatePolicy:
        """Convert ``"keep-first"`` / ``"replace"`` (or a member) to a member.

        Raises
        ------
        ValueError
            If ``value`` names no policy.
        """
        if isinstance(value, cls):
            return value
        for member in cls:
            if str(value).strip().lower() in (member.value, member.name.lower()):
                return member
        raise ValueError(
            f"duplicate policy: expected one of {', '.join(m.value for m in cls)}, but got {value!r}"
        )


class IngestOutcome(enum.StrEnum):
    """What ingest did with one offered instance."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    REPLACED = "replaced"
    REJECTED = "rejected"


class RejectCode(enum.StrEnum):
    """Why an instance was rejected; the receiver maps these to DIMSE statuses."""

    NOT_DICOM = "not-dicom"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    MISSING_ATTRIBUTE = "missing-attribute"
    INVALID_UID = "invalid-uid"
    UNKNOWN_TRANSFER_SYNTAX = "unknown-transfer-syntax"
    CONFLICT = "conflict"
    OUT_OF_RESOURCES = "out-of-resources"
    STORAGE_ERROR = "storage-error"


class CommitCheck(enum.StrEnum):
    """Answer of :meth:`Archive.check_commitment` for one referenced instance.

    The failure reasons of PS3.4 Table J.3-2 that fit: ``NO_SUCH_INSTANCE``
    → 0x0112 (No such object instance), ``CLASS_MISMATCH`` → 0x0119 (Class /
    Instance conflict), ``HASH_MISMATCH`` → 0x0110 (Processing failure).
    """

    COMMITTED = "committed"
    NO_SUCH_INSTANCE = "no-such-instance"
    CLASS_MISMATCH = "class-mismatch"
    HASH_MISMATCH = "hash-mismatch"


@dataclass(frozen=True)
class Origin:
    """Where an instance came from, recorded with it in the index.

    Parameters
    ----------
    kind : {"file", "network", "web"}
        ``web``: STOW-RS through ``usarchive web`` (``path`` names the token, ``address`` the client).
    path : str, optional
        Source file of an import.
    calling_ae, called_ae : str, optional
        AE titles of a network association.
    address : str, optional
        ``"host:port"`` of the network peer.
    """

    kind: Literal["file", "network", "web"]
    path: str | None = None
    calling_ae: str | None = None
    address: str | None = None
    called_ae: str | None = None

    def describe(self) -> str:
        """A short human description, e.g. ``"file /x/a.dcm"`` or ``"network SCANNER@10.0.0.2:104"``."""
        if self.kind == "file":
            return f"file {self.path}"
        if self.kind == "web":
            return f"web {self.path or '?'} from {self.address or '?'}"
        return f"network {self.calling_ae or '?'}@{self.address or '?'}"


@dataclass(frozen=True)
class IngestResult:
    """The result of offering one instance to the archive.

    Attributes
    ----------
    outcome : IngestOutcome
    sop_instance_uid, sop_class_uid : str or None
        ``None`` only when the header could not be read far enough.
    reason : str or None
        Set for ``REJECTED`` (what was wrong and what to do) and ``DUPLICATE``.
    sha256 : str or None
        Hex digest of the offered bytes (as stored), when they were read.
    size : int or None
        Size in bytes of the stored file.
    path : Path or None
        Absolute path of the stored file (``STORED``, ``DUPLICATE``, ``REPLACED``).
    code : RejectCode or None
        Set for ``REJECTED``.
    """

    outcome: IngestOutcome
    sop_instance_uid: str | None
    sop_class_uid: str | None
    reason: str | None = None
    sha256: str | None = None
    size: int | None = None
    path: Path | None = None
    code: RejectCode | None = None


class IngestRejectedError(InstanceRejectedError):
    """Internal signal inside ingest: the instance is refused with ``code``.

    Never escapes :meth:`Archive.ingest`, which turns it into an
    :class:`IngestResult`.
    """

    def __init__(
        self,
        code: RejectCode,
        reason: str,
        *,
        sop_instance_uid: str | None = None,
        sop_class_uid: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.sop_instance_uid = sop_instance_uid
        self.sop_class_uid = sop_class_uid

    def to_result(self, *, sha256: str | None = None, size: int | None = None) -> IngestResult:
        """The ``REJECTED`` result this rejection stands for."""
        return IngestResult(
            outcome=IngestOutcome.REJECTED,
            sop_instance_uid=self.sop_instance_uid,
            sop_class_uid=self.sop_class_uid,
            reason=self.reason,
            sha256=sha256,
            size=size,
            code=self.code,
        )
