"""Reading scheduled procedures from text: the CLI's options and the import CSV, all or nothing.

The CSV has a header row with the columns of :data:`CSV_COLUMNS` (order
free; ``birth_date``, ``sex``, ``technique``, ``approach``, ``physician`` and
``modality`` may be absent or empty), UTF-8 (a BOM is accepted). Every bad row
is reported by its line number in one pass (:class:`WorklistImportError`).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from archive.model import Approach, ProcedureType, Side, Technique
from archive.worklist.errors import WorklistImportError
from archive.worklist.model import ScheduledProcedure, parse_da, parse_levels, parse_tm

#: Columns of the import CSV (the CLI's option names, with underscores).
CSV_COLUMNS = (
    "patient_id",
    "patient_name",
    "birth_date",
    "sex",
    "accession",
    "date",
    "time",
    "station_aet",
    "modality",
    "procedure",
    "levels",
    "side",
    "technique",
    "approach",
    "physician",
)
_REQUIRED = (
    "patient_id",
    "patient_name",
    "accession",
    "date",
    "time",
    "station_aet",
    "procedure",
    "levels",
    "side",
)
_SIDES = {"L": Side.LEFT, "R": Side.RIGHT, "B": Side.BILATERAL}


def _side(text: str) -> Side:
    code = text.strip()
    if code.upper() in _SIDES:
        return _SIDES[code.upper()]
    return Side.parse(code.lower())


def _technique(text: str) -> Technique:
    value = text.strip()
    if not value:
        return Technique.UNKNOWN
    return Technique.parse(value.upper() if value.upper() in ("TT", "OT") else value.lower())


def parse_procedure(fields: Mapping[str, str | None]) -> ScheduledProcedure:
    """A :class:`ScheduledProcedure` from text fields (names of :data:`CSV_COLUMNS`).

    Raises
    ------
    ValueError
        Naming every field that is missing or invalid, joined by ``"; "``.
    """
    text = {name: (fields.get(name) or "").strip() for name in CSV_COLUMNS}
    problems = [f"{name}: expected a value, but it is empty" for name in _REQUIRED if not text[name]]
    if problems:
        raise ValueError("; ".join(problems))
    values: dict[str, object] = {}
    for name, parse in (
        ("birth_date", lambda v: parse_da(v, "birth date") if v else None),
        ("date", lambda v: parse_da(v, "date")),
        ("time", lambda v: parse_tm(v, "time")),
        ("procedure", lambda v: ProcedureType.parse(v.lower())),
        ("levels", parse_levels),
        ("side", _side),
        ("technique", _technique),
        ("approach", lambda v: Approach.parse(v.lower()) if v else Approach.UNKNOWN),
    ):
        try:
            values[name] = parse(text[name])
        except ValueError as exc:
            problems.append(str(exc) if str(exc).startswith(name.split("_")[0]) else f"{name}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    clock = str(values["time"])
    day = values["date"]
    assert isinstance(day, type(datetime.now().date()))
    start = datetime(day.year, day.month, day.day, int(clock[:2]), int(clock[2:4]), int(clock[4:6]))
    return ScheduledProcedure(
        patient_id=text["patient_id"],
        patient_name=text["patient_name"],
        birth_date=values["birth_date"],  # type: ignore[arg-type]
        sex=text["sex"].upper(),
        accession_number=text["accession"],
        start=start,
        station_aet=text["station_aet"],
        modality=(text["modality"] or "US").upper(),
        procedure_type=values["procedure"],  # type: ignore[arg-type]
        levels=values["levels"],  # type: ignore[arg-type]
        side=values["side"],  # type: ignore[arg-type]
        technique=values["technique"],  # type: ignore[arg-type]
        approach=values["approach"],  # type: ignore[arg-type]
        physician=text["physician"],
    )


def read_procedures(path: Path) -> list[tuple[int, ScheduledProcedure]]:
    """Every row of the CSV at ``path`` as ``(line, procedure)``; all rows valid, or nothing.

    Raises
    ------
    WorklistImportError
        With every bad row by line (and a missing column or an unreadable file as line 1).
    """
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise WorklistImportError([(1, f"cannot read the file ({exc})")], str(path)) from exc
    with handle:
        try:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in _REQUIRED if name not in header]
            unknown = [name for name in header if name not in CSV_COLUMNS]
            if missing or unknown:
                what = []
                if missing:
                    what.append(f"missing columns {', '.join(missing)}")
                if unknown:
                    what.append(f"unknown columns {', '.join(unknown)}")
                raise WorklistImportError(
                    [(1, f"expected the columns {', '.join(CSV_COLUMNS)}, but {'; '.join(what)}")], str(path)
                )
            rows: list[tuple[int, ScheduledProcedure]] = []
            problems: list[tuple[int, str]] = []
            for row in reader:
                line = reader.line_num
                fields = {str(k).strip(): v for k, v in row.items() if k is not None}
                try:
                    rows.append((line, parse_procedure(fields)))
                except ValueError as exc:
                    problems.append((line, str(exc)))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise WorklistImportError([(1, f"expected a UTF-8 CSV file, but {exc}")], str(path)) from exc
    if problems:
        raise WorklistImportError(problems, str(path))
    if not rows:
        raise WorklistImportError(
            [(1, "expected at least one row after the header, but found none")], str(path)
        )
    return rows
