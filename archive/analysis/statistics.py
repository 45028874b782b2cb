"""Descriptive statistics and group comparisons for the audit (pure functions).

Numbers in, results out: no I/O, no database. Every test is scipy's own where
scipy has it (Welch's t-test, Mann–Whitney U, Pearson χ², Fisher's exact test,
Shapiro–Wilk); the mixed-design repeated-measures ANOVA, which scipy lacks, is
computed here from sums of squares with numpy. ``docs/statistics.md`` gives the
formulas and the rules that choose between tests.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps
from scipy.stats.contingency import expected_freq

from archive.errors import StatisticsError

logger = logging.getLogger(__name__)

#: Significance level of the normality test that decides whether data are skewed.
SKEW_ALPHA = 0.05
#: Above this many values Shapiro–Wilk's p is unreliable; |skewness| > 1 is used instead.
SHAPIRO_MAX_N = 5000
#: Fisher's exact test replaces Pearson χ² when an expected count is below this.
MIN_EXPECTED_COUNT = 5.0

PEARSON_NOTE = "Pearson χ² without continuity correction"


def _json_number(value: float) -> float | None:
    """``value`` as a float, or ``None`` when it is NaN or infinite (not valid JSON)."""
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one variable.

    Undefined values are NaN: everything when ``n == 0``, ``sd`` when ``n == 1``.
    Quartiles use linear interpolation between order statistics (numpy's
    default, Hyndman–Fan type 7, as in R and Excel's ``QUARTILE.INC``).
    """

    n: int
    mean: float
    sd: float
    median: float
    q1: float
    q3: float
    minimum: float
    maximum: float

    def to_dict(self) -> dict[str, int | float | None]:
        """The summary as a JSON-ready dict (NaN becomes ``None``)."""
        return {
            "n": self.n,
            "mean": _json_number(self.mean),
            "sd": _json_number(self.sd),
            "median": _json_number(self.median),
            "q1": _json_number(self.q1),
            "q3": _json_number(self.q3),
            "min": _json_number(self.minimum),
            "max": _json_number(self.maximum),
        }


@dataclass(frozen=True)
class TestResult:
    """The outcome of one statistical test.

    Parameters
    ----------
    test : str
        Name of the test, e.g. ``"Welch's t-test"`` or ``"Fisher's exact test"``.
    statistic : float
        t, U, χ², the odds ratio (Fisher) or F.
    df : float, (float, float) or None
        Degrees of freedom: one number (t, χ²), a pair (F: numerator,
        denominator) or ``None`` for tests without them.
    p_value : float
        Two-sided P value.
    note : str or None
        What the reader must know to interpret the result (the variant used,
        why a test was chosen, subjects dropped).
    effect : str or None
        What the result is about (an ANOVA term such as ``"time × group"``) or
        the size of the difference in words (``"mean difference a − b = 1.2"``).
    """

    # Keeps pytest from trying to collect this class as a test case.
    __test__: ClassVar[bool] = False

    test: str
    statistic: float
    df: float | tuple[float, float] | None
    p_value: float
    note: str | None = None
    effect: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The result as a JSON-ready dict; NaN and infinities become ``None``."""
        df: float | list[float | None] | None
        if isinstance(self.df, tuple):
            df = [_json_number(d) for d in self.df]
        elif self.df is None:
            df = None
        else:
            df = _json_number(self.df)
        return {
            "test": self.test,
            "statistic": _json_number(self.statistic),
            "df": df,
            "p_value": _json_number(self.p_value),
            "note": self.note,
            "effect": self.effect,
        }


def _clean(values: Iterable[float | None], name: str = "values") -> NDArray[np.float64]:
    """The finite values of ``values`` as a 1-D float64 array (None and NaN dropped)."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    array = np.asarray(kept, dtype=np.float64)
    if np.isinf(array).any():
        raise StatisticsError(f"{name}: expected finite numbers, but got an infinity; remove it")
    return array


