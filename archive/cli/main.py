"""Root of the ``usarchive`` command.

Commands of ``archive`` are listed in :data:`ARCHIVE_COMMANDS` and imported
when used. Commands of the packages that depend on ``archive``
(``pacs_bridge``'s ``serve``, ``annotator``'s ``annotate``) are found through
the ``usarchive.commands`` entry-point group, so the dependency arrows keep
pointing toward ``archive``.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from archive.errors import ArchiveError
from archive.settings import ENV_DB, ENV_HOME, ArchiveSettings

#: The archive's own subcommands: name → ("module:attribute", one-line help).
#: Loaded on first use, so running one command imports only what it needs (the
#: receiver does not load matplotlib); ``--help`` lists them from this table.
#: ``tests/archive/test_cli_main.py`` checks each line against the command's own help.
ARCHIVE_COMMANDS: dict[str, tuple[str, str]] = {
    "audit": (
        "archive.cli.audit:audit_command",
        "Audit reviewed clips and their procedures' outcomes, grouped by technique × level.",
    ),
    "export": (
        "archive.cli.export:export_command",
        "Export clips: hdf5 and dicom are de-identified research exports; sr is not.",
    ),
    "find": (
        "archive.cli.find:find_command",
        "Find instances; a table, or with --json a list (see docs/json-output.md).",
    ),
    "import": (
        "archive.cli.import_cmd:import_command",
        "Import DICOM files and directories (recursively) into the archive.",
    ),
    "outcome": (
        "archive.cli.outcome:outcome",
        "Clinical outcomes per procedure (study and side): VAS, ODI and adverse events.",
    ),
    "review": (
        "archive.cli.review:review",
        "Reviewers' annotations: status, history, JSON export and import.",
    ),
    "sample": (
        "archive.cli.sample:sample",
        "Synthetic ultrasound-guided spinal injection clips with JSON ground truth.",
    ),
    "show": (
        "archive.cli.show:show_command",
        "Show the study, series or instance with this UID.",
    ),
    "stats": (
        "archive.cli.stats:stats_command",
        "Counts of patients, studies, series, instances, bytes, and by procedure attribute.",
    ),
    "tag": (
        "archive.cli.tag:tag_command",
        "Set level, side, technique, approach or procedure of a study, series or instance.",
    ),
    "verify": (
        "archive.cli.verify_cmd:verify_command",
        "Check every stored file against the index; exit status 1 on problems.",
    ),
}


def _load(target: str) -> click.Command:
    module_name, _, attribute = target.partition(":")
    loaded = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(loaded, click.Command):
        raise click.ClickException(f"{target} is not a click command")
    return loaded


class _LazyGroup(click.Group):
    """The root group: the archive's commands and plugins, each loaded when used.

    Plugins are the ``usarchive.commands`` entry points (``serve``, ``annotate``).
    """

    def _plugins(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group="usarchive.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(ARCHIVE_COMMANDS) | set(self._plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        if cmd_name in ARCHIVE_COMMANDS:
            return _load(ARCHIVE_COMMANDS[cmd_name][0])
        plugin = self._plugins().get(cmd_name)
        if plugin is None:
            return None
        return _load(plugin.value)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in ARCHIVE_COMMANDS:
                rows.append((name, ARCHIVE_COMMANDS[name][1]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


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


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
