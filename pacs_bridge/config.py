"""Settings of the DICOM receiver: one frozen :class:`BridgeSettings`, built at the edge.

The settings come from the ``[server]``, ``[tls]`` and ``[commitment_peers]``
tables of ``usarchive.toml`` (:mod:`archive.config`; the former separate file
``usarchive serve --config bridge.toml`` is still read), whose values
command-line flags override. The tables look like::

    [server]
    aet = "USARCHIVE"          # our AE title (the called AE title we answer to)
    host = "0.0.0.0"
    port = 11112
    max_pdu_bytes = 4194304    # largest P-DATA PDU we read; 0 = advertise none, read up to 64 MiB
    max_associations = 16      # established associations (unassociated connections not counted)
    associate_timeout_s = 10.0 # the whole A-ASSOCIATE-RQ within this long of connecting (ARTIM)
    max_associate_rq_bytes = 65536
    max_connections_per_address = 16
    max_unassociated = 64      # connections not yet associated, from all addresses together
    network_timeout_s = 60.0   # idle association (and a PDU's arrival) timeout
    index_busy_timeout_s = 10.0 # a locked SQLite index: answer 0xA700 "index busy" after this long
    pynetdicom_patches = true  # false: pynetdicom's own loops and PDU reader (no PDU limits)
    poll_interval_ms = 10.0    # longest wait of an idle association's loops (traffic wakes them)
    allow = ["SONOSITE1", "EDGE2@10.0.0.5"]   # calling AE titles, optionally @host: echo + store
    allow_any = false          # true lets every calling AE echo and store (warned at start)
    find_max_results = 1000    # a C-FIND matching more entities is refused (0xA700), nothing sent
    find_pn_case_sensitive = false  # PN matching ignores case (as Orthanc; PS3.4 C.2.2.2.1 allows it)
    find_header_keys = false   # true: keys the index lacks are read from one stored header per result

    [server.permissions]       # what a calling AE may do besides the allow-list's echo + store
    WORKSTATION = ["echo", "find", "move", "get"]
    SONOSITE1 = ["echo", "store", "worklist", "mpps"]   # a scanner: worklist and MPPS as well
    "HOROS@10.0.0.7" = ["find", "move"]
    "*" = ["echo"]             # any calling AE title

    [server.move_destinations] # C-MOVE destinations per calling AE (absent: any configured one)
    WORKSTATION = ["WORKSTATION", "VIEWER2"]

    [tls]                      # optional; paths relative to the TOML file
    certificate = "server.crt"
    key = "server.key"
    ca = "ca.crt"              # optional: require client certificates signed by it

    [commitment_peers]         # where to send a storage commitment result on a new
    SONOSITE1 = "10.0.0.5:104" # association (calling AE -> host:port)
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from archive.errors import ConfigError
from archive.query import MatchSettings
from pacs_bridge.peers import (
    ALLOW_LIST_PERMISSIONS,
    AllowedPeer,
    PeerPermissions,
    Permission,
    validate_ae_title,
)

#: Default DICOM port used by ``usarchive serve``.
DEFAULT_PORT = 11112
#: Default AE title of the receiver.
DEFAULT_AET = "USARCHIVE"
#: Default largest P-DATA-TF PDU we receive (bytes); the sender fragments to it.
DEFAULT_MAX_PDU_BYTES = 4 * 1024 * 1024
#: Largest PDU read when ``max_pdu_bytes = 0`` advertises no limit to the sender.
UNLIMITED_PDU_READ_BYTES = 64 * 1024 * 1024
#: Largest command set (all its fragments) we buffer; a C-STORE's is a few hundred bytes.
MAX_COMMAND_SET_BYTES = 64 * 1024


@dataclass(frozen=True)
class TLSSettings:
    """Certificate and key of the receiver, and optionally a CA to verify clients with.

    Attributes
    ----------
    certificate, key : Path
        PEM files of the server certificate (chain) and its private key.
    ca : Path or None
        PEM bundle of CAs; when given, clients must present a certificate it signed.
    """

    certificate: Path
    key: Path
    ca: Path | None = None


@dataclass(frozen=True)
class CommitmentPeer:
    """Where to send a storage commitment result when the requester's association is gone."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, ae_title: str, address: str) -> CommitmentPeer:
        """Parse ``"host:port"`` for the calling AE title ``ae_title``."""
        host, sep, port_text = address.rpartition(":")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(
                f"[commitment_peers] {ae_title}: expected 'host:port' with a port 1-65535, "
                f"but got {address!r}"
            )
        return cls(validate_ae_title(ae_title, what="[commitment_peers]"), host, int(port_text))


