"""Audit metrics of annotated clips, in mm, degrees and seconds.

:func:`clip_metrics` measures one reviewer's annotation of one clip
(:class:`ClipMetrics`); :func:`agreement` compares two reviewers' annotations
of the same clip (:class:`AgreementMetrics`). Both are pure functions over a
:class:`~archive.review.ClipAnnotation`, the clip's
:class:`~archive.calibration.Calibration` and (for the per-clip metrics) its
:class:`~archive.timing.FrameTimes`. The definitions are written down in
``docs/metrics.md``.
"""

from __future__ import annotations

from archive.analysis.metrics.agreement import AgreementMetrics, BreachAgreement, agreement
from archive.analysis.metrics.clip import (
    UNCALIBRATED_NOTE,
    UNTIMED_NOTE,
    Breach,
    BreachBy,
    ClipMetrics,
    clip_metrics,
    find_breaches,
)

__all__ = [
    "UNCALIBRATED_NOTE",
    "UNTIMED_NOTE",
    "AgreementMetrics",
    "Breach",
    "BreachAgreement",
    "BreachBy",
    "ClipMetrics",
    "agreement",
    "clip_metrics",
    "find_breaches",
]
