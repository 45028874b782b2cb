"""C-MOVE and C-GET SCP: what a retrieve does, from the request to its final response.

pynetdicom's own retrieve SCP (``QueryRetrieveServiceClass._move_scp`` /
``_get_scp``, driven by an ``EVT_C_MOVE`` generator) takes a data set in
memory per instance, answers a destination it cannot reach with 0xA801
("unknown") and negotiates the destination association itself. The
:class:`Retriever` of a :class:`~pacs_bridge.server.BridgeServer` serves them
instead (pynetdicom is told so in :mod:`pacs_bridge._pynetdicom_compat`):

* C-MOVE: the Move Destination is looked up by AE title in the destination
  table (``[destinations.NAME]``, the one forwarding uses); unknown, or not
  allowed for the calling AE (``[server.move_destinations]``) → 0xA801.
  The sub-operations run on a new association to it (timeouts
  ``destination.timeout_s``), each file in its own transfer syntax
  (:mod:`pacs_bridge.qr.suboperations`); a destination that cannot be reached
  fails every sub-operation (0xA702 with the counts and the Failed SOP
  Instance UID List), it is not "unknown"; over TLS, a failed handshake is
  logged and named in the Error Comment.
* C-GET: the sub-operations run on the requester's association, on the
  storage contexts it proposed with the SCP role (SCP/SCU role selection);
  a file whose transfer syntax it did not accept goes transcoded losslessly
  to an uncompressed syntax it accepted, else fails.
* Both: a Pending response after each sub-operation (remaining, completed,
  failed, warning); C-CANCEL checked before each sub-operation (0xFE00 with
  the counts); the final response Success, Warning 0xB000 or Failure 0xA702
  with the Failed SOP Instance UID List; one log line per retrieve. A calling
  AE without the ``move`` / ``get`` permission (``[server.permissions]``) is
  refused the context at negotiation, and 0x0124 (Not Authorised) should a
  request reach us anyway.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from io import BytesIO
from typing import TYPE_CHECKING, Any, Protocol

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dsutils import decode, encode
from pynetdicom.service_class import QueryRetrieveServiceClass

from archive.forward.config import Destination
from archive.index.retrieve import RetrievableInstance, RetrieveKeys
from pacs_bridge import _pynetdicom_compat
from pacs_bridge.config import BridgeSettings
from pacs_bridge.forward.association import open_association, requested_contexts, split_for_contexts
from pacs_bridge.peers import Permission
from pacs_bridge.qr.identifier import RETRIEVE_SOP_CLASSES, IdentifierError, retrieve_keys
from pacs_bridge.qr.suboperations import SubOperations, send_instance
from pacs_bridge.reactor import use_waiting_reactor
from pacs_bridge.tls import DestinationContext, client_context

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.presentation import PresentationContext

LOGGER = logging.getLogger(__name__)

#: Most instances one retrieve may name (the counts are US, PS3.4 C.4.2.1.4).
MAX_SUBOPERATIONS = 65535

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
WARNING = 0xB000
NOT_AUTHORISED = 0x0124
OUT_OF_RESOURCES_MATCHES = 0xA701
OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000


class RetrieveIndex(Protocol):
    """What a retrieve needs of ``Archive.index`` (``archive.index.store.IndexStore``)."""

    def retrievable(self, keys: RetrieveKeys, *, limit: int) -> list[RetrievableInstance]:
        """The instances the keys name, with absolute paths."""
        ...


class RetrieveSource(Protocol):
    """What a retrieve needs of ``archive.archive.Archive``: its index."""

    @property
    def index(self) -> RetrieveIndex:
        """The archive's index store."""
        ...


