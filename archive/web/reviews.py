"""Review states and annotations of clips, for reviewer tokens on the web.

``GET {root}/usarchive/reviews[?study=UID]``: one entry per clip and reviewer.
``GET {root}/usarchive/instances/{uid}/annotations``: each reviewer's latest
annotation of the clip (the JSON of :func:`archive.review.to_json`, as
``usarchive review export`` writes it) with version and status.
:func:`approvals_marker` tells :class:`archive.web.reports.ReportPublisher`
cheaply whether approvals changed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from archive.index import schema
from archive.index.engine import autocommit_reads
from archive.model import ReviewStatus
from archive.review.sql import review_state
from archive.review.store import AnnotationStore


def review_states(engine: Engine, study: str | None) -> list[dict[str, Any]]:
    """One entry per ``(instance, reviewer)``: UIDs, reviewer, status, latest version, when.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The index.
    study : str, optional
        Only this study's instances.
    """
    st, se, it = schema.study, schema.series, schema.instance
    query = (
        select(
            st.c.study_instance_uid,
            se.c.series_instance_uid,
            it.c.sop_instance_uid,
            review_state.c.reviewer,
            review_state.c.status,
            review_state.c.latest_version,
            review_state.c.updated_at,
        )
        .select_from(
            review_state.join(it, it.c.id == review_state.c.instance_pk)
            .join(se, se.c.id == it.c.series_pk)
            .join(st, st.c.id == se.c.study_pk)
        )
        .order_by(st.c.id, se.c.id, it.c.id, review_state.c.reviewer)
    )
    if study:
        query = query.where(st.c.study_instance_uid == study)
    with autocommit_reads(engine) as connection:
        rows = connection.execute(query).all()
    return [
        {
            "study": row.study_instance_uid,
            "series": row.series_instance_uid,
            "instance": row.sop_instance_uid,
            "reviewer": row.reviewer,
            "status": row.status,
            "version": row.latest_version,
            "updated_at": row.updated_at.isoformat(),
        }
        for row in rows
    ]


def latest_annotations(annotations: AnnotationStore, sop_instance_uid: str) -> list[dict[str, Any]]:
    """Each reviewer's latest annotation of the clip: reviewer, version, status, saved_at, annotation."""
    from archive.review import to_json

    found = []
    for reviewer in annotations.reviewers(sop_instance_uid):
        loaded = annotations.load(sop_instance_uid, reviewer)
        found.append(
            {
                "reviewer": reviewer,
                "version": loaded.version,
                "status": str(loaded.status.value),
                "saved_at": loaded.saved_at.isoformat(),
                "annotation": to_json(loaded.annotation),
            }
        )
    return found


def approvals_marker(engine: Engine) -> tuple[int, int, str]:
    """What changes whenever an annotation is approved or leaves approval: one aggregate query.

    ``(approved count, sum of their latest versions, latest change)`` over
    ``review_state`` rows in status approved. A new approval sets its row's
    ``updated_at`` to now, so the last member changes even when the other two
    do not (one approval re-opened as another is approved).

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The index.
    """
    versions = func.coalesce(func.sum(review_state.c.latest_version), 0)
    approved = review_state.c.status == ReviewStatus.APPROVED.value
    query = select(func.count(), versions, func.max(review_state.c.updated_at)).where(approved)
    with autocommit_reads(engine) as connection:
        count, version_sum, latest = connection.execute(query).one()
    return int(count), int(version_sum), "" if latest is None else str(latest)
