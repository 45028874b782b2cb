"""C-STORE sub-operations of a retrieve: presentation contexts, one instance sent, the counts.

Each stored file goes out in its own transfer syntax, streamed from disk by
pynetdicom (``_config.STORE_SEND_CHUNKED_DATASET``, set while a retrieving
server runs; see :mod:`pacs_bridge._pynetdicom_compat`): the data set is never
held in memory. Only when the peer accepted no context for the file's transfer
syntax, and transcoding is allowed, the file is read once with pydicom,
decompressed if it is compressed (pydicom's pixel handlers) and sent in an
uncompressed transfer syntax the peer accepted; that path holds one clip (its
data set and its encoding) in memory at a time. Otherwise the instance fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydicom import dcmread
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.presentation import PresentationContext

from archive.index.retrieve import RetrievableInstance

if TYPE_CHECKING:
    from pynetdicom.association import Association

LOGGER = logging.getLogger(__name__)

#: Transfer syntaxes a transcoded instance is sent in (lossless from any source).
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)
#: Presentation contexts one association can carry (odd IDs 1-255, PS3.8 9.3.2.2).
MAX_CONTEXTS = 128


class MoveDestination(Protocol):
    """What a C-MOVE needs of a destination (``archive.forward.config.Destination``).

    Attributes: ``name`` (its table key), ``ae_title``, ``host``, ``port``,
    ``calling_ae`` (our AE title toward it), ``transcode`` (lossless
    transcoding allowed), ``timeout_s`` (association and DIMSE timeout).
    """

    @property
    def name(self) -> str: ...  # noqa: D102
    @property
    def ae_title(self) -> str: ...  # noqa: D102
    @property
    def host(self) -> str: ...  # noqa: D102
    @property
    def port(self) -> int: ...  # noqa: D102
    @property
    def calling_ae(self) -> str: ...  # noqa: D102
    @property
    def transcode(self) -> bool: ...  # noqa: D102
    @property
    def timeout_s(self) -> float: ...  # noqa: D102


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


def requested_contexts(items: Sequence[RetrievableInstance], *, transcode: bool) -> list[PresentationContext]:
    """Contexts to propose to a move destination for ``items``.

    One context per (SOP class, transfer syntax) of the files, so that each can
    be accepted on its own; with ``transcode``, one more per SOP class offering
    the uncompressed syntaxes. At most :data:`MAX_CONTEXTS` (exact ones first);
    an instance left without a context fails.
    """
    exact: dict[tuple[str, str], None] = {}
    for item in items:
        exact[(item.sop_class_uid, item.transfer_syntax)] = None
    contexts = [_context(sop_class, [syntax]) for sop_class, syntax in exact]
    if transcode:
        classes = dict.fromkeys(sop_class for sop_class, _ in exact)
        contexts += [_context(sop_class, list(UNCOMPRESSED)) for sop_class in classes]
    if len(contexts) > MAX_CONTEXTS:
        LOGGER.warning(
            "%d presentation contexts needed, %d proposed: instances of the others will fail",
            len(contexts),
            MAX_CONTEXTS,
        )
    return contexts[:MAX_CONTEXTS]


def _context(sop_class: str, syntaxes: list[str]) -> PresentationContext:
    context = PresentationContext()
    context.abstract_syntax = UID(sop_class)
    context.transfer_syntax = [UID(s) for s in syntaxes]
    return context


def _storage_contexts(assoc: Association, sop_class: str) -> list[Any]:
    """Accepted contexts on which we may send C-STORE of ``sop_class`` (as SCU)."""
    return [
        cx
        for cx in assoc.accepted_contexts
        if cx.abstract_syntax == sop_class and cx.as_scu is not False and cx.transfer_syntax
    ]


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
    contexts = _storage_contexts(assoc, item.sop_class_uid)
    if not contexts:
        return SendResult(
            None, f"the peer accepted no presentation context for SOP class {item.sop_class_uid}"
        )
    kwargs: dict[str, Any] = {"msg_id": msg_id}
    if originator_aet is not None:
        kwargs.update(originator_aet=originator_aet, originator_id=originator_id)
    exact = any(cx.transfer_syntax[0] == item.transfer_syntax for cx in contexts)
    try:
        if exact:
            response = assoc.send_c_store(Path(item.path), **kwargs)
            return _result(response)
        targets = [cx.transfer_syntax[0] for cx in contexts if cx.transfer_syntax[0] in UNCOMPRESSED]
        if not transcode or not targets:
            offered = ", ".join(sorted({str(cx.transfer_syntax[0]) for cx in contexts}))
            why = (
                "transcoding is not allowed for this destination" if not transcode else "none is uncompressed"
            )
            return SendResult(
                None,
                f"the peer accepted {offered} for SOP class {item.sop_class_uid}, not the file's "
                f"{item.transfer_syntax}, and {why}",
            )
        dataset = dcmread(item.path)
        if dataset.file_meta.TransferSyntaxUID.is_compressed:
            # to Explicit VR Little Endian (pynetdicom converts among uncompressed); the same instance
            dataset.decompress(generate_instance_uid=False)
        response = assoc.send_c_store(dataset, **kwargs)
        return _result(response, transcoded_to=str(targets[0]))
    except Exception as exc:  # a sub-operation failure is counted, never raised
        LOGGER.warning("C-STORE sub-operation of %s failed: %s", item.sop_instance_uid, exc)
        return SendResult(None, f"{type(exc).__name__}: {exc}")


def _result(response: Any, transcoded_to: str | None = None) -> SendResult:
    status = getattr(response, "Status", None)
    if status is None:
        return SendResult(None, "no C-STORE response (timeout, abort or connection lost)")
    return SendResult(int(status), str(getattr(response, "ErrorComment", "") or ""), transcoded_to)
