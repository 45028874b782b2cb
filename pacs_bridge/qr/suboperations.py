"""C-STORE sub-operations of a retrieve: one instance sent, the counts.

The presentation contexts and the transcoding decisions are forwarding's
(:mod:`pacs_bridge.forward.association`), so a C-MOVE sends exactly as a
forwarded file goes: each stored file in its own transfer syntax, streamed
from disk (:func:`pacs_bridge.forward.association.send_stored`: the fast
sender, else pynetdicom's ``STORE_SEND_CHUNKED_DATASET``; the data set is
never held in memory). Only when the peer accepted no context for the
file's syntax, and transcoding is allowed, the file is read once with pydicom
and re-encoded losslessly: between uncompressed syntaxes, or decoding a
losslessly compressed one; a lossy syntax is never decoded. That path holds
one clip (its data set and its encoding) in memory at a time. Otherwise the
instance fails, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from archive.index.retrieve import RetrievableInstance
from pacs_bridge.forward.association import TranscodeRefusedError, plan_send, send_stored, transcoded_dataset

if TYPE_CHECKING:
    from pynetdicom.association import Association

LOGGER = logging.getLogger(__name__)


@dataclass
class SubOperations:
    """Counts of a retrieve's C-STORE sub-operations (PS3.4 C.4.2.1.4/C.4.3.1.4)."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def record(self, uid: str, status: int | None) -> None:
        """Count one finished sub-operation by its C-STORE status (``None``: no response)."""
        self.remaining -= 1
        if status == 0x0000:
            self.completed += 1
        elif status is not None and (status & 0xF000) == 0xB000:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(uid)

    def fail(self, uids: Iterable[str]) -> None:
        """Count every instance of ``uids`` as failed (e.g. the destination cannot be reached)."""
        for uid in uids:
            self.record(uid, None)

    def summary(self) -> str:
        """``completed 3, failed 1, warning 0, remaining 0``."""
        return (
            f"completed {self.completed}, failed {self.failed}, warning {self.warning}, "
            f"remaining {self.remaining}"
        )


@dataclass(frozen=True)
class SendResult:
    """Outcome of one sub-operation: the peer's C-STORE status (``None`` if none came) and why."""

    status: int | None
    comment: str = ""
    transcoded_to: str | None = None


def send_instance(
    assoc: Association,
    item: RetrievableInstance,
    *,
    transcode: bool,
    msg_id: int,
    originator_aet: str | None = None,
    originator_id: int | None = None,
) -> SendResult:
    """Send one stored instance on ``assoc`` as a C-STORE sub-operation; never raises.

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        The move destination's association, or the C-GET requester's.
    item : RetrievableInstance
        The instance (``path`` absolute).
    transcode : bool
        Whether a file whose transfer syntax the peer did not accept may be
        transcoded losslessly to an uncompressed one it accepted.
    msg_id : int
        Message ID of the C-STORE request.
    originator_aet, originator_id : optional
        Move Originator AE Title and Message ID (C-MOVE only).
    """
    kwargs: dict[str, Any] = {"msg_id": msg_id}
    if originator_aet is not None:
        kwargs.update(originator_aet=originator_aet, originator_id=originator_id)
    try:
        plan = plan_send(assoc, item, transcode=transcode)
        if plan.as_stored:
            return _result(send_stored(assoc, item.path, **kwargs))
        dataset = transcoded_dataset(item, plan)
        return _result(assoc.send_c_store(dataset, **kwargs), transcoded_to=plan.transfer_syntax)
    except TranscodeRefusedError as exc:
        return SendResult(None, str(exc))
    except Exception as exc:  # a sub-operation failure is counted, never raised
        LOGGER.warning("C-STORE sub-operation of %s failed: %s", item.sop_instance_uid, exc)
        return SendResult(None, f"{type(exc).__name__}: {exc}")


def _result(response: Any, transcoded_to: str | None = None) -> SendResult:
    status = getattr(response, "Status", None)
    if status is None:
        return SendResult(None, "no C-STORE response (timeout, abort or connection lost)")
    return SendResult(int(status), str(getattr(response, "ErrorComment", "") or ""), transcoded_to)