def describe(values: Iterable[float | None]) -> Summary:
    """n, mean ± SD, median (IQR), minimum and maximum of ``values``.

    Parameters
    ----------
    values : iterable of float or None
        The observations; ``None`` and NaN (not recorded) are left out.

    Returns
    -------
    Summary
        ``sd`` is the sample standard deviation (ddof = 1). With no values
        every statistic is NaN; with one value ``sd`` is NaN.
    """
    x = _clean(values)
    n = int(x.size)
    if n == 0:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan, nan)
    q1, median, q3 = (float(q) for q in np.percentile(x, [25.0, 50.0, 75.0]))
    sd = float(np.std(x, ddof=1)) if n > 1 else math.nan
    return Summary(
        n=n,
        mean=float(np.mean(x)),
        sd=sd,
        median=median,
        q1=q1,
        q3=q3,
        minimum=float(np.min(x)),
        maximum=float(np.max(x)),
    )


def _need(x: NDArray[np.float64], minimum: int, test: str, name: str) -> None:
    if x.size < minimum:
        raise StatisticsError(
            f"{test}: expected at least {minimum} values in group {name}, but got {x.size}; "
            "collect more data or leave this comparison out"
        )


def welch_t(a: Iterable[float | None], b: Iterable[float | None]) -> TestResult:
    """Welch's unequal-variance t-test of the means of ``a`` and ``b`` (two-sided).

    Parameters
    ----------
    a, b : iterable of float or None
        The two groups; ``None`` and NaN are left out.

    Returns
    -------
    TestResult
        ``statistic`` is t, ``df`` the Welch–Satterthwaite degrees of freedom,
        ``effect`` the difference of means a − b.

    Raises
    ------
    StatisticsError
        If a group has fewer than two values, or both groups are constant
        (t is undefined).
    """
    x, y = _clean(a, "a"), _clean(b, "b")
    _need(x, 2, "Welch's t-test", "a")
    _need(y, 2, "Welch's t-test", "b")
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        raise StatisticsError(
            "Welch's t-test: expected some spread in at least one group, but both are "
            "constant, so t is undefined; report the values instead"
        )
    result = sps.ttest_ind(x, y, equal_var=False)
    diff = float(np.mean(x) - np.mean(y))
    return TestResult(
        test="Welch's t-test",
        statistic=float(result.statistic),
        df=float(result.df),
        p_value=float(result.pvalue),
        note="two-sided, unequal variances",
        effect=f"mean difference a − b = {diff:.4g}",
    )


def mann_whitney(a: Iterable[float | None], b: Iterable[float | None]) -> TestResult:
    """Mann–Whitney U test (Wilcoxon rank-sum) of ``a`` against ``b`` (two-sided).

    Parameters
    ----------
    a, b : iterable of float or None
        The two groups; ``None`` and NaN are left out.

    Returns
    -------
    TestResult
        ``statistic`` is U of ``a``; ``df`` is ``None``; ``effect`` the
        probability of superiority U / (n_a n_b), i.e. P(a > b) + ½ P(a = b).
        scipy uses the exact distribution when a group has ≤ 8 values and
        there are no ties, otherwise the normal approximation (tie- and
        continuity-corrected).

    Raises
    ------
    StatisticsError
        If a group is empty.
    """
    x, y = _clean(a, "a"), _clean(b, "b")
    _need(x, 1, "Mann–Whitney U test", "a")
    _need(y, 1, "Mann–Whitney U test", "b")
    result = sps.mannwhitneyu(x, y, alternative="two-sided", method="auto")
    u = float(result.statistic)
    return TestResult(
        test="Mann–Whitney U test",
        statistic=u,
        df=None,
        p_value=float(result.pvalue),
        note="two-sided",
        effect=f"probability of superiority U/(n_a·n_b) = {u / (x.size * y.size):.3f}",
    )


def is_skewed(values: Iterable[float | None]) -> bool:
    """Whether ``values`` are too far from normal to trust a t-test alone.

    The rule: with 3 to 5000 values, skewed when the Shapiro–Wilk test rejects
    normality at P < 0.05; above 5000 values (where Shapiro–Wilk's P is not
    reliable) when the sample skewness exceeds 1 in absolute value. Fewer than
    three values, or constant values, are never called skewed: there is
    nothing to judge them by.

    Parameters
    ----------
    values : iterable of float or None
        The observations; ``None`` and NaN are left out.

    Returns
    -------
    bool
    """
    x = _clean(values)
    if x.size < 3 or np.ptp(x) == 0:
        return False
    if x.size > SHAPIRO_MAX_N:
        return bool(abs(float(sps.skew(x))) > 1.0)
    return bool(float(sps.shapiro(x).pvalue) < SKEW_ALPHA)


