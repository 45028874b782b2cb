from __future__ import annotations

import pytest

from archive.errors import DeidentificationError
from archive.research.deid.dates import MAX_SHIFT_DAYS, MIN_SHIFT_DAYS, date_shift_days, shift_da, shift_dt

SECRET = b"0123456789abcdef-dates"


def test_shift_is_backwards_in_range_stable_and_per_patient() -> None:
    shifts = {f"PAT{i:03d}": date_shift_days(SECRET, f"PAT{i:03d}") for i in range(40)}
    assert all(-MAX_SHIFT_DAYS <= s <= -MIN_SHIFT_DAYS for s in shifts.values())
    assert date_shift_days(SECRET, "PAT001 ") == shifts["PAT001"]
    assert len(set(shifts.values())) > 30
    other = {p: date_shift_days(b"another-secret-0123456789", p) for p in shifts}
    assert other != shifts


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("20240301", -1, "20240229"),
        ("20240506", -366, "20230506"),
        ("2024.05.06", 1, "20240507"),
        ("202403", -1, "202402"),
        ("2024", -1, "2023"),
        ("", -10, ""),
    ],
)
def test_shift_da(value: str, days: int, expected: str) -> None:
    assert shift_da(value, days) == expected


@pytest.mark.parametrize("value", ["2024-05-06", "20241306", "yesterday", "202"])
def test_shift_da_refuses_what_is_not_a_date(value: str) -> None:
    with pytest.raises(DeidentificationError, match=repr(value)):
        shift_da(value, 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20240506101230.5+0800", "20240505101230.5+0800"),
        ("20240506", "20240505"),
        ("2024010100", "2023123100"),
        ("2024", "2023"),
    ],
)
def test_shift_dt_moves_the_date_and_keeps_the_time(value: str, expected: str) -> None:
    assert shift_dt(value, -1) == expected


def test_intervals_survive_a_shift() -> None:
    days = date_shift_days(SECRET, "PH000001")
    assert shift_da("20240520", days) > shift_da("20240506", days)
    import datetime as dt

    a = dt.datetime.strptime(shift_da("20240506", days), "%Y%m%d")
    b = dt.datetime.strptime(shift_da("20240520", days), "%Y%m%d")
    assert (b - a).days == 14
