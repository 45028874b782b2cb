"""Root of the ``usarchive`` command.

Commands of ``archive`` are listed in :data:`ARCHIVE_COMMANDS` and imported
when used. Commands of the packages that depend on ``archive``
(``pacs_bridge``'s ``serve``, ``annotator``'s ``annotate``) are found through
the ``usarchive.commands`` entry-point group, so the dependency arrows keep
pointing toward ``archive``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, NoReturn

import click

from archive.config import ENV_CONFIG, Configuration, load_configuration
from archive.errors import ArchiveError
from archive.settings import ENV_DB, ENV_HOME, ArchiveSettings

#: The archive's own subcommands: name → ("module:attribute", one-line help).
#: Loaded on first use, so running one command imports only what it needs (the
#: receiver does not load matplotlib); ``--help`` lists them from this table.
#: ``tests/archive/test_cli_main.py`` checks each line against the command's own help.
ARCHIVE_COMMANDS: dict[str, tuple[str, str]] = {
    "config": (
        "archive.cli.config_cmd:config",
        "The effective configuration (usarchive.toml, environment, flags) and where each value came from.",
    ),
    "init": (
        "archive.cli.config_cmd:init_command",
        "Create an archive in DIRECTORY (default: the configured data directory).",
    ),
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
    "forward": (
        "archive.cli.forward:forward",
        "Forwarding to other DICOM nodes: the outbox's tasks per destination, retries and resends.",
    ),
    "import": (
        "archive.cli.import_cmd:import_command",
        "Import DICOM files and directories (recursively) into the archive.",
    ),
    "outcome": (
        "archive.cli.outcome:outcome",
        "Clinical outcomes per procedure (study and side): VAS, ODI and adverse events.",
    ),
    "propose": (
        "archive.cli.propose:propose_command",
        "Propose needle and spread marks on clip UID and store them as its proposal (reviewer 'auto').",
    ),
    "review": (
        "archive.cli.review:review",
        "Reviewers' annotations: status, history, JSON export and import, accepting proposals.",
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
    "web": (
        "archive.cli.web:web",
        "Serve the archive as DICOMweb (QIDO-RS, WADO-RS, STOW-RS) with bearer tokens.",
    ),
    "worklist": (
        "archive.cli.worklist:worklist",
        "Scheduled procedures offered to scanners (Modality Worklist) and their performed steps (MPPS).",
    ),
}


def _load(target: str) -> click.Command:
    module_name, _, attribute = target.partition(":")
    loaded = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(loaded, click.Command):
        raise click.ClickException(f"{target} is not a click command")
    _add_json_option(loaded)
    return loaded


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and ctx.find_root().obj is not None:
        ctx.find_root().obj.json_output = True


def _add_json_option(command: click.Command) -> None:
    """Accept ``--json`` after the (sub)command too: ``usarchive find --json`` = ``usarchive --json find``."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_json_option(sub)
        return
    if any("--json" in getattr(param, "opts", ()) for param in command.params):
        return
    command.params.append(
        click.Option(
            ["--json"],
            is_flag=True,
            expose_value=False,
            callback=_set_json,
            help="Machine-readable JSON output (same as usarchive --json).",
        )
    )


def _wants_json(args: Sequence[str]) -> bool:
    head = list(args)
    if "--" in head:
        head = head[: head.index("--")]
    return "--json" in head


def _report_error(message: str, code: int, as_json: bool) -> NoReturn:
    if as_json:
        sys.stderr.write(json.dumps({"error": message, "exit_code": code}, ensure_ascii=False) + "\n")
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(code)


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

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; errors are one line (JSON under ``--json``), never a traceback for I/O.

        A ``click`` error, and an ``OSError`` escaping a command (an output that cannot be
        written, a directory that does not exist), end the command with one line naming
        the problem; under ``--json`` it is ``{"error": ..., "exit_code": ...}`` on stderr (stdout keeps
        what the command printed before, e.g. the items done).
        """
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        as_json = _wants_json(argv)
        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            _report_error("aborted", 1, as_json)
        except click.UsageError as exc:
            if as_json:
                _report_error(exc.format_message(), exc.exit_code, True)
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _report_error(exc.format_message(), exc.exit_code, as_json)
        except OSError as exc:
            logging.getLogger("archive.cli").debug("command failed", exc_info=True)
            where = f" {exc.filename}" if exc.filename else ""
            _report_error(f"{exc.strerror or exc}:{where}".rstrip(":"), 1, as_json)
        sys.exit(result if isinstance(result, int) else 0)

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

    def __init__(
        self,
        data_dir: Path | None,
        db_url: str | None,
        json_output: bool,
        *,
        config_path: Path | None = None,
        log_file: Path | None = None,
        table_format: str | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._db_url = db_url
        self._config_path = config_path
        self._log_file = log_file
        self.json_output = json_output
        self.table_format = table_format
        self._configuration: Configuration | None = None

    @property
    def configuration(self) -> Configuration:
        """The effective configuration, loaded on first use (so ``--help`` touches nothing)."""
        if self._configuration is None:
            try:
                self._configuration = load_configuration(
                    config_path=self._config_path,
                    data_dir=self._data_dir,
                    db_url=self._db_url,
                    log_file=self._log_file,
                    environ=os.environ,
                )
            except ArchiveError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._configuration

    @property
    def settings(self) -> ArchiveSettings:
        """Archive settings of the configuration."""
        return self.configuration.archive

    def person(self, given: str | None) -> str | None:
        """Who records something: ``--by``, else ``[review] reviewer`` (or ``USARCHIVE_REVIEWER``)."""
        return given.strip() if given and given.strip() else self.settings.reviewer


def _setup_logging(verbose: int, state: CliState) -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # also when logging was configured before (tests, embedding)
    try:
        log = state.configuration.log
    except click.ClickException:
        return  # the command reports the configuration's error when it needs the configuration
    if log.file is None:
        return
    try:
        handler = RotatingFileHandler(log.file, maxBytes=log.max_bytes, backupCount=log.backup_count)
    except OSError as exc:
        raise click.ClickException(
            f"log file {log.file}: expected a writable file, but {exc.strerror or exc}; "
            "fix [log] file or --log-file"
        ) from exc
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Configuration file (env {ENV_CONFIG}; default: usarchive.toml in the data directory).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Archive data directory (env {ENV_HOME}; default: [archive] data_dir, else the per-user one).",
)
@click.option(
    "--db",
    "db_url",
    help=(
        f"Index database URL, e.g. postgresql://user@host/db (env {ENV_DB}; "
        "default: SQLite in the data directory)."
    ),
)
@click.option("--json", "json_output", is_flag=True, help="Machine-readable JSON output where supported.")
@click.option(
    "--format",
    "table_format",
    type=click.Choice(["table", "tsv"]),
    help="Tables as boxes or tab-separated rows (default: tsv when stdout is not a terminal).",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also log to this file, rotated by size ([log] max_bytes, backup_count).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="usarchive")
@click.pass_context
def main(
    ctx: click.Context,
    config_path: Path | None,
    data_dir: Path | None,
    db_url: str | None,
    json_output: bool,
    table_format: str | None,
    log_file: Path | None,
    verbose: int,
) -> None:
    """usarchive: archive and review of ultrasound-guided spinal injection clips."""
    state = CliState(
        data_dir, db_url, json_output, config_path=config_path, log_file=log_file, table_format=table_format
    )
    ctx.obj = state
    _setup_logging(verbose, state)
