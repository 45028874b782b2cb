"""The destination table (``[destinations.NAME]``) and forwarding (``[forward]``, ``[[forward.routes]]``).

One table of DICOM destinations serves forwarding, C-MOVE and ``export --send-to``.
Everything is typed and validated when ``usarchive.toml`` is loaded
(:func:`parse_forward`, called by :func:`archive.config.load_configuration`);
an error names the file, the line, the key, what was expected and what came.
:func:`load_forward_settings` re-reads only these sections of a file (a
forwarder reloading its routes on SIGHUP).

:data:`DESTINATION_KEYS`, :data:`FORWARD_KEYS` and :data:`ROUTE_KEYS` are the one
description of every key: ``config show``, the ``usarchive init`` template and
the README's configuration table follow them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from archive.errors import ConfigError
from archive.model import ProcedureType, Side, SpinalLevel, Technique

#: Our AE title toward a destination when neither the destination nor ``[server] aet`` names one.
DEFAULT_CALLING_AE = "USARCHIVE"
#: Route granularities: a study's instances go together, or each instance on its own.
GRANULARITIES = ("study", "instance")


@dataclass(frozen=True)
class RetryPolicy:
    """How a destination's failed attempts are retried (exponential backoff, capped).

    Attributes
    ----------
    base_s : float
        Delay before the first retry.
    multiplier : float
        Each further delay is the previous one times this (at least 1).
    max_delay_s : float
        The cap of a delay.
    max_attempts : int
        Attempts after which a task that still fails is ``failed``.
    retry_permanent : bool
        Retry refusals that cannot pass by themselves (0xA9xx, 0xC0xx, permanent
        association rejection) too, instead of failing at once.
    """

    base_s: float = 30.0
    multiplier: float = 2.0
    max_delay_s: float = 3600.0
    max_attempts: int = 10
    retry_permanent: bool = False


@dataclass(frozen=True)
class Destination:
    """A DICOM node we send to (``[destinations.NAME]``)."""

    name: str
    ae_title: str
    host: str
    port: int
    calling_ae: str = DEFAULT_CALLING_AE
    tls: bool = False
    commitment: bool = False
    transcode: bool = False
    retry: RetryPolicy = RetryPolicy()
    batch_size: int = 100
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Route:
    """A rule choosing instances for a destination (one ``[[forward.routes]]``).

    Every match set is a set of accepted values; an empty set matches everything.
    ``level`` matches an instance with any of its levels in the set.
    """

    destination: str
    calling_ae: frozenset[str] = frozenset()
    modality: frozenset[str] = frozenset()
    sop_class: frozenset[str] = frozenset()
    level: frozenset[str] = frozenset()
    side: frozenset[str] = frozenset()
    technique: frozenset[str] = frozenset()
    procedure_type: frozenset[str] = frozenset()
    granularity: str = "study"
    delay_s: float = 0.0


@dataclass(frozen=True)
class ForwardSettings:
    """Forwarding as configured: the destination table, the routes and the worker's timings."""

    enabled: bool = True
    lease_s: float = 120.0
    poll_s: float = 2.0
    destinations: Mapping[str, Destination] = field(default_factory=lambda: MappingProxyType({}))
    routes: tuple[Route, ...] = ()

    def destination(self, name: str) -> Destination:
        """The destination ``name``.

        Raises
        ------
        ConfigError
            If no ``[destinations.NAME]`` has that name.
        """
        try:
            return self.destinations[name]
        except KeyError:
            known = ", ".join(sorted(self.destinations)) or "none configured"
            raise ConfigError(
                f"destination {name!r}: expected a name of the destination table ({known}); "
                f"add [destinations.{name}] to usarchive.toml or use one of those"
            ) from None


@dataclass(frozen=True)
class ConfigKey:
    """One key of these sections, for validation, ``config show``, the template and the README."""

    name: str
    kind: str  # a key of _EXPECTED: "ae", "host", "port", "bool", "int", "seconds", "list", ...
    default: object
    help: str


