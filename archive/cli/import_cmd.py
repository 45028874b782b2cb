"""``usarchive import PATH…``: ingest files and directories (recursively)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from archive.archive import OPTION_DUPLICATE_POLICY
from archive.cli.common import cli_state, open_archive, print_json
from archive.ingest import DuplicatePolicy, IngestOutcome, IngestResult, Origin

#: Files ingested per group commit (one fsync pass, one index transaction).
BATCH = 64


def collect_files(paths: tuple[Path, ...]) -> list[Path]:
    """Files named, and files under directories named (recursively, hidden entries skipped), sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            for directory, subdirs, files in os.walk(path):
                subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
                found.extend(Path(directory) / name for name in sorted(files) if not name.startswith("."))
        else:
            found.append(path)
    return found


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
    help="Same SOP Instance UID with different bytes: keep the first (default) or replace it.",
)
@click.pass_context
def import_command(ctx: click.Context, paths: tuple[Path, ...], duplicate_policy: str | None) -> None:
    """Import DICOM files and directories (recursively) into the archive.

    Prints how many were stored, duplicates and rejected (with reasons); exits
    with status 1 when anything was rejected.
    """
    json_output = cli_state(ctx).json_output
    files = collect_files(paths)
    options = {OPTION_DUPLICATE_POLICY: duplicate_policy} if duplicate_policy else {}
    results: list[tuple[Path, IngestResult]] = []
    console = Console(stderr=True)
    with (
        open_archive(ctx, **options) as archive,
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
                "files": len(results),
                **{outcome.value: counts.get(outcome, 0) for outcome in IngestOutcome},
                "results": [_result_json(path, result) for path, result in results],
            }
        )
    else:
        summary = ", ".join(f"{counts.get(outcome, 0)} {outcome.value}" for outcome in IngestOutcome)
        click.echo(f"{len(results)} files: {summary}")
        for path, result in rejected:
            code = result.code.value if result.code else "rejected"
            click.echo(f"  rejected {path}: [{code}] {result.reason}")
    if rejected:
        ctx.exit(1)
