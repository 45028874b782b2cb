"""``usarchive.toml``: the one configuration of every command, typed and validated at load.

The file is found by ``--config``, then ``USARCHIVE_CONFIG``, then
``<data_dir>/usarchive.toml``. Environment variables override the file and
flags override both. :func:`load_configuration` returns one frozen
:class:`Configuration` that remembers where each value came from
(``usarchive config show``).

Sections owned by the archive (``[archive]``, ``[deid]``, ``[review]``,
``[log]``) are validated here, into :class:`~archive.settings.ArchiveSettings`
and :class:`LogSettings`. The receiver's sections (``[server]``, ``[tls]``,
``[commitment_peers]``) are kept as parsed and validated by
:mod:`pacs_bridge.config` (``archive`` does not depend on ``pacs_bridge``);
:meth:`Configuration.locate` turns its errors into messages naming the file and
line. The destination table and forwarding (``[destinations.NAME]``,
``[forward]``, ``[[forward.routes]]``) are validated by :mod:`archive.forward.config`
into :class:`~archive.forward.config.ForwardSettings`. ``[web]`` (``usarchive web``,
DICOMweb) is validated into :class:`archive.web.settings.WebSettings` from
:attr:`Configuration.values`. ``[worklist]`` (entry expiry, the MWL result limit)
is validated here, into :class:`~archive.worklist.model.WorklistSettings`
(``ArchiveSettings.worklist``). :data:`KEYS` is the one table of every archive-owned key
(README's configuration section and ``usarchive init``'s template follow it).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from archive.errors import ConfigError
from archive.forward.config import ForwardSettings, parse_forward
from archive.ingest import DuplicatePolicy
from archive.settings import (
    ENV_DB,
    ENV_HOME,
    ArchiveSettings,
    decode_secret,
    default_data_dir,
    read_secret_file,
    redact_url,
)
from archive.worklist.model import WorklistSettings

#: Environment variable naming the configuration file.
ENV_CONFIG = "USARCHIVE_CONFIG"
#: Environment variable naming the reviewer (overrides ``[review] reviewer``).
ENV_REVIEWER = "USARCHIVE_REVIEWER"
#: Environment variable holding the de-identification secret itself (hex or text).
ENV_DEID_SECRET = "USARCHIVE_DEID_SECRET"
#: File name of the configuration inside a data directory.
CONFIG_NAME = "usarchive.toml"

#: Default size at which the log file is rotated, and how many old files are kept.
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_BACKUP_COUNT = 5

#: Sections validated by the receiver (:mod:`pacs_bridge.config`).
BRIDGE_SECTIONS = ("server", "tls", "commitment_peers")
#: Sections validated by :mod:`archive.forward.config` (``destinations`` holds ``[destinations.NAME]``).
FORWARD_SECTIONS = ("destinations", "forward")
#: Sections reserved for features to come; no keys are defined yet.
RESERVED_SECTIONS: tuple[str, ...] = ()


@dataclass(frozen=True)
class Key:
    """One archive-owned configuration key: where it lives, its type, default and overrides."""

    section: str
    name: str
    kind: str  # "path", "str", "bool", "int", "policy", "modalities", "secret-path", "strings"
    default: object
    help: str
    env: str | None = None
    flag: str | None = None

    @property
    def dotted(self) -> str:
        """``section.name``."""
        return f"{self.section}.{self.name}"


#: Every key of the archive-owned sections, in the order ``config show`` prints them.
KEYS: tuple[Key, ...] = (
    Key(
        "archive",
        "data_dir",
        "path",
        None,
        "Data directory: file store and SQLite index.",
        ENV_HOME,
        "--data-dir",
    ),
    Key(
        "archive",
        "db",
        "str",
        None,
        "Index URL (default SQLite in data_dir), e.g. postgresql://u@host/db.",
        ENV_DB,
        "--db",
    ),
    Key("archive", "rules", "path", None, "Site rules file (TOML) classifying level, side, technique."),
    Key(
        "archive",
        "duplicate_policy",
        "policy",
        DuplicatePolicy.KEEP_FIRST.value,
        "keep-first or replace, for a UID received again with other bytes.",
        None,
        "import --duplicate-policy",
    ),
    Key(
        "archive",
        "rule_modalities",
        "modalities",
        [],
        "Modalities the rules classify (and studies that have one); [] = the rules file's (US).",
    ),
    Key(
        "deid",
        "secret_file",
        "secret-path",
        None,
        "File holding the de-identification secret (hex or text).",
        ENV_DEID_SECRET + " (the secret itself)",
        "export --secret-file",
    ),
    Key(
        "review",
        "reviewer",
        "str",
        None,
        "Who uses this workstation; default of every --by.",
        ENV_REVIEWER,
        "--by",
    ),
    Key("review", "four_eyes", "bool", True, "Refuse approving one's own annotation (four-eyes review)."),
    Key(
        "review",
        "napari_patches",
        "bool",
        True,
        "Reach into napari's internals (1-based slider, fast frame steps); false: napari's stock behaviour.",
        None,
        "annotate --[no-]napari-patches",
    ),
    Key(
        "worklist",
        "expire_after_hours",
        "int",
        24,
        "A scheduled worklist entry this many hours past its start is expired (not offered to scanners).",
    ),
    Key(
        "worklist",
        "max_results",
        "int",
        500,
        "A Modality Worklist query matching more entries is refused (0xA700), nothing sent.",
    ),
    Key(
        "log",
        "file",
        "path",
        None,
        "Log file, rotated by size (default: log to stderr only).",
        None,
        "--log-file",
    ),
    Key("log", "max_bytes", "int", DEFAULT_LOG_MAX_BYTES, "Size at which the log file is rotated."),
    Key("log", "backup_count", "int", DEFAULT_LOG_BACKUP_COUNT, "Rotated log files kept."),
    Key("web", "host", "str", "127.0.0.1", "Address usarchive web listens on.", None, "web --host"),
    Key("web", "port", "int", 8080, "TCP port of usarchive web.", None, "web --port"),
    Key("web", "root", "str", "/dicomweb", "Path under which the DICOMweb endpoints are served."),
    Key("web", "certificate", "path", None, "TLS certificate chain (PEM); with key, HTTPS."),
    Key("web", "key", "path", None, "TLS private key (PEM) of the certificate."),
    Key(
        "web",
        "allow_plain_http",
        "bool",
        False,
        "Serve plain HTTP on a non-loopback address (false: refused, configure TLS).",
    ),
    Key(
        "web",
        "cors_origins",
        "strings",
        [],
        'Browser origins allowed by CORS, e.g. ["https://viewer.example"].',
    ),
    Key("web", "max_request_bytes", "int", 2 * 1024**3, "Largest STOW-RS request body accepted."),
    Key("web", "max_results", "int", 1000, "Most QIDO-RS results in one response (larger limits are cut)."),
    Key("web", "access_log", "path", None, "Access log file (default <data_dir>/web-access.log)."),
    Key("web", "header_timeout_s", "int", 20, "Seconds a client has for a whole request head (408 after)."),
    Key("web", "body_timeout_s", "int", 20, "Longest pause in a request body, then body_min_rate (408)."),
    Key("web", "body_min_rate", "int", 1000, "Least average body rate (bytes/s) after body_timeout_s."),
    Key("web", "max_connections", "int", 256, "Most connections at once (one more: 503, closed)."),
    Key("web", "keep_alive_timeout_s", "int", 30, "Seconds an idle kept-alive connection stays open."),
    Key("web", "uvicorn_patches", "bool", True, "Head timeout, connection cap in uvicorn (false: stock)."),
    Key(
        "web",
        "audit_report",
        "path",
        None,
        "HTML audit report (usarchive audit --html) the landing page of usarchive web --ohif links.",
    ),
)

_OWNED = {key.section for key in KEYS}


@dataclass(frozen=True)
class LogSettings:
    """Where the log goes (``[log]``): a size-rotated file, or stderr only when ``file`` is ``None``."""

    file: Path | None = None
    max_bytes: int = DEFAULT_LOG_MAX_BYTES
    backup_count: int = DEFAULT_LOG_BACKUP_COUNT


@dataclass(frozen=True)
class Configuration:
    """The effective configuration of one command.

    Attributes
    ----------
    archive : ArchiveSettings
        What the archive library needs.
    log : LogSettings
        Log file and rotation.
    forward : ForwardSettings
        The destination table and forwarding routes (also ``archive.forward``).
    path : Path or None
        The configuration file read, if any.
    tables : mapping
        The receiver's (and future) sections as parsed, for their owners to validate.
    values : mapping
        ``section.key`` → the effective value as shown (secrets hidden).
    sources : mapping
        ``section.key`` → where the value came from: ``default``, ``FILE:LINE``,
        ``env NAME`` or ``--flag``.
    """

    archive: ArchiveSettings
    log: LogSettings = LogSettings()
    forward: ForwardSettings = field(default_factory=ForwardSettings)
    path: Path | None = None
    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    values: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    _lines: Mapping[tuple[str, str], int] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths of the file are relative to."""
        return self.path.parent if self.path is not None else Path.cwd()

    def where(self, section: str, key: str | None = None) -> str:
        """``FILE:LINE`` of a section's key (or its header) in the file; ``""`` without a file."""
        if self.path is None:
            return ""
        line = self._lines.get((section, key or ""))
        if line is None:
            line = self._lines.get((section, ""))
        return f"{self.path}:{line}" if line is not None else str(self.path)

    def locate(self, exc: ConfigError) -> ConfigError:
        """``exc`` (raised by a section's owner, e.g. ``[server] port: ...``) with the file and line."""
        if self.path is None:
            return exc
        match = re.match(r"\s*\[(\w+)\]\s*(\w+)?", str(exc))
        if match is None or match.group(1) not in self.tables:
            return exc  # not about a table of the file (e.g. a flag's value)
        return ConfigError(f"{self.where(match.group(1), match.group(2))}: {exc}")


