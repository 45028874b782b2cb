"""The audit's group figures as CSV: one row per group × variable.

Columns: ``technique, level, variable, kind, n, mean, sd, median, q1, q3, min,
max, count, rate, not_assessable, source``. ``kind`` is ``metric`` (a clip metric),
``outcome`` (a procedure's score), ``time`` (procedure time, s) or ``rate``
(a yes/no metric or effectiveness: ``count`` of ``n``, ``rate`` = count / n).
``source`` (time rows only) counts where the procedure times come from:
``events`` or ``clip span, no events marked``.
Missing numbers are empty cells.

Beside it, :func:`write_csv` writes ``<name>-procedures.csv`` (one row per
procedure, with the identifiers a clinic finds the case by: patient ID, study
date, accession number, operator, station) and ``<name>-safety.csv`` (the
safety denominators per technique × level; ``not_assessable`` says so in words
where no danger structure was marked).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from pathlib import Path

from archive.analysis.audit import format as fmt
from archive.analysis.audit.model import CASE_ID_COLUMNS, json_float
from archive.analysis.audit.results import AuditReport, GroupResult, Rate
from archive.analysis.statistics import Summary

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "technique",
    "level",
    "variable",
    "kind",
    "n",
    "mean",
    "sd",
    "median",
    "q1",
    "q3",
    "min",
    "max",
    "count",
    "rate",
    "not_assessable",
    "source",
)


def _cell(value: float | None) -> str:
    number = json_float(value)
    return "" if number is None else repr(number)


def _summary_row(g: GroupResult, variable: str, kind: str, s: Summary) -> list[str]:
    stats = (s.mean, s.sd, s.median, s.q1, s.q3, s.minimum, s.maximum)
    source = fmt.time_sources(g.procedure_time_sources) if kind == "time" else ""
    return [g.technique, g.level, variable, kind, str(s.n), *(_cell(v) for v in stats), "", "", "", source]


def _rate_row(g: GroupResult, variable: str, r: Rate) -> list[str]:
    return [
        g.technique,
        g.level,
        variable,
        "rate",
        str(r.n),
        *([""] * 7),
        str(r.count),
        _cell(r.rate),
        str(r.not_assessable),
        "",
    ]


def csv_rows(report: AuditReport) -> Iterator[list[str]]:
    """The data rows of the CSV (without the header), in group order.

    Parameters
    ----------
    report : AuditReport
        The audit result.

    Yields
    ------
    list of str
        One row per group × variable, cells as in :data:`CSV_COLUMNS`.
    """
    for g in report.groups:
        for name, summary in g.metrics.items():
            yield _summary_row(g, name, "metric", summary)
        for name, r in g.rates.items():
            yield _rate_row(g, name, r)
        yield _summary_row(g, "procedure_time_s", "time", g.procedure_time_s)
        for name, summary in g.outcomes.items():
            yield _summary_row(g, name, "outcome", summary)
        yield _rate_row(g, "effective", g.effective)


def render_csv(report: AuditReport) -> str:
    """The CSV text of ``report``'s groups, header first (CRLF line ends, as the csv module writes)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(report))
    return buffer.getvalue()


#: Columns of the procedures CSV.
PROCEDURE_COLUMNS = (
    *CASE_ID_COLUMNS,
    "study_uid",
    "side",
    "technique",
    "levels",
    "clips",
    "clips_reviewed",
    "time_s",
    "time_source",
    "effective",
    "note",
)
#: Columns of the safety CSV.
SAFETY_COLUMNS = (
    "technique",
    "level",
    "clips",
    "clips_reviewed",
    "reviews",
    "reviews_with_danger_marked",
    "min_tip_to_danger_mm_median",
    "breaches",
    "not_assessable",
)


def _write(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")


def procedure_rows(report: AuditReport) -> list[list[str]]:
    """One row per procedure, cells as in :data:`PROCEDURE_COLUMNS`."""
    effective = {(o.study_uid, o.side): o.effective for o in report.outcomes}
    words = {True: "yes", False: "no", None: "not assessable"}
    rows = []
    for p in report.procedures:
        key = (p.study_uid, p.side.value)
        rows.append(
            [
                *(getattr(p.ids, name) or "" for name in CASE_ID_COLUMNS),
                p.study_uid,
                p.side.value,
                p.technique_label,
                ",".join(lv.value for lv in p.levels),
                str(len(p.sop_instance_uids)),
                str(p.reviewed_clips),
                _cell(p.time_s),
                p.time_source or "",
                words[effective[key]] if key in effective else "no outcome",
                p.time_note or p.technique_note or "",
            ]
        )
    return rows


def safety_rows(report: AuditReport) -> list[list[str]]:
    """One row per technique × level, cells as in :data:`SAFETY_COLUMNS`."""
    data = [g.to_dict() for g in report.safety_groups]
    return [
        [
            d["technique"],
            d["level"],
            str(d["clips"]),
            str(d["clips_reviewed"]),
            str(d["reviews"]),
            str(d["reviews_with_danger_marked"]),
            _cell(d["min_tip_to_danger_mm"]["median"]) if d["min_tip_to_danger_mm"] else "",
            "" if d["breaches"] is None else str(d["breaches"]),
            d["not_assessable"] or "",
        ]
        for d in data
    ]


def write_csv(report: AuditReport, path: Path) -> Path:
    """Write the group CSV to ``path`` (UTF-8), and the procedures and safety CSVs beside it.

    Parameters
    ----------
    report : AuditReport
        The audit result.
    path : Path
        The group CSV; ``<stem>-procedures.csv`` and ``<stem>-safety.csv`` go beside it.

    Returns
    -------
    Path
        ``path``.
    """
    text = render_csv(report)
    path.write_text(text, encoding="utf-8", newline="")
    _write(path.with_name(f"{path.stem}-procedures.csv"), PROCEDURE_COLUMNS, procedure_rows(report))
    _write(path.with_name(f"{path.stem}-safety.csv"), SAFETY_COLUMNS, safety_rows(report))
    logger.info("audit CSVs written to %s and beside it", path)
    return path
