"""The C-FIND SCP: Patient Root and Study Root queries answered from the index.

The handler parses the identifier into a :class:`~archive.query.FindRequest`
(with the relational and combined date-time options the requester
negotiated), then streams one pending response per matching entity from
:func:`archive.query.find`, which reads the index a page at a time. A
C-CANCEL (``event.is_cancelled``, checked before each response and each
page) ends the query with status 0xFE00. Failures are answered with their
PS3.4 C.4.1.1.4 status and an Error Comment: 0xA900 for an identifier that is
not a valid query, 0xC000 for matching the archive cannot do, 0xA700 for
more matches than ``find_max_results`` (nothing sent) or an index that
cannot be read.

Pending responses are 0xFF00, or 0xFF01 when a requested key was returned
empty because the archive does not hold it (PS3.4: "one or more Optional
Keys were not supported"). Each query logs one line: who, model, level,
matches, time, outcome.

Extended negotiation (PS3.4 C.5.1.1.1): the requester's SOP Class Extended
Negotiation item for a FIND class is answered with relational queries and
combined date-time matching accepted when asked, fuzzy semantic matching of
person names and timezone adjustment declined.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydicom.dataset import Dataset
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from archive.query import FindRequest, InformationModel, MatchSettings, QueryError, QueryFailure, find
from pacs_bridge.contexts import PatientRootFind, StudyRootFind
from pacs_bridge.store import peer_of

if TYPE_CHECKING:
    from pynetdicom.events import Event

LOGGER = logging.getLogger(__name__)

#: The information model of each FIND SOP class.
FIND_MODELS: dict[str, InformationModel] = {
    str(PatientRootFind): InformationModel.PATIENT_ROOT,
    str(StudyRootFind): InformationModel.STUDY_ROOT,
}
#: Extended negotiation flags we accept (PS3.4 C.5.1.1.1): relational, combined date-time (not fuzzy,
#: not timezone).
_ACCEPTED_FLAGS = (1, 1, 0, 0)
_PENDING = 0xFF00
_PENDING_UNSUPPORTED_KEYS = 0xFF01
_CANCEL = 0xFE00
_OUT_OF_RESOURCES = 0xA700
_ERROR_COMMENT_MAX = 64


class FileResolver(Protocol):
    """Where the archive stores a file (``archive.store.FileStore``)."""

    def absolute(self, relative: str) -> Path:
        """The absolute path of a stored relative path."""
        ...


class QueryableArchive(Protocol):
    """What the C-FIND SCP needs of ``archive.archive.Archive``."""

    @property
    def engine(self) -> Engine:
        """The index engine."""
        ...

    @property
    def store(self) -> FileResolver:
        """The file store (for header reads)."""
        ...


def extended_negotiation_reply(app_info: dict[Any, bytes]) -> dict[Any, bytes]:
    """Our answer to the requester's SOP Class Extended Negotiation items of the FIND classes.

    Parameters
    ----------
    app_info : dict
        SOP Class UID → the requester's Service Class Application Information.

    Returns
    -------
    dict
        SOP Class UID → the flags we accept (each requested flag ANDed with ours).
    """
    reply: dict[Any, bytes] = {}
    for uid, info in app_info.items():
        if str(uid) in FIND_MODELS and info:
            reply[uid] = bytes(
                (info[i] if i < len(info) else 0) & (_ACCEPTED_FLAGS[i] if i < len(_ACCEPTED_FLAGS) else 0)
                for i in range(len(info))
            )
    return reply


def negotiated_options(event: Event, sop_class_uid: str) -> tuple[bool, bool]:
    """``(relational, combined date-time)`` as negotiated on the association of ``event``."""
    info: bytes = b""
    for uid, value in event.assoc.acceptor.sop_class_extended.items():
        if str(uid) == sop_class_uid:
            info = bytes(value or b"")
    return (len(info) > 0 and info[0] == 1, len(info) > 1 and info[1] == 1)


class _Cancellation:
    """``event.is_cancelled``, remembered: pynetdicom's check takes the C-CANCEL off its queue."""

    def __init__(self, event: Event) -> None:
        self._event = event
        self.requested = False

    def __call__(self) -> bool:
        if not self.requested:
            self.requested = bool(self._event.is_cancelled)
        return self.requested


