"""Helpers shared by the archive's commands: opening the archive, printing JSON and tables."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import click

from archive.archive import Archive
from archive.errors import ArchiveError

logger = logging.getLogger("archive.cli")


def cli_state(ctx: click.Context) -> Any:
    """The root command's ``CliState`` (settings, ``json_output``)."""
    state = ctx.find_root().obj
    if state is None:
        raise click.ClickException("internal: the usarchive root command did not run")
    return state


@contextmanager
def open_archive(ctx: click.Context, *, create: bool = False, **overrides: Any) -> Iterator[Archive]:
    """Open the archive chosen by the configuration, with ``overrides`` of its settings.

    An archive that does not exist is refused (naming the path and ``usarchive init``)
    unless ``create``; which archive was opened is logged (``-v``).
    """
    settings = cli_state(ctx).settings
    if overrides:
        settings = replace(settings, **overrides)
    try:
        archive = Archive.open(settings, create=create)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # e.g. the database server is unreachable
        raise click.ClickException(
            f"cannot open the archive at {settings.description}: {type(exc).__name__}: {exc}"
        ) from exc
    logger.info("opened the archive at %s", settings.description)
    with archive:
        yield archive


def archive_caption(ctx: click.Context) -> str:
    """``archive: <data dir>`` for a table's caption."""
    return f"archive: {cli_state(ctx).settings.description}"


def print_json(document: Any, ctx: click.Context | None = None) -> None:
    """Write ``document`` as indented JSON (keys in the documented order) to stdout.

    With ``ctx``, an object gets an ``"archive"`` key first: the archive the command opened.
    """
    if ctx is not None and isinstance(document, dict):
        document = {"archive": cli_state(ctx).settings.description, **document}
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")


def plain_output(ctx: click.Context) -> bool:
    """Whether tables print as tab-separated rows: ``--format tsv``, or stdout is not a terminal."""
    state = cli_state(ctx)
    if state.table_format == "tsv":
        return True
    if state.table_format == "table":
        return False
    return not sys.stdout.isatty()


def print_tsv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Tab-separated rows with a header line; tabs and newlines inside a value become spaces."""

    def cell(value: object) -> str:
        text = "" if value is None else str(value)
        return text.replace("\t", " ").replace("\n", " ")

    for row in (header, *rows):
        sys.stdout.write("\t".join(cell(value) for value in row) + "\n")


def print_table(ctx: click.Context, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Rows as a table captioned with the archive, or tab-separated (:func:`plain_output`)."""
    if plain_output(ctx):
        print_tsv(header, rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*header, caption=archive_caption(ctx))
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    Console(width=200).print(table)


def full_uid(archive: Archive, text: str) -> str:
    """The UID ``text`` names: a whole UID, or a unique prefix of a study, series or instance UID."""
    try:
        return archive.index.resolve_uid(text)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def progress_bar(ctx: click.Context, label: str, total: int | None, *, unit: str = "") -> Iterator[Any]:
    """A rich progress bar on stderr (only on a terminal and without ``--json``); yields ``advance(n)``."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    amount = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    with Progress(
        TextColumn(label),
        BarColumn(),
        amount,
        TimeRemainingColumn(),
        console=console,
        disable=bool(cli_state(ctx).json_output) or not console.is_terminal,
    ) as progress:
        task = progress.add_task(label, total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)

        yield advance
