"""The Modality Performed Procedure Step SCP: N-CREATE and N-SET (PS3.4 F.7).

The handlers only translate: the attribute list goes to
:func:`archive.worklist.steps.create_step` / :func:`~archive.worklist.steps.set_step`,
whose :class:`~archive.worklist.errors.StepError` carries the status to
answer (0x0106, 0x0110 with Error ID 0xA710 for a step that may no longer be
updated, 0x0111, 0x0112, 0x0120), sent with an Error Comment. An N-CREATE
without an Affected SOP Instance UID gets one of ours (``2.25.`` UUID),
returned in the response. An index that cannot be written is 0x0110
(processing failure) and nothing is stored. The response to a successful
request carries no attribute list (PS3.4 F.7.2.1.1 allows it to be empty).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol, cast

from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import N_CREATE, N_SET
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from archive.worklist.errors import StepError
from archive.worklist.steps import PROCESSING_FAILURE, create_step, set_step
from archive.worklist.store import new_study_uid
from pacs_bridge.store import peer_of

if TYPE_CHECKING:
    from pynetdicom.events import Event

LOGGER = logging.getLogger(__name__)

#: Modality Performed Procedure Step SOP Class.
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
_ERROR_COMMENT_MAX = 64


class StepArchive(Protocol):
    """What the MPPS SCP needs of ``archive.archive.Archive``."""

    @property
    def engine(self) -> Engine:
        """The index engine."""
        ...


def _failure(exc: StepError) -> Dataset:
    reply = Dataset()
    reply.Status = exc.status
    text = str(exc)
    reply.ErrorComment = text if len(text) <= _ERROR_COMMENT_MAX else text[: _ERROR_COMMENT_MAX - 3] + "..."
    if exc.error_id is not None:
        reply.ErrorID = exc.error_id
    return reply


class StepService:
    """EVT_N_CREATE and EVT_N_SET handlers of the receiver for the MPPS SOP class.

    Parameters
    ----------
    archive : StepArchive
    """

    def __init__(self, archive: StepArchive) -> None:
        self.archive = archive

    def create(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        """Answer one N-CREATE."""
        calling_ae, address = peer_of(event)
        request = cast(N_CREATE, event.request)
        uid = str(request.AffectedSOPInstanceUID or "") or new_study_uid()
        try:
            step = create_step(self.archive.engine, uid, event.attribute_list, calling_ae=calling_ae)
        except StepError as exc:
            LOGGER.warning(
                "MPPS N-CREATE from %s@%s refused 0x%04X: %s", calling_ae, address, exc.status, exc
            )
            return _failure(exc), None
        except SQLAlchemyError as exc:
            LOGGER.error("MPPS N-CREATE from %s@%s: index not writable: %s", calling_ae, address, exc)
            return _failure(StepError(PROCESSING_FAILURE, "index not writable; try again later")), None
        reply = Dataset()
        if request.AffectedSOPInstanceUID is None:
            reply.AffectedSOPInstanceUID = step.sop_instance_uid
        return 0x0000, reply

    def set(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        """Answer one N-SET."""
        calling_ae, address = peer_of(event)
        uid = str(cast(N_SET, event.request).RequestedSOPInstanceUID or "")
        try:
            set_step(self.archive.engine, uid, event.modification_list)
        except StepError as exc:
            LOGGER.warning("MPPS N-SET from %s@%s refused 0x%04X: %s", calling_ae, address, exc.status, exc)
            return _failure(exc), None
        except SQLAlchemyError as exc:
            LOGGER.error("MPPS N-SET from %s@%s: index not writable: %s", calling_ae, address, exc)
            return _failure(StepError(PROCESSING_FAILURE, "index not writable; try again later")), None
        return 0x0000, Dataset()
