"""Helpers shared by the archive's commands: opening the archive, printing JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import click

from archive.archive import Archive
from archive.errors import ArchiveError


def cli_state(ctx: click.Context) -> Any:
    """The root command's ``CliState`` (settings, ``json_output``)."""
    state = ctx.find_root().obj
    if state is None:
        raise click.ClickException("internal: the usarchive root command did not run")
    return state


@contextmanager
def open_archive(ctx: click.Context, **options: object) -> Iterator[Archive]:
    """Open the archive chosen by the root options, adding ``options`` to its settings."""
    settings = cli_state(ctx).settings
    if options:
        settings = replace(settings, options={**settings.options, **options})
    try:
        archive = Archive.open(settings)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # e.g. the database server is unreachable
        raise click.ClickException(
            f"cannot open the archive at {settings.data_dir} (index {settings.resolved_db_url}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    with archive:
        yield archive


def print_json(document: Any) -> None:
    """Write ``document`` as indented JSON (keys in the documented order) to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
