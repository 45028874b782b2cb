"""The instance filters of ``usarchive find``, as one decorator other commands can reuse.

:func:`query_filters` adds ``--patient``, ``--level``, ``--side``,
``--technique``, ``--approach``, ``--procedure``, ``--date-from``, ``--date-to``,
``--modality`` and ``--reviewer`` to a command and hands the command one
:class:`~archive.index.queries.Query` (keyword ``query``) instead of the
separate values. ``find`` and ``export`` use it; ``tag`` uses the parsers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import click

from archive.index.queries import Query
from archive.model import TECHNIQUE_DEFINITIONS, Approach, ProcedureType, Side, SpinalLevel, Technique

_DATE_FORMATS = ["%Y-%m-%d", "%Y%m%d"]

#: Help of ``--technique``: the values, TT and OT defined in one sentence each.
TECHNIQUE_HELP = "TT, OT, other, unknown (per procedure side). " + " ".join(TECHNIQUE_DEFINITIONS)
#: Help of ``--approach``.
APPROACH_HELP = (
    "in-plane (the whole needle shaft in the image), out-of-plane (only a dot), unknown (per clip)."
)

_OPTIONS: tuple[Callable[[Callable[..., Any]], Callable[..., Any]], ...] = (
    click.option(
        "--patient",
        help="Patient ID or name (Family^Given), any case; * and ? are wildcards, e.g. 'mul*'.",
    ),
    click.option("--accession", help="Accession Number of the study."),
    click.option(
        "--level", "levels", multiple=True, help="Spinal level, e.g. L5 (repeat or comma-separate: any of)."
    ),
    click.option("--side", help="left, right, bilateral (or L, R, B)."),
    click.option("--technique", help=TECHNIQUE_HELP),
    click.option("--approach", help=APPROACH_HELP),
    click.option(
        "--procedure", help="medial branch block, radiofrequency, epidural, facet injection, other."
    ),
    click.option("--date-from", type=click.DateTime(_DATE_FORMATS), help="Study date from (inclusive)."),
    click.option("--date-to", type=click.DateTime(_DATE_FORMATS), help="Study date to (inclusive)."),
    click.option("--modality", help="Series modality, e.g. US."),
    click.option(
        "--reviewer", help="Only clips this reviewer has annotated (export: only their annotations)."
    ),
)


def parse_levels(values: tuple[str, ...]) -> tuple[SpinalLevel, ...]:
    """``("L4", "L5,S1")`` → levels; raises ``click.BadParameter`` naming the valid values."""
    levels: list[SpinalLevel] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                try:
                    levels.append(SpinalLevel.parse(part.strip().upper()))
                except ValueError as exc:
                    raise click.BadParameter(str(exc), param_hint="--level") from exc
    return tuple(levels)


def parse_side(value: str | None) -> Side | None:
    """``left``/``right``/``bilateral`` or the Image Laterality codes ``L``/``R``/``B``."""
    if value is None:
        return None
    codes = {side.laterality: side for side in Side}
    if value.strip().upper() in codes:
        return codes[value.strip().upper()]
    try:
        return Side.parse(value.strip().lower())
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (or L, R, B)", param_hint="--side") from exc


def parse_member(
    kind: type[Technique] | type[Approach] | type[ProcedureType], value: str | None, hint: str
) -> object:
    """A technique, approach or procedure type by value or name (case-insensitive names)."""
    if value is None:
        return None
    for member in kind:
        if value.strip().lower() in (member.value.lower(), member.name.lower()):
            return member
    valid = ", ".join(member.value for member in kind)
    raise click.BadParameter(f"expected one of {valid}, but got {value!r}", param_hint=hint)


def _date(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def query_filters(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a click command callback with the ``find`` filters, passed on as ``query``.

    The ``Query`` has no review status and the default limit; the command
    sets those as it needs (``dataclasses.replace``).
    """

    @functools.wraps(command)
    def with_query(
        *args: Any,
        patient: str | None,
        accession: str | None,
        levels: tuple[str, ...],
        side: str | None,
        technique: str | None,
        approach: str | None,
        procedure: str | None,
        date_from: datetime | None,
        date_to: datetime | None,
        modality: str | None,
        reviewer: str | None,
        **kwargs: Any,
    ) -> Any:
        query = Query(
            patient=patient,
            accession=accession,
            levels=parse_levels(levels),
            side=parse_side(side),
            technique=parse_member(Technique, technique, "--technique"),  # type: ignore[arg-type]
            approach=parse_member(Approach, approach, "--approach"),  # type: ignore[arg-type]
            procedure_type=parse_member(ProcedureType, procedure, "--procedure"),  # type: ignore[arg-type]
            date_from=_date(date_from),
            date_to=_date(date_to),
            modality=modality,
            reviewer=reviewer,
        )
        return command(*args, query=query, **kwargs)

    decorated: Callable[..., Any] = with_query
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return decorated


def describe_query(query: Query) -> str:
    """The filters of ``query`` as command-line options, with no patient data.

    The patient and the dates are given as ``<given>``: the description goes
    into de-identified exports' cards.
    """
    parts: list[str] = []
    if query.patient:
        parts.append("--patient <given>")
    if query.accession:
        parts.append("--accession <given>")
    parts.extend(f"--level {level.value}" for level in query.levels)
    if query.side is not None:
        parts.append(f"--side {query.side.value}")
    if query.technique is not None:
        parts.append(f"--technique {query.technique.value}")
    if query.approach is not None:
        parts.append(f"--approach {query.approach.value}")
    if query.procedure_type is not None:
        parts.append(f"--procedure '{query.procedure_type.value}'")
    if query.date_from is not None:
        parts.append("--date-from <given>")
    if query.date_to is not None:
        parts.append("--date-to <given>")
    if query.modality:
        parts.append(f"--modality {query.modality}")
    if query.reviewer:
        parts.append(f"--reviewer {query.reviewer}")
    return " ".join(parts)


class FrameRangeType(click.ParamType[tuple[int | None, int | None], Any]):
    """``FIRST-LAST`` (1-based, inclusive) or a single frame ``N``; either end may be left out."""

    name = "FIRST-LAST"

    def convert(  # noqa: D102 (click's ParamType API)
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int | None, int | None]:
        if isinstance(value, tuple):
            return value  # already converted (a default)
        text = str(value).strip()
        first_text, dash, last_text = text.partition("-")
        try:
            first = int(first_text) if first_text.strip() else None
            last = (int(last_text) if last_text.strip() else None) if dash else first
        except ValueError:
            self.fail(
                "expected FIRST-LAST with 1-based frame numbers (e.g. 10-20, 10-, -20 or 15), "
                f"but got {text!r}",
                param,
                ctx,
            )
        if (first is not None and first < 1) or (last is not None and last < 1):
            self.fail(f"expected frame numbers from 1, but got {text!r}", param, ctx)
        return first, last


FRAMES = FrameRangeType()
