from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats as sps

from archive.analysis import statistics as stats
from archive.analysis.statistics import LongRow
from archive.errors import StatisticsError

# --- describe ---------------------------------------------------------------


def test_describe_matches_hand_values_and_skips_missing() -> None:
    summary = stats.describe([4.0, None, 1.0, math.nan, 3.0, 2.0])
    assert summary.n == 4
    assert summary.mean == pytest.approx(2.5)
    # sd = sqrt(((1.5² + 0.5²) * 2) / 3) = sqrt(5 / 3)
    assert summary.sd == pytest.approx(math.sqrt(5 / 3))
    assert summary.median == pytest.approx(2.5)
    # Type 7 quartiles of 1, 2, 3, 4: positions 1.75 and 3.25.
    assert (summary.q1, summary.q3) == pytest.approx((1.75, 3.25))
    assert (summary.minimum, summary.maximum) == (1.0, 4.0)


def test_describe_of_one_value_has_no_sd() -> None:
    summary = stats.describe([7.0])
    assert summary.n == 1
    assert summary.mean == summary.median == summary.q1 == summary.q3 == 7.0
    assert math.isnan(summary.sd)
    assert summary.to_dict()["sd"] is None


def test_describe_of_nothing_is_all_nan() -> None:
    summary = stats.describe([None, math.nan])
    assert summary.n == 0
    assert all(value is None for key, value in summary.to_dict().items() if key != "n")


def test_describe_rejects_infinity() -> None:
    with pytest.raises(StatisticsError, match="finite"):
        stats.describe([1.0, math.inf])


# --- two-group comparisons ----------------------------------------------------


def _cohorts(seed: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    return rng.normal(306.0, 25.0, size=32), rng.normal(485.0, 56.0, size=29)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_t_equals_scipy(seed: int) -> None:
    a, b = _cohorts(seed)
    result = stats.welch_t(a, b)
    expected = sps.ttest_ind(a, b, equal_var=False)
    assert result.test == "Welch's t-test"
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    # Welch–Satterthwaite df computed by hand.
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    assert result.df == pytest.approx(df, rel=1e-12)


def test_welch_t_ignores_missing_values() -> None:
    a, b = _cohorts(4)
    with_gaps = [*a.tolist(), None, math.nan]
    assert stats.welch_t(with_gaps, b).statistic == pytest.approx(stats.welch_t(a, b).statistic)


def test_welch_t_needs_two_values_and_some_spread() -> None:
    with pytest.raises(StatisticsError, match="at least 2 values in group b"):
        stats.welch_t([1.0, 2.0, 3.0], [4.0])
    with pytest.raises(StatisticsError, match="constant"):
        stats.welch_t([1.0, 1.0], [2.0, 2.0])


@pytest.mark.parametrize("seed", [5, 6])
def test_mann_whitney_equals_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 10, size=30).astype(float)  # VAS-like integers: many ties
    b = rng.integers(2, 11, size=27).astype(float)
    result = stats.mann_whitney(a, b)
    expected = sps.mannwhitneyu(a, b, alternative="two-sided")
    assert result.statistic == expected.statistic
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.df is None
    assert f"{expected.statistic / (30 * 27):.3f}" in str(result.effect)


def test_is_skewed_rule() -> None:
    rng = np.random.default_rng(7)
    assert not stats.is_skewed(rng.normal(0.0, 1.0, size=200))
    assert stats.is_skewed(rng.exponential(1.0, size=200))
    assert not stats.is_skewed([1.0, 50.0])  # too few to judge
    assert not stats.is_skewed([3.0, 3.0, 3.0, 3.0])  # constant
    # Beyond Shapiro–Wilk's range the skewness rule decides.
    assert stats.is_skewed(rng.exponential(1.0, size=6000))
    assert not stats.is_skewed(rng.normal(0.0, 1.0, size=6000))


