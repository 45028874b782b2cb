"""Clinical outcomes of a procedure (VAS, ODI, adverse events) and their CSV import.

An :class:`Outcome` holds the pain (VAS, 0–10) and disability (ODI, 0–100 %)
scores before, 1 hour after and 2 weeks after one procedure on one side, and
the adverse event if any. :func:`is_effective` applies the study's criterion
(VAS fell ≥ 50 % and ODI fell ≥ 40 % at 2 weeks, thresholds configurable);
:func:`parse_outcomes_csv` reads the import file all or nothing.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import config as dicom_config
from pydicom.uid import UID

from archive.errors import OutcomeImportError
from archive.model import Side

if TYPE_CHECKING:
    from _csv import Reader

logger = logging.getLogger(__name__)

#: Columns of the outcomes CSV, in order.
CSV_COLUMNS = (
    "study_uid",
    "side",
    "vas_pre",
    "vas_1h",
    "vas_2w",
    "odi_pre",
    "odi_1h",
    "odi_2w",
    "adverse_event",
)
#: Identifier columns of the template (``usarchive outcome template``) that come before :data:`CSV_COLUMNS`.
ID_COLUMNS = ("patient_id", "study_date", "accession_number", "operator", "station")
#: Columns of the template: identifiers, then the outcome columns. A filled template is imported as it
#: is; its ``study_uid`` may be left empty when the accession number, or the patient ID and study date,
#: find the study (operator and station are for the reader and not checked).
TEMPLATE_COLUMNS = (*ID_COLUMNS, *CSV_COLUMNS)
#: Valid range of each score column, inclusive: VAS 0–10, ODI 0–100 %.
SCORE_RANGES: dict[str, tuple[float, float]] = {
    "vas_pre": (0.0, 10.0),
    "vas_1h": (0.0, 10.0),
    "vas_2w": (0.0, 10.0),
    "odi_pre": (0.0, 100.0),
    "odi_1h": (0.0, 100.0),
    "odi_2w": (0.0, 100.0),
}
#: One-letter side codes (DICOM Image Laterality) accepted besides Side's values and names.
_LATERALITY = {"L": Side.LEFT, "R": Side.RIGHT, "B": Side.BILATERAL}
#: Relative tolerance of the effectiveness comparison, so that 35 → 21 counts as a 40 % fall.
_DROP_TOLERANCE = 1e-9


def _score_problem(name: str, value: float | None) -> str | None:
    """Why ``value`` is not a valid score for column ``name``, or ``None`` if it is."""
    if value is None:
        return None
    low, high = SCORE_RANGES[name]
    if not math.isfinite(value) or not low <= value <= high:
        return f"{name}: expected a number from {low:g} to {high:g} or an empty cell, but got {value!r}"
    return None


def _uid_problem(study_uid: str) -> str | None:
    """Why ``study_uid`` is not a valid DICOM UID, or ``None`` if it is."""
    if not study_uid:
        return "study_uid: expected a Study Instance UID, but the cell is empty"
    if not UID(study_uid, validation_mode=dicom_config.IGNORE).is_valid:
        return (
            f"study_uid: expected a DICOM UID (digits in dot-separated groups without leading "
            f"zeros, at most 64 characters), but got {study_uid!r}"
        )
    return None


@dataclass(frozen=True)
class Outcome:
    """Clinical outcome of one procedure on one side of one study.

    Parameters
    ----------
    study_uid : str
        Study Instance UID of the procedure's clips.
    side : Side
        Side treated.
    vas_pre, vas_1h, vas_2w : float or None
        Visual analogue pain score (0–10) before, 1 hour after and 2 weeks
        after; ``None`` when not recorded.
    odi_pre, odi_1h, odi_2w : float or None
        Oswestry Disability Index (0–100 %) at the same times.
    adverse_event : str or None
        Description of an adverse event (e.g. nerve irritation during the L5
        puncture); ``None`` when none was recorded.

    Raises
    ------
    ValueError
        If the UID is not a DICOM UID or a score is out of range.
    """

    study_uid: str
    side: Side
    vas_pre: float | None = None
    vas_1h: float | None = None
    vas_2w: float | None = None
    odi_pre: float | None = None
    odi_1h: float | None = None
    odi_2w: float | None = None
    adverse_event: str | None = None

    def __post_init__(self) -> None:
        problems = [_uid_problem(self.study_uid)]
        problems += [_score_problem(name, getattr(self, name)) for name in SCORE_RANGES]
        found = [p for p in problems if p is not None]
        if found:
            raise ValueError("Outcome: " + "; ".join(found))


@dataclass(frozen=True)
class EffectivenessCriteria:
    """When a treatment counts as effective: relative falls from baseline at 2 weeks.

    Parameters
    ----------
    vas_drop_fraction : float
        Fraction of the baseline VAS that must be gone at 2 weeks (0.5 = 50 %).
    odi_drop_fraction : float
        Fraction of the baseline ODI that must be gone at 2 weeks (0.4 = 40 %).

    Raises
    ------
    ValueError
        If a fraction is not in (0, 1].
    """

    vas_drop_fraction: float = 0.5
    odi_drop_fraction: float = 0.4

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not 0.0 < value <= 1.0:
                raise ValueError(
                    f"EffectivenessCriteria.{field.name}: expected a fraction in (0, 1] such as 0.5 "
                    f"for 50 %, but got {value!r}"
                )


def _fell_enough(before: float, after: float, fraction: float) -> bool:
    """Whether ``after`` is at least ``fraction`` of ``before`` below it (``before`` > 0)."""
    return before - after >= fraction * before * (1.0 - _DROP_TOLERANCE)


def is_effective(outcome: Outcome, criteria: EffectivenessCriteria | None = None) -> bool | None:
    """Whether the treatment was effective by ``criteria`` (default: the study's).

    Effective means the VAS at 2 weeks fell by at least
    ``criteria.vas_drop_fraction`` of its baseline **and** the ODI by at least
    ``criteria.odi_drop_fraction`` of its baseline. Falls equal to the
    threshold count (a VAS of 8 → 4 is a 50 % fall).

    Parameters
    ----------
    outcome : Outcome
        The procedure's scores.
    criteria : EffectivenessCriteria, optional
        Defaults to VAS ≥ 50 % and ODI ≥ 40 %.

    Returns
    -------
    bool or None
        ``None`` when effectiveness cannot be judged: a baseline or 2-week
        value is missing, or a baseline is 0. A relative fall from 0 is
        undefined (there was no pain or disability to relieve), so such a
        procedure is neither counted effective nor ineffective; callers report
        it as not assessable.
    """
    rule = criteria if criteria is not None else EffectivenessCriteria()
    pairs = (
        (outcome.vas_pre, outcome.vas_2w, rule.vas_drop_fraction),
        (outcome.odi_pre, outcome.odi_2w, rule.odi_drop_fraction),
    )
    verdicts: list[bool] = []
    for before, after, fraction in pairs:
        if before is None or after is None or before == 0:
            logger.debug("effectiveness of %s %s not assessable", outcome.study_uid, outcome.side)
            return None
        verdicts.append(_fell_enough(before, after, fraction))
    return all(verdicts)


def _parse_side(text: str) -> Side:
    """Side from a cell: a Side value or name, or L / R / B (any case)."""
    code = text.strip().upper()
    if code in _LATERALITY:
        return _LATERALITY[code]
    return Side.parse(text.strip().lower())


def _parse_fields(values: dict[str, str]) -> tuple[Side | None, dict[str, float | None], list[str]]:
    """Side and scores of one row, and every reason they are bad."""
    problems: list[str] = []
    side: Side | None = None
    if not values["side"]:
        problems.append("side: expected left, right, bilateral, L, R or B, but the cell is empty")
    else:
        try:
            side = _parse_side(values["side"])
        except ValueError:
            problems.append(f"side: expected left, right, bilateral, L, R or B, but got {values['side']!r}")
    scores: dict[str, float | None] = {}
    for name in SCORE_RANGES:
        text = values[name]
        if not text:
            scores[name] = None
            continue
        try:
            number = float(text)
        except ValueError:
            problems.append(f"{name}: expected a number or an empty cell, but got {text!r}")
            continue
        problem = _score_problem(name, number)
        if problem:
            problems.append(problem)
        scores[name] = number
    return side, scores, problems


def _source_name(source: str | Path) -> str:
    """How messages name ``source``: its path, or ``outcomes CSV`` for text."""
    return "outcomes CSV" if isinstance(source, str) else str(source)


def _decode(source: str | Path) -> tuple[str, str]:
    """The CSV text and a name for messages; a Path is read as UTF-8 (a BOM is allowed)."""
    if isinstance(source, str):
        return source.removeprefix("\ufeff"), _source_name(source)
    data = source.read_bytes()
    try:
        return data.decode("utf-8-sig"), _source_name(source)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise OutcomeImportError(
            [(line, f"expected UTF-8 text, but byte {exc.start} is not UTF-8; save the file as UTF-8 CSV")],
            str(source),
        ) from exc


def _records(reader: Reader, problems: list[tuple[int, str]]) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, cells) of each row; a CSV syntax error ends the file as a problem."""
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(
                (
                    start,
                    f"expected CSV, but the row starting here cannot be read ({exc}), often because "
                    "of an unclosed quote; fix the quoting (rows after it were not checked)",
                )
            )
            return
        yield start, cells


def parse_outcomes_csv(source: str | Path) -> list[Outcome]:
    """Read an outcomes CSV whose rows name their study by UID, all or nothing (no index needed).

    The rows are read by :func:`read_outcome_records` (the same header, cell
    and side rules as ``usarchive outcome import``); every row must carry its
    ``study_uid`` (rows that name the study by accession number or patient and
    date need the index: :meth:`archive.analysis.outcomes.store.OutcomeStore.import_csv`),
    and a study and side may appear once.

    Parameters
    ----------
    source : str or Path
        The CSV text itself (``str``), or a ``Path`` to a UTF-8 file.

    Returns
    -------
    list of Outcome
        One per data row, in file order.

    Raises
    ------
    OutcomeImportError
        If anything is wrong: its ``problems`` list every bad row as (line
        number, reason), the header being line 1 and a row spanning several
        lines (a quoted cell with line breaks) numbered by its first line.
        Nothing is returned then.
    OSError
        If ``source`` is a Path that cannot be read.
    """
    records, problems = read_outcome_records(source)
    outcomes: list[Outcome] = []
    first_line: dict[tuple[str, Side], int] = {}
    for record in records:
        key = (record.study_uid, record.side)
        if not record.study_uid:
            problems.append(
                (record.line, "study_uid: expected a Study Instance UID (this reader looks no study up)")
            )
        elif key in first_line:
            problems.append(
                (
                    record.line,
                    f"expected one row per study and side, but study {record.study_uid} "
                    f"{record.side} is already on line {first_line[key]}; merge the rows",
                )
            )
        else:
            first_line[key] = record.line
            outcomes.append(record.outcome(record.study_uid))
    if problems:
        raise OutcomeImportError(sorted(problems), _source_name(source))
    logger.info("%s: read %d outcomes", _source_name(source), len(outcomes))
    return outcomes


@dataclass(frozen=True)
class OutcomeRecord:
    """One valid row of an outcomes CSV or filled template, before its study is looked up.

    ``study_uid`` may be empty (template rows); then ``accession_number`` or
    ``patient_id`` + ``study_date`` (ISO ``YYYY-MM-DD`` or DICOM ``YYYYMMDD``)
    name the study.
    """

    line: int
    study_uid: str
    patient_id: str
    study_date: str
    accession_number: str
    side: Side
    scores: dict[str, float | None]
    adverse_event: str | None

    def outcome(self, study_uid: str) -> Outcome:
        """The outcome of this row for the study it was matched to."""
        return Outcome(study_uid=study_uid, side=self.side, adverse_event=self.adverse_event, **self.scores)


def read_outcome_records(source: str | Path) -> tuple[list[OutcomeRecord], list[tuple[int, str]]]:
    """Read an outcomes CSV or a filled template, collecting every bad row instead of stopping.

    The header is either :data:`CSV_COLUMNS` or :data:`TEMPLATE_COLUMNS`
    (case and spaces around names do not matter). A template row needs a
    study UID, an accession number, or a patient ID and study date.

    Parameters
    ----------
    source : str or Path
        The CSV text itself (``str``), or a ``Path`` to a UTF-8 file.

    Returns
    -------
    records : list of OutcomeRecord
        The valid rows, in file order.
    problems : list of (int, str)
        Every bad row as (line number, reason); a bad header is the only
        problem when there is one.

    Raises
    ------
    OutcomeImportError
        If the file is not UTF-8.
    """
    text, _ = _decode(source)
    problems: list[tuple[int, str]] = []
    records_in = _records(csv.reader(io.StringIO(text, newline="")), problems)
    first = next(records_in, None)
    expected = f"{', '.join(CSV_COLUMNS)} (or the template's {', '.join(TEMPLATE_COLUMNS)})"
    if first is None:
        return [], problems or [(1, f"expected the header {expected}, but the file is empty")]
    columns = tuple(cell.strip().lower() for cell in first[1])
    if columns not in (CSV_COLUMNS, TEMPLATE_COLUMNS):
        shown = ", ".join(cell.strip() for cell in first[1])
        return [], [(1, f"expected the header {expected}, but got {shown}")]
    found: list[OutcomeRecord] = []
    for line, cells in records_in:
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            problems.append((line, f"expected {len(columns)} cells, but got {len(cells)}"))
            continue
        values = {name: cell.strip() for name, cell in zip(columns, cells, strict=True)}
        values.update({name: values.get(name, "") for name in ID_COLUMNS})
        reasons: list[str] = []
        if values["study_uid"]:
            uid_problem = _uid_problem(values["study_uid"])
            if uid_problem:
                reasons.append(uid_problem)
        elif not (values["accession_number"] or (values["patient_id"] and values["study_date"])):
            reasons.append(
                "study: expected a study_uid, an accession_number, or a patient_id and study_date, "
                "but the row has none of them"
            )
        side, scores, more = _parse_fields(values)
        reasons += more
        if reasons or side is None:
            problems.append((line, "; ".join(reasons)))
            continue
        found.append(
            OutcomeRecord(
                line,
                values["study_uid"],
                values["patient_id"],
                values["study_date"],
                values["accession_number"],
                side,
                scores,
                values["adverse_event"] or None,
            )
        )
    return found, problems
