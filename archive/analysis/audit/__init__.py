"""The audit: procedures, outcomes and clip metrics grouped by technique × level, compared and reported.

:func:`run_audit` (pure) turns :class:`ClipAuditInput` entries and outcomes
into an :class:`AuditReport`; :mod:`archive.analysis.audit.gather` builds the inputs
from an archive; :mod:`archive.analysis.audit.report_html` and
:mod:`archive.analysis.audit.report_csv` write the report.
"""

from __future__ import annotations

from archive.analysis.audit.compute import run_audit
from archive.analysis.audit.model import AuditConfig, ClipAuditInput, Procedure
from archive.analysis.audit.procedures import group_procedures, procedure_time
from archive.analysis.audit.results import AuditReport, Comparison, GroupResult, Rate

__all__ = [
    "AuditConfig",
    "AuditReport",
    "ClipAuditInput",
    "Comparison",
    "GroupResult",
    "Procedure",
    "Rate",
    "group_procedures",
    "procedure_time",
    "run_audit",
]