def test_compare_means_adds_mann_whitney_only_for_skewed_groups() -> None:
    rng = np.random.default_rng(8)
    normal_a, normal_b = rng.normal(5.0, 1.0, size=40), rng.normal(6.0, 1.0, size=40)
    only_welch = stats.compare_means(normal_a, normal_b)
    assert [r.test for r in only_welch] == ["Welch's t-test"]

    skewed = rng.lognormal(1.0, 1.0, size=40)
    both = stats.compare_means(normal_a, skewed)
    assert [r.test for r in both] == ["Welch's t-test", "Mann–Whitney U test"]
    assert "group b skewed" in str(both[1].note)
    assert both[1].statistic == sps.mannwhitneyu(normal_a, skewed, alternative="two-sided").statistic


# --- rates --------------------------------------------------------------------


def test_compare_rates_reproduces_the_study() -> None:
    # 15 of 32 effective with TT, 24 of 32 with OT: χ² = 5.32, P = 0.021 in the paper.
    result = stats.compare_rates(15, 32, 24, 32)
    assert result.test == "Pearson χ² test"
    assert round(result.statistic, 2) == 5.32
    assert round(result.p_value, 3) == 0.021
    assert result.df == 1
    assert result.note == "Pearson χ² without continuity correction"
    # Yates's correction would give a different, non-significant answer.
    yates = sps.chi2_contingency([[15, 17], [24, 8]], correction=True)
    assert round(yates.statistic, 2) != 5.32


def test_compare_rates_uses_fisher_when_an_expected_count_is_below_five() -> None:
    # Expected "success" count per group is 7 * 10 / 20 = 3.5 < 5.
    result = stats.compare_rates(1, 10, 6, 10)
    odds_ratio, p = sps.fisher_exact([[1, 9], [6, 4]])
    assert result.test == "Fisher's exact test"
    assert result.statistic == pytest.approx(odds_ratio)
    assert result.p_value == pytest.approx(p)
    assert "3.5" in str(result.note)


def test_compare_rates_keeps_pearson_at_an_expected_count_of_exactly_five() -> None:
    result = stats.compare_rates(2, 10, 8, 10)  # expected counts all 5
    assert result.test == "Pearson χ² test"
    assert result.statistic == pytest.approx(7.2)


def test_compare_rates_result_is_valid_json_even_with_infinite_odds_ratio() -> None:
    result = stats.compare_rates(5, 5, 0, 5)
    assert math.isinf(result.statistic)
    encoded = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(encoded)["statistic"] is None


@pytest.mark.parametrize("counts", [(5, 4, 1, 4), (-1, 4, 1, 4), (1, 0, 1, 4)])
def test_compare_rates_rejects_impossible_counts(counts: tuple[int, int, int, int]) -> None:
    with pytest.raises(StatisticsError, match="successes"):
        stats.compare_rates(*counts)


# --- repeated-measures ANOVA ------------------------------------------------


def _long_table(
    y: NDArray[np.float64], groups: list[str], times: tuple[str, ...] = ("pre", "1h", "2w")
) -> list[LongRow]:
    return [
        LongRow(f"s{i}", groups[i], times[j], float(y[i, j]))
        for i in range(y.shape[0])
        for j in range(y.shape[1])
    ]


def _cohort(sizes: tuple[int, ...], t: int, seed: int) -> tuple[NDArray[np.float64], list[str]]:
    """Subjects × times scores with a time effect, a group effect and an interaction."""
    rng = np.random.default_rng(seed)
    rows, groups = [], []
    for k, size in enumerate(sizes):
        profile = 7.0 - np.arange(t) * (1.5 + 0.5 * k)
        for _ in range(size):
            rows.append(profile + rng.normal(0.0, 1.0) + rng.normal(0.0, 0.8, size=t))
            groups.append(f"g{k}")
    return np.array(rows), groups


def _by_effect(results: list[stats.TestResult]) -> dict[str, stats.TestResult]:
    return {str(r.effect): r for r in results}


