"""Per-patient date shifting (Retain Longitudinal Temporal Information, Modified Dates).

Every date of one patient moves back by the same whole number of days, derived
from the configured secret and the patient's original ID, so intervals between
a patient's procedures, clips and follow-ups survive while the calendar dates
do not. Times of day are kept: a whole-day shift does not change them, and
procedure durations need them.

The shift is between :data:`MIN_SHIFT_DAYS` and :data:`MAX_SHIFT_DAYS` days
into the past (1 to 10 years), never zero, so a shifted date never equals its
original.
"""

from __future__ import annotations

import datetime as dt

from archive.errors import DeidentificationError
from archive.research.deid.uids import keyed_digest

#: Smallest backward shift, in days.
MIN_SHIFT_DAYS = 366
#: Largest backward shift, in days.
MAX_SHIFT_DAYS = 3652


def date_shift_days(secret: bytes, patient_id: str) -> int:
    """The day offset added to every date of one patient.

    Parameters
    ----------
    secret : bytes
        The configured secret.
    patient_id : str
        The patient's original identifier (surrounding spaces ignored).

    Returns
    -------
    int
        Negative: from ``-MAX_SHIFT_DAYS`` to ``-MIN_SHIFT_DAYS`` inclusive;
        the same for the same patient and secret.
    """
    digest = keyed_digest(secret, "date-shift", patient_id.strip())
    span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
    return -(MIN_SHIFT_DAYS + int.from_bytes(digest[:8], "big") % span)


def shift_da(value: str, days: int) -> str:
    """Shift one DA value (``YYYYMMDD``) by ``days``.

    Partial values keep their precision: ``YYYY`` and ``YYYYMM`` are shifted
    as the first day of the year or month and cut back to their length. An
    empty value stays empty.

    Parameters
    ----------
    value : str
        A DA value (also the legacy ``YYYY.MM.DD`` form).
    days : int
        Days to add (negative moves back).

    Returns
    -------
    str

    Raises
    ------
    DeidentificationError
        If ``value`` is not a date.
    """
    text = value.strip().replace(".", "")
    if not text:
        return ""
    if len(text) not in (4, 6, 8) or not text.isdigit():
        raise DeidentificationError(
            f"date {value!r}: expected DA as YYYYMMDD (or YYYY, YYYYMM), but it does not parse; "
            "the attribute cannot be shifted"
        )
    padded = text + "0101"[len(text) - 4 :] if len(text) < 8 else text
    try:
        day = dt.date(int(padded[:4]), int(padded[4:6]), int(padded[6:8]))
    except ValueError as exc:
        raise DeidentificationError(
            f"date {value!r}: expected a calendar date, but {exc}; the attribute cannot be shifted"
        ) from exc
    return (day + dt.timedelta(days=days)).strftime("%Y%m%d")[: len(text)]


def shift_dt(value: str, days: int) -> str:
    """Shift one DT value (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``) by ``days``.

    Only the date part moves; the time of day, fraction and UTC offset are
    kept as written.

    Parameters
    ----------
    value : str
        A DT value; at least the year.
    days : int
        Days to add.

    Returns
    -------
    str

    Raises
    ------
    DeidentificationError
        If the date part is not a date.
    """
    text = value.strip()
    if not text:
        return ""
    digits = 0
    while digits < min(len(text), 8) and text[digits].isdigit():
        digits += 1
    date_part = digits - digits % 2 if digits >= 4 else digits
    return shift_da(text[:date_part], days) + text[date_part:]
