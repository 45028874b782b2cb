"""Figures of an audit report as PNG bytes (matplotlib, no pyplot state).

Each function takes an :class:`AuditReport` and returns PNG bytes, or
``None`` when the report has nothing to draw. Figures are built on
:class:`matplotlib.figure.Figure` directly, so no GUI backend or global pyplot
state is touched (safe in servers and tests).
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from archive.analysis.audit import format as fmt
from archive.analysis.audit.model import ALL_LEVELS, NUMERIC_METRICS, TIME_POINTS
from archive.analysis.audit.results import AuditReport

logger = logging.getLogger(__name__)

#: Colours of the techniques, in sorted order of their labels (colour-blind safe).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
#: Metrics drawn in the distribution figure (besides the procedure time).
DISTRIBUTION_METRICS = (
    "tip_to_target_at_injection_start_mm",
    "needle_angle_deg",
    "max_spread_area_mm2",
    "min_tip_to_danger_mm",
)
_DPI = 110


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def technique_colours(report: AuditReport) -> dict[str, str]:
    """Colour of each technique label of ``report`` (stable: by sorted label)."""
    labels = sorted({g.technique for g in report.groups})
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _style(ax: Axes, title: str) -> None:
    ax.set_title(title, fontsize=10, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)


def _strip_box(ax: Axes, values_by_label: dict[str, list[float]], colours: dict[str, str]) -> None:
    labels = [label for label, values in values_by_label.items() if values]
    rng = np.random.default_rng(0)  # fixed jitter: the same report draws the same figure
    for position, label in enumerate(labels, start=1):
        values = np.asarray(values_by_label[label], dtype=np.float64)
        ax.boxplot(
            [values],
            positions=[position],
            widths=0.5,
            showfliers=False,
            medianprops={"color": "#222222"},
            boxprops={"color": "#666666"},
            whiskerprops={"color": "#666666"},
            capprops={"color": "#666666"},
        )
        jitter = rng.uniform(-0.15, 0.15, values.size)
        ax.scatter(position + jitter, values, s=12, alpha=0.7, color=colours[label], zorder=3)
    ax.set_xticks(range(1, len(labels) + 1), labels)


def metric_distributions(report: AuditReport) -> bytes | None:
    """Box-and-strip plots of the key clip metrics and the procedure time per technique.

    Returns
    -------
    bytes or None
        PNG image; ``None`` when no metric has a value.
    """
    colours = technique_colours(report)
    panels: list[tuple[str, dict[str, list[float]]]] = []
    for name in DISTRIBUTION_METRICS:
        by_label: dict[str, list[float]] = {}
        for row in report.clips:
            value = row.metrics.get(name)
            if value is not None:
                by_label.setdefault(row.technique, []).append(float(value))
        if by_label:
            panels.append((NUMERIC_METRICS[name], dict(sorted(by_label.items()))))
    times: dict[str, list[float]] = {}
    for procedure in report.procedures:
        if procedure.time_s is not None:
            times.setdefault(procedure.technique_label, []).append(procedure.time_s)
    if times:
        panels.append((_time_title(report), dict(sorted(times.items()))))
    if not panels:
        return None
    figure = Figure(figsize=(2.6 * len(panels), 3.0))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, values) in zip(axes, panels, strict=True):
        _strip_box(ax, values, colours)
        _style(ax, title)
    figure.tight_layout()
    return _png(figure)


def outcomes_over_time(report: AuditReport) -> bytes | None:
    """VAS and ODI (mean ± SD) before, 1 h and 2 weeks after, one line per technique.

    Returns
    -------
    bytes or None
        PNG image; ``None`` when no outcome is recorded.
    """
    if not report.outcomes:
        return None
    colours = technique_colours(report)
    figure = Figure(figsize=(9.0, 3.2))
    axes = figure.subplots(1, 2)
    x = np.arange(len(TIME_POINTS))
    labels = ("before", "1 h", "2 weeks")
    for ax, score, title in zip(axes, ("vas", "odi"), ("VAS (0–10)", "ODI (%)"), strict=True):
        for offset, group in enumerate(g for g in report.groups if g.level == ALL_LEVELS):
            summaries = [group.outcomes[f"{score}_{t}"] for t in TIME_POINTS]
            if not any(s.n for s in summaries):
                continue
            means = [s.mean for s in summaries]
            sds = [0.0 if np.isnan(s.sd) else s.sd for s in summaries]
            ax.errorbar(
                x + 0.05 * offset,
                means,
                yerr=sds,
                marker="o",
                capsize=3,
                color=colours[group.technique],
                label=f"{group.technique} (n = {summaries[0].n})",
            )
        ax.set_xticks(x, labels)
        _style(ax, title)
        ax.legend(frameon=False, fontsize=8)
    figure.tight_layout()
    return _png(figure)


def _sorted_tips(report: AuditReport) -> list[tuple[str, float]]:
    rows = [
        (row.technique, float(row.metrics["tip_to_target_at_injection_start_mm"]))
        for row in report.clips
        if row.metrics.get("tip_to_target_at_injection_start_mm") is not None
    ]
    return sorted(rows)


def tip_to_target_strip(report: AuditReport, tips: Sequence[tuple[str, float]] | None = None) -> bytes | None:
    """One bar per clip: tip-to-target distance at injection start, grouped by technique.

    Returns
    -------
    bytes or None
        PNG image; ``None`` when no clip has the distance.
    """
    rows = list(tips) if tips is not None else _sorted_tips(report)
    if not rows:
        return None
    colours = technique_colours(report)
    figure = Figure(figsize=(9.0, 2.6))
    ax = figure.subplots()
    positions = np.arange(len(rows))
    ax.bar(
        positions,
        [distance for _, distance in rows],
        width=0.8,
        color=[colours[technique] for technique, _ in rows],
    )
    for technique, colour in colours.items():
        if any(t == technique for t, _ in rows):
            ax.bar([0], [0], color=colour, label=technique)
    ax.set_xlim(-1, len(rows))
    ax.set_xticks([])
    ax.set_xlabel(f"clips ({len(rows)}), by technique then distance", fontsize=9)
    ax.set_ylabel("mm", fontsize=9)
    _style(ax, "tip-to-target distance at injection start, per clip")
    ax.legend(frameon=False, fontsize=8, ncols=len(colours))
    figure.tight_layout()
    return _png(figure)


def _time_title(report: AuditReport) -> str:
    """``"procedure time (s)"`` with the count of each time source on a second line."""
    sources = Counter(p.time_source for p in report.procedures if p.time_source is not None)
    return f"procedure time (s)\nfrom {fmt.time_sources(dict(sorted(sources.items())))}"


def operator_order(report: AuditReport) -> dict[str, list[tuple[int, float | None, float | None]]]:
    """Per operator: (order, procedure time s, mean tip-to-target mm) of their procedures.

    A procedure's order is its place among the operator's procedures by study
    date, then study UID and side (1 = first); procedures without a recorded
    operator are left out.
    """
    tips: dict[str, list[float]] = {}
    for clip in report.clips:
        value = clip.metrics.get("tip_to_target_at_injection_start_mm")
        if isinstance(value, (int, float)):
            tips.setdefault(clip.sop_instance_uid, []).append(float(value))
    by_operator: dict[str, list[tuple[str, str, str, float | None, float | None]]] = {}
    for p in report.procedures:
        if not p.ids.operator:
            continue
        values = [v for uid in p.sop_instance_uids for v in tips.get(uid, [])]
        tip = float(np.mean(values)) if values else None
        key = (p.ids.study_date or "", p.study_uid, p.side.value)
        by_operator.setdefault(p.ids.operator, []).append((*key, p.time_s, tip))
    return {
        operator: [(k, time, tip) for k, (_, _, _, time, tip) in enumerate(sorted(rows), start=1)]
        for operator, rows in sorted(by_operator.items())
    }


def learning_curve(report: AuditReport) -> bytes | None:
    """Procedure time and tip-to-target against each operator's procedure order.

    Parameters
    ----------
    report : AuditReport
        The audit result.

    Returns
    -------
    bytes or None
        PNG bytes, ``None`` if no operator has a timed or measured procedure.
    """
    curves = operator_order(report)
    panels = ((_time_title(report), 1), ("tip-to-target at injection start (mm)", 2))
    if not any(row[i] is not None for rows in curves.values() for row in rows for _, i in panels):
        return None
    figure = Figure(figsize=(9.0, 3.2))
    axes = figure.subplots(1, 2)
    for ax, (title, index) in zip(axes, panels, strict=True):
        _style(ax, title)
        for n, (operator, rows) in enumerate(curves.items()):
            points = [(row[0], row[index]) for row in rows if row[index] is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(
                    xs,
                    ys,
                    marker="o",
                    markersize=3,
                    linewidth=1,
                    color=PALETTE[n % len(PALETTE)],
                    label=operator,
                )
        ax.set_xlabel("operator's procedure number", fontsize=9)
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes), key=lambda hl: len(hl[1]))
    if labels:
        figure.legend(handles, labels, loc="upper right", fontsize=8, frameon=False)
    return _png(figure)
