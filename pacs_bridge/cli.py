"""``usarchive serve``: run the DICOM receiver (and the forwarder) until SIGTERM or Ctrl-C.

Registered in the ``usarchive.commands`` entry-point group, so the root
command (``archive.cli.main``) finds it without depending on this package.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import click

from archive.cli.main import CliState
from archive.config import BRIDGE_SECTIONS, read_toml
from archive.errors import ArchiveError, ConfigError
from pacs_bridge.config import BridgeSettings, load_settings
from pacs_bridge.forward.cli import ReloadOnHangup, start_forwarder
from pacs_bridge.reload import AccessReload
from pacs_bridge.server import DEFAULT_DRAIN_TIMEOUT_S, BridgeServer
from pacs_bridge.spool import SpoolUnavailableError

LOGGER = logging.getLogger(__name__)


@contextlib.contextmanager
def _open_archive(archive_class: Any, state: CliState) -> Iterator[Any]:
    """Open the archive; an unusable data directory or index is a one-line error, not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    data_dir = state.settings.data_dir
    try:
        opened = archive_class.open(state.settings, create=False)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(
            f"cannot open the archive in {str(data_dir)!r}: {exc.strerror or exc}"
            f"{f' ({exc.filename})' if exc.filename else ''}; expected a directory this user can write "
            "(create it, fix its permissions, or choose another --data-dir)"
        ) from exc
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise click.ClickException(
            f"cannot open the archive index in {str(data_dir)!r}: {reason}; expected a writable index "
            "(check the permissions of the data directory and its index, or --db)"
        ) from exc
    with opened as archive:
        yield archive


def _reread_settings(
    config_path: Path | None, configuration_path: Path | None, overrides: dict[str, Any]
) -> BridgeSettings:
    """The receiver's settings read again from its file (SIGHUP), with the same command-line overrides."""
    if config_path is not None:
        return load_settings(config_path, **overrides)
    if configuration_path is None:
        return load_settings(**overrides)
    document, _ = read_toml(configuration_path)
    tables = {name: document[name] for name in BRIDGE_SECTIONS if name in document}
    return load_settings(tables=tables, base_dir=configuration_path.parent, **overrides)


@click.command("serve")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Deprecated: a separate TOML file with [server], [tls] and [commitment_peers]; put these "
    "tables in usarchive.toml instead (usarchive --config FILE serve; see docs/pacs_bridge.md).",
)
@click.option("--host", help="Address to listen on (default 0.0.0.0).")
@click.option("--port", type=click.IntRange(0, 65535), help="TCP port (default 11112; 0 = any free port).")
@click.option("--aet", help="Our AE title (default USARCHIVE); other called AE titles are rejected.")
@click.option(
    "--allow",
    multiple=True,
    metavar="CALLING_AE[@host]",
    help="Allow this calling AE title, optionally only from host (repeatable; replaces the file's list).",
)
@click.option(
    "--allow-any",
    is_flag=True,
    default=None,
    help="Accept every calling AE title (no access control; a warning is logged).",
)
@click.option(
    "--max-pdu",
    type=click.IntRange(min=0),
    help="Largest P-DATA PDU received, bytes (default 4194304; 0 = advertise none, read up to 64 MiB).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_DRAIN_TIMEOUT_S,
    show_default=True,
    help="Seconds SIGTERM waits for in-flight stores before aborting.",
)
@click.pass_obj
def serve(
    state: CliState,
    config_path: Path | None,
    host: str | None,
    port: int | None,
    aet: str | None,
    allow: tuple[str, ...],
    allow_any: bool | None,
    max_pdu: int | None,
    drain_timeout: float,
) -> None:
    """Receive ultrasound clips over DICOM (C-STORE, C-ECHO, storage commitment) into the archive.

    Closed by default: allow each scanner with --allow SCANNER_AE (or SCANNER_AE@host).
    Stops cleanly on SIGTERM or Ctrl-C after finishing the stores in flight.
    With [forward] enabled and destinations configured, also forwards (SIGHUP re-reads routes).
    """
    from archive.archive import Archive  # the archive is opened only when serving

    try:
        configuration = state.configuration
        if config_path is not None:
            LOGGER.warning(
                "serve --config %s: a separate receiver file is deprecated; move its [server], [tls] and "
                "[commitment_peers] tables into usarchive.toml (found by usarchive --config, "
                "USARCHIVE_CONFIG or the data directory)",
                config_path,
            )
            if configuration.tables:
                raise ArchiveError(
                    f"serve --config {config_path}: expected the receiver's tables in one place, but "
                    f"{configuration.path} has them too; remove serve --config and keep them in "
                    f"{configuration.path}"
                )
        overrides: dict[str, Any] = {
            "aet": aet,
            "host": host,
            "port": port,
            "allow": allow,
            "allow_any": allow_any,
            "max_pdu_bytes": max_pdu,
        }
        settings = load_settings(
            config_path, tables=configuration.tables, base_dir=configuration.base_dir, **overrides
        )
        settings.check_access_policy()
    except ConfigError as exc:
        located = exc if config_path is not None else state.configuration.locate(exc)
        raise click.ClickException(str(located)) from exc
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc
    bridge_logger = logging.getLogger("pacs_bridge")
    if bridge_logger.getEffectiveLevel() > logging.INFO:
        bridge_logger.setLevel(logging.INFO)  # a server logs each association and instance by default

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        LOGGER.info("signal %d received: finishing in-flight stores", signum)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with _open_archive(Archive, state) as archive:
            LOGGER.info(
                "serving the archive at %s (rules: %s, duplicate policy: %s)",
                state.settings.description,
                state.settings.rules_path or "built-in",
                state.settings.duplicate_policy.value,
            )
            server = BridgeServer(settings, archive, destinations=configuration.forward.destinations)
            try:
                server.start()
            except SpoolUnavailableError as exc:
                raise click.ClickException(str(exc)) from exc
            except OSError as exc:
                raise click.ClickException(
                    f"cannot listen on {settings.host}:{settings.port}: {exc}; "
                    "choose another --port or stop the program using it"
                ) from exc
            click.echo(f"usarchive serve: listening on {settings.host}:{server.port} as {settings.aet}")
            path = configuration.path
            access = AccessReload(server, lambda: _reread_settings(config_path, path, overrides))
            reloader = ReloadOnHangup(None, archive, configuration.path, access.prepare, settings.tls)
            try:
                reloader.forwarder = start_forwarder(archive, configuration.forward, settings.tls)
                with reloader:
                    while not stop.wait(0.5):
                        reloader.poll()
            finally:
                server.stop(drain_timeout_s=drain_timeout)
                reloader.stop_forwarder()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("usarchive serve: stopped")