@dataclass(frozen=True)
class BridgeSettings:
    """Everything the DICOM receiver needs besides the archive's own settings.

    Attributes
    ----------
    aet : str
        Our AE title; associations calling another title are rejected.
    host : str
        Address to listen on.
    port : int
        TCP port; 0 binds a free port (read it back from the running server).
    allow : tuple of AllowedPeer
        Calling AE titles (optionally with host) allowed to associate.
    allow_any : bool
        Accept any calling AE title (to echo and store). Must be chosen explicitly.
    permissions : tuple of PeerPermissions
        More rights per calling AE (find, move, get, worklist, or echo/store for AEs
        not on the allow-list); an AE's rights are the union of every entry that applies.
    move_destinations : tuple of (str, tuple of str)
        C-MOVE destinations each calling AE may name; an AE not listed may name any
        configured destination.
    find_max_results : int
        A C-FIND matching more entities is refused with 0xA700 before any result.
    find_pn_case_sensitive : bool
        Match Person Names case-sensitively.
    find_header_keys : bool
        Answer requested keys the index lacks from one stored header per result.
    max_pdu_bytes : int
        Maximum P-DATA-TF PDU length we receive (advertised to the sender, and
        checked against each PDU's declared length before any of it is read;
        a longer one aborts the association). 0 advertises no limit, and PDUs
        up to :data:`UNLIMITED_PDU_READ_BYTES` are still read.
    max_associations : int
        Concurrent established associations (at least 8 is expected of a
        receiver). Connections still negotiating are not counted.
    associate_timeout_s : float
        ARTIM-style limit: a connection must have delivered its whole
        A-ASSOCIATE-RQ this long after connecting, or it is closed.
    max_associate_rq_bytes : int
        Longest A-ASSOCIATE-RQ (or any PDU before association) read; longer aborts.
    max_connections_per_address : int
        Concurrent TCP connections from one IP address (associated or not); more are closed at accept.
    max_unassociated : int
        Concurrent connections not yet associated, from all addresses; more are closed at accept.
    index_busy_timeout_s : float
        Longest wait for a locked SQLite index per instance, then 0xA700 "index busy".
    pynetdicom_patches : bool
        Replace pynetdicom's per-association loops and PDU reader (see
        :mod:`pacs_bridge._pynetdicom_compat`). ``False`` runs pynetdicom's
        own: correct, but without the PDU limits and the ARTIM window, and
        with its 1 ms sleeps. Data sets still stream to spool files.
    tls : TLSSettings or None
        Serve DICOM over TLS when set.
    commitment_peers : tuple of CommitmentPeer
        Addresses for storage commitment results sent on a new association.
    network_timeout_s, acse_timeout_s, dimse_timeout_s : float
        pynetdicom timeouts in seconds.
    poll_interval_ms : float
        Longest wait of an association's two loops when nothing happens. Data
        arriving, a response to send and a decoded request wake them at once
        (:mod:`pacs_bridge.dul_loop`, :mod:`pacs_bridge.reactor`); the wait
        bounds only how soon a timeout, a release request or a connection
        closed elsewhere is noticed, and the CPU an open idle association
        takes (about 2 % of a core at 10 ms, 9 % at 1 ms).
    """

    aet: str = DEFAULT_AET
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    allow: tuple[AllowedPeer, ...] = ()
    allow_any: bool = False
    permissions: tuple[PeerPermissions, ...] = ()
    move_destinations: tuple[tuple[str, tuple[str, ...]], ...] = ()
    find_max_results: int = 1000
    find_pn_case_sensitive: bool = False
    find_header_keys: bool = False
    max_pdu_bytes: int = DEFAULT_MAX_PDU_BYTES
    max_associations: int = 16
    associate_timeout_s: float = 10.0
    max_associate_rq_bytes: int = 65536
    max_connections_per_address: int = 16
    max_unassociated: int = 64
    index_busy_timeout_s: float = 10.0
    pynetdicom_patches: bool = True
    tls: TLSSettings | None = None
    commitment_peers: tuple[CommitmentPeer, ...] = field(default=())
    network_timeout_s: float = 60.0
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 60.0
    poll_interval_ms: float = 10.0

    def __post_init__(self) -> None:
        validate_ae_title(self.aet, what="aet")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port: expected 0-65535 (0 = any free port), but got {self.port}")
        if self.max_pdu_bytes < 0:
            raise ConfigError(
                f"max_pdu_bytes: expected 0 (no advertised limit) or more, but got {self.max_pdu_bytes}"
            )
        if self.max_associations < 1:
            raise ConfigError(f"max_associations: expected at least 1, but got {self.max_associations}")
        if not 0 < self.associate_timeout_s <= 300:
            raise ConfigError(
                "associate_timeout_s: expected more than 0 and at most 300, "
                f"but got {self.associate_timeout_s}"
            )
        if not 1024 <= self.max_associate_rq_bytes <= 1024 * 1024:
            raise ConfigError(
                f"max_associate_rq_bytes: expected 1024 to 1048576, but got {self.max_associate_rq_bytes}"
            )
        for key in ("max_connections_per_address", "max_unassociated"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: expected at least 1, but got {getattr(self, key)}")
        if not 0 < self.index_busy_timeout_s <= 60:
            raise ConfigError(
                "index_busy_timeout_s: expected more than 0 and at most 60, "
                f"but got {self.index_busy_timeout_s}"
            )
        if self.network_timeout_s <= 0:
            raise ConfigError(f"network_timeout_s: expected more than 0, but got {self.network_timeout_s}")
        if not 1 <= self.find_max_results <= 1_000_000:
            raise ConfigError(f"find_max_results: expected 1 to 1000000, but got {self.find_max_results}")
        if not 0 < self.poll_interval_ms <= 100:
            raise ConfigError(
                f"poll_interval_ms: expected more than 0 and at most 100, but got {self.poll_interval_ms}"
            )

    @property
    def pdu_read_limit(self) -> int:
        """Longest P-DATA-TF PDU (its declared length) read once associated."""
        return self.max_pdu_bytes or UNLIMITED_PDU_READ_BYTES

    def buffered_memory_bound(self) -> int:
        """Upper bound of the bytes held in PDU buffers by every connection together.

        A PDU is held at most three times while decoded (the bytes read, its
        PDVs, the primitive), and a command set up to
        :data:`MAX_COMMAND_SET_BYTES` besides: ``3 * max_associate_rq_bytes *
        max_unassociated + max_associations * (3 * pdu_read_limit +
        MAX_COMMAND_SET_BYTES)``. Data sets stream to spool files, not memory.
        """
        return 3 * self.max_associate_rq_bytes * self.max_unassociated + self.max_associations * (
            3 * self.pdu_read_limit + MAX_COMMAND_SET_BYTES
        )

    def permissions_of(self, ae_title: str, address: str) -> frozenset[Permission]:
        """What ``ae_title`` calling from IP ``address`` may do (empty: the association is rejected)."""
        granted: set[Permission] = set()
        if self.allow_any or any(peer.admits(ae_title, address) for peer in self.allow):
            granted |= ALLOW_LIST_PERMISSIONS
        for entry in self.permissions:
            if entry.admits(ae_title, address):
                granted |= entry.permissions
        return frozenset(granted)

    def move_destinations_of(self, ae_title: str) -> tuple[str, ...] | None:
        """The C-MOVE destinations ``ae_title`` may name, or ``None`` for any configured one."""
        for calling, destinations in self.move_destinations:
            if calling == ae_title.strip():
                return destinations
        return None

    @property
    def match_settings(self) -> MatchSettings:
        """How C-FIND queries are matched and bounded."""
        return MatchSettings(
            case_sensitive_pn=self.find_pn_case_sensitive,
            max_results=self.find_max_results,
            header_keys=self.find_header_keys,
        )

    def commitment_peer(self, ae_title: str) -> CommitmentPeer | None:
        """The configured address of ``ae_title`` for storage commitment results, if any."""
        for peer in self.commitment_peers:
            if peer.ae_title == ae_title.strip():
                return peer
        return None

    def check_access_policy(self) -> None:
        """Refuse a server that would be open to everyone by accident.

        Raises
        ------
        ConfigError
            If neither an allow-list nor ``allow_any`` is set; the message says how to allow a scanner.
        """
        if not self.allow and not self.allow_any and not self.permissions:
            raise ConfigError(
                "access control: expected at least one allowed calling AE title, but the allow-list is "
                "empty; allow a scanner with --allow SCANNER_AE (or --allow SCANNER_AE@host, repeatable, "
                "or `allow = [...]` under [server] in the config file), or pass --allow-any to accept "
                "every calling AE title"
            )


_SERVER_KEYS = {
    "aet",
    "host",
    "port",
    "allow",
    "allow_any",
    "max_pdu_bytes",
    "max_associations",
    "associate_timeout_s",
    "max_associate_rq_bytes",
    "max_connections_per_address",
    "max_unassociated",
    "index_busy_timeout_s",
    "pynetdicom_patches",
    "network_timeout_s",
    "acse_timeout_s",
    "dimse_timeout_s",
    "poll_interval_ms",
    "permissions",
    "move_destinations",
    "find_max_results",
    "find_pn_case_sensitive",
    "find_header_keys",
}


def _expect(value: object, kind: type | tuple[type, ...], key: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"[server] {key}: expected a number, but got {value!r}")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"[server] {key}: expected {name}, but got {value!r}")
    return value


