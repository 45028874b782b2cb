"""``usarchive find``: instances by patient, level, side, technique, procedure, date, modality, review."""

from __future__ import annotations

from datetime import date, datetime

import click
from rich.console import Console
from rich.table import Table

from archive.cli.common import cli_state, open_archive, print_json
from archive.index.queries import DEFAULT_LIMIT, Query
from archive.model import ProcedureType, ReviewStatus, Side, SpinalLevel, Technique


def parse_levels(values: tuple[str, ...]) -> tuple[SpinalLevel, ...]:
    """``("L4", "L5,S1")`` → levels; raises ``click.BadParameter`` naming the valid values."""
    levels: list[SpinalLevel] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                try:
                    levels.append(SpinalLevel.parse(part.strip().upper()))
                except ValueError as exc:
                    raise click.BadParameter(str(exc), param_hint="--level") from exc
    return tuple(levels)


def parse_side(value: str | None) -> Side | None:
    """``left``/``right``/``bilateral`` or the Image Laterality codes ``L``/``R``/``B``."""
    if value is None:
        return None
    codes = {side.laterality: side for side in Side}
    if value.strip().upper() in codes:
        return codes[value.strip().upper()]
    try:
        return Side.parse(value.strip().lower())
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (or L, R, B)", param_hint="--side") from exc


def parse_member(kind: type[Technique] | type[ProcedureType], value: str | None, hint: str) -> object:
    """A technique or procedure type by value or name (case-insensitive names)."""
    if value is None:
        return None
    for member in kind:
        if value.strip().lower() in (member.value.lower(), member.name.lower()):
            return member
    valid = ", ".join(member.value for member in kind)
    raise click.BadParameter(f"expected one of {valid}, but got {value!r}", param_hint=hint)


def _date(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


@click.command("find")
@click.option("--patient", help="Patient ID, or patient name as stored (Family^Given).")
@click.option(
    "--level", "levels", multiple=True, help="Spinal level, e.g. L5 (repeat or comma-separate: any of)."
)
@click.option("--side", help="left, right, bilateral (or L, R, B).")
@click.option("--technique", help="TT, OT, in-plane, out-of-plane, other, unknown.")
@click.option("--procedure", help="medial branch block, radiofrequency, epidural, facet injection, other.")
@click.option("--date-from", type=click.DateTime(["%Y-%m-%d", "%Y%m%d"]), help="Study date from (inclusive).")
@click.option("--date-to", type=click.DateTime(["%Y-%m-%d", "%Y%m%d"]), help="Study date to (inclusive).")
@click.option("--modality", help="Series modality, e.g. US.")
@click.option(
    "--status",
    "review_status",
    type=click.Choice([status.value for status in ReviewStatus]),
    help="Review status of a reviewer's annotation (with --reviewer: of that reviewer's).",
)
@click.option("--reviewer", help="Only clips this reviewer has annotated.")
@click.option("--limit", type=click.IntRange(min=1), default=DEFAULT_LIMIT, show_default=True)
@click.pass_context
def find_command(
    ctx: click.Context,
    patient: str | None,
    levels: tuple[str, ...],
    side: str | None,
    technique: str | None,
    procedure: str | None,
    date_from: datetime | None,
    date_to: datetime | None,
    modality: str | None,
    review_status: str | None,
    reviewer: str | None,
    limit: int,
) -> None:
    """Find instances; a table, or with --json a list (see docs/json-output.md)."""
    query = Query(
        patient=patient,
        levels=parse_levels(levels),
        side=parse_side(side),
        technique=parse_member(Technique, technique, "--technique"),  # type: ignore[arg-type]
        procedure_type=parse_member(ProcedureType, procedure, "--procedure"),  # type: ignore[arg-type]
        date_from=_date(date_from),
        date_to=_date(date_to),
        modality=modality,
        review_status=None if review_status is None else ReviewStatus(review_status),
        reviewer=reviewer,
        limit=limit,
    )
    with open_archive(ctx) as archive:
        rows = archive.find(query)
    if cli_state(ctx).json_output:
        print_json([row.to_json() for row in rows])
        return
    table = Table("SOP Instance UID", "patient", "study date", "mod", "levels", "side", "technique", "frames")
    for row in rows:
        table.add_row(
            row.sop_instance_uid,
            row.patient_id,
            row.study_date.isoformat() if row.study_date else "",
            row.modality or "",
            ",".join(row.levels),
            row.side or "",
            row.technique or "",
            str(row.frames or ""),
        )
    Console(width=200).print(table)
    click.echo(f"{len(rows)} instance(s)" + (f" (limit {limit} reached)" if len(rows) == limit else ""))
