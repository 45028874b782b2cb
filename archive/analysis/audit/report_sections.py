"""Sections of the HTML audit report that name cases: identifiers, safety denominators, operators.

The report is a local clinical document: every table that names a case shows
the patient ID, study date, accession number, operator and station (research
exports stay de-identified; see ``archive.research.export``). The safety section gives
its denominators per technique × level and says "not assessable" in words
where no danger structure was marked, never a zero.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from archive.analysis.audit import format as fmt
from archive.analysis.audit.model import CASE_ID_COLUMNS, NUMERIC_METRICS, CaseIds
from archive.analysis.audit.results import NOT_ASSESSABLE, AuditReport, SafetyGroup

#: Headers of the identifier columns, in order.
ID_HEADERS: tuple[str, ...] = tuple(CASE_ID_COLUMNS.values())


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def id_cells(ids: CaseIds) -> list[str]:
    """The identifier cells of one case (escaped; "–" where the header had none)."""
    return [_e(getattr(ids, name) or "–") for name in CASE_ID_COLUMNS]


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table of pre-escaped cells (numeric columns right-aligned)."""
    head = "".join(f'<th class="{"num" if i in numeric else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"num" if i in numeric else ""}">{c}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    if not body:
        return '<p class="muted">None.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _safety_row(g: SafetyGroup) -> list[str]:
    if g.assessable:
        distance = fmt.median_iqr(g.min_tip_to_danger_mm)
        breaches = f"{g.breaches} of {g.reviews_with_danger}"
    else:
        distance = breaches = f'<span class="muted">{_e(NOT_ASSESSABLE)}</span>'
        return [
            f"<b>{_e(g.technique)}</b>",
            _e(g.level),
            str(g.clips),
            str(g.clips_reviewed),
            f"{g.reviews_with_danger} of {g.reviews} reviews",
            distance,
            breaches,
        ]
    return [
        f"<b>{_e(g.technique)}</b>",
        _e(g.level),
        str(g.clips),
        str(g.clips_reviewed),
        f"{g.reviews_with_danger} of {g.reviews} reviews",
        _e(distance),
        _e(breaches),
    ]


def safety_denominators(report: AuditReport) -> str:
    """The table of safety denominators per technique × level."""
    headers = [
        "technique",
        "level",
        "clips",
        "clips reviewed",
        "danger structure marked",
        "min tip-to-danger, mm (median (IQR))",
        "breaches",
    ]
    intro = (
        "<p>Tip-to-danger distances and breaches count only reviews in which a danger structure "
        "was marked. Where none was, safety is <b>not assessable</b>: silence is not safety.</p>"
    )
    return intro + table(headers, (_safety_row(g) for g in report.safety_groups), numeric=(2, 3))


def operators(report: AuditReport, figure: str) -> str:
    """Per-operator figures and the learning-curve figure."""
    rows = (
        [
            _e(o.operator),
            _e(o.technique),
            str(o.procedures),
            str(o.procedures_reviewed),
            _e(fmt.rate(o.effective)),
            _e(fmt.procedure_time(o.procedure_time_s, o.procedure_time_sources)),
            _e(fmt.mean_sd(o.tip_to_target_mm)),
        ]
        for o in report.operators
    )
    headers = [
        "operator",
        "technique",
        "procedures",
        "with a reviewed clip",
        "effective",
        "procedure time, s",
        "tip-to-target, mm",
    ]
    return (
        "<p>Operator: Performing Physician's Name, else Operators' Name, of the clips' headers. "
        "All per-operator figures are exploratory.</p>" + table(headers, rows, numeric=(2, 3)) + figure
    )


def procedures(report: AuditReport) -> str:
    """Every procedure (study × side) with its identifiers, technique, time and outcome."""
    effective = {(o.study_uid, o.side): o.effective for o in report.outcomes}
    rows = (
        [
            *id_cells(p.ids),
            _e(p.side.value),
            _e(p.technique_label),
            _e(", ".join(lv.value for lv in p.levels) or "–"),
            f"{p.reviewed_clips} of {len(p.sop_instance_uids)}",
            _e(fmt.number(p.time_s, 1)),
            _e(p.time_source or "–"),
            _e({True: "yes", False: "no", None: "not assessable"}[effective[(p.study_uid, p.side.value)]])
            if (p.study_uid, p.side.value) in effective
            else '<span class="muted">no outcome</span>',
            _e(p.time_note or p.technique_note or ""),
            f"<code>{_e(p.study_uid)}</code>",
        ]
        for p in report.procedures
    )
    headers = [
        *ID_HEADERS,
        "side",
        "technique",
        "levels",
        "clips reviewed",
        "time (s)",
        "time from",
        "effective",
        "note",
        "study",
    ]
    reviewed = sum(1 for p in report.procedures if p.reviewed_clips)
    summary = f"{len(report.procedures)} procedures ({reviewed} with a reviewed clip)"
    return f"<details open><summary>{_e(summary)}</summary>{table(headers, rows, numeric=(8,))}</details>"


def approach_split(report: AuditReport) -> str:
    """Clip metrics per technique × needle approach (descriptive; filter with ``--approach``)."""
    if not report.approach_groups:
        return '<p class="muted">No reviewed clip: nothing to split by approach.</p>'
    headers = ["technique", "approach", "clip reviews", *NUMERIC_METRICS.values()]
    rows = (
        [
            f"<b>{_e(g.technique)}</b>",
            _e(g.approach),
            str(g.n_clips),
            *(_e(fmt.mean_sd(g.metrics[name])) for name in NUMERIC_METRICS),
        ]
        for g in report.approach_groups
    )
    return (
        "<p>Clip metrics split by the needle approach of each clip (in-plane, out-of-plane), within "
        "each technique; descriptive. Audit one approach with <code>--approach</code>.</p>"
        + table(headers, rows, numeric=tuple(range(2, 3 + len(NUMERIC_METRICS))))
    )