def _rss(design: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return float(((y - fitted) ** 2).sum())


def _ols_f_values(y: NDArray[np.float64], groups: list[str]) -> dict[str, float]:
    """F of time (Type III) and time × group by comparing least-squares fits.

    Independent of the sums-of-squares formulas: the model has one dummy per
    subject (absorbing the group), time dummies, and time × group columns with
    sum-to-zero group codes. With sum-to-zero codes, dropping the time columns
    while keeping the interaction tests time at the unweighted group mean
    (Type III); dropping the interaction tests time × group.
    """
    n, t = y.shape
    labels = sorted(set(groups))
    g = len(labels)
    obs = y.reshape(-1)
    subject = np.repeat(np.eye(n), t, axis=0)
    time = np.tile(np.eye(t)[:, 1:], (n, 1))
    codes = np.zeros((n, g - 1))
    for i, label in enumerate(groups):
        k = labels.index(label)
        codes[i] = -1.0 if k == g - 1 else np.eye(g - 1)[k]
    codes_obs = np.repeat(codes, t, axis=0)
    interaction = np.hstack([time[:, [j]] * codes_obs for j in range(t - 1)])
    full = np.hstack([subject, time, interaction])
    rss_full = _rss(full, obs)
    df_error = (t - 1) * (n - g)
    ms_error = rss_full / df_error
    rss_no_time = _rss(np.hstack([subject, interaction]), obs)
    rss_no_interaction = _rss(np.hstack([subject, time]), obs)
    return {
        "time": (rss_no_time - rss_full) / (t - 1) / ms_error,
        "time × group": (rss_no_interaction - rss_full) / ((t - 1) * (g - 1)) / ms_error,
    }


@pytest.mark.parametrize("sizes", [(12, 12), (9, 14), (6, 8, 11)])
def test_rm_anova_agrees_with_least_squares_and_one_way_anova(sizes: tuple[int, ...]) -> None:
    y, groups = _cohort(sizes, t=3, seed=sum(sizes))
    results = _by_effect(stats.rm_anova(_long_table(y, groups)))
    n, g = len(groups), len(sizes)

    ols = _ols_f_values(y, groups)
    assert results["time"].statistic == pytest.approx(ols["time"], rel=1e-9)
    assert results["time × group"].statistic == pytest.approx(ols["time × group"], rel=1e-9)
    assert results["time"].df == (2, 2 * (n - g))
    assert results["time × group"].df == (2 * (g - 1), 2 * (n - g))

    # The group effect is a one-way ANOVA of the subjects' mean scores.
    subject_means = y.mean(axis=1)
    one_way = sps.f_oneway(*[subject_means[[x == k for x in groups]] for k in sorted(set(groups))])
    assert results["group"].statistic == pytest.approx(one_way.statistic, rel=1e-9)
    assert results["group"].p_value == pytest.approx(one_way.pvalue, rel=1e-9)
    assert results["group"].df == (g - 1, n - g)


@pytest.mark.parametrize("sizes", [(10, 10), (7, 13)])
def test_rm_anova_with_two_time_points_reduces_to_t_tests_on_differences(sizes: tuple[int, ...]) -> None:
    # With two time points each subject reduces to its change d = y_2w − y_pre
    # (orthonormal contrast z = d / √2, so every SS is half that of d and the
    # factor cancels in F):
    # * time × group asks whether mean change differs between groups: the
    #   pooled two-sample t-test of d1 against d2, F = t²;
    # * time (Type III) asks whether the unweighted mean change (d̄1 + d̄2) / 2
    #   is 0: F = (d̄1 + d̄2)² / (s_p² (1/n1 + 1/n2)), which is the pooled t of
    #   d1 against −d2 squared (negating a group leaves s_p unchanged);
    # * group: the one-way ANOVA (t-test) of the subjects' sums y_pre + y_2w.
    y, groups = _cohort(sizes, t=2, seed=sizes[1])
    results = _by_effect(stats.rm_anova(_long_table(y, groups, ("pre", "2w"))))
    in_first = np.array([x == "g0" for x in groups])
    d = y[:, 1] - y[:, 0]
    d1, d2 = d[in_first], d[~in_first]

    interaction = sps.ttest_ind(d1, d2, equal_var=True)
    assert results["time × group"].statistic == pytest.approx(interaction.statistic**2, rel=1e-9)
    assert results["time × group"].p_value == pytest.approx(interaction.pvalue, rel=1e-9)

    time = sps.ttest_ind(d1, -d2, equal_var=True)
    assert results["time"].statistic == pytest.approx(time.statistic**2, rel=1e-9)
    assert results["time"].p_value == pytest.approx(time.pvalue, rel=1e-9)

    sums = y.sum(axis=1)
    group = sps.ttest_ind(sums[in_first], sums[~in_first], equal_var=True)
    assert results["group"].statistic == pytest.approx(group.statistic**2, rel=1e-9)
    # Two time points always satisfy sphericity.
    assert "ε = 1.000" in str(results["time"].note)


def test_rm_anova_drops_incomplete_subjects_and_says_so() -> None:
    y, groups = _cohort((8, 8), t=3, seed=3)
    complete = _long_table(y, groups)
    with_gaps = [
        *complete,
        LongRow("x1", "g0", "pre", 6.0),
        LongRow("x1", "g0", "1h", None),
        LongRow("x1", "g0", "2w", 2.0),
        LongRow("x2", "g1", "pre", 7.0),  # no later visits
    ]
    full = stats.rm_anova(complete)
    gapped = stats.rm_anova(with_gaps)
    assert [r.statistic for r in gapped] == pytest.approx([r.statistic for r in full])
    assert all("16 subjects" in str(r.note) and "2 dropped" in str(r.note) for r in gapped)


def test_rm_anova_reports_a_known_interaction() -> None:
    # Group g1 improves twice as fast: a strong, certain interaction; a pure
    # time shift shared by all subjects gives no interaction at all.
    rng = np.random.default_rng(11)
    base = rng.normal(7.0, 1.0, size=(20, 1))
    slope = np.where(np.arange(20) < 10, 1.0, 2.0)[:, None]
    y = base - slope * np.arange(3) + rng.normal(0.0, 0.3, size=(20, 3))
    groups = ["g0"] * 10 + ["g1"] * 10
    results = _by_effect(stats.rm_anova(_long_table(y, groups)))
    assert results["time × group"].p_value < 1e-6
    parallel = base - np.arange(3) + rng.normal(0.0, 0.3, size=(20, 3))
    flat = _by_effect(stats.rm_anova(_long_table(parallel, groups)))
    assert flat["time × group"].p_value > results["time × group"].p_value


def test_rm_anova_rejects_malformed_tables() -> None:
    with pytest.raises(StatisticsError, match="in one group"):
        stats.rm_anova([("s1", "OT", "pre", 5.0), ("s1", "TT", "2w", 3.0)])
    with pytest.raises(StatisticsError, match="twice"):
        stats.rm_anova([("s1", "OT", "pre", 5.0), ("s1", "OT", "pre", 3.0)])
    one_group = [(f"s{i}", "OT", t, float(i)) for i in range(5) for t in ("pre", "2w")]
    with pytest.raises(StatisticsError, match="1 groups"):
        stats.rm_anova(one_group)


def test_test_result_to_dict_is_json() -> None:
    y, groups = _cohort((5, 5), t=3, seed=1)
    data = [r.to_dict() for r in stats.rm_anova(_long_table(y, groups))]
    decoded = json.loads(json.dumps(data, allow_nan=False))
    assert decoded[1]["effect"] == "group"
    assert decoded[1]["df"] == [1.0, 8.0]


def test_holm_matches_a_hand_computation() -> None:
    from archive.analysis.statistics import holm

    # Sorted 0.01 < 0.02 < 0.03 < 0.04 < 0.20 (m = 5): × 5, 4, 3, 2, 1 = 0.05, 0.08, 0.09, 0.08, 0.20;
    # the running maximum keeps the order: 0.05, 0.08, 0.09, 0.09, 0.20.
    raw = [0.04, 0.01, 0.20, 0.03, 0.02]
    assert holm(raw) == pytest.approx([0.09, 0.05, 0.20, 0.09, 0.08])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []
    with pytest.raises(StatisticsError, match="expected P values from 0 to 1"):
        holm([0.2, 1.5])