#: Keys of a ``[destinations.NAME]`` table (``None``: required; ``calling_ae`` defaults to ``[server] aet``).
DESTINATION_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("ae_title", "ae", None, "The destination's AE title (the called AE)."),
    ConfigKey("host", "host", None, "Its host name or address."),
    ConfigKey("port", "port", None, "Its DICOM port."),
    ConfigKey("calling_ae", "ae", None, "Our AE title toward it (default [server] aet, else USARCHIVE)."),
    ConfigKey("tls", "bool", False, "Connect with TLS (the [tls] certificate and key)."),
    ConfigKey("commitment", "bool", False, "Ask storage commitment; a task completes only on the report."),
    ConfigKey("transcode", "bool", False, "Transcode losslessly when it refuses the file's transfer syntax."),
    ConfigKey("retry_base_s", "seconds", 30.0, "Delay before the first retry (s)."),
    ConfigKey("retry_multiplier", "multiplier", 2.0, "Each further retry delay is the previous times this."),
    ConfigKey("retry_max_delay_s", "seconds", 3600.0, "Longest retry delay (s)."),
    ConfigKey("max_attempts", "int", 10, "Attempts before a task is failed."),
    ConfigKey("retry_permanent", "bool", False, "Retry permanent refusals (0xA9xx, 0xC0xx) too."),
    ConfigKey("batch_size", "int", 100, "Instances per association at most."),
    ConfigKey("timeout_s", "seconds", 30.0, "Association and DIMSE timeout (s)."),
)

#: Keys of ``[forward]``.
FORWARD_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("enabled", "bool", True, "usarchive serve runs the forwarder (forward run runs it alone)."),
    ConfigKey("lease_s", "seconds", 120.0, "How long a worker holds a claimed task before another may."),
    ConfigKey("poll_s", "seconds", 2.0, "How often an idle worker looks for due tasks (s)."),
)

#: Keys of one ``[[forward.routes]]``; every match key is optional (missing = any), a list = any of.
ROUTE_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("destination", "name", None, "The destination (a [destinations.NAME]) it sends to."),
    ConfigKey("calling_ae", "list", [], "Calling AE titles of the sender."),
    ConfigKey("modality", "list", [], "Modalities (0008,0060)."),
    ConfigKey("sop_class", "list", [], "SOP Class UIDs."),
    ConfigKey("level", "list", [], "Spinal levels (any of the instance's)."),
    ConfigKey("side", "list", [], "Sides: left, right, bilateral."),
    ConfigKey("technique", "list", [], "Techniques: TT, OT, other, unknown."),
    ConfigKey("procedure_type", "list", [], "Procedure types, e.g. medial branch block."),
    ConfigKey("granularity", "granularity", "study", "study (a study's instances together) or instance."),
    ConfigKey("delay_s", "seconds0", 0.0, "A study is sent this long after its last instance arrived (s)."),
)

_MATCH_PARSERS: dict[str, Callable[[str], str]] = {
    "calling_ae": lambda v: v.strip(),
    "modality": lambda v: v.strip().upper(),
    "sop_class": lambda v: v.strip(),
    "level": lambda v: SpinalLevel.parse(v).value,
    "side": lambda v: Side.parse(v).value,
    "technique": lambda v: Technique.parse(v).value,
    "procedure_type": lambda v: ProcedureType.parse(v).value,
}

#: ``where(section, key)`` → ``"FILE:LINE"`` of a key (the section header's line for ``key=""``).
Where = Callable[[str, str], str]
#: ``(dotted key, value as shown, source)`` for ``config show``.
Shown = tuple[str, object, str]


def _fail(where: str, section: str, name: str, expected: str, got: object) -> ConfigError:
    prefix = f"{where}: " if where else ""
    return ConfigError(f"{prefix}[{section}] {name}: expected {expected}, but got {got!r}")


def _is_ae(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value.strip()) <= 16
        and value.isascii()
        and "\\" not in value
        and all(ch.isprintable() for ch in value)
    )


def _value(key: ConfigKey, raw: object, where: str, section: str) -> object:
    """``raw`` checked against ``key.kind`` and converted."""
    fail = _fail(where, section, key.name, _EXPECTED[key.kind], raw)
    number = isinstance(raw, int | float) and not isinstance(raw, bool)
    if key.kind == "ae":
        if not _is_ae(raw):
            raise fail
        return str(raw).strip()
    if key.kind in ("host", "name"):
        if not isinstance(raw, str) or not raw.strip():
            raise fail
        return raw.strip()
    if key.kind == "bool":
        if not isinstance(raw, bool):
            raise fail
        return raw
    if key.kind == "port":
        if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= 65535:
            raise fail
        return raw
    if key.kind == "int":
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
            raise fail
        return raw
    if key.kind in ("seconds", "seconds0", "multiplier"):
        low_ok = {"seconds": lambda x: x > 0, "seconds0": lambda x: x >= 0, "multiplier": lambda x: x >= 1}
        if not number or not low_ok[key.kind](float(raw)):  # type: ignore[arg-type]
            raise fail
        return float(raw)  # type: ignore[arg-type]
    if key.kind == "granularity":
        if raw not in GRANULARITIES:
            raise fail
        return raw
    # list of match values: a string alone counts as a list of one
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
        raise fail
    try:
        return sorted({_MATCH_PARSERS[key.name](v) for v in items})
    except ValueError as exc:
        raise _fail(where, section, key.name, f"known values ({exc})", raw) from None


