"""``usarchive init`` and ``usarchive config show``: set up an archive, show the effective configuration."""

from __future__ import annotations

import os
from pathlib import Path

import click

from archive.archive import Archive
from archive.cli.common import cli_state, print_json, print_tsv
from archive.config import CONFIG_NAME
from archive.config_show import render_show, template
from archive.errors import ArchiveError
from archive.fsutil import atomic_write_bytes
from archive.settings import ArchiveSettings


@click.command("init")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def init_command(ctx: click.Context, directory: Path | None) -> None:
    """Create an archive in DIRECTORY (default: the configured data directory).

    Makes the file store and the index (SQLite in DIRECTORY, or the --db index) and
    writes a commented usarchive.toml there unless one exists. Running it on an
    existing archive changes nothing but migrating its index.
    """
    state = cli_state(ctx)
    settings: ArchiveSettings = state.settings
    if directory is not None:
        settings = ArchiveSettings(
            directory.expanduser(),
            settings.db_url,
            duplicate_policy=settings.duplicate_policy,
            rules_path=settings.rules_path,
            rule_modalities=settings.rule_modalities,
            deid_secret=settings.deid_secret,
            reviewer=settings.reviewer,
            four_eyes=settings.four_eyes,
        )
    existed = Archive.exists(settings)
    try:
        with Archive.open(settings, create=True):
            pass
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc
    config_file = settings.data_dir / CONFIG_NAME
    wrote = not config_file.exists()
    if wrote:
        atomic_write_bytes(config_file, template(settings.data_dir.resolve()).encode("utf-8"))
    if state.json_output:
        print_json(
            {
                "archive": settings.description,
                "created": not existed,
                "config_file": str(config_file),
                "config_written": wrote,
            }
        )
        return
    click.echo(f"{'existing' if existed else 'new'} archive at {settings.description}")
    click.echo(f"configuration: {config_file}" + (" (written, commented)" if wrote else " (kept)"))


@click.group("config")
def config() -> None:
    """The effective configuration (usarchive.toml, environment, flags) and where each value came from."""


@config.command("show")
@click.pass_context
def show_command(ctx: click.Context) -> None:
    """Print every setting with its value and source (default, FILE:LINE, env NAME or --flag).

    Secrets are never printed; a database password is shown as ***.
    """
    state = cli_state(ctx)
    configuration = state.configuration
    rows = render_show(configuration)
    if state.json_output:
        print_json(
            {
                "config_file": None if configuration.path is None else str(configuration.path),
                "settings": [{"key": key, "value": value, "source": source} for source, key, value in rows],
            }
        )
        return
    if not os.isatty(1) or state.table_format == "tsv":
        print_tsv(("source", "key", "value"), rows)
        return
    click.echo(f"# configuration file: {configuration.path or '(none)'}")
    width = max(len(source) for source, _, _ in rows)
    for source, key, value in rows:
        click.echo(f"{source:<{width}}  {key}={value}")
