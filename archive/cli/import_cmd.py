"""``usarchive import PATH…``: ingest files and directories (recursively).

Files found in a directory whose name says they are no DICOM (a sidecar such as
``README.md`` or ``clip.json``, see :data:`NOT_DICOM_SUFFIXES`) and that do not
carry the Part 10 ``DICM`` marker are skipped, not rejected. Everything else,
and every file named on the command line, is offered to ingest.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from archive.cli.common import cli_state, open_archive, print_json
from archive.ingest import DuplicatePolicy, IngestOutcome, IngestResult, Origin

logger = logging.getLogger(__name__)

#: Files ingested per group commit (one fsync pass, one index transaction).
BATCH = 64

#: Name endings (lower case) of files that are obviously not DICOM: sidecars,
#: notes, images, data. A file found in a directory with one of these endings
#: is skipped unless it has the Part 10 marker (see :func:`is_sidecar`).
NOT_DICOM_SUFFIXES = frozenset(
    {
        ".json", ".md", ".txt", ".csv", ".html", ".htm", ".png", ".jpg", ".jpeg", ".gif",
        ".pdf", ".xml", ".h5", ".toml", ".yaml", ".yml", ".log", ".py",
    }
)  # fmt: skip

#: Offset of the Part 10 marker ``DICM`` (after the 128-byte preamble).
_MAGIC_OFFSET = 128
_MAGIC = b"DICM"


@dataclass(frozen=True)
class CollectedFiles:
    """What :func:`collect_files` found.

    Attributes
    ----------
    to_ingest : list of Path
        Files to offer to ingest, in the order found.
    skipped : list of Path
        Files found in directories that are obviously not DICOM (see :func:`is_sidecar`).
    """

    to_ingest: list[Path]
    skipped: list[Path]


def is_sidecar(path: Path) -> bool:
    """Whether a file is obviously not DICOM by its name and its first bytes.

    Parameters
    ----------
    path : Path
        A regular file.

    Returns
    -------
    bool
        True if its name ends with one of :data:`NOT_DICOM_SUFFIXES` (any case)
        and it has no ``DICM`` at byte offset 128. A file that cannot be read
        is no sidecar: ingest reports why it cannot be read.
    """
    if path.suffix.lower() not in NOT_DICOM_SUFFIXES:
        return False
    try:
        with path.open("rb") as stream:
            stream.seek(_MAGIC_OFFSET)
            return stream.read(len(_MAGIC)) != _MAGIC
    except OSError:
        return False


def collect_files(paths: tuple[Path, ...]) -> CollectedFiles:
    """Files named, and files under directories named (recursively, hidden entries skipped), sorted.

    Parameters
    ----------
    paths : tuple of Path
        Files and directories from the command line.

    Returns
    -------
    CollectedFiles
        Files named are always offered to ingest; files found in directories
        are skipped when :func:`is_sidecar` says so.
    """
    to_ingest: list[Path] = []
    skipped: list[Path] = []
    for path in paths:
        if not path.is_dir():
            to_ingest.append(path)
            continue
        for directory, subdirs, files in os.walk(path):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                found = Path(directory) / name
                (skipped if is_sidecar(found) else to_ingest).append(found)
    for path in skipped:
        logger.info("skipped %s: not DICOM by its name and has no DICM marker", path)
    return CollectedFiles(to_ingest=to_ingest, skipped=skipped)


def _result_json(path: Path, result: IngestResult) -> dict[str, object]:
    return {
        "source": str(path),
        "outcome": result.outcome.value,
        "sop_instance_uid": result.sop_instance_uid,
        "code": result.code.value if result.code else None,
        "reason": result.reason,
        "path": str(result.path) if result.path else None,
        "sha256": result.sha256,
        "size": result.size,
    }


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--duplicate-policy",
    type=click.Choice([p.value for p in DuplicatePolicy]),
    default=None,
    help="Same SOP Instance UID with different bytes: keep the first or replace it "
    "(default: [archive] duplicate_policy, else keep-first).",
)
@click.pass_context
def import_command(ctx: click.Context, paths: tuple[Path, ...], duplicate_policy: str | None) -> None:
    """Import DICOM files and directories (recursively) into the archive.

    Prints how many were stored, duplicates, rejected (with reasons) and
    skipped; exits with status 1 when anything was rejected. In directories,
    files named *.json, *.md, *.txt, *.csv, *.html, *.htm, *.png, *.jpg,
    *.jpeg, *.gif, *.pdf, *.xml, *.h5, *.toml, *.yaml, *.yml, *.log or *.py
    without the DICM marker are skipped (not DICOM); files named on the
    command line are always imported.
    """
    json_output = cli_state(ctx).json_output
    collected = collect_files(paths)
    files = collected.to_ingest
    overrides: dict[str, Any] = (
        {"duplicate_policy": DuplicatePolicy.parse(duplicate_policy)} if duplicate_policy else {}
    )
    results: list[tuple[Path, IngestResult]] = []
    console = Console(stderr=True)
    with (
        open_archive(ctx, **overrides) as archive,
        Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=json_output or not console.is_terminal,
        ) as progress,
    ):
        task = progress.add_task("import", total=len(files))
        for start in range(0, len(files), BATCH):
            batch = files[start : start + BATCH]
            origins = [Origin("file", path=str(path.resolve())) for path in batch]
            results.extend(zip(batch, archive.ingest_many(batch, origins=origins), strict=True))
            progress.advance(task, len(batch))
    counts = Counter(result.outcome for _, result in results)
    rejected = [(path, result) for path, result in results if result.outcome is IngestOutcome.REJECTED]
    if json_output:
        print_json(
            {
                "files": len(results) + len(collected.skipped),
                **{outcome.value: counts.get(outcome, 0) for outcome in IngestOutcome},
                "skipped": len(collected.skipped),
                "results": [_result_json(path, result) for path, result in results],
                "skipped_files": [str(path) for path in collected.skipped],
            },
            ctx,
        )
    else:
        summary = ", ".join(f"{counts.get(outcome, 0)} {outcome.value}" for outcome in IngestOutcome)
        total = len(results) + len(collected.skipped)
        click.echo(f"{total} files: {summary}, {len(collected.skipped)} skipped (not DICOM)")
        for path, result in rejected:
            code = result.code.value if result.code else "rejected"
            click.echo(f"  rejected {path}: [{code}] {result.reason}")
    if rejected:
        ctx.exit(1)
