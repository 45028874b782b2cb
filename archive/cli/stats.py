"""``usarchive stats``: counts and sizes of the archive."""

from __future__ import annotations

import click

from archive.cli.common import cli_state, open_archive, print_json


@click.command("stats")
@click.pass_context
def stats_command(ctx: click.Context) -> None:
    """Counts of patients, studies, series, instances, bytes, and by procedure attribute."""
    with open_archive(ctx) as archive:
        numbers = archive.index.stats()
    if cli_state(ctx).json_output:
        print_json(numbers, ctx)
        return
    for key, value in numbers.items():
        if isinstance(value, dict):
            listed = ", ".join(f"{name or '(none)'}: {count}" for name, count in sorted(value.items()))
            click.echo(f"{key}: {listed}")
        else:
            click.echo(f"{key}: {value}")
