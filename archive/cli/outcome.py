"""``usarchive outcome``: import, set and show procedures' clinical outcomes (VAS, ODI, adverse events)."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from archive.analysis.outcomes.model import SCORE_RANGES
from archive.analysis.outcomes.sql import outcome_values
from archive.cli.common import cli_state, full_uid, open_archive, print_json, print_table
from archive.errors import ArchiveError, OutcomeImportError
from archive.model import Side

_LATERALITY = {"L": Side.LEFT, "R": Side.RIGHT, "B": Side.BILATERAL}


def _side(value: str) -> Side:
    code = value.strip().upper()
    if code in _LATERALITY:
        return _LATERALITY[code]
    try:
        return Side.parse(value.strip().lower())
    except ValueError as exc:
        raise click.BadParameter(f"expected left, right, bilateral, L, R or B, but got {value!r}") from exc


@click.group("outcome")
def outcome() -> None:
    """Clinical outcomes per procedure (study and side): VAS, ODI and adverse events."""


@outcome.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def import_command(ctx: click.Context, csv_file: Path) -> None:
    """Import outcomes from CSV_FILE, all rows or none.

    Columns: study_uid, side, vas_pre, vas_1h, vas_2w, odi_pre, odi_1h, odi_2w,
    adverse_event (an empty cell = not recorded), or a filled 'usarchive
    outcome template' (patient_id, study_date, accession_number, operator,
    station first; study_uid may then be empty). Rows are matched by study
    UID, accession number, or patient ID + study date, and must name a side
    the study has a clip of. Every bad row is reported by line, in one pass,
    and nothing is imported.
    """
    with open_archive(ctx) as archive:
        try:
            changes = archive.outcomes.import_csv(csv_file)
        except OutcomeImportError as exc:
            raise click.ClickException(str(exc)) from exc
    if cli_state(ctx).json_output:
        print_json({"file": str(csv_file), "changed": [c.to_json() for c in changes]}, ctx)
        return
    click.echo(f"{csv_file}: {len(changes)} outcome(s) added or changed")


@outcome.command("template")
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def template_command(ctx: click.Context, csv_file: Path) -> None:
    """Write CSV_FILE: the archived procedures still lacking an outcome, to fill in and import.

    One row per study and side with patient ID, study date, accession number,
    operator and station; fill in the scores and run 'usarchive outcome import'.
    """
    from archive.analysis.outcomes.template import write_template

    with open_archive(ctx) as archive:
        try:
            count = write_template(archive, csv_file)
        except OSError as exc:
            raise click.ClickException(
                f"outcome template: cannot write {csv_file} ({exc}); choose a writable path"
            ) from exc
    if cli_state(ctx).json_output:
        print_json({"file": str(csv_file), "procedures": count}, ctx)
        return
    click.echo(f"{csv_file}: {count} procedure(s) without an outcome")


_F = TypeVar("_F", bound=Callable[..., Any])


def _score_option(name: str) -> Callable[[_F], _F]:
    low, high = SCORE_RANGES[name]
    return click.option(
        f"--{name.replace('_', '-')}", name, type=float, help=f"{name} ({low:g} to {high:g})."
    )


@outcome.command("set")
@click.argument("study_uid")
@click.option("--side", "side_text", required=True, help="left, right, bilateral (or L, R, B).")
@_score_option("vas_pre")
@_score_option("vas_1h")
@_score_option("vas_2w")
@_score_option("odi_pre")
@_score_option("odi_1h")
@_score_option("odi_2w")
@click.option("--adverse-event", help="Description of an adverse event.")
@click.option(
    "--clear",
    multiple=True,
    type=click.Choice([*SCORE_RANGES, "adverse_event"]),
    help="Clear this value (not recorded); repeatable.",
)
@click.option(
    "--by", help="Who enters the values (default: [review] reviewer or USARCHIVE_REVIEWER, else login name)."
)
@click.pass_context
def set_command(
    ctx: click.Context,
    study_uid: str,
    side_text: str,
    adverse_event: str | None,
    clear: tuple[str, ...],
    by: str | None,
    vas_pre: float | None,
    vas_1h: float | None,
    vas_2w: float | None,
    odi_pre: float | None,
    odi_1h: float | None,
    odi_2w: float | None,
) -> None:
    """Set outcome values of the procedure STUDY_UID / --side; values not given are kept."""
    side = _side(side_text)
    scores = {
        "vas_pre": vas_pre,
        "vas_1h": vas_1h,
        "vas_2w": vas_2w,
        "odi_pre": odi_pre,
        "odi_1h": odi_1h,
        "odi_2w": odi_2w,
    }
    values: dict[str, Any] = {name: value for name, value in scores.items() if value is not None}
    if adverse_event is not None:
        values["adverse_event"] = adverse_event.strip() or None
    both = sorted(set(values) & set(clear))
    if both:
        raise click.UsageError(
            f"expected a value or --clear for each field, but got both for {', '.join(both)}"
        )
    values.update(dict.fromkeys(clear))
    if not values:
        raise click.UsageError("expected at least one value to set (e.g. --vas-pre 7) or --clear FIELD")
    with open_archive(ctx) as archive:
        who = cli_state(ctx).person(by) or getpass.getuser()
        try:
            study_uid = full_uid(archive, study_uid)
            stored, change = archive.outcomes.set(study_uid, side, values, source=f"user:{who}")
        except (ArchiveError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
    if cli_state(ctx).json_output:
        print_json({"outcome": outcome_values(stored), "changed": change is not None}, ctx)
        return
    click.echo(f"{study_uid} {side.value}: {'changed' if change else 'unchanged'}")


@outcome.command("show")
@click.argument("study_uid")
@click.option("--history", is_flag=True, help="Also list every change.")
@click.pass_context
def show_command(ctx: click.Context, study_uid: str, history: bool) -> None:
    """Show the outcomes of the procedures of STUDY_UID."""
    with open_archive(ctx) as archive:
        study_uid = full_uid(archive, study_uid)
        stored = archive.outcomes.of_study(study_uid)
        changes = archive.outcomes.history(study_uid) if history else []
    if cli_state(ctx).json_output:
        document: dict[str, Any] = {"study_uid": study_uid, "outcomes": [s.to_json() for s in stored]}
        if history:
            document["history"] = [c.to_json() for c in changes]
        print_json(document, ctx)
        return
    if not stored:
        click.echo(f"no outcome recorded for study {study_uid}")
        return
    rows = [
        (
            s.outcome.side.value,
            *(
                "–" if getattr(s.outcome, name) is None else f"{getattr(s.outcome, name):g}"
                for name in SCORE_RANGES
            ),
            s.outcome.adverse_event or "",
            s.source,
            s.updated_at.strftime("%Y-%m-%d %H:%M"),
        )
        for s in stored
    ]
    print_table(ctx, ("side", *SCORE_RANGES, "adverse event", "source", "updated (UTC)"), rows)
    for c in changes:
        click.echo(f"{c.changed_at:%Y-%m-%d %H:%M:%S} {c.side.value} {c.source}: {c.old} -> {c.new}")
