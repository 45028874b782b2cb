"""The audit report as one self-contained HTML file (figures embedded as base64 PNG).

Sections: summary by technique, comparisons between techniques (all levels,
then per level), figures, every group's figures, the safety section (near
misses, breaches, adverse events), procedures and notes. All text is escaped;
the file needs no network access or other files to display.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from archive.analysis.audit import format as fmt
from archive.analysis.audit import plots
from archive.analysis.audit import report_sections as sections_of
from archive.analysis.audit.model import ALL_LEVELS, NUMERIC_METRICS, OUTCOME_SCORES, RATE_METRICS
from archive.analysis.audit.results import AuditReport, Comparison, GroupResult
from archive.analysis.statistics import MIN_EXPECTED_COUNT, PEARSON_NOTE

logger = logging.getLogger(__name__)

#: The sentence the report gives about how rates are compared.
RATES_NOTE = (
    f"Rates are compared with the {PEARSON_NOTE} (1 degree of freedom); Fisher's exact test "
    f"is used instead when an expected count is below {MIN_EXPECTED_COUNT:g}."
)

_CSS = """
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1d2733; margin: 0;
       background: #f4f6f8; font-size: 14px; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; background: #ffffff; }
header { border-bottom: 3px solid #0b5394; padding-bottom: 12px; margin-bottom: 8px; }
h1 { font-size: 24px; margin: 0 0 4px; color: #0b3d6e; }
h2 { font-size: 18px; margin: 30px 0 10px; color: #0b3d6e; border-bottom: 1px solid #d8dee6;
     padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #536171; font-size: 13px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0 4px; }
.card { flex: 1 1 150px; border: 1px solid #d8dee6; border-radius: 6px; padding: 10px 14px;
        background: #f8fafc; }
.card .value { font-size: 22px; font-weight: bold; color: #0b5394; }
.card .label { font-size: 12px; color: #536171; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e3e8ee; vertical-align: top; }
th { background: #eef2f6; font-weight: 600; }
tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.sig { color: #a61b1b; font-weight: 600; }
.warn td { background: #fff4e5 !important; }
.breach td { background: #fde8e8 !important; }
.note { background: #eef5fc; border-left: 4px solid #0b5394; padding: 8px 12px; margin: 10px 0;
        font-size: 13px; }
.muted { color: #7a8794; }
figure { margin: 12px 0 18px; }
figure img { max-width: 100%; border: 1px solid #e3e8ee; }
figcaption { font-size: 12px; color: #536171; }
details { margin: 8px 0; }
summary { cursor: pointer; color: #0b5394; }
code { font-size: 12px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells are already-escaped HTML; columns in ``numeric`` right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return '<p class="muted">None.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(png: bytes | None, caption: str) -> str:
    if png is None:
        return f'<p class="muted">No data for: {_e(caption)}.</p>'
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _cards(report: AuditReport) -> str:
    breaches = sum(1 for s in report.safety_clips if s.breach)
    marked = sum(1 for c in report.clips if c.danger_marked)
    reviewed = sum(1 for p in report.procedures if p.reviewed_clips)
    cards = [
        (str(len(report.procedures)), "procedures"),
        (f"{reviewed}", "with a reviewed clip"),
        (str(len(report.clips)), "clip reviews"),
        (str(len(report.outcomes)), "outcomes recorded"),
        (f"{marked} of {len(report.clips)}", "reviews with a danger structure marked"),
    ]
    if marked:
        cards += [
            (
                str(len(report.safety_clips)),
                f"reviews within {report.config.danger_margin_mm:g} mm of danger",
            ),
            (str(breaches), "breaches"),
        ]
    else:
        cards.append(("not assessable", "danger distance and breaches: nothing marked"))
    cards.append((str(len(report.adverse_events)), "adverse events"))
    items = "".join(
        f'<div class="card"><div class="value">{_e(v)}</div><div class="label">{_e(label)}</div></div>'
        for v, label in cards
    )
    return f'<div class="cards">{items}</div>'


def _summary(report: AuditReport) -> str:
    rows = []
    for g in (g for g in report.groups if g.level == ALL_LEVELS):
        tip = g.metrics["tip_to_target_at_injection_start_mm"]
        rows.append(
            [
                f"<b>{_e(g.technique)}</b>",
                str(g.n_procedures),
                str(g.n_clips),
                _e(fmt.rate(g.effective)),
                _e(fmt.mean_sd(g.procedure_time_s, 0)),
                _e(fmt.median_iqr(g.procedure_time_s, 0)),
                _e(fmt.time_sources(g.procedure_time_sources)),
                _e(fmt.mean_sd(tip)),
                _e(fmt.rate(g.rates["breach"])),
            ]
        )
    headers = [
        "technique",
        "procedures",
        "clip reviews",
        "effective",
        "procedure time, s (mean ± SD)",
        "median (IQR)",
        "time from",
        "tip-to-target, mm",
        "breaches",
    ]
    return _table(headers, rows, numeric=(1, 2, 3, 4, 5, 7, 8))


def _name_groups(text: str, groups: Sequence[str]) -> str:
    """Replace the tests' generic group names a and b by the techniques compared."""
    if len(groups) != 2:
        return text
    a, b = groups
    for generic, named in (
        ("a − b", f"{a} − {b}"),
        ("group a and b", f"groups {a} and {b}"),
        ("group a ", f"group {a} "),
        ("group b ", f"group {b} "),
    ):
        text = text.replace(generic, named)
    return text


def _comparison_rows(comparisons: Iterable[Comparison]) -> list[list[str]]:
    rows: list[list[str]] = []
    for c in comparisons:
        label = _e(fmt.VARIABLE_LABELS.get(c.variable, c.variable))
        groups = _e(" vs ".join(c.groups))
        for i, r in enumerate(c.results):
            p = fmt.p_value(r.p_value)
            holm = c.p_holm[i] if i < len(c.p_holm) else float("nan")
            holm_cell = _e(fmt.p_value(holm))
            if holm < 0.05:
                holm_cell = f'<span class="sig">{holm_cell}</span>'
            effect = f"{_name_groups(r.effect, c.groups)}; " if r.effect else ""
            rows.append(
                [
                    label,
                    groups,
                    _e(r.test),
                    _e(fmt.statistic(r)),
                    _e(fmt.degrees_of_freedom(r)),
                    _e(p),
                    holm_cell,
                    _e(effect + _name_groups(r.note or "", c.groups)),
                ]
            )
            label = groups = ""
    return rows


def _comparisons(report: AuditReport) -> str:
    headers = ["variable", "groups", "test", "statistic", "df", "P", "P (Holm)", "effect and notes"]
    scopes: dict[str, list[Comparison]] = {}
    planned = [c for c in report.comparisons if c.planned]
    for c in report.comparisons:
        if not c.planned:
            scopes.setdefault(c.scope, []).append(c)
    if not report.comparisons:
        return '<p class="muted">Fewer than two techniques in the audit: nothing to compare.</p>'
    n_exploratory = sum(len(c.results) for c in report.comparisons if not c.planned)
    n_planned = sum(len(c.results) for c in planned)
    parts = [
        f'<div class="note">{_e(RATES_NOTE)} <b>Planned</b> comparisons are those of the seed study '
        "(TT vs OT over all levels: effectiveness, procedure time, VAS and ODI); every other one is "
        f"<b>exploratory</b>. P (Holm) is Holm-adjusted within each family ({n_planned} planned and "
        f"{n_exploratory} exploratory P values); Holm-adjusted P values below 0.05 are in red. "
        "Exploratory results suggest questions, they do not answer them.</div>"
    ]
    families: list[tuple[str, list[Comparison]]] = [("Planned comparisons (all levels)", planned)]
    families += [
        (f"Exploratory: {'all levels' if scope == ALL_LEVELS else f'level {scope}'}", comparisons)
        for scope, comparisons in scopes.items()
    ]
    for title, comparisons in families:
        if not comparisons:
            continue
        table = _table(headers, _comparison_rows(c for c in comparisons if c.results), numeric=(3, 4, 5, 6))
        failed = [c for c in comparisons if not c.results]
        if failed:
            reasons = _table(
                ["variable", "groups", "why not computed"],
                (
                    [
                        _e(fmt.VARIABLE_LABELS.get(c.variable, c.variable)),
                        _e(" vs ".join(c.groups)),
                        _e(c.error),
                    ]
                    for c in failed
                ),
            )
            opened = " open" if title.startswith("Planned") else ""
            table += (
                f"<details{opened}><summary>{len(failed)} not computed ({_e(title)})</summary>"
                f"{reasons}</details>"
            )
        if title.startswith("Planned"):
            parts.append(f"<h3>{_e(title)}</h3>{table}")
        else:
            parts.append(f"<details><summary>{_e(title)}</summary>{table}</details>")
    return "".join(parts)


def _group_table(groups: Sequence[GroupResult]) -> str:
    headers = ["variable", *(f"{g.technique} · {g.level}" for g in groups)]
    rows: list[list[str]] = [
        ["procedures / clip reviews", *(f"{g.n_procedures} / {g.n_clips}" for g in groups)],
        ["effective", *(_e(fmt.rate(g.effective)) for g in groups)],
        [
            "procedure time (s)",
            *(
                f"{_e(fmt.mean_sd(g.procedure_time_s, 0))}<br><span class='muted'>"
                f"{_e(fmt.median_iqr(g.procedure_time_s, 0))}<br>"
                f"from {_e(fmt.time_sources(g.procedure_time_sources))}</span>"
                for g in groups
            ),
        ],
    ]
    for name, label in {**NUMERIC_METRICS, **OUTCOME_SCORES}.items():
        cells = []
        for g in groups:
            s = g.metrics.get(name) or g.outcomes[name]
            cells.append(
                f"{_e(fmt.mean_sd(s))}<br><span class='muted'>{_e(fmt.median_iqr(s))}, n = {s.n}</span>"
            )
        rows.append([_e(label), *cells])
    for name, label in RATE_METRICS.items():
        rows.append([_e(label), *(_e(fmt.rate(g.rates[name])) for g in groups)])
    return _table(headers, rows, numeric=tuple(range(1, len(groups) + 1)))


def _groups(report: AuditReport) -> str:
    overall = [g for g in report.groups if g.level == ALL_LEVELS]
    parts = [
        "<p>Each cell: mean ± SD, then median (IQR) and n. Clip metrics count clip reviews; "
        "outcomes, effectiveness and procedure time count procedures.</p>",
        "<h3>All levels</h3>",
        _group_table(overall),
    ]
    levels = sorted({g.level for g in report.groups if g.level != ALL_LEVELS})
    for level in levels:
        table = _group_table([g for g in report.groups if g.level == level])
        parts.append(f"<details><summary>Level {_e(level)}</summary>{table}</details>")
    return "".join(parts)


def _safety(report: AuditReport) -> str:
    margin = report.config.danger_margin_mm
    rows = []
    for s in report.safety_clips:
        rows.append(
            (
                "breach" if s.breach else "warn",
                [
                    "<b>breach</b>" if s.breach else "near miss",
                    _e(fmt.number(s.min_tip_to_danger_mm)),
                    _e(s.danger_class or "–"),
                    _e("–" if s.frame is None else s.frame),
                    _e(", ".join(str(f) for f in s.breach_frames) or "–"),
                    _e(s.technique),
                    _e(", ".join(s.levels) or "–"),
                    *sections_of.id_cells(s.ids),
                    _e(s.reviewer),
                    f"<code>{_e(s.sop_instance_uid)}</code>",
                ],
            )
        )
    headers = [
        "finding",
        "min tip-to-danger (mm)",
        "structure",
        "frame",
        "breach frames",
        "technique",
        "levels",
        *sections_of.ID_HEADERS,
        "reviewer",
        "clip",
    ]
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{cls}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" for cls, cells in rows
    )
    clips = (
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        if rows
        else f'<p class="muted">No review in which a danger structure was marked came within {margin:g} mm '
        "of it.</p>"
    )
    if not any(g.assessable for g in report.safety_groups) and report.safety_groups:
        clips = (
            '<p class="muted">Near misses and breaches: not assessable, no danger structure was marked.</p>'
        )
    events = _table(
        [*sections_of.ID_HEADERS, "technique", "side", "description", "source", "study / clip"],
        (
            [
                *sections_of.id_cells(a.ids),
                _e(a.technique),
                _e(a.side or "–"),
                _e(a.description),
                _e(a.source),
                f"<code>{_e(a.sop_instance_uid or a.study_uid)}</code>",
            ]
            for a in report.adverse_events
        ),
    )
    return (
        '<section id="safety">'
        + sections_of.safety_denominators(report)
        + f"<h3>Near misses and breaches</h3><p>Clips whose needle tip came within <b>{margin:g} mm</b> "
        "of a marked danger structure "
        "(spinal canal, nerve root, vessel), or breached one; frames are numbered from 1, "
        "as in the review widget.</p>"
        f"{clips}<h3>Adverse events</h3>{events}</section>"
    )


def _procedures(report: AuditReport) -> str:
    return sections_of.procedures(report)


def render_html(
    report: AuditReport, *, title: str = "Spinal injection audit", generated: dt.datetime | None = None
) -> str:
    """Render ``report`` as a self-contained HTML document.

    Parameters
    ----------
    report : AuditReport
        The audit result.
    title : str
        Heading and document title.
    generated : datetime, optional
        Time stamp shown in the header; defaults to now (UTC).

    Returns
    -------
    str
        The HTML text.
    """
    stamp = (generated or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M %Z").strip()
    filters = (
        ", ".join(f"{k} = {v}" for k, v in report.filters.items() if v not in (None, "", [], ())) or "none"
    )
    criteria = report.config.criteria
    notes = "".join(f"<li>{_e(n)}</li>" for n in report.notes)
    sections = [
        f"<header><h1>{_e(title)}</h1><div class='meta'>Generated {_e(stamp)} · filters: {_e(filters)} · "
        f"effective = VAS fell ≥ {criteria.vas_drop_fraction:.0%} and ODI fell ≥ "
        f"{criteria.odi_drop_fraction:.0%} at 2 weeks · danger margin {report.config.danger_margin_mm:g} mm"
        "</div></header>",
        _cards(report),
        "<h2>Summary by technique</h2>",
        _summary(report),
        "<h2>Figures</h2>",
        _figure(plots.metric_distributions(report), "Clip metrics and procedure time per technique"),
        _figure(plots.outcomes_over_time(report), "VAS and ODI over time per technique (mean ± SD)"),
        _figure(plots.tip_to_target_strip(report), "Tip-to-target distance at injection start, per clip"),
        "<h2>Comparisons between techniques</h2>",
        _comparisons(report),
        "<h2>Groups: technique × level</h2>",
        _groups(report),
        "<h3>Split by needle approach</h3>",
        sections_of.approach_split(report),
        "<h2>Safety</h2>",
        _safety(report),
        "<h2>Operators and learning curve</h2>",
        sections_of.operators(
            report,
            _figure(
                plots.learning_curve(report),
                "Procedure time and tip-to-target against each operator's procedure number",
            ),
        ),
        "<h2>Procedures</h2>",
        _procedures(report),
    ]
    if notes:
        sections += ["<h2>Notes</h2>", f"<ul>{notes}</ul>"]
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>\n{body}\n</main></body></html>\n"
    )


def write_html(
    report: AuditReport,
    path: Path,
    *,
    title: str = "Spinal injection audit",
    generated: dt.datetime | None = None,
) -> Path:
    """Write :func:`render_html` of ``report`` to ``path`` (UTF-8) and return the path.

    Parameters
    ----------
    report : AuditReport
        The audit result.
    path : Path
        Output file; its directory must exist.
    title, generated
        As for :func:`render_html`.

    Returns
    -------
    Path
    """
    text = render_html(report, title=title, generated=generated)
    path.write_text(text, encoding="utf-8")
    logger.info("audit report written to %s (%d bytes)", path, len(text))
    return path
