"""Does every instance that matches a route have its task? (``usarchive verify``).

The outbox inserts the tasks in the ingest transaction, so an instance indexed
while a route selected it always has one. An instance can still match a route
without a task toward its destination when the route was added (or changed)
after it arrived, or when a person re-tagged it since: it is judged on the index
as it is now, with the same :func:`archive.forward.routes.matching_routes` as ingest.
A task in any state counts (a cancelled or completed one too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select

from archive.forward.config import Route
from archive.forward.routes import RouteFacts, matching_routes
from archive.forward.sql import forward_task
from archive.index import schema
from archive.index.engine import read_transaction

_BATCH = 2000


@dataclass(frozen=True)
class Gap:
    """An instance that matches routes toward destinations it has no task for."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    routes: tuple[tuple[int, Route], ...]  # (index, route) whose destination has no task


@dataclass(frozen=True)
class _Indexed:
    pk: int
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    facts: RouteFacts


def _indexed(connection: Connection, after: int, batch: int) -> list[_Indexed]:
    """Up to ``batch`` instances with id above ``after``, with their route facts from the index."""
    i, se, st = schema.instance, schema.series, schema.study
    p, lv = schema.instance_procedure, schema.instance_level
    rows = connection.execute(
        select(
            i.c.id,
            i.c.sop_instance_uid,
            i.c.sop_class_uid,
            i.c.calling_ae,
            st.c.study_instance_uid,
            se.c.modality,
            p.c.side,
            p.c.technique,
            p.c.procedure_type,
        )
        .select_from(
            i.join(se, se.c.id == i.c.series_pk)
            .join(st, st.c.id == se.c.study_pk)
            .outerjoin(p, p.c.instance_pk == i.c.id)
        )
        .where(i.c.id > after)
        .order_by(i.c.id)
        .limit(batch)
    ).all()
    levels: dict[int, set[str]] = {}
    if rows:
        for pk, level in connection.execute(
            select(lv.c.instance_pk, lv.c.level).where(lv.c.instance_pk.in_([r.id for r in rows]))
        ):
            levels.setdefault(pk, set()).add(level)
    return [
        _Indexed(
            r.id,
            r.sop_instance_uid,
            r.sop_class_uid,
            r.study_instance_uid,
            RouteFacts(
                calling_ae=r.calling_ae,
                modality=(r.modality or "").upper() or None,
                sop_class_uid=r.sop_class_uid,
                levels=frozenset(levels.get(r.id, ())),
                side=r.side,
                technique=r.technique,
                procedure_type=r.procedure_type,
            ),
        )
        for r in rows
    ]


def unrouted(engine: Engine, routes: Sequence[Route], *, batch: int = _BATCH) -> list[Gap]:
    """Every indexed instance that matches a route toward a destination it has no task for.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The index.
    routes : sequence of Route
        The configured routes.
    batch : int
        Instances read per short read transaction.

    Returns
    -------
    list of Gap
        In index order.
    """
    if not routes:
        return []
    gaps: list[Gap] = []
    last = 0
    while True:
        with read_transaction(engine) as connection:
            instances = _indexed(connection, last, batch)
            if not instances:
                return gaps
            uids = [item.sop_instance_uid for item in instances]
            tasks = {
                (row.sop_instance_uid, row.destination)
                for row in connection.execute(
                    select(forward_task.c.sop_instance_uid, forward_task.c.destination).where(
                        forward_task.c.sop_instance_uid.in_(uids)
                    )
                )
            }
        for item in instances:
            missing = tuple(
                (index, route)
                for index, route in matching_routes(routes, item.facts)
                if (item.sop_instance_uid, route.destination) not in tasks
            )
            if missing:
                gaps.append(Gap(item.sop_instance_uid, item.sop_class_uid, item.study_uid, missing))
        last = instances[-1].pk
