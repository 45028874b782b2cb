"""``usarchive audit``: metrics, outcomes and comparisons by technique × level (terminal, HTML, CSV, JSON)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from archive.analysis.audit import AuditConfig, AuditReport, run_audit
from archive.analysis.audit import format as fmt
from archive.analysis.audit.gather import gather_inputs
from archive.analysis.audit.model import ALL_LEVELS
from archive.analysis.audit.report_csv import write_csv
from archive.analysis.audit.report_html import RATES_NOTE, write_html
from archive.analysis.outcomes.model import EffectivenessCriteria
from archive.cli.common import cli_state, open_archive, print_json, progress_bar
from archive.cli.filters import query_filters
from archive.errors import ArchiveError
from archive.index.queries import Query
from archive.model import ReviewStatus

_STATUSES = ["any", *(status.value for status in ReviewStatus)]
#: Comparisons shown in the terminal summary (scope "all").
_HEADLINE = (
    "effective",
    "procedure_time_s",
    "tip_to_target_at_injection_start_mm",
    "vas_over_time",
    "odi_over_time",
)


def _filters(query: Query, status: str) -> dict[str, Any]:
    return {
        "patient": query.patient,
        "levels": [level.value for level in query.levels],
        "side": query.side.value if query.side else None,
        "technique": query.technique.value if query.technique else None,
        "approach": query.approach.value if query.approach else None,
        "procedure": query.procedure_type.value if query.procedure_type else None,
        "date_from": query.date_from.isoformat() if query.date_from else None,
        "date_to": query.date_to.isoformat() if query.date_to else None,
        "modality": query.modality,
        "reviewer": query.reviewer,
        "status": status,
    }


def _summary(report: AuditReport) -> None:
    console = Console(width=160)
    table = Table(
        "technique",
        "level",
        "procedures",
        "clip reviews",
        "effective",
        "time (s)",
        "tip-to-target (mm)",
        "breaches",
        title="Audit by technique × level",
    )
    for g in report.groups:
        table.add_row(
            g.technique,
            g.level,
            str(g.n_procedures),
            str(g.n_clips),
            fmt.rate(g.effective),
            fmt.procedure_time(g.procedure_time_s, g.procedure_time_sources),
            fmt.mean_sd(g.metrics["tip_to_target_at_injection_start_mm"]),
            fmt.rate(g.rates["breach"]),
            end_section=g.level == ALL_LEVELS,
        )
    console.print(table)
    tests = Table(
        "variable",
        "groups",
        "test",
        "statistic",
        "df",
        "P",
        "P (Holm)",
        title="Planned comparisons (the seed study's TT vs OT, all levels)",
    )
    for c in report.comparisons:
        if not c.planned or c.variable not in _HEADLINE:
            continue
        for i, r in enumerate(c.results):
            effect = f" ({r.effect})" if r.effect in ("time", "group", "time × group") else ""
            tests.add_row(
                fmt.VARIABLE_LABELS.get(c.variable, c.variable) + effect,
                " vs ".join(c.groups),
                r.test,
                fmt.statistic(r),
                fmt.degrees_of_freedom(r),
                fmt.p_value(r.p_value),
                fmt.p_value(c.p_holm[i]) if i < len(c.p_holm) else "–",
            )
        if not c.results:
            tests.add_row(
                fmt.VARIABLE_LABELS.get(c.variable, c.variable),
                " vs ".join(c.groups),
                "not computed",
                "–",
                "–",
                "–",
                "–",
            )
            tests.add_row("", "", str(c.error), "", "", "", "")
    if tests.row_count:
        console.print(tests)
        console.print(RATES_NOTE)
    breaches = sum(1 for s in report.safety_clips if s.breach)
    marked = sum(1 for c in report.clips if c.danger_marked)
    if marked:
        console.print(
            f"Safety: danger structures marked in {marked} of {len(report.clips)} clip review(s); "
            f"{len(report.safety_clips)} within {report.config.danger_margin_mm:g} mm of one "
            f"({breaches} breach(es)); {len(report.adverse_events)} adverse event(s)."
        )
    else:
        console.print(
            f"Safety: not assessable, no danger structure was marked in {len(report.clips)} clip review(s); "
            f"{len(report.adverse_events)} adverse event(s)."
        )
    for note in report.notes:
        console.print(f"note: {note}")


@click.command("audit")
@query_filters
@click.option(
    "--status",
    type=click.Choice(_STATUSES),
    default=ReviewStatus.APPROVED.value,
    show_default=True,
    help="Review status of the annotations audited ('any' for all).",
)
@click.option(
    "--danger-margin-mm",
    type=click.FloatRange(min=0.0),
    default=2.0,
    show_default=True,
    help="List clips whose tip came this close to a danger structure.",
)
@click.option(
    "--vas-drop",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.5,
    show_default=True,
    help="Effective: VAS fell by at least this fraction at 2 weeks.",
)
@click.option(
    "--odi-drop",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.4,
    show_default=True,
    help="Effective: ODI fell by at least this fraction at 2 weeks.",
)
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the HTML report here."
)
@click.option(
    "--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the group CSV here."
)
@click.pass_context
def audit_command(
    ctx: click.Context,
    query: Query,
    status: str,
    danger_margin_mm: float,
    vas_drop: float,
    odi_drop: float,
    html_path: Path | None,
    csv_path: Path | None,
) -> None:
    """Audit reviewed clips and their procedures' outcomes, grouped by technique × level.

    TT (two points via two punctures, conventional): L4 in-plane, then a second
    puncture for L5, out-of-plane.

    OT (two points via one puncture, modified): after L4 the needle stays in the
    skin, the probe is rotated caudally to an oblique view and the needle is
    redirected to L5 in-plane through the same puncture.

    Procedures (study × side) come from every archived clip the filters select,
    reviewed or not, so outcomes are compared without annotations; clip metrics
    and procedure times come from reviews (only approved annotations by
    default; the report says how many procedures had a reviewed clip). The
    needle approach (in-plane, out-of-plane) is a filter (--approach), not a
    group. Comparisons between techniques: Welch's
    t-test (and Mann–Whitney U when skewed), Pearson χ² without continuity
    correction (Fisher's exact test when an expected count is below 5), and
    repeated-measures ANOVA of VAS and ODI over time; Holm-adjusted P values,
    planned (the seed study's TT vs OT comparisons) and exploratory apart; a
    group smaller than a test needs is listed as not computed. With --json (root
    option) the whole report is printed as JSON.
    """
    config = AuditConfig(
        danger_margin_mm=danger_margin_mm,
        criteria=EffectivenessCriteria(vas_drop_fraction=vas_drop, odi_drop_fraction=odi_drop),
    )
    wanted = None if status == "any" else ReviewStatus.parse(status)
    # steps: read the clips and annotations, compute, write the HTML, write the CSV
    with progress_bar(ctx, "auditing", 4) as advance:
        with open_archive(ctx) as archive:
            try:
                gathered = gather_inputs(archive, query, status=wanted)
            except ArchiveError as exc:
                raise click.ClickException(str(exc)) from exc
        advance()
        report = run_audit(
            gathered.inputs,
            gathered.outcomes,
            config,
            _filters(query, status),
            archived=gathered.archived,
            step_times=gathered.step_times,
        )
        report = dataclasses.replace(report, notes=gathered.notes + report.notes)
        advance()
        if html_path is not None:
            write_html(report, html_path)
        advance()
        if csv_path is not None:
            write_csv(report, csv_path)
        advance()
    if cli_state(ctx).json_output:
        print_json(report.to_dict(), ctx)
        return
    _summary(report)
    for label, path in (("HTML report", html_path), ("CSV", csv_path)):
        if path is not None:
            click.echo(f"{label}: {path}")
