"""``find`` keeps one statement per filter shape: the values of one query never leak into the next.

Every random query is checked against the same filters applied in Python to
the whole archive, so a statement reused with the wrong bound values, or a
shape that drops a filter, shows as a difference.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

from ingest_helpers import part10_bytes, us_dataset

from archive.archive import Archive
from archive.index.queries import InstanceRow, Query
from archive.ingest import Origin
from archive.model import ProcedureType, Side, SpinalLevel, Technique
from archive.settings import ArchiveSettings

DESCRIPTIONS = [
    "L4/5 MBB right OT",
    "L5 MBB left TT",
    "L3-L5 MBB bilat in-plane",
    "S1 facet injection right OOP",
    "C4/5 MBB left one puncture",
    "L4 radiofrequency right IP",
    "epidural L5 left",
]
PATIENTS = [("P001", "Doe^Jane"), ("P002", "Roe^Rick"), ("P003", "Poe^Edgar")]


def _matches(row: InstanceRow, query: Query) -> bool:
    if query.patient and query.patient not in (row.patient_id, row.patient_name):
        return False
    if query.levels and not set(query.levels) & {SpinalLevel(level) for level in row.levels}:
        return False
    for name in ("side", "technique", "procedure_type"):
        wanted = getattr(query, name)
        if wanted is not None and getattr(row, name) != wanted.value:
            return False
    if (query.date_from or query.date_to) and row.study_date is None:
        return False
    if query.date_from and row.study_date is not None and row.study_date < query.date_from:
        return False
    if query.date_to and row.study_date is not None and row.study_date > query.date_to:
        return False
    return not (query.modality and row.modality != query.modality)


def _random_query(rng: random.Random) -> Query:
    """Each filter present with probability 0.3, so that many queries still match something."""

    def maybe(*choices: object) -> object:
        return rng.choice(choices) if rng.random() < 0.3 else None

    start = date(2024, 1, 1) + timedelta(days=rng.randrange(60))
    levels = [SpinalLevel.L3, SpinalLevel.L4, SpinalLevel.L5, SpinalLevel.S1, SpinalLevel.C5]
    return Query(
        patient=maybe(*(p for p, _ in PATIENTS), "Roe^Rick", "nobody"),  # type: ignore[arg-type]
        levels=tuple(rng.sample(levels, rng.choice((0, 0, 1, 1, 2)))),
        side=maybe(*Side),  # type: ignore[arg-type]
        technique=maybe(*Technique),  # type: ignore[arg-type]
        procedure_type=maybe(*ProcedureType),  # type: ignore[arg-type]
        date_from=maybe(start),  # type: ignore[arg-type]
        date_to=maybe(start + timedelta(days=rng.randrange(40))),  # type: ignore[arg-type]
        modality=maybe("US", "CT"),  # type: ignore[arg-type]
    )


def test_random_queries_agree_with_a_filter_over_every_row(tmp_path: Path, db_url: str) -> None:
    rng = random.Random(7)
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as archive:
        for seed in range(24):
            patient_id, name = PATIENTS[seed % len(PATIENTS)]
            ds = us_dataset(
                seed=seed,
                patient_id=patient_id,
                patient_name=name,
                description=DESCRIPTIONS[seed % len(DESCRIPTIONS)],
                study_date=date(2024, 1, 1) + timedelta(days=3 * seed),
            )
            archive.ingest(part10_bytes(ds), origin=Origin("file"))
        everything = archive.index.find(Query())
        assert len(everything) == 24
        non_empty = 0
        for _ in range(300):
            query = _random_query(rng)
            expected = {row.sop_instance_uid for row in everything if _matches(row, query)}
            found = archive.index.find(query)
            assert {row.sop_instance_uid for row in found} == expected, query
            assert len(found) == len(expected), f"an instance came twice for {query}"
            non_empty += bool(expected)
        assert non_empty > 100, "too few queries matched anything to test the filters"
