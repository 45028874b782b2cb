"""``usarchive worklist``: schedule procedures for the scanners' Modality Worklist; list, show, cancel."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from archive.cli.common import cli_state, open_archive, print_json, print_table
from archive.errors import ArchiveError
from archive.worklist.csvfile import parse_procedure
from archive.worklist.model import EntryStatus, WorklistEntry, parse_da

_STATUS_CHOICES = [status.value for status in EntryStatus]


@click.group("worklist")
def worklist() -> None:
    """Scheduled procedures offered to scanners (Modality Worklist) and their performed steps (MPPS)."""


def _row(entry: WorklistEntry, expired: bool) -> list[object]:
    p = entry.procedure
    status = "expired" if expired else entry.status.value
    return [
        entry.pk,
        status,
        p.start.strftime("%Y-%m-%d %H:%M"),
        p.station_aet,
        p.patient_id,
        p.patient_name,
        p.accession_number,
        p.description,
    ]


_HEADER = ["entry", "status", "start", "station", "patient_id", "patient_name", "accession", "procedure"]


@worklist.command("add")
@click.option("--patient-id", required=True)
@click.option("--patient-name", required=True, help="DICOM form, e.g. DOE^JANE (any script).")
@click.option("--birth-date", default="", help="YYYY-MM-DD or YYYYMMDD.")
@click.option("--sex", default="", help="M, F or O.")
@click.option("--accession", required=True, help="Accession Number (up to 16 characters).")
@click.option("--date", "day", required=True, help="Scheduled date, YYYY-MM-DD or YYYYMMDD.")
@click.option("--time", "clock", required=True, help="Scheduled time, HH:MM or HHMMSS.")
@click.option("--station-aet", required=True, help="AE title of the scanner that will query for it.")
@click.option("--modality", default="US", show_default=True)
@click.option("--procedure", required=True, help="medial branch block, radiofrequency, epidural, ...")
@click.option("--levels", required=True, help="e.g. L4,L5")
@click.option("--side", required=True, help="left, right, bilateral (or L, R, B).")
@click.option("--technique", default="", help="TT or OT (or other).")
@click.option("--approach", default="", help="in-plane or out-of-plane.")
@click.option("--physician", default="", help="Scheduled performing physician (DICOM name form).")
@click.pass_context
def add_command(ctx: click.Context, /, **fields: str) -> None:
    """Schedule one procedure; prints the entry with its generated identifiers."""
    text = dict(fields)
    text["date"], text["time"] = text.pop("day"), text.pop("clock")
    try:
        procedure = parse_procedure(text)
    except ValueError as exc:
        raise click.UsageError(f"worklist add: {exc}") from exc
    with open_archive(ctx) as archive:
        try:
            (entry,) = archive.worklist.schedule([procedure])
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
    if cli_state(ctx).json_output:
        print_json(entry.to_json(), ctx)
        return
    click.echo(
        f"worklist entry {entry.pk}: {entry.procedure.description} for {entry.procedure.patient_name} "
        f"at {entry.procedure.start:%Y-%m-%d %H:%M} on {entry.procedure.station_aet} "
        f"(study {entry.study_instance_uid}, requested procedure {entry.requested_procedure_id}, "
        f"step {entry.step_id})"
    )


@worklist.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def import_command(ctx: click.Context, csv_file: Path) -> None:
    """Schedule every row of CSV_FILE, all rows or none.

    Columns (header row): patient_id, patient_name, birth_date, sex,
    accession, date, time, station_aet, modality, procedure, levels, side,
    technique, approach, physician (birth_date, sex, modality, technique,
    approach and physician may be empty or absent). Every bad row is reported
    by line, in one pass, and nothing is scheduled.
    """
    with open_archive(ctx) as archive:
        try:
            entries = archive.worklist.import_csv(csv_file)
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
    if cli_state(ctx).json_output:
        print_json({"file": str(csv_file), "scheduled": [e.to_json() for e in entries]}, ctx)
        return
    click.echo(f"{csv_file}: {len(entries)} procedure(s) scheduled")


@worklist.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(_STATUS_CHOICES), help="Repeatable.")
@click.option("--date", "day", default=None, help="Only entries starting on this date (YYYY-MM-DD).")
@click.pass_context
def list_command(ctx: click.Context, statuses: tuple[str, ...], day: str | None) -> None:
    """Worklist entries by start time; a scheduled entry past its expiry shows as 'expired'."""
    on: date | None = None
    if day is not None:
        try:
            on = parse_da(day, "--date")
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    with open_archive(ctx) as archive:
        store = archive.worklist
        entries = store.entries(statuses=[EntryStatus(s) for s in statuses], on=on)
        expired = {entry.pk: store.is_expired(entry) for entry in entries}
    if cli_state(ctx).json_output:
        print_json([{**e.to_json(), "expired": expired[e.pk]} for e in entries])
        return
    print_table(ctx, _HEADER, [_row(entry, expired[entry.pk]) for entry in entries])


@worklist.command("show")
@click.argument("entry_id", type=int)
@click.pass_context
def show_command(ctx: click.Context, entry_id: int) -> None:
    """One entry: identifiers, codes, its performed steps, and instances an MPPS listed that never arrived."""
    from archive.worklist.steps import steps_of_entry

    with open_archive(ctx) as archive:
        try:
            entry = archive.worklist.get(entry_id)
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
        steps = steps_of_entry(archive.engine, entry_id)
        unsent = archive.worklist.unsent_instances(entry_id)
        expired = archive.worklist.is_expired(entry)
    if cli_state(ctx).json_output:
        document = {
            **entry.to_json(),
            "expired": expired,
            "performed_steps": [step.to_json() for step in steps],
            "not_received": [{"mpps": mpps, "sop_instance_uid": uid} for mpps, uid in unsent],
        }
        print_json(document, ctx)
        return
    p = entry.procedure
    lines = [
        f"worklist entry {entry.pk}: {'expired' if expired else entry.status.value}",
        f"  procedure: {p.description}",
        f"  patient: {p.patient_name} ({p.patient_id}), accession {p.accession_number}",
        f"  scheduled: {p.start:%Y-%m-%d %H:%M} on {p.station_aet} ({p.modality})",
        f"  study: {entry.study_instance_uid}",
        f"  requested procedure: {entry.requested_procedure_id}; step: {entry.step_id}",
        "  codes: " + "; ".join(f"({c.value}, {c.scheme}, {c.meaning!r})" for c in p.protocol_codes),
    ]
    if entry.note:
        lines.append(f"  note: {entry.note}")
    for step in steps:
        duration = f", {step.duration_s:.0f} s" if step.duration_s is not None else ""
        reason = f", reason {step.discontinuation.meaning}" if step.discontinuation else ""
        lines.append(
            f"  MPPS {step.sop_instance_uid}: {step.status.value} from {step.start or '?'} "
            f"to {step.end or '?'}{duration}, {len(step.instances)} instance(s){reason}"
        )
    for mpps, uid in unsent:
        lines.append(f"  NOT RECEIVED: {uid} (listed by MPPS {mpps} as made, never sent)")
    click.echo("\n".join(lines))


def _finish(ctx: click.Context, entry_id: int, action: str, note: str | None) -> None:
    with open_archive(ctx) as archive:
        try:
            if action == "cancel":
                entry = archive.worklist.cancel(entry_id, note)
            else:
                entry = archive.worklist.complete(entry_id, note)
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
    if cli_state(ctx).json_output:
        print_json(entry.to_json(), ctx)
        return
    click.echo(f"worklist entry {entry.pk}: {entry.status.value}")


@worklist.command("cancel")
@click.argument("entry_id", type=int)
@click.option("--reason", default=None, help="Why (kept with the entry).")
@click.pass_context
def cancel_command(ctx: click.Context, entry_id: int, reason: str | None) -> None:
    """Cancel a scheduled entry: scanners no longer see it."""
    _finish(ctx, entry_id, "cancel", reason)


@worklist.command("complete")
@click.argument("entry_id", type=int)
@click.option("--note", default=None)
@click.pass_context
def complete_command(ctx: click.Context, entry_id: int, note: str | None) -> None:
    """Mark an entry completed by hand (a scanner that sends no MPPS)."""
    _finish(ctx, entry_id, "complete", note)
