"""The landing page of ``usarchive web --ohif``: studies with their procedure keys, opened in OHIF.

The page itself (``templates/landing.html``) is a shell with no data: it asks
for a bearer token once per browser tab (kept in ``sessionStorage``, see
:mod:`archive.web.ohif`) and fetches, with that token,

``GET {root}/usarchive/overview``
    one entry per study: date, description, patient, and per clip the spinal
    levels, side, technique, approach, calibration and, for a reviewer token,
    each reviewer's review status (a reader sees ``null`` there);
``GET {root}/usarchive/audit-report``
    the HTML audit report at ``[web] audit_report`` (``usarchive audit --html``),
    for a reviewer token; 404 with the command to write it when there is none.

Both are routes of the DICOMweb application, so the token check, the limits
and the access log are the same as for QIDO-RS.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from archive.index.queries import InstanceRow, Query
from archive.web.errors import WebRequestError
from archive.web.settings import WebSettings
from archive.web.tokens import Role

#: Structured Report storage classes (PS3.4 B.5: 1.2.840.10008.5.1.4.1.1.88.x).
SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
OVERVIEW_PATH = "/usarchive/overview"
AUDIT_PATH = "/usarchive/audit-report"


def landing_page(root: str) -> Callable[[Request], Response]:
    """The endpoint of ``/``: the page shell, with the DICOMweb root filled in."""
    from archive.web.ohif import TOKEN_KEY, VIEWER_BASE

    template = resources.files("archive.web").joinpath("templates/landing.html").read_text("utf-8")
    page = (
        template.replace("{{root}}", html.escape(root, quote=True))
        .replace("{{viewer}}", html.escape(VIEWER_BASE, quote=True))
        .replace("{{token_key}}", html.escape(TOKEN_KEY, quote=True))
    )

    def endpoint(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    return endpoint


def study_overview(
    rows: list[InstanceRow], reviews: dict[str, dict[str, str]] | None
) -> list[dict[str, Any]]:
    """Clips grouped by study, newest study first (the order of ``rows``); SR documents left out.

    Parameters
    ----------
    rows : list of InstanceRow
        ``find``'s rows.
    reviews : dict, optional
        SOP Instance UID -> {reviewer: status}; ``None`` when the caller may not see them.
    """
    studies: dict[str, dict[str, Any]] = {}
    clips: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.sop_class_uid.startswith(SR_CLASS_PREFIX):
            continue  # our measurement reports (archive.web.reports) are not clips
        studies.setdefault(
            row.study_instance_uid,
            {
                "study_instance_uid": row.study_instance_uid,
                "study_date": row.study_date.isoformat() if row.study_date else None,
                "patient_id": row.patient_id,
                "patient_name": row.patient_name,
            },
        )
        clips[row.study_instance_uid].append(
            {
                "sop_instance_uid": row.sop_instance_uid,
                "series_instance_uid": row.series_instance_uid,
                "levels": list(row.levels),
                "side": row.side,
                "technique": row.technique,
                "approach": row.approach,
                "frames": row.frames,
                "calibrated": row.calibrated,
                "reviews": None if reviews is None else reviews.get(row.sop_instance_uid, {}),
            }
        )
    return [{**study, "clips": clips[uid]} for uid, study in studies.items()]


def landing_routes(dicomweb: Starlette, settings: WebSettings, audit_report: Path | None) -> list[Route]:
    """The landing page's JSON and audit routes, to be added to the DICOMweb application."""
    from archive.web.app import caller_of

    context = dicomweb.state.context

    def overview(request: Request) -> Response:
        caller = caller_of(request)
        rows = context.archive.index.find(Query(limit=settings.max_results))
        reviews: dict[str, dict[str, str]] | None = None
        if caller.token.role.allows(Role.REVIEWER):
            reviews = defaultdict(dict)
            for review in context.archive.annotations.list_reviews():
                reviews[review.sop_instance_uid][review.reviewer] = review.status.value
        return JSONResponse(
            {
                "studies": study_overview(rows, reviews),
                "truncated": len(rows) >= settings.max_results,
                "audit_report": audit_report is not None and audit_report.is_file(),
            }
        )

    def audit(request: Request) -> Response:
        caller_of(request).require(Role.REVIEWER)
        if audit_report is None or not audit_report.is_file():
            where = "[web] audit_report is not set" if audit_report is None else f"{audit_report} is missing"
            raise WebRequestError(
                404,
                f"no audit report: {where}; write one with `usarchive audit --html PATH` and set "
                "[web] audit_report = PATH",
            )
        return FileResponse(audit_report, media_type="text/html", headers={"Cache-Control": "no-store"})

    root = settings.root
    return [
        Route(root + OVERVIEW_PATH, overview, methods=["GET"]),
        Route(root + AUDIT_PATH, audit, methods=["GET"]),
    ]
