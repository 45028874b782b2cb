"""The DICOM receiver: a pynetdicom acceptor storing into an archive.

:class:`BridgeServer` wires the pieces together: access control
(:mod:`pacs_bridge.access`), presentation contexts (:mod:`pacs_bridge.contexts`),
streaming into spool files (:mod:`pacs_bridge.spool`), the C-STORE handler
(:mod:`pacs_bridge.store`) and storage commitment (:mod:`pacs_bridge.commitment`;
the reports of destinations we forward to arrive here too, as N-EVENT-REPORTs
handed to :mod:`pacs_bridge.forward.commitment`).

pynetdicom keeps some configuration in module globals (``pynetdicom._config``):
:meth:`BridgeServer.start` sets ``STORE_RECV_CHUNKED_DATASET = True`` once for
the process, which is how pynetdicom streams data sets to disk instead of
memory. pynetdicom's two loops per association sleep between passes; both
are replaced when a connection opens: its DUL loop waits on its socket and on
the PDUs it is asked to send (:mod:`pacs_bridge.dul_loop`), its association
loop waits for the next DIMSE message (:mod:`pacs_bridge.reactor`), each at
most ``BridgeSettings.poll_interval_ms`` when nothing happens.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, cast

from pynetdicom import evt
from pynetdicom.transport import ThreadedAssociationServer

from archive.forward.config import Destination
from archive.worklist.model import WorklistSettings
from pacs_bridge import _pynetdicom_compat, spool
from pacs_bridge.access import AccessControlledAE, AccessPolicy, contexts_for
from pacs_bridge.commitment import CommitmentChecker, CommitmentService
from pacs_bridge.config import BridgeSettings
from pacs_bridge.contexts import receiving_contexts, refused_context_lines, supported_contexts
from pacs_bridge.dul_loop import use_waiting_dul
from pacs_bridge.pdu_guard import BAD_CALLING_AE_ATTRIBUTE, PduLimits
from pacs_bridge.peers import Permission
from pacs_bridge.qr import service as retrieve
from pacs_bridge.qr.find import FindService, QueryableArchive, extended_negotiation_reply
from pacs_bridge.reactor import use_waiting_reactor
from pacs_bridge.store import Ingestor, StoreHandler, peer_of
from pacs_bridge.tls import server_context
from pacs_bridge.worklist.find import WorklistService, find_dispatcher
from pacs_bridge.worklist.mpps import StepService

if TYPE_CHECKING:
    from pynetdicom.events import Event

LOGGER = logging.getLogger(__name__)

#: Default time SIGTERM waits for in-flight stores before aborting what is left.
DEFAULT_DRAIN_TIMEOUT_S = 30.0
#: How often the receiver looks for spool files of associations that have ended.
SELF_CHECK_INTERVAL_S = 5.0


def _association_alive(owner: object) -> bool:
    """Whether the association owning a spool file is still running (its thread or its DUL's)."""
    if not isinstance(owner, threading.Thread):
        return False
    dul = getattr(owner, "dul", None)
    return owner.is_alive() or (isinstance(dul, threading.Thread) and dul.is_alive())


class ReceivingArchive(Ingestor, CommitmentChecker, retrieve.RetrieveSource, Protocol):
    """What the receiver needs of ``archive.archive.Archive``."""

    @property
    def staging_dir(self) -> Path:
        """Directory on the store's filesystem for files to ingest with ``move=True``."""
        ...


class _ReceiverServer(ThreadedAssociationServer):
    """pynetdicom's threaded acceptor: deeper accept queue, TLS handshake off the accept loop, caps.

    * ``request_queue_size``: socketserver's default backlog of 5 drops (and
      delays by a SYN retry of about 1 s) connections when several scanners or a
      burst of garbage arrive at once.
    * The TLS handshake is deferred to the association's own thread (first read):
      pynetdicom does it inside ``accept``, where one slow or silent client would
      stall every other connection.
    * ``TCP_NODELAY`` on every accepted connection (see :meth:`get_request`).
    * ``verify_request`` closes a new connection at once when its address
      already has ``max_connections_per_address`` connections open, or when
      ``max_unassociated`` connections are still negotiating: a flood of
      silent connections never gets a thread, and never an association slot
      (those count only established associations, see
      :class:`~pacs_bridge.access.AccessControlledAE`).
    """

    request_queue_size = 128
    bridge_settings: BridgeSettings | None = None

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start the association on the accept thread (it only starts the association's own thread).

        socketserver's threading mix-in would start a thread that starts the
        association thread; until it ran, :meth:`verify_request` could not see
        the connection and a burst from one address would pass its cap.
        """
        self.process_request_thread(request, client_address)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Whether to serve a new connection (``False`` closes it; the refusal is logged)."""
        settings = self.bridge_settings
        if settings is None:
            return True
        address = str(client_address[0])
        from_address = 0
        unassociated = 0
        for assoc in self.active_associations:
            if str(assoc.requestor.address) == address:
                from_address += 1
            if not assoc.is_established:
                unassociated += 1
        if from_address >= settings.max_connections_per_address:
            LOGGER.warning(
                "connection from %s:%s closed: %d connections from that address already "
                "(max_connections_per_address)",
                address,
                client_address[1],
                from_address,
            )
            return False
        if unassociated >= settings.max_unassociated:
            LOGGER.warning(
                "connection from %s:%s closed: %d connections not yet associated (max_unassociated)",
                address,
                client_address[1],
                unassociated,
            )
            return False
        return True

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept a connection; wrap it for TLS without handshaking yet.

        Nagle's algorithm is switched off (``TCP_NODELAY``, as dcmtk does): pynetdicom
        writes a DIMSE message's command and data set as separate PDUs, and a C-FIND's
        pending responses one after another; with Nagle each small write waits for
        the peer's delayed ACK (40 ms on Linux) before leaving.
        """
        assert self.socket is not None
        client, address = self.socket.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address


class BridgeServer:
    """A running (or ready to run) DICOM receiver.

    Parameters
    ----------
    settings : BridgeSettings
        Network, access control and TLS settings.
    archive : ReceivingArchive
        An open ``archive.archive.Archive``; the caller owns and closes it.
    destinations : mapping of str to archive.forward.config.Destination, optional
        The destination table (``[destinations.NAME]``) C-MOVE sends to, by AE title.
        C-MOVE and C-GET are served on the tested pynetdicom only (see
        :mod:`pacs_bridge._pynetdicom_compat`); who may use them is ``settings.access``.

    Examples
    --------
    >>> with Archive.open(archive_settings) as archive:          # doctest: +SKIP
    ...     with BridgeServer(BridgeSettings(port=0, allow_any=True), archive) as server:
    ...         print(server.port)
    """

    def __init__(
        self,
        settings: BridgeSettings,
        archive: ReceivingArchive,
        *,
        destinations: Mapping[str, Destination] | None = None,
    ) -> None:
        self.settings = settings
        self.archive = archive
        self.destinations = dict(destinations or {})
        self._retrieves = _pynetdicom_compat.is_tested_version()
        self._ae: AccessControlledAE | None = None
        self._server: _ReceiverServer | None = None
        self._spool: spool.SpoolDirectory | None = None
        self._store: StoreHandler | None = None
        self._commitment: CommitmentService | None = None
        self._retriever: retrieve.Retriever | None = None
        self._accepted: set[int] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._reaper: threading.Thread | None = None
        self._limits = PduLimits.from_settings(settings)
        self._patched = settings.pynetdicom_patches and _pynetdicom_compat.per_association_patches_enabled()

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("BridgeServer.port: the server is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def active_associations(self) -> int:
        """Number of associations currently open."""
        return 0 if self._ae is None else len(self._ae.active_associations)

    def start(self) -> None:
        """Bind the port and serve in background threads; return at once.

        Raises
        ------
        archive.errors.ConfigError
            If no calling AE title is allowed and ``allow_any`` is not set.
        OSError
            If the port cannot be bound.
        """
        settings = self.settings
        settings.check_access_policy()
        if settings.allow_any:
            LOGGER.warning(
                "access control is OFF (--allow-any): every calling AE title may store into this archive; "
                "use --allow SCANNER_AE[@host] to restrict"
            )
        _pynetdicom_compat.warn_if_untested()
        if not self._retrieves:
            LOGGER.warning(
                "C-MOVE and C-GET are not served: they need pynetdicom %s.x", _pynetdicom_compat.TESTED_MINOR
            )
        if not settings.pynetdicom_patches:
            LOGGER.warning(
                "pynetdicom_patches = false: pynetdicom's own association loops and PDU reader run "
                "(no PDU length limits, no ARTIM window of our own)"
            )
        spool.install()
        self._spool = spool.SpoolDirectory(self.archive.staging_dir)
        self._store = StoreHandler(
            self.archive, self._spool, settings.aet, index_busy_timeout_s=settings.index_busy_timeout_s
        )
        self._commitment = CommitmentService(self.archive, settings)

        policy = AccessPolicy(settings.allow, allow_any=settings.allow_any, permissions=settings.permissions)
        ae = AccessControlledAE(settings.aet, policy)
        ae.maximum_pdu_size = settings.max_pdu_bytes
        ae.maximum_associations = settings.max_associations
        ae.network_timeout = settings.network_timeout_s
        ae.acse_timeout = settings.acse_timeout_s
        ae.dimse_timeout = settings.dimse_timeout_s
        for context in supported_contexts(retrieve=self._retrieves):
            # not `ae.supported_contexts = ...`: pynetdicom's setter drops the SCP/SCU roles
            ae.add_supported_context(
                cast(str, context.abstract_syntax),
                context.transfer_syntax,
                scu_role=context.scu_role,
                scp_role=context.scp_role,
            )
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_SOP_EXTENDED, self._on_negotiation),
            (evt.EVT_N_ACTION, self._commitment.handle_action),
            (evt.EVT_DIMSE_SENT, self._commitment.handle_sent),
            (evt.EVT_N_EVENT_REPORT, self._on_event_report),
            (evt.EVT_CONN_OPEN, self._on_connection),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]
        if hasattr(self.archive, "engine") and hasattr(self.archive, "store"):
            queryable = cast(QueryableArchive, self.archive)
            find = FindService(queryable, settings.match_settings, settings.aet)
            archive_settings = getattr(self.archive, "settings", None)
            worklist_settings = getattr(archive_settings, "worklist", None) or WorklistSettings()
            worklist = WorklistService(queryable, settings.match_settings, worklist_settings)
            steps = StepService(queryable)
            handlers += [
                (evt.EVT_C_FIND, find_dispatcher(find, worklist)),
                (evt.EVT_N_CREATE, steps.create),
                (evt.EVT_N_SET, steps.set),
            ]
        ssl_context = server_context(settings.tls) if settings.tls is not None else None
        spool.register(ae, self._spool)
        if self._retrieves:
            _pynetdicom_compat.install_retrieve_patches(retrieve.RetrieveServiceClass)
            self._retriever = retrieve.Retriever(self.archive, settings, self.destinations)
            retrieve.register(ae, self._retriever)
        try:
            server = ae.make_server(
                (settings.host, settings.port),
                evt_handlers=handlers,
                ssl_context=ssl_context,
                server_class=_ReceiverServer,
            )
        except BaseException:
            self._stop_retrieves(ae)
            spool.unregister(ae)
            spool.uninstall()
            self._spool.close()
            self._commitment.close()
            raise
        # As AE.start_server(block=False) does: register the server with the AE, serve in a thread.
        _pynetdicom_compat.register_server(ae, server)
        _pynetdicom_compat.use_cheap_context_copies(server)
        threading.Thread(
            target=server.serve_forever, name=f"bridge-accept-{settings.aet}", daemon=True
        ).start()
        self._server = cast(_ReceiverServer, server)
        self._server.bridge_settings = settings
        self._ae = ae
        self._stopping.clear()
        self._reaper = threading.Thread(target=self._reap, args=(ae,), name="association-reaper", daemon=True)
        self._reaper.start()
        LOGGER.info(
            "listening on %s:%d as %s%s (max PDU %s, up to %d associations, %d connections per address, "
            "%d unassociated, A-ASSOCIATE-RQ within %.0f s; PDU buffers at most %d MiB); spooling into %s",
            settings.host,
            self.port,
            settings.aet,
            " over TLS" if ssl_context else "",
            settings.max_pdu_bytes or f"not advertised, read up to {settings.pdu_read_limit}",
            settings.max_associations,
            settings.max_connections_per_address,
            settings.max_unassociated,
            settings.associate_timeout_s,
            settings.buffered_memory_bound() // (1024 * 1024),
            self._spool.path,
        )

    def reload_access(self, settings: BridgeSettings, destinations: Mapping[str, Destination]) -> None:
        """Serve new associations and retrieves with ``settings``' access tables and ``destinations``.

        For SIGHUP (:mod:`pacs_bridge.reload`): only the allow-list, the permissions and
        the move destinations of ``settings`` are new; established associations keep
        the contexts they negotiated.
        """
        policy = AccessPolicy(settings.allow, allow_any=settings.allow_any, permissions=settings.permissions)
        self.settings, self.destinations = settings, dict(destinations)
        if self._server is not None:
            self._server.bridge_settings = settings
        if self._ae is not None:
            self._ae.policy = policy
        if self._retriever is not None:
            self._retriever.settings, self._retriever.destinations = settings, dict(destinations)

    def stop(self, drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S) -> None:
        """Stop accepting, let data sets being received finish, then close everything.

        Parameters
        ----------
        drain_timeout_s : float
            Longest wait for in-flight stores; associations still open afterwards
            (idle, or still sending) are aborted. An aborted store was never
            answered Success, so nothing acknowledged is lost.
        """
        if self._ae is None or self._server is None:
            return
        ae, server = self._ae, self._server
        server.shutdown()  # stops listening; open associations continue
        self._stopping.set()
        if self._reaper is not None:
            self._reaper.join()
        deadline = time.monotonic() + drain_timeout_s
        while ae.active_associations and time.monotonic() < deadline:
            if self._spool is not None and not self._spool.busy:
                break  # no data set being received or stored
            time.sleep(0.02)
        remaining = len(ae.active_associations)
        if remaining:
            LOGGER.info("aborting %d idle or unfinished associations", remaining)
        ae.shutdown()
        for assoc in list(ae.active_associations):
            assoc.join(timeout=5.0)
        if self._commitment is not None:
            self._commitment.close()
        self._stop_retrieves(ae)
        spool.unregister(ae)
        spool.uninstall()
        if self._spool is not None:
            self._spool.close()
        self._ae = None
        self._server = None
        LOGGER.info("stopped")

    def _stop_retrieves(self, ae: AccessControlledAE) -> None:
        if self._retrieves:
            retrieve.unregister(ae)
            _pynetdicom_compat.remove_retrieve_patches()
        if self._retriever is not None:
            self._retriever.close()

    def __enter__(self) -> BridgeServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _reap(self, ae: AccessControlledAE) -> None:
        """Release the threads of dead connections; every few seconds, remove orphaned spool files.

        pynetdicom's acceptor waits up to the ACSE timeout for the A-ASSOCIATE
        request even when the connection is already gone (its DUL thread ended on
        garbage, a reset, or an internal state error). Such half-dead
        associations count against ``max_associations`` and could lock scanners
        out after a burst of malformed connections, so every 0.25 s we hand the
        waiting thread the "nothing arrived" it would get at the timeout.

        Every :data:`SELF_CHECK_INTERVAL_S` the spool directory is checked
        for files whose association has ended (:meth:`SpoolDirectory.sweep_orphans`).
        """
        woken: set[int] = set()
        next_check = time.monotonic() + SELF_CHECK_INTERVAL_S
        while not self._stopping.wait(0.25):
            if time.monotonic() >= next_check and self._spool is not None:
                next_check = time.monotonic() + SELF_CHECK_INTERVAL_S
                try:
                    self._spool.sweep_orphans(_association_alive)
                except OSError as exc:
                    LOGGER.warning("self-check of the spool directory failed: %s", exc)
            for assoc in list(ae.active_associations):
                if id(assoc) in woken or assoc.is_established or not assoc.is_acceptor:
                    continue
                dul: Any = assoc.dul
                if getattr(assoc, "_started_dul", False) and not dul.is_alive():
                    woken.add(id(assoc))
                    dul.to_user_queue.put(None)  # read as "timed out waiting for A-ASSOCIATE-RQ"
            alive = {id(assoc) for assoc in ae.active_associations}
            woken &= alive

    # Event handlers: each logs, none raises into pynetdicom.

    def _on_echo(self, event: Event) -> int:
        calling_ae, address = peer_of(event)
        LOGGER.info("C-ECHO from %s@%s", calling_ae, address)
        return 0x0000

    def _on_negotiation(self, event: Event) -> dict[Any, bytes]:
        """Offer the requester only the contexts of services it may use; answer extended negotiation.

        pynetdicom triggers EVT_SOP_EXTENDED on the association's thread while
        negotiating as acceptor, after reading the calling AE title and before
        negotiating presentation contexts (``ACSE._negotiate_as_acceptor``,
        whose source :mod:`pacs_bridge._pynetdicom_compat` pins), so this is
        where the acceptor's supported contexts are narrowed to the
        requester's permissions (the refused ones get result 0x01, user
        rejection, in the A-ASSOCIATE-AC).
        """
        acceptor = event.assoc.acceptor
        requestor = event.assoc.requestor
        calling_ae = str(requestor.ae_title).strip()
        permissions = self.settings.permissions_of(calling_ae, str(requestor.address))
        offered = contexts_for(acceptor.supported_contexts, permissions)
        if Permission.GET in permissions and Permission.STORE not in permissions:
            # C-GET without store: storage contexts only where the requester asked the SCP role
            # (to receive), and without accepting its SCU role (it cannot store through them).
            offered += receiving_contexts(acceptor.supported_contexts, requestor.role_selection)
        acceptor.supported_contexts = offered
        app_info: dict[Any, bytes] = getattr(event, "app_info", {}) or {}
        return extended_negotiation_reply(app_info)

    def _on_event_report(self, event: Event) -> tuple[int, Any]:
        """Storage commitment results from a destination we forwarded to (:mod:`pacs_bridge.forward`)."""
        ledger = getattr(self.archive, "forward", None)
        if ledger is None:
            calling_ae, address = peer_of(event)
            LOGGER.warning(
                "N-EVENT-REPORT from %s@%s refused: this archive does not forward", calling_ae, address
            )
            return 0x0110, None
        from pacs_bridge.forward.commitment import CommitmentReports

        return CommitmentReports(ledger)(event)

    def _on_connection(self, event: Event) -> None:
        _pynetdicom_compat.set_tcp_nodelay(event.assoc)  # responses and C-GET sub-operations at once
        # Before pynetdicom starts the association's DUL thread, which this loop replaces.
        if not self._patched:
            return
        use_waiting_dul(
            event.assoc,
            self.settings.poll_interval_ms / 1000.0,
            limits=self._limits,
            on_exit=self._on_transport_gone,
        )
        # C-GET sub-operations go out on this association by the fast sender, and every
        # response (C-FIND's one per match) is written by the thread that sends it.
        if _pynetdicom_compat.install_send_guard(event.assoc):
            _pynetdicom_compat.install_direct_send_msg(event.assoc)

    def _on_transport_gone(self, assoc: Any) -> None:
        # The DUL loop has ended and closed the socket: however the association ended (also
        # without EVT_CONN_CLOSE, after a violation), its unfinished spool files go now.
        if not assoc.is_established and not assoc.is_released:
            # An acceptor still waiting for the A-ASSOCIATE-RQ would wait out the ACSE timeout:
            # hand it the "nothing arrived" now (as the reaper does for other dead connections).
            assoc.dul.to_user_queue.put(None)
        if self._spool is not None:
            discarded = self._spool.discard(assoc)
            if discarded:
                LOGGER.info("discarded %d unfinished data set(s) of an ended association", discarded)

    def _on_accepted(self, event: Event) -> None:
        calling_ae, address = peer_of(event)
        with self._lock:
            self._accepted.add(id(event.assoc))
        if self._patched:
            use_waiting_reactor(event.assoc, self.settings.poll_interval_ms / 1000.0)
        if self._store is not None:
            self._store.tally(event.assoc)
        contexts = event.assoc.accepted_contexts
        LOGGER.info(
            "association from %s@%s accepted (%d presentation contexts, %s)",
            calling_ae,
            address,
            len(contexts),
            "TLS" if self.settings.tls is not None else "plain TCP",
        )
        for line in refused_context_lines(event.assoc):
            LOGGER.warning("association from %s@%s: %s", calling_ae, address, line)

    def _on_rejected(self, event: Event) -> None:
        calling_ae, address = peer_of(event)
        called_ae = str(event.assoc.acceptor.ae_title).strip()
        primitive: Any = event.assoc.requestor.primitive
        requested_called = str(getattr(primitive, "called_ae_title", called_ae)).strip()
        bad_title = getattr(event.assoc, BAD_CALLING_AE_ATTRIBUTE, None)
        if bad_title is not None:
            why = f"calling AE title {bad_title!r} has control characters or a backslash"
        elif requested_called != self.settings.aet:
            why = f"called AE title {requested_called!r} is not ours ({self.settings.aet!r})"
        elif self._ae is not None and not self._ae.policy.admits(calling_ae, address.rpartition(":")[0]):
            why = "calling AE title not allowed from this address (see --allow)"
        else:
            why = "too many associations"
        LOGGER.warning("association from %s@%s rejected: %s", calling_ae, address, why)

    def _on_closed(self, event: Event) -> None:
        assoc = event.assoc
        with self._lock:
            was_accepted = id(assoc) in self._accepted
            self._accepted.discard(id(assoc))
        discarded = self._spool.discard(assoc) if self._spool is not None else 0
        if not was_accepted or self._store is None:
            return
        tally = self._store.pop_tally(assoc)
        calling_ae, address = peer_of(event)
        LOGGER.info(
            "association from %s@%s %s: %s, %d bytes, %.0f ms%s",
            calling_ae,
            address,
            "aborted" if assoc.is_aborted else "released",
            tally.summary(),
            tally.bytes_received,
            (time.monotonic() - tally.started) * 1000.0,
            f", {discarded} unfinished data set(s) discarded" if discarded else "",
        )
