"""PS3.4 C.2.2.2 attribute matching turned into SQLAlchemy Core conditions.

One function, :func:`condition`, takes a column, the attribute's VR and the
value a query gave, and returns the SQL condition (or ``None`` for universal
matching). The kinds of matching:

* **universal**: an empty value, or ``*`` alone, matches everything (also
  entities without a value);
* **single value**: equality; for DA a date, for TM the whole second (or
  minute, hour) the value names, for IS / US an integer;
* **wildcard** ``*`` (any run, also empty) and ``?`` (one character), only on
  AE, CS, LO, LT, PN, SH, ST, UC, UR, UT. SQL's own metacharacters are
  escaped: ``%`` and ``_`` for ``LIKE``, ``[`` for SQLite's ``GLOB``;
* **range** ``a-b``, ``a-``, ``-b`` on DA and TM (inclusive; a TM bound
  names its whole last component: ``-12`` ends at 12:59:59.999999);
* **list**: backslash-separated values, each matched as above, any of them
  (PS3.4 C.2.2.2.2 for UIDs; multiple-value matching for the others).

Case. Values are compared case-sensitively, as PS3.4 says, except Person
Names when :attr:`MatchSettings.case_sensitive_pn` is false (the default;
C.2.2.2.1 allows PN matching insensitive to case) and our procedure codes,
which are compared case-insensitively always. Case folding is the
database's: ASCII only on SQLite (``lower``/``LIKE``), Unicode on
PostgreSQL (``ILIKE``). Case-sensitive patterns use ``LIKE`` on PostgreSQL
and ``GLOB`` on SQLite (whose ``LIKE`` ignores ASCII case).

Person Names. A query name without ``=`` matches any of the stored name's
component groups (alphabetic, ideographic, phonetic: ``山田^太郎`` matches
``Yamada^Tarou=山田^太郎=やまだ^たろう``); with ``=`` it matches the whole value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_

from archive.query.errors import QueryError, QueryFailure

#: VRs on which ``*`` and ``?`` are wildcards (PS3.4 C.2.2.2.4).
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
#: VRs on which ``a-b`` is a range (PS3.4 C.2.2.2.5).
RANGE_VRS = frozenset({"DA", "TM", "DT"})
_INTEGER_VRS = frozenset({"IS", "US", "UL", "SS", "SL"})
_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")


@dataclass(frozen=True)
class MatchSettings:
    """How queries are matched and bounded; one immutable object per server.

    Attributes
    ----------
    case_sensitive_pn : bool
        Match Person Names case-sensitively (PS3.4's default). ``False`` (ours,
        and Orthanc's): ``doe^j*`` finds ``DOE^JOHN`` as users expect.
    max_results : int
        A query matching more entities than this is refused with 0xA700 before
        any result is sent (PS3.4 C.4.1.1.4), naming the limit.
    header_keys : bool
        Answer requested keys the index does not hold from the stored file's
        header (one header read, a few hundred microseconds to a few ms, per
        entity returned); ``False`` returns them empty.
    page_size : int
        Entities read from the index per query round trip (bounds memory).
    """

    case_sensitive_pn: bool = False
    max_results: int = 1000
    header_keys: bool = False
    page_size: int = 100

    def __post_init__(self) -> None:
        if self.max_results < 1:
            raise ValueError(f"max_results: expected at least 1, but got {self.max_results}")
        if self.page_size < 1:
            raise ValueError(f"page_size: expected at least 1, but got {self.page_size}")


def values_of(raw: str) -> list[str] | None:
    """The values a query gave for one attribute: ``None`` for universal matching.

    Backslash separates values; leading and trailing spaces are not significant.
    """
    text = raw.strip()
    if text in ("", "*"):
        return None
    values = [part.strip() for part in text.split("\\")]
    if any(value in ("", "*") for value in values):
        return None
    return values


def _invalid(keyword: str, vr: str, value: str, expected: str) -> QueryError:
    return QueryError(
        QueryFailure.INVALID_IDENTIFIER,
        f"{keyword} ({vr}): expected {expected}, but got {value!r}; fix the query value",
    )


def parse_date(text: str, keyword: str = "date") -> date:
    """A DA value (``YYYYMMDD``, or the old ``YYYY.MM.DD``) as a date.

    Raises
    ------
    QueryError
        ``INVALID_IDENTIFIER`` when it is not a valid date.
    """
    digits = text.strip().replace(".", "")
    try:
        if len(digits) == 8 and digits.isdigit():
            return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        pass
    raise _invalid(keyword, "DA", text, "a date YYYYMMDD (a range is YYYYMMDD-YYYYMMDD)")


def time_bounds(text: str, keyword: str = "time") -> tuple[str, str]:
    """The first and last instant a TM value names, as comparable ``HHMMSS.ffffff`` strings.

    ``"10"`` names 10:00:00 to 10:59:59.999999; ``"1015"`` a minute; ``"101530.5"``
    the instant itself. Stored times are compared as text, which orders
    ``HHMMSS[.f]`` values correctly.

    Raises
    ------
    QueryError
        ``INVALID_IDENTIFIER`` when it is not a TM value.
    """
    match = _TIME.match(text.strip().replace(":", ""))
    if match is None or int(match.group(1)) > 23:
        raise _invalid(keyword, "TM", text, "a time HH[MM[SS[.ffffff]]] (a range is HHMMSS-HHMMSS)")
    hours, minutes, seconds, fraction = match.groups()
    # No fraction on the low bound unless given: a stored "230000" sorts before "230000.000000".
    low = hours + (minutes or "00") + (seconds or "00") + (f".{fraction}" if fraction else "")
    high = (hours + (minutes or "59") + (seconds or "59")) + "." + (fraction or "").ljust(6, "9")
    return low, high


def split_range(text: str) -> tuple[str, str] | None:
    """``(low, high)`` of a range value (either may be ``""``), or ``None`` for a single value."""
    if "-" not in text:
        return None
    low, _, high = text.partition("-")
    return low.strip(), high.strip()


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _glob_pattern(value: str) -> str:
    return "".join("[[]" if c == "[" else c for c in value)


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


@dataclass(frozen=True)
class _Text:
    """Text comparison in one dialect and case mode."""

    dialect: str
    insensitive: bool

    def equal(self, column: Any, value: str) -> ColumnElement[bool]:
        if self.insensitive:
            return func.lower(column) == func.lower(value)
        return column == value  # type: ignore[no-any-return]

    def pattern(self, column: Any, dicom_pattern: str) -> ColumnElement[bool]:
        """``dicom_pattern`` with ``*``/``?`` wildcards (literal elsewhere)."""
        if self.insensitive:
            return column.ilike(_like_pattern(dicom_pattern), escape="\\")  # type: ignore[no-any-return]
        if self.dialect == "sqlite":
            return column.op("GLOB")(_glob_pattern(dicom_pattern))  # type: ignore[no-any-return]
        return column.like(_like_pattern(dicom_pattern), escape="\\")  # type: ignore[no-any-return]


def _text_condition(column: Any, vr: str, value: str, text: _Text) -> ColumnElement[bool]:
    wildcard = vr in WILDCARD_VRS and _has_wildcard(value)
    if vr == "PN" and "=" not in value:
        # Any component group: alone, first, last or in the middle of the stored value.
        groups = [value, f"{value}=*", f"*={value}", f"*={value}=*"]
        first = text.pattern(column, groups[0]) if wildcard else text.equal(column, value)
        return or_(first, *(text.pattern(column, group) for group in groups[1:]))
    if wildcard:
        return text.pattern(column, value)
    return text.equal(column, value)


def _date_condition(column: Any, keyword: str, value: str) -> ColumnElement[bool]:
    bounds = split_range(value)
    if bounds is None:
        return column == parse_date(value, keyword)  # type: ignore[no-any-return]
    low, high = bounds
    if not low and not high:
        raise _invalid(keyword, "DA", value, "a range with at least one bound")
    parts = []
    if low:
        parts.append(column >= parse_date(low, keyword))
    if high:
        parts.append(column <= parse_date(high, keyword))
    return and_(*parts)


def _time_condition(column: Any, keyword: str, value: str) -> ColumnElement[bool]:
    bounds = split_range(value)
    low, high = bounds if bounds is not None else (value, value)
    if not low and not high:
        raise _invalid(keyword, "TM", value, "a range with at least one bound")
    parts = [column.is_not(None)]
    if low:
        parts.append(column >= time_bounds(low, keyword)[0])
    if high:
        parts.append(column <= time_bounds(high, keyword)[1])
    return and_(*parts)


def _integer_condition(column: Any, keyword: str, vr: str, value: str) -> ColumnElement[bool]:
    try:
        number = int(value)
    except ValueError:
        raise _invalid(keyword, vr, value, "an integer") from None
    return column == number  # type: ignore[no-any-return]


def condition(
    column: Any,
    vr: str,
    raw: str,
    *,
    keyword: str,
    dialect: str,
    insensitive: bool = False,
) -> ColumnElement[bool] | None:
    """The SQL condition matching ``column`` against a query's value ``raw``.

    Parameters
    ----------
    column : sqlalchemy column expression
        Where the attribute is kept.
    vr : str
        The attribute's value representation.
    raw : str
        The value in the identifier (decoded text; backslash-separated values).
    keyword : str
        The attribute's keyword, for messages.
    dialect : str
        ``"sqlite"`` or ``"postgresql"`` (how case-sensitive patterns are written).
    insensitive : bool
        Compare text case-insensitively.

    Returns
    -------
    sqlalchemy condition or None
        ``None`` for universal matching.

    Raises
    ------
    QueryError
        ``INVALID_IDENTIFIER`` when a value is not valid for the VR, or a
        wildcard is used on a VR that does not allow it.
    """
    values = values_of(raw)
    if values is None:
        return None
    text = _Text(dialect, insensitive)
    parts: list[ColumnElement[bool]] = []
    for value in values:
        if _has_wildcard(value) and vr not in WILDCARD_VRS:
            raise _invalid(keyword, vr, value, f"no wildcard: {vr} allows no '*' or '?' (PS3.4 C.2.2.2.4)")
        if vr == "DA":
            parts.append(_date_condition(column, keyword, value))
        elif vr == "TM":
            parts.append(_time_condition(column, keyword, value))
        elif vr in _INTEGER_VRS:
            parts.append(_integer_condition(column, keyword, vr, value))
        else:
            parts.append(_text_condition(column, vr, value, text))
    if len(parts) == 1:
        return parts[0]
    if vr == "UI" and all(not _has_wildcard(v) for v in values):
        return column.in_(values)  # type: ignore[no-any-return]
    return or_(*parts) if parts else false()


def combined_datetime_condition(
    date_column: Any, time_column: Any, date_raw: str, time_raw: str
) -> ColumnElement[bool] | None:
    """Combined date-time range matching of a date and a time attribute (PS3.4 C.2.2.2.5.1).

    ``StudyDate = 20240101-20240102`` with ``StudyTime = 2300-0100`` means
    from 2024-01-01 23:00 to 2024-01-02 01:00:59.999999, not two separate
    ranges. Used when the requester negotiated combined date-time matching.

    Returns
    -------
    sqlalchemy condition or None
        ``None`` when either value is not a range (match them separately).
    """
    date_bounds, time_bounds_ = split_range(date_raw.strip()), split_range(time_raw.strip())
    if date_bounds is None or time_bounds_ is None or "\\" in date_raw + time_raw:
        return None
    parts: list[ColumnElement[bool]] = []
    (date_low, date_high), (time_low, time_high) = date_bounds, time_bounds_
    if date_low:
        day = parse_date(date_low, "StudyDate")
        start = time_bounds(time_low, "StudyTime")[0] if time_low else None
        parts.append(
            or_(date_column > day, and_(date_column == day, time_column >= start))
            if start
            else date_column >= day
        )
    if date_high:
        day = parse_date(date_high, "StudyDate")
        end = time_bounds(time_high, "StudyTime")[1] if time_high else None
        parts.append(
            or_(date_column < day, and_(date_column == day, time_column <= end))
            if end
            else date_column <= day
        )
    return and_(*parts) if parts else None