def key_lines(text: str) -> dict[tuple[str, str], int]:
    """Line numbers (1-based) of each ``[section]`` header (key ``""``) and each ``key =`` in it.

    The ``i``-th ``[[name]]`` of an array of tables is section ``"name[i]"``.
    """
    lines: dict[tuple[str, str], int] = {}
    section = ""
    arrays: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        array = re.match(r"\s*\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]", line)
        if array is not None:
            index = arrays.get(array.group(1), 0)
            arrays[array.group(1)] = index + 1
            section = f"{array.group(1)}[{index}]"
            lines.setdefault((section, ""), number)
            continue
        header = re.match(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]", line)
        if header is not None:
            section = header.group(1)
            lines.setdefault((section, ""), number)
            continue
        key = re.match(r"\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*=", line)
        if key is not None:
            lines.setdefault((section, key.group(1).strip("\"'")), number)
    return lines


def find_config_file(
    explicit: Path | None, environ: Mapping[str, str], data_dir: Path
) -> tuple[Path | None, str]:
    """The configuration file to read and how it was chosen (``--config``, ``env``, ``data_dir``).

    Raises
    ------
    ConfigError
        If ``--config`` or ``USARCHIVE_CONFIG`` names a file that does not exist.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"--config: expected a TOML file, but {str(explicit)!r} does not exist")
        return explicit, "--config"
    named = environ.get(ENV_CONFIG, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV_CONFIG}: expected a TOML file, but {named!r} does not exist")
        return path, f"env {ENV_CONFIG}"
    candidate = data_dir / CONFIG_NAME
    return (candidate, "data directory") if candidate.is_file() else (None, "")


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed TOML file ``path`` and its text.

    Raises
    ------
    ConfigError
        If it cannot be read as UTF-8 or is not valid TOML.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: expected a readable UTF-8 TOML file, but {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: expected valid TOML, but {exc}") from exc


class _Builder:
    """Collects each key's value and source while validating the file's tables."""

    def __init__(self, path: Path | None, document: Mapping[str, Any], lines: Mapping[tuple[str, str], int]):
        self.path = path
        self.document = document
        self.lines = lines
        self.values: dict[str, object] = {}
        self.sources: dict[str, str] = {}

    def where(self, section: str, name: str) -> str:
        line = self.lines.get((section, name), self.lines.get((section, "")))
        return f"{self.path}:{line}" if line is not None else str(self.path)

    def error(self, key: Key, expected: str, got: object) -> ConfigError:
        return ConfigError(
            f"{self.where(key.section, key.name)}: [{key.section}] {key.name}: expected {expected}, "
            f"but got {got!r}"
        )

    def check_tables(self) -> None:
        for section, table in self.document.items():
            line = self.where(section, "")
            if section in RESERVED_SECTIONS:
                raise ConfigError(
                    f"{line}: [{section}]: this section is reserved for a later version and has no keys yet; "
                    "remove it"
                )
            if section in FORWARD_SECTIONS:
                continue  # archive.forward.config validates them
            if section not in _OWNED and section not in BRIDGE_SECTIONS:
                known = sorted(_OWNED | set(BRIDGE_SECTIONS) | set(FORWARD_SECTIONS))
                raise ConfigError(f"{line}: [{section}]: unknown section; expected one of {known}")
            if not isinstance(table, dict):
                raise ConfigError(f"{line}: {section}: expected a table [{section}], but got {table!r}")
            if section in _OWNED:
                names = {key.name for key in KEYS if key.section == section}
                for name in table:
                    if name not in names:
                        raise ConfigError(
                            f"{self.where(section, name)}: [{section}] {name}: unknown key; expected some of "
                            f"{sorted(names)}"
                        )

    def from_file(self, key: Key) -> object | None:
        table = self.document.get(key.section, {})
        if key.name not in table:
            return None
        raw = table[key.name]
        base = self.path.parent if self.path is not None else Path.cwd()
        value: object
        if key.kind in ("path", "secret-path"):
            if not isinstance(raw, str) or not raw.strip():
                raise self.error(key, "a path (string)", raw)
            path = Path(raw).expanduser()
            value = path if path.is_absolute() else base / path
        elif key.kind == "str":
            if not isinstance(raw, str):
                raise self.error(key, "a string", raw)
            value = raw
        elif key.kind == "bool":
            if not isinstance(raw, bool):
                raise self.error(key, "true or false", raw)
            value = raw
        elif key.kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
                raise self.error(key, "a whole number of at least 1", raw)
            value = raw
        elif key.kind == "policy":
            try:
                value = DuplicatePolicy.parse(str(raw)).value
            except ValueError:
                raise self.error(key, "'keep-first' or 'replace'", raw) from None
        elif key.kind == "strings":
            if not isinstance(raw, list) or not all(isinstance(m, str) and m.strip() for m in raw):
                raise self.error(key, 'a list of strings such as ["https://viewer.example"]', raw)
            value = [m.strip() for m in raw]
        else:  # modalities
            if not isinstance(raw, list) or not all(isinstance(m, str) and m.strip() for m in raw):
                raise self.error(key, 'a list of modality codes such as ["US"]', raw)
            value = [m.strip().upper() for m in raw]
        self.values[key.dotted] = value
        self.sources[key.dotted] = self.where(key.section, key.name)
        return value

    def set(self, key: Key, value: object, source: str) -> None:
        self.values[key.dotted] = value
        self.sources[key.dotted] = source

    def get(self, key: Key) -> object:
        if key.dotted not in self.values:
            self.values[key.dotted] = key.default
            self.sources[key.dotted] = "default"
        return self.values[key.dotted]


#: Every key of :data:`KEYS` by its dotted name.
KEYS_BY_NAME = {key.dotted: key for key in KEYS}


def load_configuration(
    *,
    config_path: Path | None = None,
    data_dir: Path | None = None,
    db_url: str | None = None,
    log_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Configuration:
    """Build the effective configuration: defaults, then the file, then the environment, then flags.

    Parameters
    ----------
    config_path : Path, optional
        ``--config``; otherwise ``USARCHIVE_CONFIG``, then ``<data_dir>/usarchive.toml``.
    data_dir, db_url, log_file : optional
        Flags (``--data-dir``, ``--db``, ``--log-file``); they win over everything.
    environ : mapping, optional
        The environment to read (``USARCHIVE_HOME``, ``USARCHIVE_DB``, ``USARCHIVE_CONFIG``,
        ``USARCHIVE_REVIEWER``, ``USARCHIVE_DEID_SECRET``); ``None`` reads none.

    Returns
    -------
    Configuration

    Raises
    ------
    ConfigError
        For an unreadable file, invalid TOML, an unknown section or key, or a value of the
        wrong type; the message names the key, the file and the line.
    """
    env = dict(environ or {})
    flag_dir = data_dir.expanduser() if data_dir is not None else None
    env_dir = Path(env[ENV_HOME]).expanduser() if env.get(ENV_HOME, "").strip() else None
    searched_dir = flag_dir or env_dir or default_data_dir()
    path, how = find_config_file(config_path, env, searched_dir)
    document: dict[str, Any] = {}
    lines: dict[tuple[str, str], int] = {}
    if path is not None:
        document, text = read_toml(path)
        lines = key_lines(text)
    builder = _Builder(path, document, lines)
    builder.check_tables()
    for key in KEYS:
        builder.from_file(key)
    file_dir = builder.values.get("archive.data_dir")
    if (
        how == "data directory"
        and isinstance(file_dir, Path)
        and file_dir.resolve() != searched_dir.resolve()
    ):
        raise ConfigError(
            f"{builder.where('archive', 'data_dir')}: [archive] data_dir: expected this file's own directory "
            f"{str(searched_dir)!r} (the file was found there), but got {str(file_dir)!r}; remove the key or "
            "move the file"
        )
    for key, value, source in (
        (KEYS_BY_NAME["archive.data_dir"], env_dir, f"env {ENV_HOME}"),
        (KEYS_BY_NAME["archive.db"], env.get(ENV_DB, "").strip() or None, f"env {ENV_DB}"),
        (KEYS_BY_NAME["review.reviewer"], env.get(ENV_REVIEWER, "").strip() or None, f"env {ENV_REVIEWER}"),
        (KEYS_BY_NAME["archive.data_dir"], flag_dir, "--data-dir"),
        (KEYS_BY_NAME["archive.db"], db_url or None, "--db"),
        (KEYS_BY_NAME["log.file"], log_file, "--log-file"),
    ):
        if value is not None:
            builder.set(key, value, source)
    if builder.values.get("archive.data_dir") is None:
        builder.set(KEYS_BY_NAME["archive.data_dir"], default_data_dir(), "default")
    values = {key.dotted: builder.get(key) for key in KEYS}
    resolved_dir = Path(str(values["archive.data_dir"]))
    if resolved_dir.exists() and not resolved_dir.is_dir():
        raise ConfigError(
            f"data directory: expected a directory, but {str(resolved_dir)!r} is a file; "
            f"pass --data-dir or set {ENV_HOME} to a directory"
        )
    secret = _secret(builder, env)
    modalities = values["archive.rule_modalities"]
    assert isinstance(modalities, list)
    forward = _forward(builder)
    expire, limit = values["worklist.expire_after_hours"], values["worklist.max_results"]
    assert isinstance(expire, int) and isinstance(limit, int)
    settings = ArchiveSettings(
        resolved_dir,
        None if values["archive.db"] is None else str(values["archive.db"]),
        duplicate_policy=DuplicatePolicy.parse(str(values["archive.duplicate_policy"])),
        rules_path=None if values["archive.rules"] is None else Path(str(values["archive.rules"])),
        rule_modalities=tuple(modalities),
        deid_secret=secret,
        reviewer=None if values["review.reviewer"] is None else str(values["review.reviewer"]),
        four_eyes=bool(values["review.four_eyes"]),
        napari_patches=bool(values["review.napari_patches"]),
        forward=forward,
        worklist=WorklistSettings(expire_after_hours=expire, max_results=limit),
    )

    max_bytes, backups = values["log.max_bytes"], values["log.backup_count"]
    assert isinstance(max_bytes, int) and isinstance(backups, int)
    log = LogSettings(
        None if values["log.file"] is None else Path(str(values["log.file"])), max_bytes, backups
    )
    shown = dict(builder.values)
    if shown.get("archive.db"):
        shown["archive.db"] = redact_url(str(shown["archive.db"]))
    tables = {name: MappingProxyType(dict(document[name])) for name in BRIDGE_SECTIONS if name in document}
    return Configuration(
        archive=settings,
        log=log,
        forward=forward,
        path=path,
        tables=MappingProxyType(tables),
        values=MappingProxyType(shown),
        sources=MappingProxyType(dict(builder.sources)),
        _lines=MappingProxyType(lines),
    )


def _forward(builder: _Builder) -> ForwardSettings:
    """``[destinations.*]`` and ``[forward]`` validated; their keys recorded for ``config show``."""
    server = builder.document.get("server", {})
    aet = server.get("aet") if isinstance(server, dict) else None

    def where(section: str, key: str) -> str:
        return builder.where(section, key) if builder.path is not None else ""

    forward, shown = parse_forward(
        builder.document, where, default_calling_ae=aet if isinstance(aet, str) else None
    )
    for dotted, value, source in shown:
        builder.values[dotted] = sorted(value) if isinstance(value, frozenset) else value
        builder.sources[dotted] = source
    return forward


def _secret(builder: _Builder, env: Mapping[str, str]) -> bytes | None:
    """The de-identification secret: ``USARCHIVE_DEID_SECRET`` over ``[deid] secret_file``."""
    key = KEYS_BY_NAME["deid.secret_file"]
    from_env = env.get(ENV_DEID_SECRET, "")
    if from_env.strip():
        builder.set(key, "<secret from the environment>", f"env {ENV_DEID_SECRET}")
        return decode_secret(from_env)
    secret_file = builder.values.get(key.dotted)
    if secret_file is None:
        return None
    return read_secret_file(
        Path(str(secret_file)), what=f"{builder.where('deid', 'secret_file')}: [deid] secret_file"
    )
