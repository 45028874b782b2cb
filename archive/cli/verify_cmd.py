"""``usarchive verify [--repair]``: re-hash every file; report missing, corrupt and orphan files."""

from __future__ import annotations

import click

from archive.cli.common import cli_state, open_archive, print_json, progress_bar
from archive.verify import DEFAULT_STALE_AFTER_S, verify


@click.command("verify")
@click.option("--repair", is_flag=True, help="Index or set aside orphan files; remove stale temp files.")
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0),
    default=DEFAULT_STALE_AFTER_S,
    show_default=True,
    help="Seconds after which a temp file in store/.tmp counts as left over.",
)
@click.pass_context
def verify_command(ctx: click.Context, repair: bool, stale_after: float) -> None:
    """Check every stored file against the index; exit status 1 on problems."""
    with open_archive(ctx) as archive:
        total = int(archive.index.stats()["bytes"])
        with progress_bar(ctx, "verifying", total, unit="bytes") as advance:
            report = verify(archive, repair=repair, stale_after_s=stale_after, progress=advance)
    if cli_state(ctx).json_output:
        print_json(report.to_json(), ctx)
    else:
        click.echo(
            f"checked {report.checked}: {len(report.missing)} missing, {len(report.corrupt)} corrupt, "
            f"{len(report.orphans)} orphan(s), {len(report.stale_temp_files)} stale temp file(s), "
            f"{len(report.unrouted)} unrouted"
        )
        for kind, paths in (
            ("missing", report.missing),
            ("corrupt", report.corrupt),
            ("orphan", report.orphans),
            ("unrouted (matches a forwarding route, has no task)", report.unrouted),
        ):
            for path in paths:
                click.echo(f"  {kind}: {path}")
        for item in report.repaired:
            click.echo(f"  repaired {item['path'] or 'forwarding'}: {item['action']}")
        for conflict in report.patient_conflicts:
            click.echo(f"  patient conflict in study {conflict['study_instance_uid']}: {conflict['detail']}")
        for item in report.not_received:
            click.echo(
                f"  not received: {item['sop_instance_uid']} (a COMPLETED MPPS {item['mpps']} lists it; "
                "the scanner made it but never sent it)"
            )
    if not report.ok:
        ctx.exit(1)
