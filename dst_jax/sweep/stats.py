"""Statistics over seeds: mean, standard deviation (ddof = 1), Student-t intervals, and paired
differences.

Every run of a seed shares its initialisation and minibatch order with the runs of the other
configs of that seed (common random numbers), so two configs compared seed by seed form a
paired sample: the interval of the mean difference is usually much narrower than the two
configs' own intervals suggest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Summary:
    """Mean, std (ddof = 1), half-width of the 95% Student-t interval, and count of the finite
    values; std and the interval are NaN with fewer than two values."""

    mean: float
    std: float
    ci: float
    n: int


def t_quantile(n: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t quantile for `n` values (n - 1 degrees of freedom)."""
    return float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1))


def summarize(values: Sequence[float | None]) -> Summary:
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], np.float64)
    n = len(finite)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, 0)
    if n == 1:
        return Summary(float(finite[0]), math.nan, math.nan, 1)
    std = float(np.std(finite, ddof=1))
    return Summary(float(finite.mean()), std, t_quantile(n) * std / math.sqrt(n), n)


@dataclasses.dataclass(frozen=True)
class Paired:
    """`a - b` seed by seed: the differences' summary and how often `a` is better."""

    diff: Summary
    wins: int  # seeds where a is strictly better than b (in the metric's direction)
    n: int  # seeds where both are finite


def paired(a: dict[int, float], b: dict[int, float], direction: str) -> Paired:
    """Paired comparison of two configs given as {seed: value}; only seeds both have count."""
    seeds = sorted(s for s in set(a) & set(b) if _finite(a[s]) and _finite(b[s]))
    diffs = [a[s] - b[s] for s in seeds]
    sign = 1.0 if direction == "max" else -1.0
    wins = sum(sign * d > 0 for d in diffs)
    return Paired(summarize(diffs), wins, len(seeds))


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def paired_t_p(a: dict[int, float], b: dict[int, float]) -> float:
    """Two-sided p-value of the paired t-test of `a` against `b` over the seeds both have
    finite; NaN with fewer than two such seeds or differences without spread."""
    seeds = sorted(s for s in set(a) & set(b) if _finite(a[s]) and _finite(b[s]))
    if len(seeds) < 2:
        return math.nan
    diffs = np.array([a[s] - b[s] for s in seeds], np.float64)
    if np.ptp(diffs) == 0:
        return math.nan  # the t statistic is undefined (or infinite)
    return float(scipy_stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (family-wise error control); NaN
    entries are left out of the family and stay NaN."""
    finite = [(p, i) for i, p in enumerate(pvalues) if _finite(p)]
    m = len(finite)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out
