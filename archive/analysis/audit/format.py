"""Number formatting shared by the HTML, CSV and terminal renderings of an audit."""

from __future__ import annotations

import math
from collections.abc import Mapping

from archive.analysis.audit.model import NUMERIC_METRICS, OUTCOME_SCORES, RATE_METRICS
from archive.analysis.audit.results import Rate
from archive.analysis.statistics import Summary, TestResult

#: Labels of comparison variables for reports.
VARIABLE_LABELS: dict[str, str] = {
    **NUMERIC_METRICS,
    **RATE_METRICS,
    **OUTCOME_SCORES,
    "procedure_time_s": "procedure time (s)",
    "effective": "effective (VAS and ODI fell at 2 weeks)",
    "vas_over_time": "VAS over time",
    "odi_over_time": "ODI over time",
}


def number(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, or an en dash when missing or not finite."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def mean_sd(summary: Summary, digits: int = 2) -> str:
    """``"mean ± SD"``; the SD is left out for a single value, a dash for none."""
    if summary.n == 0:
        return "–"
    if summary.n == 1 or not math.isfinite(summary.sd):
        return number(summary.mean, digits)
    return f"{number(summary.mean, digits)} ± {number(summary.sd, digits)}"


def median_iqr(summary: Summary, digits: int = 2) -> str:
    """``"median (Q1–Q3)"``, a dash for no values."""
    if summary.n == 0:
        return "–"
    return f"{number(summary.median, digits)} ({number(summary.q1, digits)}–{number(summary.q3, digits)})"


def time_sources(sources: Mapping[str, int]) -> str:
    """Where a group's procedure times come from, e.g. ``"clip span, no events marked: 30; events: 2"``."""
    if not sources:
        return "no time"
    return "; ".join(f"{name}: {count}" for name, count in sorted(sources.items()))


def procedure_time(summary: Summary, sources: Mapping[str, int], digits: int = 0) -> str:
    """``"mean ± SD (from sources)"`` of a group's procedure times, labelled with their sources."""
    if summary.n == 0:
        return mean_sd(summary, digits)
    return f"{mean_sd(summary, digits)} (from {time_sources(sources)})"


def rate(value: Rate) -> str:
    """``"count/n (percent %)"``, a dash when nothing was assessed."""
    if value.n == 0:
        return "–"
    return f"{value.count}/{value.n} ({100.0 * value.count / value.n:.0f} %)"


def p_value(p: float | None) -> str:
    """P to three decimals, ``"< 0.001"`` below that, a dash when missing."""
    if p is None or not math.isfinite(p):
        return "–"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}"


def degrees_of_freedom(result: TestResult) -> str:
    """The df of a test: one number, ``"df1, df2"``, or a dash for none."""
    if result.df is None:
        return "–"
    if isinstance(result.df, tuple):
        return ", ".join(_df(d) for d in result.df)
    return _df(result.df)


def _df(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def statistic(result: TestResult) -> str:
    """The statistic with its symbol: ``χ² = 5.32``, ``t = −2.10``, ``U = 120``, ``F = 3.4``, ``OR = 2.1``."""
    symbol = {
        "Pearson χ² test": "χ²",
        "Welch's t-test": "t",
        "Mann–Whitney U test": "U",
        "Fisher's exact test": "OR",
        "repeated-measures ANOVA": "F",
    }.get(result.test, "statistic")
    digits = 1 if symbol == "U" else 2
    return f"{symbol} = {number(result.statistic, digits)}"
