"""``usarchive export``: de-identified research exports (hdf5, dicom) and measurement reports (sr).

See docs/export.md. The de-identification secret comes from ``--secret-file``,
else the environment variable ``USARCHIVE_DEID_SECRET``, else ``[deid]
secret_file`` of usarchive.toml; it is never printed or logged.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from archive.cli.common import cli_state, open_archive, print_json
from archive.cli.filters import describe_query, query_filters
from archive.config import ENV_DEID_SECRET
from archive.errors import ArchiveError
from archive.index.queries import Query
from archive.model import ReviewStatus
from archive.research.deid import DeidOptions
from archive.research.deid.options import SECRET_OPTION
from archive.research.export.gather import select_clips
from archive.research.export.redact import reviewer_pseudonym
from archive.research.export.run import ExportFormat, ExportOptions, ExportSummary, run_export
from archive.research.export.send import parse_destination
from archive.settings import ArchiveSettings, read_secret_file

#: ``--status`` value that exports every clip, annotated or not.
ANY_STATUS = "any"


def resolve_secret(settings: ArchiveSettings, secret_file: Path | None) -> bytes:
    """The de-identification secret: ``--secret-file``, else the configuration's.

    Both are decoded by :func:`archive.settings.decode_secret`, the one decoder
    (the configuration's ``[deid] secret_file`` or ``USARCHIVE_DEID_SECRET`` was
    decoded when it was loaded), so one secret gives the same pseudonyms
    through the library and the command line.

    Raises
    ------
    click.ClickException
        If none gives one, naming every way to provide it.
    """
    if secret_file is not None:
        try:
            return read_secret_file(secret_file, what="--secret-file")
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
    if settings.deid_secret is not None:
        return settings.deid_secret
    raise click.ClickException(
        f"de-identification secret: expected one, but none is set; set {SECRET_OPTION} in usarchive.toml, "
        f"or the environment variable {ENV_DEID_SECRET} (hex digits or text, at least 16 bytes), or pass "
        "--secret-file PATH, and keep the same secret to get the same pseudonyms in later exports"
    )


def _print_summary(summary: ExportSummary, console: Console) -> None:
    noun = "report(s)" if summary.export_format is ExportFormat.SR else "clip(s)"
    console.print(
        f"{summary.written} {noun} written to {summary.output} from {summary.clips} clip(s) selected"
    )
    if summary.not_pixel_cleaned:
        console.print(
            f"{summary.not_pixel_cleaned} clip(s) exported WITHOUT pixel cleaning (uncalibrated); "
            "they are listed in the card"
        )
    if summary.sent:
        console.print(f"{summary.sent} report(s) stored on the PACS")
    if summary.queued:
        console.print(f"{summary.queued} report(s) queued for forwarding (usarchive forward status)")
    for problem in summary.skipped:
        console.print(f"skipped {problem.sop_instance_uid}: {problem.reason}", markup=False)
    for problem in summary.refused:
        who = f" ({problem.reviewer})" if problem.reviewer else ""
        console.print(f"REFUSED {problem.sop_instance_uid}{who}: {problem.reason}", markup=False)
    if summary.refused:
        console.print(f"{len(summary.refused)} refused; the export holds the rest")


@click.command("export")
@click.argument("output", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "export_format",
    type=click.Choice([f.value for f in ExportFormat]),
    required=True,
    help="hdf5: research dataset file; dicom: directory of de-identified DICOM files; "
    "sr: directory of measurement reports (NOT de-identified).",
)
@query_filters
@click.option(
    "--status",
    "review_status",
    type=click.Choice([s.value for s in ReviewStatus] + [ANY_STATUS]),
    default=ReviewStatus.APPROVED.value,
    show_default=True,
    help="Export annotations in this review status; 'any' also exports clips nobody has annotated "
    "(frames and metadata only).",
)
@click.option(
    "--allow-uncalibrated",
    is_flag=True,
    help="Export clips without 2D ultrasound regions with their pixels unchanged (the burned-in "
    "banner cannot be blanked), marked as not pixel-cleaned; refused otherwise.",
)
@click.option(
    "--secret-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"File holding the de-identification secret (default: {ENV_DEID_SECRET}, then {SECRET_OPTION}).",
)
@click.option(
    "--send-to",
    help="sr only: also send each report to a destination of the destination table "
    "([destinations.NAME], queued in the forwarding outbox and retried), or at once to AE@host:port.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="hdf5: seed of the patient-level split.")
@click.option(
    "--title", default="usarchive research export", show_default=True, help="hdf5: dataset card title."
)
@click.option("--overwrite", is_flag=True, help="hdf5: replace an existing file.")
@click.option(
    "--include-free-text",
    is_flag=True,
    help="hdf5: export adverse-event notes and outcomes' adverse-event descriptions verbatim; they "
    "are NOT de-identified (the card says so). By default they are withheld.",
)
@click.pass_context
def export_command(
    ctx: click.Context,
    output: Path,
    export_format: str,
    query: Query,
    review_status: str,
    allow_uncalibrated: bool,
    secret_file: Path | None,
    send_to: str | None,
    seed: int,
    title: str,
    overwrite: bool,
    include_free_text: bool,
) -> None:
    """Export clips: hdf5 and dicom are de-identified research exports; sr is not.

    hdf5 and dicom apply the PS3.15 Basic Profile with keyed pseudonyms, keyed
    UIDs and per-patient date shifts, and blank every pixel outside the 2D
    ultrasound regions (the burned-in banner). sr writes one DICOM measurement
    report per clip and reviewer that references the ORIGINAL clip, with its
    patient and study, for the hospital PACS: it is NOT de-identified. In
    hdf5, reviewers are keyed pseudonyms and staff free text (adverse-event
    notes, outcomes' adverse events) is withheld unless --include-free-text.
    See docs/export.md. Exits with status 1 when any clip was refused.
    """
    fmt = ExportFormat(export_format)
    state = cli_state(ctx)
    if send_to is not None and fmt is not ExportFormat.SR:
        raise click.UsageError("--send-to: expected with --format sr only (reports go to the PACS)")
    if include_free_text and fmt is not ExportFormat.HDF5:
        raise click.UsageError(
            "--include-free-text: expected with --format hdf5 only (dicom files carry no annotation "
            "or outcome; sr reports are not de-identified anyway)"
        )
    try:
        destination = None if send_to is None or "@" not in send_to else parse_destination(send_to)
        queue_to = None if send_to is None or "@" in send_to else send_to.strip()
        if queue_to is not None:
            state.settings.forward.destination(queue_to)  # refused before anything is written
        deid = None
        if fmt.deidentified:
            secret = resolve_secret(state.settings, secret_file)
            deid = DeidOptions(secret=secret, allow_uncalibrated=allow_uncalibrated)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc
    status = None if review_status == ANY_STATUS else ReviewStatus(review_status)
    # The selection goes into the card: a reviewer filter is named by the reviewer's pseudonym.
    described = query
    if deid is not None and query.reviewer:
        described = replace(query, reviewer=reviewer_pseudonym(deid.secret, query.reviewer))
    selection = " ".join(filter(None, [describe_query(described), f"--status {review_status}"]))
    options = ExportOptions(
        export_format=fmt,
        output=output,
        deid=deid,
        selection=selection,
        title=title,
        seed=seed,
        overwrite=overwrite,
        send_to=destination,
        queue_to=queue_to,
        include_free_text=include_free_text,
    )
    console = Console(stderr=True)
    with open_archive(ctx) as archive:
        clips = select_clips(archive, query, status=status)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(f"export {fmt.value}", total=len(clips))
            try:
                summary = run_export(
                    archive,
                    clips,
                    options,
                    progress=lambda done, total, uid: progress.update(task, completed=done),
                )
            except ArchiveError as exc:
                raise click.ClickException(str(exc)) from exc
    if state.json_output:
        print_json(summary.to_json(), ctx)
    else:
        _print_summary(summary, Console(width=200, soft_wrap=True))
    if summary.refused:
        ctx.exit(1)