def _tls_from_table(table: Mapping[str, Any], base: Path) -> TLSSettings:
    unknown = set(table) - {"certificate", "key", "ca"}
    if unknown:
        raise ConfigError(f"[tls]: unknown keys {sorted(unknown)}; expected certificate, key and ca")
    paths: dict[str, Path] = {}
    for key in ("certificate", "key", "ca"):
        if key not in table:
            continue
        path = Path(str(table[key])).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ConfigError(f"[tls] {key}: expected a PEM file, but {str(path)!r} does not exist")
        paths[key] = path
    if "certificate" not in paths or "key" not in paths:
        raise ConfigError("[tls]: expected both 'certificate' and 'key' (PEM files)")
    return TLSSettings(paths["certificate"], paths["key"], paths.get("ca"))


def _move_destinations(table: Mapping[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    entries = []
    for calling, destinations in table.items():
        what = f"[server.move_destinations] {calling!r}"
        if not isinstance(destinations, list) or not all(isinstance(d, str) for d in destinations):
            raise ConfigError(f"{what}: expected a list of destination AE titles, but got {destinations!r}")
        titles = tuple(validate_ae_title(d, what=what) for d in destinations)
        entries.append((validate_ae_title(str(calling), what=what), titles))
    return tuple(entries)


def settings_from_mapping(data: Mapping[str, Any], *, base_dir: Path) -> BridgeSettings:
    """Build settings from a parsed TOML document.

    Parameters
    ----------
    data : mapping
        The document: tables ``server``, ``tls`` and ``commitment_peers``.
    base_dir : Path
        Directory that relative TLS paths are relative to (the file's directory).

    Raises
    ------
    ConfigError
        For unknown tables or keys and values of the wrong type.
    """
    unknown_tables = set(data) - {"server", "tls", "commitment_peers"}
    if unknown_tables:
        raise ConfigError(
            f"bridge config: unknown tables {sorted(unknown_tables)}; expected [server], [tls], "
            "[commitment_peers]"
        )
    server = data.get("server", {})
    unknown = set(server) - _SERVER_KEYS
    if unknown:
        raise ConfigError(
            f"[server]: unknown keys {sorted(unknown)}; expected some of {sorted(_SERVER_KEYS)}"
        )
    values: dict[str, Any] = {}
    for key in ("aet", "host"):
        if key in server:
            values[key] = _expect(server[key], str, key)
    for key in (
        "port",
        "max_pdu_bytes",
        "max_associations",
        "max_associate_rq_bytes",
        "max_connections_per_address",
        "max_unassociated",
        "find_max_results",
    ):
        if key in server:
            values[key] = _expect(server[key], int, key)
    for key in (
        "network_timeout_s",
        "acse_timeout_s",
        "dimse_timeout_s",
        "poll_interval_ms",
        "associate_timeout_s",
        "index_busy_timeout_s",
    ):
        if key in server:
            values[key] = float(_expect(server[key], (int, float), key))
    if "pynetdicom_patches" in server:
        values["pynetdicom_patches"] = _expect(server["pynetdicom_patches"], bool, "pynetdicom_patches")
    for key in ("allow_any", "find_pn_case_sensitive", "find_header_keys"):
        if key in server:
            values[key] = _expect(server[key], bool, key)
    if "permissions" in server:
        table = _expect(server["permissions"], dict, "permissions")
        values["permissions"] = tuple(PeerPermissions.parse(str(ae), entry) for ae, entry in table.items())
    if "move_destinations" in server:
        values["move_destinations"] = _move_destinations(
            _expect(server["move_destinations"], dict, "move_destinations")
        )
    if "allow" in server:
        entries = _expect(server["allow"], list, "allow")
        values["allow"] = tuple(AllowedPeer.parse(str(entry)) for entry in entries)
    if "tls" in data:
        values["tls"] = _tls_from_table(data["tls"], base_dir)
    peers = data.get("commitment_peers", {})
    values["commitment_peers"] = tuple(CommitmentPeer.parse(ae, str(addr)) for ae, addr in peers.items())
    return BridgeSettings(**values)


def load_settings(
    path: Path | None = None,
    *,
    tables: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
    aet: str | None = None,
    host: str | None = None,
    port: int | None = None,
    allow: Iterable[str] = (),
    allow_any: bool | None = None,
    max_pdu_bytes: int | None = None,
) -> BridgeSettings:
    """Read the TOML file (if any), then let the given flags override it.

    Parameters
    ----------
    path : Path or None
        A TOML file holding only the receiver's tables (the former ``serve --config
        bridge.toml``); ``None`` uses ``tables``.
    tables : mapping, optional
        The ``[server]``, ``[tls]`` and ``[commitment_peers]`` tables of ``usarchive.toml``
        (:attr:`archive.config.Configuration.tables`), used when ``path`` is ``None``.
    base_dir : Path, optional
        Directory relative TLS paths of ``tables`` are relative to (the configuration file's).
    aet, host, port, max_pdu_bytes, allow_any : optional
        Override the file's value when not ``None``.
    allow : iterable of str
        ``CALLING_AE`` or ``CALLING_AE@host`` entries; when any are given they replace the
        file's allow-list.

    Returns
    -------
    BridgeSettings

    Raises
    ------
    ConfigError
        If the file cannot be read or parsed, or a value is invalid.
    """
    settings = BridgeSettings()
    if path is not None:
        try:
            with path.open("rb") as handle:
                document = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError(f"--config: expected a readable TOML file, but {str(path)!r}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config {str(path)!r}: expected valid TOML, but {exc}") from exc
        settings = settings_from_mapping(document, base_dir=path.parent)
    elif tables:
        settings = settings_from_mapping(tables, base_dir=base_dir or Path.cwd())
    overrides: dict[str, Any] = {}
    if aet is not None:
        overrides["aet"] = validate_ae_title(aet, what="--aet")
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if max_pdu_bytes is not None:
        overrides["max_pdu_bytes"] = max_pdu_bytes
    if allow_any is not None:
        overrides["allow_any"] = allow_any
    allowed = tuple(AllowedPeer.parse(entry) for entry in allow)
    if allowed:
        overrides["allow"] = allowed
    return replace(settings, **overrides)