def failure_reply(status: int, message: str) -> Dataset:
    """A failure status dataset with the message as Error Comment (cut to 64 characters)."""
    reply = Dataset()
    reply.Status = status
    reply.ErrorComment = (
        message if len(message) <= _ERROR_COMMENT_MAX else message[: _ERROR_COMMENT_MAX - 3] + "..."
    )
    return reply


def query_failure(exc: QueryError | SQLAlchemyError) -> tuple[str, Dataset]:
    """How a failed C-FIND (Q/R or worklist) is logged and answered: a bad identifier or an unreadable index.

    Parameters
    ----------
    exc : QueryError or SQLAlchemyError
        The matcher's refusal (with its status), or the index failing.

    Returns
    -------
    outcome : str
        For the query's log line.
    reply : Dataset
        The final failure response (0xA700 for an index that cannot be read now).
    """
    if isinstance(exc, QueryError):
        return f"failed 0x{exc.status:04X}: {exc}", failure_reply(exc.status, str(exc))
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return (
        f"failed 0x{_OUT_OF_RESOURCES:04X}: index not readable: {reason}",
        failure_reply(_OUT_OF_RESOURCES, "index not readable; try again later"),
    )


class FindService:
    """The EVT_C_FIND handler of the receiver.

    Parameters
    ----------
    archive : QueryableArchive
        The archive whose index answers.
    settings : MatchSettings
        Case rules, result limit, header reads.
    aet : str
        Our AE title, returned as Retrieve AE Title.
    """

    def __init__(self, archive: QueryableArchive, settings: MatchSettings, aet: str) -> None:
        self.archive = archive
        self.settings = settings
        self.aet = aet

    def __call__(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """Answer one C-FIND request (a generator of ``(status, identifier)``, as pynetdicom expects)."""
        calling_ae, address = peer_of(event)
        started = time.monotonic()
        sop_class = str(event.request.AffectedSOPClassUID)
        model = FIND_MODELS.get(sop_class)
        outcome = "stopped: the association ended"  # unless the query runs to its end
        level = "?"
        count = 0
        try:
            if model is None:
                raise QueryError(
                    QueryFailure.INVALID_IDENTIFIER, f"SOP Class {sop_class}: not a FIND model we serve"
                )
            relational, combined = negotiated_options(event, sop_class)
            try:
                identifier = event.identifier
            except Exception as exc:  # pydicom's decoding errors have no common base
                raise QueryError(QueryFailure.INVALID_IDENTIFIER, f"identifier not decodable: {exc}") from exc
            request = FindRequest.parse(identifier, model, relational=relational, combined_datetime=combined)
            level = request.level.value
            status = _PENDING
            if not self.settings.header_keys and any(
                rk.key is None and rk.tag not in (0x00080054, 0x00080056) for rk in request.keys
            ):
                status = _PENDING_UNSUPPORTED_KEYS
            cancelled = _Cancellation(event)
            for response in find(
                self.archive.engine,
                request,
                self.settings,
                resolve_path=self.archive.store.absolute,
                retrieve_aet=self.aet,
                cancelled=cancelled,
            ):
                if cancelled():
                    break
                yield status, response
                count += 1
            if cancelled():
                outcome = "cancelled"
                yield _CANCEL, None
            else:
                outcome = "success"
        except (QueryError, SQLAlchemyError) as exc:
            outcome, reply = query_failure(exc)
            yield reply, None
        finally:
            LOGGER.info(
                "C-FIND from %s@%s: %s %s, %d match%s in %.0f ms, %s",
                calling_ae,
                address,
                model.value if model is not None else sop_class,
                level,
                count,
                "" if count == 1 else "es",
                (time.monotonic() - started) * 1000.0,
                outcome,
            )