_EXPECTED = {
    "ae": "an AE title (1-16 printable ASCII characters, no backslash)",
    "host": "a host name or address (a non-empty string)",
    "name": "a destination name (a non-empty string)",
    "bool": "true or false",
    "port": "a port number from 1 to 65535",
    "int": "a whole number of at least 1",
    "seconds": "a number of seconds greater than 0",
    "seconds0": "a number of seconds of at least 0",
    "multiplier": "a number of at least 1",
    "granularity": f"one of {list(GRANULARITIES)}",
    "list": "a list of strings (or one string)",
}


def _table(
    raw: object, keys: tuple[ConfigKey, ...], section: str, where: Where, shown: list[Shown]
) -> dict[str, object]:
    """Validate one table against ``keys``: unknown keys refused, required keys present, values typed."""
    here = where(section, "")
    if not isinstance(raw, dict):
        raise ConfigError(f"{here + ': ' if here else ''}[{section}]: expected a table, but got {raw!r}")
    names = {key.name for key in keys}
    for name in raw:
        if name not in names:
            line = where(section, name)
            raise ConfigError(
                f"{line + ': ' if line else ''}[{section}] {name}: unknown key; "
                f"expected some of {sorted(names)}"
            )
    values: dict[str, object] = {}
    for key in keys:
        if key.name in raw:
            line = where(section, key.name)
            values[key.name] = _value(key, raw[key.name], line, section)
            shown.append((f"{section}.{key.name}", values[key.name], line or "file"))
        elif key.default is None and key.name != "calling_ae":
            raise ConfigError(
                f"{here + ': ' if here else ''}[{section}] {key.name}: expected this required key "
                f"({key.help}), but it is missing"
            )
        else:
            values[key.name] = key.default
            if key.default is not None:
                shown.append((f"{section}.{key.name}", key.default, "default"))
    return values


def _destination(name: str, raw: object, where: Where, calling_ae: str, shown: list[Shown]) -> Destination:
    section = f"destinations.{name}"
    values = _table(raw, DESTINATION_KEYS, section, where, shown)
    if values["calling_ae"] is None:
        values["calling_ae"] = calling_ae
        shown.append((f"{section}.calling_ae", calling_ae, "default ([server] aet)"))
    if float(values["retry_max_delay_s"]) < float(values["retry_base_s"]):  # type: ignore[arg-type]
        line = where(section, "retry_max_delay_s")
        raise _fail(
            line,
            section,
            "retry_max_delay_s",
            f"at least retry_base_s ({values['retry_base_s']})",
            values["retry_max_delay_s"],
        )
    retry = RetryPolicy(
        base_s=float(values["retry_base_s"]),  # type: ignore[arg-type]
        multiplier=float(values["retry_multiplier"]),  # type: ignore[arg-type]
        max_delay_s=float(values["retry_max_delay_s"]),  # type: ignore[arg-type]
        max_attempts=int(values["max_attempts"]),  # type: ignore[call-overload]
        retry_permanent=bool(values["retry_permanent"]),
    )
    return Destination(
        name=name,
        ae_title=str(values["ae_title"]),
        host=str(values["host"]),
        port=int(values["port"]),  # type: ignore[call-overload]
        calling_ae=str(values["calling_ae"]),
        tls=bool(values["tls"]),
        commitment=bool(values["commitment"]),
        transcode=bool(values["transcode"]),
        retry=retry,
        batch_size=int(values["batch_size"]),  # type: ignore[call-overload]
        timeout_s=float(values["timeout_s"]),  # type: ignore[arg-type]
    )


