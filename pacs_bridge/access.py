"""Association access control: which calling AE titles may associate, from where.

pynetdicom rejects an association (result "rejected-permanent", source "service
user", reason 3 "calling AE title not recognized") when the calling AE title is
not in ``ApplicationEntity.require_calling_aet``, and (reason 7) when the called
AE title is not ours and ``require_called_aet`` is set. It reads that list on
the association's own thread while negotiating, so :class:`AccessControlledAE`
answers with the titles allowed *from the requester's address*, which adds the
optional ``CALLING_AE@host`` restriction to the same standard rejection.

Per service, a calling AE's rights (:meth:`BridgeSettings.permissions_of
<pacs_bridge.config.BridgeSettings.permissions_of>`: the allow-list grants
echo and store, ``[server.permissions]`` more) decide which presentation
contexts it is offered: :func:`contexts_for` leaves out the contexts of the
services it may not use, so pynetdicom refuses them in the A-ASSOCIATE-AC
(result 0x01, user rejection; PS3.8 9.3.3.2). A workstation without ``find``
is thus told at association time that the archive offers it no C-FIND,
before it sends a query, and the association itself is rejected (reason 3,
calling AE title not recognized) only when the AE may do nothing at all.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext

from pacs_bridge.pdu_guard import BAD_CALLING_AE_ATTRIBUTE
from pacs_bridge.peers import AllowedPeer, PeerPermissions, Permission

#: A "title" no peer can send (AE titles cannot contain a backslash): the list
#: pynetdicom checks must not be empty, since an empty list means "anyone".
_NOBODY = "\\"


class AccessPolicy:
    """The allow-list of a receiver.

    Parameters
    ----------
    allow : sequence of AllowedPeer
        Allowed calling AE titles, each optionally bound to a host.
    allow_any : bool
        Admit every calling AE title (the allow-list is then ignored).
    permissions : sequence of PeerPermissions
        Further calling AE titles admitted (those with at least one permission).
    """

    def __init__(
        self,
        allow: Sequence[AllowedPeer],
        *,
        allow_any: bool,
        permissions: Sequence[PeerPermissions] = (),
    ) -> None:
        self.allow = tuple(allow)
        self.allow_any = allow_any
        self.permissions = tuple(entry for entry in permissions if entry.permissions)
        self._anyone = allow_any or any(entry.peer is None for entry in self.permissions)

    def admits(self, calling_ae: str, address: str) -> bool:
        """Whether ``calling_ae`` connecting from IP ``address`` may associate."""
        return (
            self._anyone
            or any(peer.admits(calling_ae, address) for peer in self.allow)
            or any(entry.admits(calling_ae, address) for entry in self.permissions)
        )

    def peers(self) -> list[AllowedPeer]:
        """Every calling AE entry admitted by name (the allow-list's and the permission table's)."""
        return [*self.allow, *(entry.peer for entry in self.permissions if entry.peer is not None)]

    def titles_for(self, address: str) -> list[str]:
        """Calling AE titles admitted from ``address``, in pynetdicom's ``require_calling_aet`` form.

        Returns
        -------
        list of str
            Empty when any title is admitted; a list with one impossible title when
            none is.
        """
        if self._anyone:
            return []
        titles = sorted(
            {peer.ae_title for peer in self.peers() if peer.host is None or address in peer.addresses}
        )
        return titles or [_NOBODY]


class AccessControlledAE(AE):
    """A pynetdicom application entity whose calling-AE check depends on the peer's address.

    Parameters
    ----------
    ae_title : str
        Our AE title; ``require_called_aet`` is switched on.
    policy : AccessPolicy
        Who may associate.
    """

    def __init__(self, ae_title: str, policy: AccessPolicy) -> None:
        super().__init__(ae_title=ae_title)
        self.policy = policy
        self.require_called_aet = True

    @property
    def active_associations(self) -> list[Association]:
        """The running associations; to a negotiating acceptor, only the established ones and itself.

        pynetdicom's acceptor rejects an association (reason "local limit
        exceeded") when more than ``maximum_associations`` acceptor threads
        run, counting connections that have not associated (silent or
        trickling, never authenticated). Asked from an association that is
        negotiating, this answers only established associations and the
        asker, so such connections never take an allowed scanner's slot;
        they are bounded separately (``max_unassociated``, per-address cap,
        ARTIM timer). Everyone else (shutdown, status) sees all of them.
        """
        everything = super().active_associations
        current = threading.current_thread()
        if isinstance(current, Association) and current.is_acceptor and not current.is_established:
            return [assoc for assoc in everything if assoc.is_established or assoc is current]
        return everything

    @property
    def require_calling_aet(self) -> list[str]:
        """Titles the current association's requester may call with (see :class:`AccessPolicy`)."""
        current = threading.current_thread()
        if isinstance(current, Association) and current.is_acceptor:
            if getattr(current, BAD_CALLING_AE_ATTRIBUTE, None) is not None:
                return [_NOBODY]  # control characters in the calling AE title: reason 3
            return self.policy.titles_for(str(current.requestor.address))
        if self.policy.titles_for("") == []:
            return []
        return sorted({peer.ae_title for peer in self.policy.peers()}) or [_NOBODY]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        raise AttributeError(
            "require_calling_aet is derived from the AccessPolicy of this receiver; "
            "set BridgeSettings.allow instead"
        )


#: Verification SOP Class.
_VERIFICATION = "1.2.840.10008.1.1"
#: Storage Commitment Push Model SOP Class.
_COMMITMENT = "1.2.840.10008.1.20.1"
#: Query/Retrieve and worklist SOP classes (PS3.4 C.6, K.6) and the permission each needs.
SERVICE_PERMISSIONS: dict[str, Permission] = {
    "1.2.840.10008.5.1.4.1.2.1.1": Permission.FIND,  # Patient Root Q/R Information Model - FIND
    "1.2.840.10008.5.1.4.1.2.2.1": Permission.FIND,  # Study Root Q/R Information Model - FIND
    "1.2.840.10008.5.1.4.1.2.1.2": Permission.MOVE,  # Patient Root - MOVE
    "1.2.840.10008.5.1.4.1.2.2.2": Permission.MOVE,  # Study Root - MOVE
    "1.2.840.10008.5.1.4.1.2.1.3": Permission.GET,  # Patient Root - GET
    "1.2.840.10008.5.1.4.1.2.2.3": Permission.GET,  # Study Root - GET
    "1.2.840.10008.5.1.4.31": Permission.WORKLIST,  # Modality Worklist Information Model - FIND
    "1.2.840.10008.3.1.2.3.3": Permission.MPPS,  # Modality Performed Procedure Step
    _VERIFICATION: Permission.ECHO,
    _COMMITMENT: Permission.STORE,
}


def required_permission(abstract_syntax: str) -> Permission:
    """The permission a presentation context of ``abstract_syntax`` needs (storage classes: ``store``).

    A storage context proposed for C-GET (the requester in the Storage SCP
    role, to receive) maps to ``store`` here too: C-GET extends
    :func:`contexts_for` for that case.
    """
    return SERVICE_PERMISSIONS.get(str(abstract_syntax), Permission.STORE)


def contexts_for(
    contexts: Sequence[PresentationContext], permissions: frozenset[Permission]
) -> list[PresentationContext]:
    """The contexts of ``contexts`` a requester with ``permissions`` may use."""
    return [
        context for context in contexts if required_permission(str(context.abstract_syntax)) in permissions
    ]
