"""Finding the procedure an outcome row belongs to: by study UID, accession number, or patient + date.

Clinic staff know the accession number or the patient ID and the day, not the
Study Instance UID. A row is matched to a study by, in this order, its study
UID, its accession number, or its patient ID and study date; it must then name
a side the study has a clip of (the audit's procedures are study × side of the
archived clips, so an outcome for another side would never be counted).
Every row's problem is reported, with its line, in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import Connection, select

from archive.analysis.outcomes.model import Outcome, OutcomeRecord
from archive.index import schema
from archive.index.facts import parse_da

_p, _st, _se, _i, _proc = (
    schema.patient,
    schema.study,
    schema.series,
    schema.instance,
    schema.instance_procedure,
)


def _date(text: str) -> date | None:
    return parse_da(text.replace("-", ""))


def _study_of(connection: Connection, record: OutcomeRecord) -> tuple[str | None, str | None]:
    """The study UID a record names, or ``None`` and why."""
    if record.study_uid:
        found = connection.execute(
            select(_st.c.study_instance_uid).where(_st.c.study_instance_uid == record.study_uid)
        ).scalar()
        if found is None:
            return None, (
                f"study_uid: expected a study in the archive, but there is no study {record.study_uid}; "
                "import its clips first or correct the UID"
            )
        return str(found), None
    if record.accession_number:
        uids = list(
            connection.execute(
                select(_st.c.study_instance_uid).where(_st.c.accession_number == record.accession_number)
            ).scalars()
        )
        what = f"accession number {record.accession_number!r}"
    else:
        day = _date(record.study_date)
        if day is None:
            return None, (
                f"study_date: expected a date such as 2020-01-31 or 20200131, but got {record.study_date!r}"
            )
        uids = list(
            connection.execute(
                select(_st.c.study_instance_uid)
                .join(_p, _p.c.id == _st.c.patient_pk)
                .where(_p.c.patient_id == record.patient_id, _st.c.study_date == day)
            ).scalars()
        )
        what = f"patient {record.patient_id!r} on {day.isoformat()}"
    if not uids:
        return None, f"study: expected a study in the archive for {what}, but there is none; check the row"
    if len(uids) > 1:
        return None, (
            f"study: expected one study for {what}, but there are {len(uids)} ({', '.join(sorted(uids))}); "
            "give the study_uid"
        )
    return str(uids[0]), None


def clip_sides(connection: Connection, study_uid: str) -> set[str]:
    """The sides the study's archived clips have (their procedures)."""
    statement = (
        select(_proc.c.side)
        .select_from(_i)
        .join(_se, _se.c.id == _i.c.series_pk)
        .join(_st, _st.c.id == _se.c.study_pk)
        .join(_proc, _proc.c.instance_pk == _i.c.id)
        .where(_st.c.study_instance_uid == study_uid, _proc.c.side.is_not(None))
    )
    return {str(side) for side in connection.execute(statement).scalars()}


def match_records(
    connection: Connection, records: Sequence[OutcomeRecord]
) -> tuple[list[Outcome], list[tuple[int, str]]]:
    """The outcomes of ``records`` matched to their studies, and every row that cannot be matched.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        Any connection to the index.
    records : sequence of OutcomeRecord
        Valid rows (:func:`archive.analysis.outcomes.model.read_outcome_records`).

    Returns
    -------
    outcomes : list of Outcome
        In row order.
    problems : list of (int, str)
        (line, reason) for each row whose study cannot be found, which names a
        side the study has no clip of, or repeats a study and side.
    """
    outcomes: list[Outcome] = []
    problems: list[tuple[int, str]] = []
    first_line: dict[tuple[str, str], int] = {}
    for record in records:
        study_uid, problem = _study_of(connection, record)
        if study_uid is None:
            problems.append((record.line, str(problem)))
            continue
        sides = clip_sides(connection, study_uid)
        if record.side.value not in sides:
            has = ", ".join(sorted(sides)) or "no side recorded"
            problems.append(
                (
                    record.line,
                    f"side: expected a side the study {study_uid} has a clip of ({has}), but got "
                    f"{record.side.value}; correct the side, or tag the clips' side (usarchive tag --side)",
                )
            )
            continue
        key = (study_uid, record.side.value)
        if key in first_line:
            problems.append(
                (
                    record.line,
                    f"expected one row per study and side, but study {study_uid} {record.side.value} is "
                    f"already on line {first_line[key]}; merge the rows",
                )
            )
            continue
        first_line[key] = record.line
        outcomes.append(record.outcome(study_uid))
    return outcomes, problems
