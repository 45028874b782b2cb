"""One association toward a destination: presentation contexts, transcoding decisions, C-STORE.

Contexts are negotiated from the stored files themselves: one presentation
context per (SOP class, transfer syntax) of the batch, so the PACS accepts or
refuses each file's own syntax, and one more context per SOP class offering
the uncompressed syntaxes: the syntax to transcode to when the destination
allows it, and in any case what tells a refused transfer syntax (that context
accepted) from a refused SOP class (every context of the class refused; PACSs
do not reliably say which in the A-ASSOCIATE-AC result).

A file goes out **as stored** (its data set bytes, read from the file after its
meta information, :func:`send_stored`) whenever its own syntax was accepted.
Otherwise it is transcoded only when the destination's ``transcode`` is on
*and* the change is lossless: between uncompressed syntaxes, or decoding a
losslessly compressed one (RLE, JPEG lossless, JPEG-LS lossless, JPEG 2000
lossless). Decoding a lossy syntax (JPEG baseline, MPEG, ...) is refused:
lossy decoders are not bit-exact, so the PACS would not hold what we
hold. Anything else fails the task with the reason.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pydicom
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE
from pynetdicom.presentation import PresentationContext

from archive.forward.config import Destination
from pacs_bridge import _pynetdicom_compat
from pacs_bridge.contexts import StorageCommitmentPushModel

if TYPE_CHECKING:
    from pynetdicom.association import Association

LOGGER = logging.getLogger(__name__)

#: Uncompressed syntaxes: any of them can be re-encoded as any other without loss.
UNCOMPRESSED = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}
)
#: Compressed syntaxes whose decoding gives back exactly the pixels that were encoded.
LOSSLESS_COMPRESSED = frozenset(
    {RLELossless, JPEGLosslessSV1, UID("1.2.840.10008.1.2.4.57"), JPEGLSLossless, JPEG2000Lossless}
)
#: What a transcoded file is sent in, in order of preference.
TRANSCODE_TARGETS = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
#: Presentation contexts one association may propose (PS3.8: odd IDs 1-255).
MAX_CONTEXTS = 128


class StoredFile(Protocol):
    """What these functions need of a file to send: a ``ForwardTask``, or an instance a C-MOVE sends."""

    @property
    def sop_class_uid(self) -> str: ...

    @property
    def transfer_syntax(self) -> str: ...

    @property
    def path(self) -> Path | str: ...


_File = TypeVar("_File", bound=StoredFile)


class TranscodeRefusedError(Exception):
    """A file cannot be sent: its syntax was refused and no lossless transcoding is allowed."""


@dataclass(frozen=True)
class SendPlan:
    """How one file goes out on an association: as stored, or transcoded to ``transfer_syntax``."""

    as_stored: bool
    transfer_syntax: str


def requested_contexts(tasks: Sequence[StoredFile], *, commitment: bool) -> list[PresentationContext]:
    """Presentation contexts for a batch: each file's own (SOP class, syntax), fallbacks, commitment.

    Parameters
    ----------
    tasks : sequence of ForwardTask
        The batch (its SOP classes and the stored files' transfer syntaxes).
    commitment : bool
        Also request Storage Commitment Push Model (SCU role).

    Returns
    -------
    list of PresentationContext
        At most :data:`MAX_CONTEXTS`; raises ``ValueError`` if the batch needs more
        (:func:`split_for_contexts` keeps batches below it).
    """
    pairs: dict[tuple[str, str], None] = {}
    classes: dict[str, None] = {}
    for task in tasks:
        pairs[(task.sop_class_uid, task.transfer_syntax)] = None
        classes[task.sop_class_uid] = None
    contexts: list[PresentationContext] = []
    for sop_class, syntax in pairs:
        contexts.append(_context(sop_class, [syntax]))
    for sop_class in classes:
        contexts.append(_context(sop_class, list(TRANSCODE_TARGETS)))
    if commitment:
        contexts.append(
            _context(StorageCommitmentPushModel, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        )
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(
            f"requested_contexts: a batch needs {len(contexts)} presentation contexts, at most "
            f"{MAX_CONTEXTS} fit one association; split the batch with split_for_contexts"
        )
    return contexts


def contexts_needed(tasks: Sequence[StoredFile], *, commitment: bool) -> int:
    """How many presentation contexts :func:`requested_contexts` would propose for ``tasks``."""
    pairs = {(task.sop_class_uid, task.transfer_syntax) for task in tasks}
    classes = {task.sop_class_uid for task in tasks}
    return len(pairs) + len(classes) + (1 if commitment else 0)


def split_for_contexts(tasks: Sequence[_File], *, commitment: bool) -> list[list[_File]]:
    """Split a batch into groups whose contexts fit one association each (almost always one group)."""
    groups: list[list[_File]] = [[]]
    for task in tasks:
        candidate = [*groups[-1], task]
        if groups[-1] and contexts_needed(candidate, commitment=commitment) > MAX_CONTEXTS:
            groups.append([task])
        else:
            groups[-1] = candidate
    return [group for group in groups if group]


def _context(abstract_syntax: str, syntaxes: list[str]) -> PresentationContext:
    context = PresentationContext()
    context.abstract_syntax = UID(abstract_syntax)
    context.transfer_syntax = [UID(s) for s in syntaxes]
    return context


def plan_send(assoc: Association, task: StoredFile, *, transcode: bool) -> SendPlan:
    """How to send ``task``'s file on ``assoc``, given the contexts the destination accepted.

    Raises
    ------
    TranscodeRefusedError
        With the reason, when the file's syntax was refused and transcoding is off,
        not lossless, or the SOP class was refused altogether.
    """
    accepted = [
        str(cx.transfer_syntax[0])
        for cx in assoc.accepted_contexts
        if cx.abstract_syntax == task.sop_class_uid and cx.transfer_syntax
    ]
    if task.transfer_syntax in accepted:
        return SendPlan(as_stored=True, transfer_syntax=task.transfer_syntax)
    name = _name(task.transfer_syntax)
    if not accepted:
        raise TranscodeRefusedError(
            f"destination refused SOP class {task.sop_class_uid} ({_name(task.sop_class_uid)}) in "
            f"{name} and in the uncompressed transfer syntaxes; expected a destination that stores "
            "this SOP class: configure it there, then `usarchive forward retry`"
        )
    if not transcode:
        raise TranscodeRefusedError(
            f"destination refused transfer syntax {task.transfer_syntax} ({name}) for SOP class "
            f"{task.sop_class_uid}; set transcode = true for this destination (lossless transcoding) "
            "or let the destination accept it, then `usarchive forward retry`"
        )
    if task.transfer_syntax not in UNCOMPRESSED and task.transfer_syntax not in LOSSLESS_COMPRESSED:
        raise TranscodeRefusedError(
            f"destination refused transfer syntax {task.transfer_syntax} ({name}) and transcoding it is "
            "not lossless (decoding a lossy syntax is not bit-exact); expected the destination to accept "
            f"{name}: configure it there, then `usarchive forward retry`"
        )
    for target in TRANSCODE_TARGETS:
        if target in accepted:
            return SendPlan(as_stored=False, transfer_syntax=str(target))
    raise TranscodeRefusedError(
        f"destination refused transfer syntax {task.transfer_syntax} ({name}) and accepted no "
        f"uncompressed syntax to transcode to (accepted: {', '.join(map(_name, accepted))})"
    )


def transcoded_dataset(task: StoredFile, plan: SendPlan) -> pydicom.Dataset:
    """The file of ``task`` read and re-encoded losslessly in ``plan.transfer_syntax``.

    Raises
    ------
    TranscodeRefusedError
        If the pixel data cannot be decoded (no decoder for its syntax).
    """
    dataset = pydicom.dcmread(task.path)
    source = UID(task.transfer_syntax)
    target = UID(plan.transfer_syntax)
    if source.is_compressed:
        try:
            dataset.decompress(generate_instance_uid=False)  # the same instance, not a new one
        except (RuntimeError, NotImplementedError, ValueError) as exc:
            raise TranscodeRefusedError(
                f"cannot decode {_name(source)} to transcode it losslessly: {exc}; install a decoder "
                "(pylibjpeg plugins) or let the destination accept the syntax"
            ) from exc
    for _ in dataset.iterall():
        pass  # parse every raw element in the syntax it was read in, before the encoding changes
    # pynetdicom encodes the data set in the accepted context's syntax (implicit/explicit VR,
    # byte order) and refuses a file meta syntax that contradicts the data set's own encoding.
    dataset.file_meta.TransferSyntaxUID = target
    dataset.set_original_encoding(
        target.is_implicit_VR, target.is_little_endian, dataset.original_character_set
    )
    return dataset


def _name(uid: str) -> str:
    try:
        return str(UID(uid).name)
    except (ValueError, KeyError):
        return uid


def open_association(
    destination: Destination,
    contexts: list[PresentationContext],
    *,
    ssl_context: ssl.SSLContext | None,
    evt_handlers: list[Any] | None = None,
) -> Association:
    """Request an association to ``destination`` proposing ``contexts`` (check ``is_established``)."""
    ae = AE(ae_title=destination.calling_ae)
    ae.acse_timeout = destination.timeout_s
    ae.dimse_timeout = destination.timeout_s
    ae.network_timeout = destination.timeout_s
    ae.connection_timeout = destination.timeout_s
    ae.requested_contexts = contexts
    tls_args = (ssl_context, destination.host) if ssl_context is not None else None
    return ae.associate(
        destination.host,
        destination.port,
        ae_title=destination.ae_title,
        tls_args=tls_args,
        evt_handlers=evt_handlers,
    )


def send_stored(assoc: Association, path: Path | str, **kwargs: Any) -> Any:
    """C-STORE the stored file at ``path`` as stored; the peer's status data set (empty: none came).

    By the fast sender (:func:`pacs_bridge._pynetdicom_compat.fast_send_c_store`: the
    PDUs written from this thread, many per system call) on an association that has
    its guard (installed from ``EVT_CONN_OPEN``, tested pynetdicom, plain TCP), else
    by pynetdicom's ``send_c_store`` (the file streamed, ``STORE_SEND_CHUNKED_DATASET``).
    ``kwargs`` are ``send_c_store``'s (``msg_id``, ``originator_aet``, ...).
    """
    response = _pynetdicom_compat.fast_send_c_store(assoc, Path(path), **kwargs)
    if response is None:
        response = assoc.send_c_store(Path(path), **kwargs)
    return response


def rejection_reason(assoc: Association) -> tuple[str, bool]:
    """Why an association was not established, and whether the refusal is permanent."""
    if assoc.is_rejected:
        primitive = assoc.acceptor.primitive
        result = getattr(primitive, "result", None)
        source = getattr(primitive, "result_source", None)
        reason = getattr(primitive, "diagnostic", None)
        permanent = result == 0x01
        text = getattr(primitive, "reason_str", None) or f"reason {reason}"
        return (
            f"association rejected ({'permanent' if permanent else 'transient'}, source {source}: {text})",
            permanent,
        )
    # pynetdicom reports a refused or failed connection as an abort too.
    return (
        "association not established (connection refused, reset or timed out, or aborted by the peer)",
        False,
    )


__all__ = [
    "LOSSLESS_COMPRESSED",
    "MAX_CONTEXTS",
    "TRANSCODE_TARGETS",
    "UNCOMPRESSED",
    "SendPlan",
    "TranscodeRefusedError",
    "open_association",
    "plan_send",
    "rejection_reason",
    "requested_contexts",
    "send_stored",
    "split_for_contexts",
    "transcoded_dataset",
]
