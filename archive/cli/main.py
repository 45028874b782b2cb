"""Root of the ``usarchive`` command.

Commands of ``archive`` are added here directly. Commands of the packages that
depend on ``archive`` (``pacs_bridge``'s ``serve``, ``annotator``'s
``annotate``) are found through the ``usarchive.commands`` entry-point group,
so the dependency arrows keep pointing toward ``archive``.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from archive.cli.sample import sample
from archive.errors import ArchiveError
from archive.settings import ENV_DB, ENV_HOME, ArchiveSettings


class _PluggableGroup(click.Group):
    """A group that also lists the commands registered by entry point."""

    def _plugins(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group="usarchive.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        plugin = self._plugins().get(cmd_name)
        if plugin is None:
            return None
        loaded = plugin.load()
        if not isinstance(loaded, click.Command):
            raise click.ClickException(f"entry point {plugin.value} is not a click command")
        return loaded


class CliState:
    """What the root options decided, shared with every subcommand via ``ctx.obj``."""

    def __init__(self, data_dir: Path | None, db_url: str | None, json_output: bool) -> None:
        self._data_dir = data_dir
        self._db_url = db_url
        self.json_output = json_output
        self._settings: ArchiveSettings | None = None

    @property
    def settings(self) -> ArchiveSettings:
        """Archive settings, built on first use (so ``--help`` touches nothing)."""
        if self._settings is None:
            try:
                self._settings = ArchiveSettings.from_environment(self._data_dir, self._db_url)
            except ArchiveError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._settings


@click.group(cls=_PluggableGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=ENV_HOME,
    help=f"Archive data directory (env {ENV_HOME}; default: per-user data directory).",
)
@click.option(
    "--db",
    "db_url",
    envvar=ENV_DB,
    help=(
        f"Index database URL, e.g. postgresql://user@host/db (env {ENV_DB}; "
        "default: SQLite in the data directory)."
    ),
)
@click.option("--json", "json_output", is_flag=True, help="Machine-readable JSON output where supported.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="usarchive")
@click.pass_context
def main(
    ctx: click.Context, data_dir: Path | None, db_url: str | None, json_output: bool, verbose: int
) -> None:
    """usarchive: archive and review of ultrasound-guided spinal injection clips."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = CliState(data_dir, db_url, json_output)


def _add_archive_commands() -> None:
    from archive.cli.audit import audit_command
    from archive.cli.export import export_command
    from archive.cli.find import find_command
    from archive.cli.import_cmd import import_command
    from archive.cli.outcome import outcome
    from archive.cli.review import review
    from archive.cli.show import show_command
    from archive.cli.stats import stats_command
    from archive.cli.tag import tag_command
    from archive.cli.verify_cmd import verify_command

    for command in (import_command, find_command, show_command, tag_command, verify_command, stats_command):
        main.add_command(command)
    main.add_command(review)
    main.add_command(export_command)
    main.add_command(outcome)
    main.add_command(audit_command)


_add_archive_commands()
main.add_command(sample)
