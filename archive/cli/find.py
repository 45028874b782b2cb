"""``usarchive find``: instances by patient, level, side, technique, procedure, date, modality, review."""

from __future__ import annotations

from dataclasses import replace

import click

from archive.cli.common import cli_state, open_archive, plain_output, print_json, print_table
from archive.cli.filters import parse_levels as parse_levels
from archive.cli.filters import parse_member as parse_member
from archive.cli.filters import parse_side as parse_side
from archive.cli.filters import query_filters
from archive.index.queries import DEFAULT_LIMIT, Query
from archive.model import ReviewStatus


@click.command("find")
@query_filters
@click.option(
    "--status",
    "review_status",
    type=click.Choice([status.value for status in ReviewStatus]),
    help="Review status of a reviewer's annotation (with --reviewer: of that reviewer's).",
)
@click.option("--limit", type=click.IntRange(min=1), default=DEFAULT_LIMIT, show_default=True)
@click.pass_context
def find_command(ctx: click.Context, query: Query, review_status: str | None, limit: int) -> None:
    """Find instances; a table, or with --json a list (see docs/json-output.md)."""
    query = replace(
        query, review_status=None if review_status is None else ReviewStatus(review_status), limit=limit
    )
    with open_archive(ctx) as archive:
        rows = archive.index.find(query)
    if cli_state(ctx).json_output:
        print_json([row.to_json() for row in rows])
        return
    header = ("SOP Instance UID", "patient", "study date", "mod", "levels", "side", "technique", "frames")
    print_table(
        ctx,
        header,
        [
            (
                row.sop_instance_uid,
                row.patient_id,
                row.study_date.isoformat() if row.study_date else "",
                row.modality or "",
                ",".join(row.levels),
                row.side or "",
                row.technique or "",
                str(row.frames or ""),
            )
            for row in rows
        ],
    )
    count = f"{len(rows)} instance(s)" + (f" (limit {limit} reached)" if len(rows) == limit else "")
    click.echo(count, err=plain_output(ctx))  # piped: stdout holds only the rows
