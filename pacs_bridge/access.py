"""Association access control: which calling AE titles may associate, from where.

pynetdicom rejects an association (result "rejected-permanent", source "service
user", reason 3 "calling AE title not recognized") when the calling AE title is
not in ``ApplicationEntity.require_calling_aet``, and (reason 7) when the called
AE title is not ours and ``require_called_aet`` is set. It reads that list on
the association's own thread while negotiating, so :class:`AccessControlledAE`
answers with the titles allowed *from the requester's address*, which adds the
optional ``CALLING_AE@host`` restriction to the same standard rejection.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pynetdicom import AE
from pynetdicom.association import Association

from pacs_bridge.config import AllowedPeer
from pacs_bridge.pdu_guard import BAD_CALLING_AE_ATTRIBUTE

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
    """

    def __init__(self, allow: Sequence[AllowedPeer], *, allow_any: bool) -> None:
        self.allow = tuple(allow)
        self.allow_any = allow_any

    def admits(self, calling_ae: str, address: str) -> bool:
        """Whether ``calling_ae`` connecting from IP ``address`` may associate."""
        return self.allow_any or any(peer.admits(calling_ae, address) for peer in self.allow)

    def titles_for(self, address: str) -> list[str]:
        """Calling AE titles admitted from ``address``, in pynetdicom's ``require_calling_aet`` form.

        Returns
        -------
        list of str
            Empty when any title is admitted; a list with one impossible title when
            none is.
        """
        if self.allow_any:
            return []
        titles = sorted(
            {peer.ae_title for peer in self.allow if peer.host is None or address in peer.addresses}
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
        if self.policy.allow_any:
            return []
        return sorted({peer.ae_title for peer in self.policy.allow}) or [_NOBODY]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        raise AttributeError(
            "require_calling_aet is derived from the AccessPolicy of this receiver; "
            "set BridgeSettings.allow instead"
        )
