"""``[web]`` of ``usarchive.toml``: where and how ``usarchive web`` serves DICOMweb.

:class:`WebSettings` is built once from the loaded
:class:`~archive.config.Configuration` (whose key table validated the types)
and checked here for what concerns serving: the root path, TLS files that
exist and come in pairs, and **no plain HTTP on a non-loopback address**
unless ``allow_plain_http = true`` (bearer tokens would travel in clear).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from archive.config import Configuration
from archive.errors import ConfigError
from archive.web.limits import ConnectionLimits

#: Name of the access log in the data directory when ``[web] access_log`` is unset.
ACCESS_LOG_NAME = "web-access.log"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebSettings:
    """How ``usarchive web`` serves; one immutable object per server.

    Attributes
    ----------
    host : str
    port : int
        0 asks the system for a free port (tests, ``--port 0``).
    root : str
        Path prefix of the DICOMweb endpoints, ``""`` or ``/a/b`` (no trailing slash).
    certificate, key : Path or None
        TLS certificate chain and private key (PEM); both or neither.
    allow_plain_http : bool
        Plain HTTP on a non-loopback host.
    cors_origins : tuple of str
        Origins allowed by CORS (empty: no CORS headers, browsers refuse cross-origin use).
    max_request_bytes : int
        Largest request body (STOW-RS).
    max_results : int
        Most QIDO-RS results in one response.
    access_log : Path
        One line per request.
    limits : ConnectionLimits
        Time and connection bounds (``header_timeout_s``, ``body_timeout_s``,
        ``body_min_rate``, ``max_connections``, ``keep_alive_timeout_s``).
    uvicorn_patches : bool
        The head timer and connection cap of :mod:`archive.web._uvicorn_compat`
        (``False``: uvicorn's stock h11 protocol, a warning in the log).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    root: str = "/dicomweb"
    certificate: Path | None = None
    key: Path | None = None
    allow_plain_http: bool = False
    cors_origins: tuple[str, ...] = ()
    max_request_bytes: int = 2 * 1024**3
    max_results: int = 1000
    access_log: Path = Path(ACCESS_LOG_NAME)
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    uvicorn_patches: bool = True

    @property
    def tls(self) -> bool:
        """Whether HTTPS is served."""
        return self.certificate is not None

    @property
    def scheme(self) -> str:
        """``https`` or ``http``."""
        return "https" if self.tls else "http"

    @classmethod
    def from_configuration(cls, config: Configuration) -> WebSettings:
        """The ``[web]`` values of ``config``, checked (see :meth:`check`).

        Raises
        ------
        ConfigError
            Naming the key, the file and the line.
        """
        values = config.values

        def path(name: str) -> Path | None:
            value = values.get(f"web.{name}")
            return None if value is None else Path(str(value))

        root = str(values.get("web.root", "/dicomweb")).strip()
        origins = values.get("web.cors_origins") or []
        assert isinstance(origins, list)
        port = values.get("web.port", 8080)
        max_bytes = values.get("web.max_request_bytes", 2 * 1024**3)
        max_results = values.get("web.max_results", 1000)
        assert isinstance(port, int) and isinstance(max_bytes, int) and isinstance(max_results, int)
        defaults = ConnectionLimits()

        def number(name: str) -> int:
            value = values.get(f"web.{name}", getattr(defaults, name))
            assert isinstance(value, int | float)
            return int(value)

        limits = ConnectionLimits(
            header_timeout_s=number("header_timeout_s"),
            body_timeout_s=number("body_timeout_s"),
            body_min_rate=number("body_min_rate"),
            max_connections=number("max_connections"),
            keep_alive_timeout_s=number("keep_alive_timeout_s"),
        )
        settings = cls(
            host=str(values.get("web.host", "127.0.0.1")).strip(),
            port=port,
            root=root,
            certificate=path("certificate"),
            key=path("key"),
            allow_plain_http=bool(values.get("web.allow_plain_http", False)),
            cors_origins=tuple(str(origin) for origin in origins),
            max_request_bytes=max_bytes,
            max_results=max_results,
            access_log=path("access_log") or config.archive.data_dir / ACCESS_LOG_NAME,
            limits=limits,
            uvicorn_patches=bool(values.get("web.uvicorn_patches", True)),
        )
        try:
            return settings.check()
        except ConfigError as exc:
            if config.path is None:
                raise
            key = re.match(r"\[web\] (\w+)", str(exc))
            raise ConfigError(f"{config.where('web', key.group(1) if key else None)}: {exc}") from None

    def with_address(self, host: str | None, port: int | None) -> WebSettings:
        """These settings with ``--host`` / ``--port`` applied, checked again."""
        changed = replace(
            self, host=self.host if host is None else host, port=self.port if port is None else port
        )
        return changed.check()

    def check(self) -> WebSettings:
        """``self`` if consistent.

        Raises
        ------
        ConfigError
            For a root path that does not start with ``/``, half a TLS pair, a TLS file that
            does not exist, plain HTTP on a non-loopback host without ``allow_plain_http``, or
            a time or connection bound that is not positive.
        """
        try:
            self.limits.check()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.root and (not self.root.startswith("/") or self.root.endswith("/") or "//" in self.root):
            raise ConfigError(
                f"[web] root: expected a path such as '/dicomweb' (leading slash, none at the end) or '', "
                f"but got {self.root!r}"
            )
        if (self.certificate is None) != (self.key is None):
            raise ConfigError(
                "[web] certificate: expected both certificate and key (PEM files) or neither, but only "
                f"{'certificate' if self.key is None else 'key'} is set; set the other"
            )
        for name, file in (("certificate", self.certificate), ("key", self.key)):
            if file is not None and not file.is_file():
                raise ConfigError(f"[web] {name}: expected a PEM file, but {str(file)!r} does not exist")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"[web] port: expected 0 to 65535, but got {self.port}")
        if not self.tls and not self.allow_plain_http and not is_loopback(self.host):
            raise ConfigError(
                f"[web] host: plain HTTP on {self.host!r} (not a loopback address) would send bearer tokens "
                "and patient data in clear; configure [web] certificate and key, listen on 127.0.0.1, or set "
                "[web] allow_plain_http = true behind a TLS-terminating proxy"
            )
        return self