def compare_means(a: Iterable[float | None], b: Iterable[float | None]) -> list[TestResult]:
    """Compare two groups: Welch's t-test, plus Mann–Whitney when either is skewed.

    Parameters
    ----------
    a, b : iterable of float or None
        The two groups; ``None`` and NaN are left out.

    Returns
    -------
    list of TestResult
        Welch's t-test first; the Mann–Whitney U test second when
        :func:`is_skewed` holds for ``a`` or ``b``, its ``note`` saying so.
    """
    x, y = _clean(a, "a"), _clean(b, "b")
    results = [welch_t(x, y)]
    skewed = [name for name, group in (("a", x), ("b", y)) if is_skewed(group)]
    if skewed:
        mw = mann_whitney(x, y)
        reason = f"group {' and '.join(skewed)} skewed (Shapiro–Wilk P < {SKEW_ALPHA})"
        results.append(
            TestResult(mw.test, mw.statistic, mw.df, mw.p_value, f"two-sided; {reason}", mw.effect)
        )
    return results


def compare_rates(successes_a: int, n_a: int, successes_b: int, n_b: int) -> TestResult:
    """Compare two proportions: Pearson χ² (no continuity correction) or Fisher's exact test.

    The 2 × 2 table is ``[[successes_a, n_a − successes_a], [successes_b,
    n_b − successes_b]]``. Pearson's χ² without Yates's correction is used
    unless an expected count is below 5, when Fisher's exact test is used.

    Parameters
    ----------
    successes_a, n_a, successes_b, n_b : int
        Counts of successes and of cases in each group.

    Returns
    -------
    TestResult
        For χ²: ``statistic`` χ², ``df`` 1. For Fisher: ``statistic`` the
        sample odds ratio, ``df`` ``None``. ``note`` names the variant and
        why; ``effect`` the difference in rates a − b.

    Raises
    ------
    StatisticsError
        If a count is negative, a group is empty or has more successes than cases.
    """
    for name, s, n in (("a", successes_a, n_a), ("b", successes_b, n_b)):
        if n < 1 or not 0 <= s <= n:
            raise StatisticsError(
                f"compare_rates: expected 0 ≤ successes ≤ n and n ≥ 1 in group {name}, but got "
                f"{s} of {n}; check the counts"
            )
    table = np.array([[successes_a, n_a - successes_a], [successes_b, n_b - successes_b]], dtype=np.int64)
    expected = expected_freq(table)
    effect = f"rate difference a − b = {successes_a / n_a - successes_b / n_b:.4g}"
    min_expected = float(np.min(expected))
    if min_expected < MIN_EXPECTED_COUNT:
        odds_ratio, p = sps.fisher_exact(table, alternative="two-sided")
        return TestResult(
            test="Fisher's exact test",
            statistic=float(odds_ratio),
            df=None,
            p_value=float(p),
            note=(
                f"two-sided; used instead of {PEARSON_NOTE} because the smallest expected "
                f"count is {min_expected:.3g} (< {MIN_EXPECTED_COUNT:g}); statistic is the odds ratio"
            ),
            effect=effect,
        )
    result = sps.chi2_contingency(table, correction=False)
    return TestResult(
        test="Pearson χ² test",
        statistic=float(result.statistic),
        df=float(result.dof),
        p_value=float(result.pvalue),
        note=PEARSON_NOTE,
        effect=effect,
    )


class LongRow(NamedTuple):
    """One observation of a repeated-measures table in long format."""

    subject: str
    group: str
    time: str
    value: float | None


@dataclass(frozen=True)
class _Design:
    """A complete-case repeated-measures table: ``y`` of shape (N, T), groups per row."""

    y: NDArray[np.float64]
    group_index: NDArray[np.intp]
    groups: tuple[str, ...]
    times: tuple[str, ...]
    dropped: int


