"""The Modality Worklist SCP: MWL C-FIND answered from the worklist table.

The identifier is read by :class:`archive.worklist.query.WorklistQuery`
(the worklist's attribute map on the one matcher of :mod:`archive.query`),
then one pending response per matching entry is sent, C-CANCEL checked
before each. Failures carry their PS3.4 K.4.1.1.4 status and an Error
Comment: 0xA900 for an identifier that is not a valid query, 0xC000 for
matching the archive cannot do, 0xA700 for more matches than ``[worklist]
max_results`` (nothing sent) or an index that cannot be read. Pending
responses are 0xFF01 when a requested key was returned empty because the
worklist does not hold it. The Scheduled Procedure Step Start Date and Time
are matched separately (no extended negotiation is accepted for the MWL
class). One log line per query.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from pydicom.dataset import Dataset
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from archive.query import MatchSettings, QueryError, QueryFailure
from archive.worklist.model import WorklistSettings
from archive.worklist.query import WorklistQuery, find_entries
from pacs_bridge.qr.find import query_failure
from pacs_bridge.store import peer_of

if TYPE_CHECKING:
    from pynetdicom.events import Event

LOGGER = logging.getLogger(__name__)

#: Modality Worklist Information Model - FIND.
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
_PENDING = 0xFF00
_PENDING_UNSUPPORTED_KEYS = 0xFF01
_CANCEL = 0xFE00


class WorklistArchive(Protocol):
    """What the MWL SCP needs of ``archive.archive.Archive``."""

    @property
    def engine(self) -> Engine:
        """The index engine."""
        ...


class WorklistService:
    """The MWL part of the receiver's EVT_C_FIND handler.

    Parameters
    ----------
    archive : WorklistArchive
    match : MatchSettings
        Person Name case rule (shared with C-FIND).
    settings : WorklistSettings
        ``[worklist]``: expiry, result limit.
    """

    def __init__(self, archive: WorklistArchive, match: MatchSettings, settings: WorklistSettings) -> None:
        self.archive = archive
        self.match = match
        self.settings = settings

    def __call__(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """Answer one MWL C-FIND request (a generator of ``(status, identifier)``)."""
        calling_ae, address = peer_of(event)
        started = time.monotonic()
        count = 0
        outcome = "success"
        try:
            try:
                identifier = event.identifier
            except Exception as exc:  # pydicom's decoding errors have no common base
                raise QueryError(QueryFailure.INVALID_IDENTIFIER, f"identifier not decodable: {exc}") from exc
            query = WorklistQuery.parse(identifier)
            status = _PENDING_UNSUPPORTED_KEYS if query.unsupported_keys else _PENDING
            for response in find_entries(self.archive.engine, query, self.match, self.settings):
                if event.is_cancelled:
                    outcome = "cancelled"
                    yield _CANCEL, None
                    return
                yield status, response
                count += 1
        except (QueryError, SQLAlchemyError) as exc:
            outcome, reply = query_failure(exc)
            yield reply, None
        finally:
            LOGGER.info(
                "MWL C-FIND from %s@%s: %d entr%s in %.0f ms, %s",
                calling_ae,
                address,
                count,
                "y" if count == 1 else "ies",
                (time.monotonic() - started) * 1000.0,
                outcome,
            )


def find_dispatcher(
    find: Callable[[Event], Iterator[tuple[int | Dataset, Dataset | None]]],
    worklist: WorklistService,
) -> Callable[[Event], Iterator[tuple[int | Dataset, Dataset | None]]]:
    """One EVT_C_FIND handler (pynetdicom takes one): MWL requests to ``worklist``, the rest to ``find``."""

    def handle(event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        if str(event.request.AffectedSOPClassUID) == MODALITY_WORKLIST_FIND:
            return worklist(event)
        return find(event)

    return handle
