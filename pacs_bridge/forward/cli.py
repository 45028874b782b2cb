"""``usarchive forward run`` and the forwarder inside ``usarchive serve``; SIGHUP reloads routes.

``forward run`` is registered in the ``usarchive.forward.commands`` entry-point
group, which the ``forward`` group (``archive.cli.forward``) loads, so
``archive`` never imports ``pacs_bridge``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import click

from archive.cli.main import CliState
from archive.errors import ArchiveError, ConfigError
from archive.forward.config import ForwardSettings, load_forward_settings
from pacs_bridge.config import TLSSettings, load_settings
from pacs_bridge.forward.worker import Forwarder

LOGGER = logging.getLogger(__name__)


class ReloadOnHangup:
    """Install a SIGHUP handler that re-reads destinations and routes into a forwarder and the archive.

    The handler only sets a flag; :meth:`poll` (called from the main loop) does the
    reading, so a bad file is logged and the running settings stay. A reload that
    disables forwarding stops the forwarder; one that enables it (or adds the
    first destination) starts one.

    ``prepare`` (``usarchive serve``: :meth:`pacs_bridge.reload.AccessReload.prepare`)
    reads the rest of what a reload changes from the re-read forwarding settings and
    returns how to apply it; a ``ConfigError`` from it leaves everything as it runs.
    ``tls`` is the ``[tls]`` section a forwarder it starts uses toward destinations.
    """

    def __init__(
        self,
        forwarder: Forwarder | None,
        archive: Any,
        config_path: Path | None,
        prepare: Callable[[ForwardSettings], Callable[[], None]] | None = None,
        tls: TLSSettings | None = None,
    ) -> None:
        self.forwarder = forwarder
        self.tls = tls
        self.archive = archive
        self.config_path = config_path
        self.prepare = prepare
        self._requested = threading.Event()
        self._previous: Any = None

    def __enter__(self) -> ReloadOnHangup:
        self._previous = signal.signal(signal.SIGHUP, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGHUP, self._previous)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._requested.set()

    def poll(self) -> None:
        """Reload now if SIGHUP arrived since the last call."""
        if not self._requested.is_set():
            return
        self._requested.clear()
        if self.config_path is None:
            LOGGER.warning("SIGHUP: no configuration file in use; nothing to reload")
            return
        try:
            settings = load_forward_settings(self.config_path)
            apply_also = self.prepare(settings) if self.prepare is not None else None
        except (ConfigError, OSError) as exc:
            LOGGER.error("SIGHUP: %s; the running configuration stays", exc)
            return
        apply_forward_settings(self.archive, settings)
        if apply_also is not None:
            apply_also()
        if self.forwarder is not None and not settings.enabled:
            LOGGER.info("SIGHUP: [forward] enabled = false: stopping the forwarder")
            self.forwarder.stop()
            self.forwarder = None
        elif self.forwarder is not None:
            self.forwarder.reload(settings)
        else:
            self.forwarder = start_forwarder(self.archive, settings, self.tls)
        LOGGER.info("SIGHUP: destinations and routes re-read from %s", self.config_path)

    def stop_forwarder(self) -> None:
        """Stop the forwarder this reloader holds (the one it was given, or one it started)."""
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None


def apply_forward_settings(archive: Any, settings: ForwardSettings) -> None:
    """Make the archive's ingest route new instances with ``settings`` (``Archive.reload_forward``)."""
    archive.reload_forward(settings)


def start_forwarder(
    archive: Any, settings: ForwardSettings, tls: TLSSettings | None = None
) -> Forwarder | None:
    """Start a forwarder thread when forwarding is enabled and has destinations; else ``None``.

    ``tls`` (the ``[tls]`` section) is presented to and trusted for destinations with ``tls = true``.
    """
    if not settings.enabled:
        LOGGER.info("forwarding disabled ([forward] enabled = false)")
        return None
    if not settings.destinations:
        LOGGER.info("forwarding: no [destinations.*] configured; no forwarder runs")
        return None
    forwarder = Forwarder(archive, settings, tls=tls)
    forwarder.start()
    return forwarder


@click.command("run")
@click.option("--worker-id", help="This worker's name in the task table (default host:pid:thread).")
@click.pass_obj
def run(state: CliState, worker_id: str | None) -> None:
    """Send due forwarding tasks to their destinations until SIGTERM or Ctrl-C (SIGHUP re-reads routes).

    Several `forward run` may share a PostgreSQL index; with SQLite run one per archive.
    Storage commitment reports arrive at `usarchive serve`, which must run too.
    """
    from archive.archive import Archive
    from pacs_bridge.cli import _open_archive

    settings = state.configuration.forward
    try:
        tls = load_settings(
            None, tables=state.configuration.tables, base_dir=state.configuration.base_dir
        ).tls
    except ConfigError as exc:
        raise click.ClickException(str(state.configuration.locate(exc))) from exc
    if not settings.destinations:
        raise click.ClickException(
            "forward run: no destination configured; expected [destinations.NAME] tables in "
            f"{state.configuration.path or 'usarchive.toml'} (see docs/forwarding.md)"
        )
    logging.getLogger("pacs_bridge").setLevel(
        min(logging.getLogger("pacs_bridge").getEffectiveLevel(), logging.INFO)
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        LOGGER.info("signal %d received: finishing the C-STORE in flight", signum)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with _open_archive(Archive, state) as archive:
            forwarder = Forwarder(archive, settings, worker_id, tls=tls)
            forwarder.start()
            click.echo(f"usarchive forward run: forwarding as {forwarder.worker_id}")
            reloader = ReloadOnHangup(forwarder, archive, state.configuration.path, tls=tls)
            try:
                with reloader:
                    while not stop.wait(0.5):
                        reloader.poll()
            finally:
                reloader.stop_forwarder()
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("usarchive forward run: stopped")


__all__ = ["ReloadOnHangup", "apply_forward_settings", "run", "start_forwarder"]
