from __future__ import annotations

from pathlib import Path

import pytest

from archive.analysis.outcomes.model import EffectivenessCriteria, Outcome, is_effective, parse_outcomes_csv
from archive.errors import OutcomeImportError
from archive.model import Side

UID_A = "1.2.826.0.1.3680043.8.498.1"
UID_B = "1.2.826.0.1.3680043.8.498.2"

GOOD = (
    " Study_UID , SIDE,vas_pre,vas_1h,vas_2w,odi_pre,odi_1h,odi_2w, Adverse_Event \n"
    f"{UID_A},left,8,3,4,45,30,27,\n"
    f"{UID_A},R,7.5,2,3,40,,20,nerve irritation during L5 puncture\n"
    "\n"
    f'{UID_B},Bilateral,6,,,50,,,"paraesthesia, resolved"\n'
)


def test_good_file_is_read_with_missing_cells_as_none() -> None:
    outcomes = parse_outcomes_csv(GOOD)
    assert outcomes == [
        Outcome(UID_A, Side.LEFT, 8.0, 3.0, 4.0, 45.0, 30.0, 27.0, None),
        Outcome(UID_A, Side.RIGHT, 7.5, 2.0, 3.0, 40.0, None, 20.0, "nerve irritation during L5 puncture"),
        Outcome(UID_B, Side.BILATERAL, 6.0, None, None, 50.0, None, None, "paraesthesia, resolved"),
    ]


def test_file_path_with_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    path.write_bytes(GOOD.encode("utf-8-sig"))
    assert len(parse_outcomes_csv(path)) == 3


def test_header_only_gives_no_outcomes() -> None:
    assert (
        parse_outcomes_csv("study_uid,side,vas_pre,vas_1h,vas_2w,odi_pre,odi_1h,odi_2w,adverse_event\n") == []
    )


@pytest.mark.parametrize(
    "header",
    [
        "study_uid,side,vas_pre,vas_1h,vas_2w,odi_pre,odi_1h,odi_2w",  # column missing
        "side,study_uid,vas_pre,vas_1h,vas_2w,odi_pre,odi_1h,odi_2w,adverse_event",  # reordered
        "study uid,side,vas_pre,vas_1h,vas_2w,odi_pre,odi_1h,odi_2w,adverse_event",  # renamed
        "",
    ],
)
def test_wrong_header_is_reported_on_line_one(header: str) -> None:
    with pytest.raises(OutcomeImportError) as info:
        parse_outcomes_csv(header + f"\n{UID_A},left,8,3,4,45,30,27,\n")
    assert [line for line, _ in info.value.problems] == [1]
    assert "expected the header study_uid, side" in str(info.value)


def test_every_bad_row_is_reported_by_line_and_nothing_is_returned() -> None:
    text = (
        "study_uid,side,vas_pre,vas_1h,vas_2w,odi_pre,odi_1h,odi_2w,adverse_event\n"
        f"{UID_A},left,8,3,4,45,30,27,\n"  # 2: good
        "1.2.03.4,left,8,3,4,45,30,27,\n"  # 3: leading zero in UID
        f"{UID_B},up,8,3,4,45,30,27,\n"  # 4: bad side
        f"{UID_B},right,11,3,4,45,30,27,\n"  # 5: VAS out of range
        f"{UID_B},left,8,3,4,45,abc,101,\n"  # 6: not a number and ODI out of range
        f"{UID_B},B,8,3,4\n"  # 7: too few cells
        f"{UID_A},L,8,3,4,45,30,27,\n"  # 8: duplicate of line 2
        ",,8,3,4,45,30,27,\n"  # 9: empty UID and side
        f"{UID_B},right,nan,3,4,45,30,27,\n"  # 10: NaN is not a score
    )
    with pytest.raises(OutcomeImportError) as info:
        parse_outcomes_csv(text)
    problems = dict(info.value.problems)
    assert sorted(problems) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert "study_uid" in problems[3] and "'1.2.03.4'" in problems[3]
    assert "side" in problems[4] and "'up'" in problems[4]
    assert "vas_pre" in problems[5] and "0 to 10" in problems[5]
    assert "odi_1h" in problems[6] and "'abc'" in problems[6]
    assert "odi_2w" in problems[6] and "0 to 100" in problems[6]
    assert "9 cells, but got 5" in problems[7]
    assert "already on line 2" in problems[8]
    assert "study_uid" in problems[9] and "side" in problems[9]
    assert "vas_pre" in problems[10]
    message = str(info.value)
    assert "8 rows are bad, so nothing was imported" in message
    assert "line 3:" in message and "line 10:" in message