def _build_design(long_table: Iterable[tuple[str, str, str, float | None]]) -> _Design:
    """Pivot a long table to subjects × times, keeping only complete subjects."""
    group_of: dict[str, str] = {}
    cells: dict[tuple[str, str], float | None] = {}
    times: list[str] = []
    for subject, group, time, value in long_table:
        if group_of.setdefault(subject, group) != group:
            raise StatisticsError(
                f"rm_anova: expected each subject in one group, but subject {subject!r} is in "
                f"{group_of[subject]!r} and {group!r}; fix the group of that subject"
            )
        if (subject, time) in cells:
            raise StatisticsError(
                f"rm_anova: expected one value per subject and time, but subject {subject!r} has "
                f"time {time!r} twice; remove the duplicate"
            )
        cells[(subject, time)] = value
        if time not in times:
            times.append(time)
    complete: list[tuple[str, list[float]]] = []
    for subject, group in group_of.items():
        row = [cells.get((subject, t)) for t in times]
        values = [float(v) for v in row if v is not None and math.isfinite(float(v))]
        if len(values) == len(times):
            complete.append((group, values))
    dropped = len(group_of) - len(complete)
    if dropped:
        logger.info("rm_anova: dropped %d of %d subjects with a missing value", dropped, len(group_of))
    groups = tuple(sorted({g for g, _ in complete}))
    y = np.array([v for _, v in complete], dtype=np.float64).reshape(len(complete), len(times))
    index = np.array([groups.index(g) for g, _ in complete], dtype=np.intp)
    return _Design(y=y, group_index=index, groups=groups, times=tuple(times), dropped=dropped)


def _orthonormal_contrasts(t: int) -> NDArray[np.float64]:
    """A (T, T − 1) matrix whose columns are orthonormal and orthogonal to the ones vector."""
    basis = np.eye(t) - 1.0 / t
    u, _, _ = np.linalg.svd(basis)
    return np.asarray(u[:, : t - 1], dtype=np.float64)


def _greenhouse_geisser(d: _Design) -> float:
    """Greenhouse–Geisser ε from the pooled within-group covariance of orthonormal contrasts."""
    t = d.y.shape[1]
    z = d.y @ _orthonormal_contrasts(t)
    centred = z.copy()
    for g in range(len(d.groups)):
        rows = d.group_index == g
        centred[rows] -= z[rows].mean(axis=0)
    dof = d.y.shape[0] - len(d.groups)
    s = centred.T @ centred / dof
    trace = float(np.trace(s))
    denominator = (t - 1) * float(np.trace(s @ s))
    return 1.0 if denominator == 0 else trace**2 / denominator


