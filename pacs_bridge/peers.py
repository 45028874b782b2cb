"""Who may talk to the receiver and what each peer may do: AE titles, hosts, permissions per service.

Validated from ``[server] allow`` and ``[server.permissions]`` by
:mod:`pacs_bridge.config`; enforced at association time by
:mod:`pacs_bridge.access`.
"""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass

from archive.errors import ConfigError


class Permission(enum.StrEnum):
    """What a calling AE may do (Orthanc's AllowEcho/AllowStore/AllowFind/AllowMove/AllowGet)."""

    ECHO = "echo"
    STORE = "store"  # C-STORE and storage commitment
    FIND = "find"
    MOVE = "move"
    GET = "get"
    WORKLIST = "worklist"  # Modality Worklist C-FIND
    MPPS = "mpps"  # Modality Performed Procedure Step N-CREATE / N-SET


#: What an entry of the allow-list (``allow``, ``--allow``, ``allow_any``) grants.
ALLOW_LIST_PERMISSIONS = frozenset({Permission.ECHO, Permission.STORE})


def validate_ae_title(value: str, *, what: str) -> str:
    """Return ``value`` stripped if it is a valid AE title, else raise :class:`ConfigError`.

    Parameters
    ----------
    value : str
        The AE title (1–16 characters of the default character repertoire, no backslash,
        no control characters, not only spaces).
    what : str
        Which setting this is, for the message.
    """
    title = value.strip()
    if not 1 <= len(title) <= 16 or "\\" in title or not all(32 <= ord(c) < 127 for c in title):
        raise ConfigError(
            f"{what}: expected an AE title of 1 to 16 printable ASCII characters without a backslash, "
            f"but got {value!r}"
        )
    return title


def _resolve_host(host: str, *, what: str) -> frozenset[str]:
    """All IP addresses ``host`` resolves to (an IP address resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise ConfigError(
            f"{what}: expected a host name or IP address that resolves, but {host!r} does not ({exc}); "
            "use an IP address or fix the name"
        ) from exc
    return frozenset(str(info[4][0]) for info in infos)


@dataclass(frozen=True)
class AllowedPeer:
    """A calling AE title allowed to associate, optionally only from some addresses.

    Attributes
    ----------
    ae_title : str
        The calling AE title, exactly as the scanner sends it (trailing spaces ignored).
    host : str or None
        The host as written in the settings; ``None`` means any host.
    addresses : frozenset of str
        IP addresses ``host`` resolved to when the settings were built.
    """

    ae_title: str
    host: str | None = None
    addresses: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> AllowedPeer:
        """Parse ``"AE"`` or ``"AE@host"`` and resolve the host.

        Raises
        ------
        ConfigError
            If the AE title is invalid or the host does not resolve.
        """
        title, sep, host = text.partition("@")
        ae_title = validate_ae_title(title, what=f"--allow {text!r}")
        if not sep:
            return cls(ae_title)
        host = host.strip()
        if not host:
            raise ConfigError(f"--allow: expected CALLING_AE or CALLING_AE@host, but got {text!r}")
        return cls(ae_title, host, _resolve_host(host, what=f"--allow {text!r}"))

    def admits(self, ae_title: str, address: str) -> bool:
        """Whether a peer calling as ``ae_title`` from IP ``address`` matches this entry."""
        if ae_title.strip() != self.ae_title:
            return False
        return self.host is None or address in self.addresses

    def __str__(self) -> str:
        return self.ae_title if self.host is None else f"{self.ae_title}@{self.host}"


@dataclass(frozen=True)
class PeerPermissions:
    """What one calling AE (optionally from one host), or every one (``peer is None``), may do."""

    peer: AllowedPeer | None
    permissions: frozenset[Permission]

    @classmethod
    def parse(cls, text: str, values: object) -> PeerPermissions:
        """Parse one ``[server.permissions]`` entry: ``"AE[@host]" = ["echo", "find", ...]`` or ``"*"``."""
        what = f"[server.permissions] {text!r}"
        if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
            raise ConfigError(f"{what}: expected a list of permissions, but got {values!r}")
        permissions: set[Permission] = set()
        for value in values:
            try:
                permissions.add(Permission(value.strip().lower()))
            except ValueError:
                valid = ", ".join(f'"{p.value}"' for p in Permission)
                raise ConfigError(f"{what}: expected permissions among {valid}, but got {value!r}") from None
        peer = None if text.strip() == "*" else AllowedPeer.parse(text)
        return cls(peer, frozenset(permissions))

    def admits(self, ae_title: str, address: str) -> bool:
        """Whether the entry applies to ``ae_title`` calling from ``address``."""
        return self.peer is None or self.peer.admits(ae_title, address)
