"""The audit's group figures as CSV: one row per group × variable.

Columns: ``technique, level, variable, kind, n, mean, sd, median, q1, q3, min,
max, count, rate, not_assessable``. ``kind`` is ``metric`` (a clip metric),
``outcome`` (a procedure's score), ``time`` (procedure time, s) or ``rate``
(a yes/no metric or effectiveness: ``count`` of ``n``, ``rate`` = count / n).
Missing numbers are empty cells.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from pathlib import Path

from archive.audit.model import AuditReport, GroupResult, Rate, json_float
from archive.stats import Summary

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
)


def _cell(value: float | None) -> str:
    number = json_float(value)
    return "" if number is None else repr(number)


def _summary_row(g: GroupResult, variable: str, kind: str, s: Summary) -> list[str]:
    stats = (s.mean, s.sd, s.median, s.q1, s.q3, s.minimum, s.maximum)
    return [g.technique, g.level, variable, kind, str(s.n), *(_cell(v) for v in stats), "", "", ""]


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


def write_csv(report: AuditReport, path: Path) -> Path:
    """Write :func:`render_csv` of ``report`` to ``path`` (UTF-8) and return the path."""
    text = render_csv(report)
    path.write_text(text, encoding="utf-8", newline="")
    logger.info("audit CSV written to %s", path)
    return path