def rm_anova(long_table: Iterable[tuple[str, str, str, float | None]]) -> list[TestResult]:
    """Mixed-design (split-plot) repeated-measures ANOVA: time, group and time × group.

    One between-subject factor (group, e.g. technique) and one within-subject
    factor (time, e.g. before / 1 h / 2 weeks). Subjects with any time point
    missing are dropped (complete cases); the ``note`` of every result says how
    many remain and how many were dropped. Sphericity is assumed; the
    Greenhouse–Geisser ε and corrected P of the within-subject effects are given
    in their notes. With unequal group sizes the time effect is tested at the
    unweighted mean of the groups (as SPSS's GLM does); see docs/statistics.md.

    Parameters
    ----------
    long_table : iterable of (subject, group, time, value)
        One row per observation, e.g. :class:`LongRow`. ``value`` ``None`` or
        NaN means not recorded.

    Returns
    -------
    list of TestResult
        Three results, ``effect`` ``"time"``, ``"group"`` and ``"time × group"``,
        each with F, ``df`` (df1, df2) and P.

    Raises
    ------
    StatisticsError
        If a subject is in two groups or has a time twice, fewer than two time
        points or groups remain, or there are no more complete subjects than
        groups (no error degrees of freedom).
    """
    d = _build_design(long_table)
    n, t = d.y.shape
    g = len(d.groups)
    if t < 2 or g < 2 or n <= g:
        raise StatisticsError(
            "rm_anova: expected at least 2 time points, 2 groups and more complete subjects than "
            f"groups, but got {t} time points, {g} groups and {n} complete subjects "
            f"({d.dropped} dropped for a missing value); record the missing values or compare fewer groups"
        )
    y = d.y
    grand = float(y.mean())
    counts = np.bincount(d.group_index, minlength=g).astype(np.float64)
    # cell_means[g, t]: mean of group g at time t.
    cell_means = np.vstack([y[d.group_index == k].mean(axis=0) for k in range(g)])
    group_means = cell_means.mean(axis=1)
    subject_means = y.mean(axis=1)

    ss_total = float(((y - grand) ** 2).sum())
    ss_subjects = t * float(((subject_means - grand) ** 2).sum())
    ss_group = t * float((counts * (group_means - grand) ** 2).sum())
    ss_subjects_within_groups = ss_subjects - ss_group
    ss_within = ss_total - ss_subjects
    ss_cells = float((counts[:, None] * (cell_means - grand) ** 2).sum())
    # Time means weighted by group size: the textbook split plot's SS_time.
    time_means = y.mean(axis=0)
    ss_time_weighted = n * float(((time_means - grand) ** 2).sum())
    ss_time_by_group = max(ss_cells - ss_group - ss_time_weighted, 0.0)
    ss_error_within = ss_within - ss_time_weighted - ss_time_by_group
    # Time tested at the unweighted mean of the group profiles (Type III); equals the
    # weighted SS when the groups are equal in size: G · n_harmonic = N.
    unweighted_time_means = cell_means.mean(axis=0)
    n_harmonic = g / float((1.0 / counts).sum())
    ss_time = g * n_harmonic * float(((unweighted_time_means - unweighted_time_means.mean()) ** 2).sum())

    df_group, df_subjects = g - 1.0, float(n - g)
    df_time, df_error = t - 1.0, float((t - 1) * (n - g))
    df_tg = float((t - 1) * (g - 1))
    ms_subjects = ss_subjects_within_groups / df_subjects
    ms_error = ss_error_within / df_error
    epsilon = _greenhouse_geisser(d)

    cohort = (
        f"{n} subjects with all {t} time points ({', '.join(d.times)}), "
        f"{d.dropped} dropped for a missing value"
    )

    def within(effect: str, ss: float, df1: float) -> TestResult:
        f = _f_ratio(ss / df1, ms_error)
        p = float(sps.f.sf(f, df1, df_error))
        p_gg = float(sps.f.sf(f, epsilon * df1, epsilon * df_error))
        note = f"{cohort}; sphericity assumed; Greenhouse–Geisser ε = {epsilon:.3f}, corrected P = {p_gg:.4g}"
        return TestResult("repeated-measures ANOVA", f, (df1, df_error), p, note, effect)

    f_group = _f_ratio(ss_group / df_group, ms_subjects)
    between = TestResult(
        "repeated-measures ANOVA",
        f_group,
        (df_group, df_subjects),
        float(sps.f.sf(f_group, df_group, df_subjects)),
        cohort,
        "group",
    )
    return [within("time", ss_time, df_time), between, within("time × group", ss_time_by_group, df_tg)]


def _f_ratio(ms_effect: float, ms_error: float) -> float:
    """F = MS_effect / MS_error; infinite when the error is zero and the effect is not, NaN if both."""
    if ms_error > 0:
        return ms_effect / ms_error
    return math.inf if ms_effect > 1e-12 else math.nan


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted P values (step-down), in the order given.

    The *i*-th smallest of *m* P values is multiplied by ``m − i + 1``
    (``i`` from 1), the running maximum taken so the adjusted values keep the
    order of the raw ones, and the result capped at 1 (Holm 1979; as
    ``statsmodels.stats.multitest.multipletests(method="holm")``).

    Parameters
    ----------
    p_values : sequence of float
        Raw P values of one family of comparisons, each in [0, 1].

    Returns
    -------
    list of float
        Adjusted P values, aligned with ``p_values``.

    Raises
    ------
    StatisticsError
        If a P value is not a number from 0 to 1.
    """
    values = [float(p) for p in p_values]
    bad = [p for p in values if not 0.0 <= p <= 1.0]
    if bad:
        raise StatisticsError(f"holm: expected P values from 0 to 1, but got {bad[0]!r}; check the tests")
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=values.__getitem__)):
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return adjusted