def _route(
    index: int, raw: object, where: Where, destinations: Mapping[str, Destination], shown: list[Shown]
) -> Route:
    section = f"forward.routes[{index}]"
    values = _table(raw, ROUTE_KEYS, section, where, shown)
    name = str(values["destination"])
    if name not in destinations:
        known = sorted(destinations) or "none: add a [destinations.NAME] table"
        raise _fail(where(section, "destination"), section, "destination", f"one of {known}", name)
    match = {key: frozenset(values[key]) for key in _MATCH_PARSERS}  # type: ignore[call-overload]
    return Route(
        destination=name,
        granularity=str(values["granularity"]),
        delay_s=float(values["delay_s"]),  # type: ignore[arg-type]
        **match,
    )


def parse_forward(
    document: Mapping[str, Any], where: Where, *, default_calling_ae: str | None = None
) -> tuple[ForwardSettings, list[Shown]]:
    """Validate ``[destinations.*]``, ``[forward]`` and ``[[forward.routes]]`` of a parsed ``usarchive.toml``.

    Parameters
    ----------
    document : mapping
        The whole parsed file.
    where : callable
        ``where(section, key)`` → ``"FILE:LINE"`` for messages; route ``i`` is section
        ``"forward.routes[i]"``.
    default_calling_ae : str, optional
        Our AE title toward destinations that name none (``[server] aet``); default ``USARCHIVE``.

    Returns
    -------
    (ForwardSettings, list of (key, value, source))
        The settings, and the keys set in the file for ``config show``.

    Raises
    ------
    ConfigError
        For an unknown key, a missing required key, a value of the wrong type or range,
        or a route naming no configured destination.
    """
    calling_ae = (
        default_calling_ae if default_calling_ae and _is_ae(default_calling_ae) else DEFAULT_CALLING_AE
    )
    shown: list[Shown] = []
    tables = document.get("destinations", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{where('destinations', '')}: [destinations]: expected tables [destinations.NAME]")
    destinations = {name: _destination(name, raw, where, calling_ae, shown) for name, raw in tables.items()}
    forward = dict(document.get("forward", {}))
    routes_raw = forward.pop("routes", [])
    values = _table(forward, FORWARD_KEYS, "forward", where, shown)
    if not isinstance(routes_raw, list):
        raise _fail(where("forward", "routes"), "forward", "routes", "[[forward.routes]] tables", routes_raw)
    routes = tuple(_route(i, raw, where, destinations, shown) for i, raw in enumerate(routes_raw))
    settings = ForwardSettings(
        enabled=bool(values["enabled"]),
        lease_s=float(values["lease_s"]),  # type: ignore[arg-type]
        poll_s=float(values["poll_s"]),  # type: ignore[arg-type]
        destinations=MappingProxyType(destinations),
        routes=routes,
    )
    return settings, shown


def load_forward_settings(path: Path) -> ForwardSettings:
    """Read and validate only the forwarding sections of the configuration file ``path`` (for SIGHUP).

    Raises
    ------
    ConfigError
        As :func:`parse_forward`, or if the file cannot be read or is not TOML.
    """
    from archive.config import key_lines, read_toml

    document, text = read_toml(path)
    lines = key_lines(text)

    def where(section: str, key: str) -> str:
        line = lines.get((section, key), lines.get((section, "")))
        return f"{path}:{line}" if line is not None else str(path)

    server = document.get("server", {})
    aet = server.get("aet") if isinstance(server, dict) else None
    return parse_forward(document, where, default_calling_ae=aet if isinstance(aet, str) else None)[0]


def template_lines() -> list[str]:
    """The commented forwarding part of the ``usarchive init`` template."""
    out = ["", "# Forwarding to other DICOM nodes: see docs/forwarding.md.", "# [destinations.PACS]"]
    examples: dict[str, object] = {
        "ae_title": "PACS",
        "host": "10.0.0.20",
        "port": 104,
        "calling_ae": "USARCHIVE",
    }
    for key in DESTINATION_KEYS:
        out.append(f"# {key.name} = {_toml(examples.get(key.name, key.default))}   # {key.help}")
    out.append("# [forward]")
    for key in FORWARD_KEYS:
        out.append(f"# {key.name} = {_toml(key.default)}   # {key.help}")
    out.append("# [[forward.routes]]")
    route_examples: dict[str, object] = {"destination": "PACS", "modality": ["US"]}
    for key in ROUTE_KEYS:
        out.append(f"# {key.name} = {_toml(route_examples.get(key.name, key.default))}   # {key.help}")
    return out


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value) + '"'