class _RefusalError(Exception):
    """A retrieve answered with one final status before any sub-operation."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


class Retriever:
    """Serves C-MOVE and C-GET for one receiver.

    Parameters
    ----------
    archive : RetrieveSource
        The open archive.
    settings : BridgeSettings
        Permissions and move destinations per calling AE (:meth:`BridgeSettings.permissions_of`,
        :meth:`BridgeSettings.move_destinations_of`).
    destinations : mapping of str to archive.forward.config.Destination
        The destination table (name → destination); C-MOVE finds the Move
        Destination by its ``ae_title``.
    """

    def __init__(
        self,
        archive: RetrieveSource,
        settings: BridgeSettings,
        destinations: Mapping[str, Destination],
    ) -> None:
        self.archive = archive
        self.settings = settings
        self.destinations = dict(destinations)
        self._releases: set[threading.Thread] = set()
        self._releases_lock = threading.Lock()

    def close(self) -> None:
        """Wait for the destination associations still being released (each bounded by its timeouts)."""
        with self._releases_lock:
            pending = list(self._releases)
        for thread in pending:
            thread.join()

    def _release_later(self, assoc: Association) -> None:
        """Release ``assoc`` on a thread of its own, so the requester's A-RELEASE is answered meanwhile.

        pynetdicom's release ends by stopping the association's threads in 10 ms steps
        (``Association.kill``): about 10 ms in which the C-MOVE's own association
        could not answer the requester's A-RELEASE-RQ, which follows the final response.
        """

        def release() -> None:
            try:
                _end(assoc)
            finally:
                with self._releases_lock:
                    self._releases.discard(threading.current_thread())

        thread = threading.Thread(target=release, name="c-move-release", daemon=True)
        with self._releases_lock:
            self._releases.add(thread)
        thread.start()

    def destination_for(self, ae_title: str) -> Destination | None:
        """The configured destination whose AE title is ``ae_title``, or ``None``."""
        title = ae_title.strip()
        for destination in self.destinations.values():
            if destination.ae_title.strip() == title:
                return destination
        return None

    # -- C-MOVE ------------------------------------------------------------------------------------

    def move(self, scp: QueryRetrieveServiceClass, req: C_MOVE, context: PresentationContext) -> None:
        """Serve one C-MOVE request on ``scp.assoc`` (called on the association's thread)."""
        started = time.monotonic()
        calling_ae, address = _peer(scp.assoc)
        destination_ae = str(req.MoveDestination or "").strip()
        respond = _Responder(scp, req, context, C_MOVE)
        try:
            self._check_permission(scp, Permission.MOVE, calling_ae)
            destination = self.destination_for(destination_ae)
            if destination is None:
                raise _RefusalError(
                    MOVE_DESTINATION_UNKNOWN,
                    f"move destination {destination_ae!r} is not in the destination table",
                )
            allowed = self.settings.move_destinations_of(calling_ae)
            if allowed is not None and destination_ae not in allowed:
                raise _RefusalError(
                    MOVE_DESTINATION_UNKNOWN,
                    f"move destination {destination_ae!r} is not allowed for calling AE {calling_ae!r} "
                    "([server.move_destinations])",
                )
            items = self._items(req, context)
        except _RefusalError as refusal:
            respond.final(refusal.status, None, refusal.comment)
            _log(
                "C-MOVE", calling_ae, address, destination_ae, None, refusal.status, started, refusal.comment
            )
            return
        counts = SubOperations(len(items))
        if not items:
            respond.final(SUCCESS, counts)
            _log("C-MOVE", calling_ae, address, destination_ae, counts, SUCCESS, started)
            return
        status, comment = self._move_to(scp, req, respond, destination, items, counts)
        _log("C-MOVE", calling_ae, address, destination_ae, counts, status, started, comment)

    def _move_to(
        self,
        scp: QueryRetrieveServiceClass,
        req: C_MOVE,
        respond: _Responder,
        destination: Destination,
        items: Sequence[RetrievableInstance],
        counts: SubOperations,
    ) -> tuple[int, str]:
        """The sub-operations on new associations to ``destination`` (one unless >128 contexts).

        The last association is released after the final response (every C-STORE
        response is in by then), on a thread of its own, so the requester waits
        neither for that release nor for it to end before its own is answered.
        """
        where = f"{destination.ae_title}@{destination.host}:{destination.port}"
        ssl_context = client_context(self.settings.tls) if destination.tls else None
        originator = (str(scp.ae.ae_title), int(req.MessageID or 0))
        comment = ""
        sent = 0
        last_assoc: Association | None = None
        for group in split_for_contexts(items, commitment=False):
            contexts = requested_contexts(group, commitment=False)
            try:
                store_assoc = open_association(
                    destination,
                    contexts,
                    ssl_context=ssl_context,
                    evt_handlers=[(evt.EVT_CONN_OPEN, self._on_destination_open)],
                )
            except Exception as exc:  # an unreachable destination fails the sub-operations
                LOGGER.warning("C-MOVE: cannot associate with %s: %s", where, exc)
                store_assoc = None
            if store_assoc is None or not store_assoc.is_established:
                counts.fail(item.sop_instance_uid for item in group)
                comment = _not_associated(where, ssl_context)
                if counts.remaining:
                    respond.pending(counts)
                sent += len(group)
                continue
            try:
                ended = self._send(
                    scp,
                    req,
                    respond,
                    store_assoc,
                    group,
                    counts,
                    transcode=destination.transcode,
                    originator=originator,
                    first_index=sent,
                )
            except BaseException:
                _end(store_assoc)
                raise
            sent += len(group)
            if ended is None and sent == len(items) and store_assoc.is_established:
                # Every C-STORE response is in: the final response need not wait for the release.
                last_assoc = store_assoc
            else:
                _end(store_assoc)
            if ended is not None:
                return ended
        try:
            return respond.final_after(counts, comment), comment
        finally:
            if last_assoc is not None:
                self._release_later(last_assoc)

    def _on_destination_open(self, event: Any) -> None:
        """``EVT_CONN_OPEN`` of a destination association: Nagle off, the fast C-STORE sender on.

        The sender (:func:`pacs_bridge._pynetdicom_compat.fast_send_c_store`) and the
        waiting association loop (:mod:`pacs_bridge.reactor`: each send's pause and
        its response without pynetdicom's 1 ms polls) are used unless
        ``pynetdicom_patches = false`` (or pynetdicom is not the tested version).
        """
        _pynetdicom_compat.set_tcp_nodelay(event.assoc)
        if self.settings.pynetdicom_patches and _pynetdicom_compat.install_send_guard(event.assoc):
            use_waiting_reactor(event.assoc, self.settings.poll_interval_ms / 1000.0)

    # -- C-GET -------------------------------------------------------------------------------------

    def get(self, scp: QueryRetrieveServiceClass, req: C_GET, context: PresentationContext) -> None:
        """Serve one C-GET request: C-STORE sub-operations on the requester's own association."""
        started = time.monotonic()
        calling_ae, address = _peer(scp.assoc)
        respond = _Responder(scp, req, context, C_GET)
        try:
            self._check_permission(scp, Permission.GET, calling_ae)
            items = self._items(req, context)
        except _RefusalError as refusal:
            respond.final(refusal.status, None, refusal.comment)
            _log("C-GET", calling_ae, address, None, None, refusal.status, started, refusal.comment)
            return
        counts = SubOperations(len(items))
        if not items:
            respond.final(SUCCESS, counts)
            _log("C-GET", calling_ae, address, None, counts, SUCCESS, started)
            return
        # The requester's storage contexts decide: a file in a syntax it did not accept is sent
        # transcoded losslessly to an uncompressed one it did accept, if any.
        ended = self._send(
            scp, req, respond, scp.assoc, items, counts, transcode=True, originator=None, first_index=0
        )
        status, comment = ended if ended is not None else (respond.final_after(counts, ""), "")
        _log("C-GET", calling_ae, address, None, counts, status, started, comment)

    # -- shared ------------------------------------------------------------------------------------

    def _check_permission(self, scp: QueryRetrieveServiceClass, service: Permission, calling_ae: str) -> None:
        # The negotiation already refused the context to an AE without the permission
        # (pacs_bridge.access.contexts_for); checked again here, where the request is served.
        if service not in self.settings.permissions_of(calling_ae, str(scp.assoc.requestor.address)):
            raise _RefusalError(
                NOT_AUTHORISED,
                f"calling AE {calling_ae!r} may not C-{service.value.upper()} ([server.permissions])",
            )

    def _items(self, req: C_MOVE | C_GET, context: PresentationContext) -> list[RetrievableInstance]:
        """The instances the request's identifier names (refused: :class:`_RefusalError`)."""
        model, _ = RETRIEVE_SOP_CLASSES[str(context.abstract_syntax)]
        syntax = context.transfer_syntax[0]
        try:
            if req.Identifier is None:
                raise IdentifierError("the request has no identifier")
            identifier = decode(
                req.Identifier, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated
            )
            keys = retrieve_keys(identifier, model)
        except IdentifierError as exc:
            raise _RefusalError(IDENTIFIER_DOES_NOT_MATCH, str(exc)) from exc
        except Exception as exc:  # an undecodable identifier is refused, not raised
            raise _RefusalError(
                IDENTIFIER_DOES_NOT_MATCH, f"the identifier cannot be decoded: {exc}"
            ) from exc
        try:
            items = self.archive.index.retrievable(keys, limit=MAX_SUBOPERATIONS + 1)
        except Exception as exc:  # an index error refuses the retrieve
            LOGGER.exception("retrieve: index lookup failed")
            raise _RefusalError(UNABLE_TO_PROCESS, f"the archive index cannot be read: {exc}") from exc
        if len(items) > MAX_SUBOPERATIONS:
            raise _RefusalError(
                OUT_OF_RESOURCES_MATCHES,
                f"more than {MAX_SUBOPERATIONS} instances match; retrieve fewer (by series or instance)",
            )
        return items

    def _send(
        self,
        scp: QueryRetrieveServiceClass,
        req: C_MOVE | C_GET,
        respond: _Responder,
        store_assoc: Association,
        items: Sequence[RetrievableInstance],
        counts: SubOperations,
        *,
        transcode: bool,
        originator: tuple[str, int] | None,
        first_index: int,
    ) -> tuple[int, str] | None:
        """The sub-operations of ``items``, a Pending response after each.

        Returns
        -------
        (status, comment) or None
            The final status when the retrieve ended early (C-CANCEL: its response
            is sent; the requester gone; the sub-operations' association lost: the
            rest fail and the final response is sent), else ``None``.
        """
        message_id = int(req.MessageID or 0)
        for index, item in enumerate(items):
            if _requester_gone(scp.assoc):
                return UNABLE_TO_PROCESS, "the requester's association ended during the retrieve"
            if scp.is_cancelled(message_id):
                respond.final(CANCEL, counts)
                return CANCEL, "cancelled by the requester (C-CANCEL)"
            if not store_assoc.is_established:
                counts.fail(rest.sop_instance_uid for rest in items[index:])
                comment = "the association carrying the sub-operations ended"
                return respond.final_after(counts, comment), comment
            result = send_instance(
                store_assoc,
                item,
                transcode=transcode,
                msg_id=(message_id + first_index + index + 1) % 65536 or 1,
                originator_aet=originator[0] if originator else None,
                originator_id=originator[1] if originator else None,
            )
            if result.status != SUCCESS:
                LOGGER.info(
                    "sub-operation %s: status %s%s",
                    item.sop_instance_uid,
                    "none" if result.status is None else f"0x{result.status:04X}",
                    f" ({result.comment})" if result.comment else "",
                )
            counts.record(item.sop_instance_uid, result.status)
            if counts.remaining:
                respond.pending(counts)
        return None


class _Responder:
    """Builds and sends the C-MOVE / C-GET responses of one request."""

    def __init__(
        self,
        scp: QueryRetrieveServiceClass,
        req: C_MOVE | C_GET,
        context: PresentationContext,
        kind: Callable[[], C_MOVE | C_GET],
    ) -> None:
        self.scp = scp
        self.req = req
        self.context_id = int(context.context_id or 0)
        self.syntax = context.transfer_syntax[0]
        self.kind = kind

    def _send(
        self, status: int, counts: SubOperations | None, comment: str, *, remaining: bool, failed_list: bool
    ) -> None:
        if not self.scp.assoc.is_established:
            return
        rsp = self.kind()
        rsp.MessageIDBeingRespondedTo = self.req.MessageID
        rsp.AffectedSOPClassUID = self.req.AffectedSOPClassUID
        rsp.Status = status
        if comment and status not in (SUCCESS, PENDING, CANCEL):
            rsp.ErrorComment = comment[:64]  # type: ignore[assignment] # LO; pynetdicom types it None
        if counts is not None:
            if remaining:
                rsp.NumberOfRemainingSuboperations = counts.remaining
            rsp.NumberOfCompletedSuboperations = counts.completed
            rsp.NumberOfFailedSuboperations = counts.failed
            rsp.NumberOfWarningSuboperations = counts.warning
            if failed_list:
                identifier = Dataset()
                identifier.FailedSOPInstanceUIDList = counts.failed_uids
                encoded = encode(
                    identifier,
                    self.syntax.is_implicit_VR,
                    self.syntax.is_little_endian,
                    self.syntax.is_deflated,
                )
                rsp.Identifier = BytesIO(encoded or b"")
        self.scp.dimse.send_msg(rsp, self.context_id)

    def pending(self, counts: SubOperations) -> None:
        self._send(PENDING, counts, "", remaining=True, failed_list=False)

    def final(self, status: int, counts: SubOperations | None, comment: str = "") -> None:
        cancelled = status == CANCEL
        self._send(
            status,
            counts,
            comment,
            remaining=cancelled,
            failed_list=counts is not None and (cancelled or bool(counts.failed or counts.warning)),
        )

    def final_after(self, counts: SubOperations, comment: str) -> int:
        """The final response once every sub-operation is done; returns its status."""
        if not counts.failed and not counts.warning:
            status = SUCCESS
        elif counts.completed == 0 and counts.warning == 0:
            status = OUT_OF_RESOURCES_SUBOPERATIONS
        else:
            status = WARNING
        self.final(status, counts, comment)
        return status


def _not_associated(where: str, ssl_context: DestinationContext | None) -> str:
    """Why the association to the move destination ``where`` failed; a failed TLS handshake is logged."""
    handshake = ssl_context.pop_handshake_error() if ssl_context is not None else None
    if handshake is None:
        return f"cannot associate with the move destination {where}"
    LOGGER.warning(
        "C-MOVE: TLS handshake with %s failed: %s; expected a certificate for its host signed by "
        "a CA of the system or of [tls] ca, and a TLS 1.2+ protocol both accept",
        where,
        handshake,
    )
    return f"TLS handshake failed: {handshake}; move destination {where}"


def _end(assoc: Association) -> None:
    """Release the sub-operations' association, or abort it when it is no longer established."""
    if assoc.is_established:
        assoc.release()
    else:
        assoc.abort()


def _requester_gone(assoc: Association) -> bool:
    """Whether the requester aborted or its connection closed (seen while we serve its request).

    ``is_established`` changes only when the association's loop runs again, after
    the request is served; an A-ABORT or a closed socket is seen by the DUL thread at once.
    """
    return not assoc.is_established or assoc.acse.is_aborted() or not assoc.dul.is_alive()


def _peer(assoc: Association) -> tuple[str, str]:
    return str(assoc.requestor.ae_title).strip(), f"{assoc.requestor.address}:{assoc.requestor.port}"


def _log(
    what: str,
    calling_ae: str,
    address: str,
    destination: str | None,
    counts: SubOperations | None,
    status: int,
    started: float,
    comment: str = "",
) -> None:
    LOGGER.info(
        "%s from %s@%s%s: %s, status 0x%04X, %.0f ms%s",
        what,
        calling_ae,
        address,
        f" to {destination}" if destination else "",
        counts.summary() if counts is not None else "no sub-operations",
        status,
        (time.monotonic() - started) * 1000.0,
        f" ({comment})" if comment else "",
    )


# -- the service class pynetdicom instantiates for every Q/R request ------------------------------

_RETRIEVERS: weakref.WeakKeyDictionary[Any, Retriever] = weakref.WeakKeyDictionary()


def register(ae: Any, retriever: Retriever) -> None:
    """Serve C-MOVE and C-GET of associations of ``ae`` with ``retriever``."""
    _RETRIEVERS[ae] = retriever


def unregister(ae: Any) -> None:
    """Undo :func:`register`."""
    _RETRIEVERS.pop(ae, None)


class RetrieveServiceClass(QueryRetrieveServiceClass):
    """pynetdicom's Query/Retrieve service class whose MOVE and GET are ours on a registered AE.

    On an AE without a :class:`Retriever` (any other pynetdicom AE in the
    process), everything is pynetdicom's own.
    """

    def _move_scp(self, req: C_MOVE, context: PresentationContext) -> None:
        retriever = _RETRIEVERS.get(self.ae)
        if retriever is None or str(context.abstract_syntax) not in RETRIEVE_SOP_CLASSES:
            super()._move_scp(req, context)
            return
        retriever.move(self, req, context)

    def _get_scp(self, req: C_GET, context: PresentationContext) -> None:
        retriever = _RETRIEVERS.get(self.ae)
        if retriever is None or str(context.abstract_syntax) not in RETRIEVE_SOP_CLASSES:
            super()._get_scp(req, context)
            return
        retriever.get(self, req, context)