def test_undecodable_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    content = GOOD.replace("nerve irritation", "névralgie")
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(OutcomeImportError) as info:
        parse_outcomes_csv(path)
    assert [line for line, _ in info.value.problems] == [3]
    assert str(path) in str(info.value)


def test_outcome_validates_its_own_values() -> None:
    with pytest.raises(ValueError, match="odi_2w"):
        Outcome(UID_A, Side.LEFT, odi_2w=120.0)
    with pytest.raises(ValueError, match="study_uid"):
        Outcome("not-a-uid", Side.LEFT)


# --- effectiveness ----------------------------------------------------------


def _outcome(vas: tuple[float | None, float | None], odi: tuple[float | None, float | None]) -> Outcome:
    return Outcome(UID_A, Side.LEFT, vas_pre=vas[0], vas_2w=vas[1], odi_pre=odi[0], odi_2w=odi[1])


@pytest.mark.parametrize(
    ("vas", "odi", "expected"),
    [
        ((8.0, 4.0), (45.0, 27.0), True),  # exactly 50 % and 40 %
        ((8.0, 4.5), (45.0, 20.0), False),  # VAS fell only 44 %
        ((8.0, 2.0), (35.0, 21.0), True),  # ODI 35 → 21 is exactly 40 % despite rounding
        ((8.0, 2.0), (35.0, 21.5), False),
        ((8.0, 9.0), (40.0, 10.0), False),  # pain worse
        ((8.0, None), (40.0, 10.0), None),  # 2-week VAS not recorded
        ((None, 2.0), (40.0, 10.0), None),
        ((8.0, 2.0), (40.0, None), None),
        ((0.0, 0.0), (40.0, 10.0), None),  # no baseline pain: relative fall undefined
    ],
)
def test_is_effective_with_default_criteria(
    vas: tuple[float | None, float | None], odi: tuple[float | None, float | None], expected: bool | None
) -> None:
    assert is_effective(_outcome(vas, odi)) is expected


def test_is_effective_thresholds_are_configurable() -> None:
    outcome = _outcome((8.0, 5.0), (40.0, 30.0))  # VAS −37.5 %, ODI −25 %
    assert is_effective(outcome) is False
    assert is_effective(outcome, EffectivenessCriteria(vas_drop_fraction=0.3, odi_drop_fraction=0.25)) is True
    assert is_effective(outcome, EffectivenessCriteria(vas_drop_fraction=0.3, odi_drop_fraction=0.3)) is False


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_effectiveness_criteria_reject_fractions_outside_zero_one(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction in"):
        EffectivenessCriteria(vas_drop_fraction=fraction)


def test_unclosed_quote_is_reported_at_the_row_where_it_opens() -> None:
    text = (
        "study_uid,side,vas_pre,vas_1h,vas_2w,odi_pre,odi_1h,odi_2w,adverse_event\n"
        f"{UID_A},left,8,3,4,45,30,27,\n"
        f'{UID_B},left,8,3,4,45,30,27,"unclosed\n' + ("x" * 100 + "\n") * 1400
    )
    with pytest.raises(OutcomeImportError) as info:
        parse_outcomes_csv(text)
    assert [line for line, _ in info.value.problems] == [3]
    assert "unclosed quote" in str(info.value)


def test_multi_line_cell_reports_the_line_its_row_starts_on() -> None:
    text = (
        "\ufeffstudy_uid,side,vas_pre,vas_1h,vas_2w,odi_pre,odi_1h,odi_2w,adverse_event\n"
        f'{UID_A},left,8,3,4,45,30,27,"nerve irritation,\nresolved in 1 h"\n'
        f"{UID_B},left,8,3,4,45,30,270,\n"
    )
    with pytest.raises(OutcomeImportError) as info:
        parse_outcomes_csv(text)
    assert [line for line, _ in info.value.problems] == [4]
    good = parse_outcomes_csv(text.replace(",270,", ",27,"))
    assert good[0].adverse_event == "nerve irritation,\nresolved in 1 h"
