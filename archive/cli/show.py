"""``usarchive show UID``: a study, series or instance with everything the index knows."""

from __future__ import annotations

from typing import Any

import click

from archive.cli.common import cli_state, full_uid, open_archive, print_json


def _lines(value: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        out: list[str] = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{key}:")
                out.extend(_lines(item, indent + 1))
            else:
                out.append(f"{pad}{key}: {'' if item is None or item == [] else item}")
        return out
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, dict):
                nested = _lines(item, indent + 1)
                out.append(f"{pad}- {nested[0].strip()}")
                out.extend(nested[1:])
            else:
                out.append(f"{pad}- {item}")
        return out
    return [f"{pad}{value}"]


@click.command("show")
@click.argument("uid")
@click.pass_context
def show_command(ctx: click.Context, uid: str) -> None:
    """Show the study, series or instance with this UID."""
    with open_archive(ctx) as archive:
        uid = full_uid(archive, uid)
        found = archive.index.show(uid)
    if found is None:
        raise click.ClickException(
            f"no study, series or instance with UID {uid!r} in the index; list UIDs with 'usarchive find'"
        )
    if cli_state(ctx).json_output:
        print_json({"kind": found.kind, **found.data}, ctx)
        return
    click.echo(f"{found.kind} {uid}")
    click.echo("\n".join(_lines(found.data, 1)))
