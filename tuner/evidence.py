"""How much evidence a verdict needs (pure): many queries at once, several looks, the noise.

- `holm`: a verdict watches many queries; testing each at 5 % finds one "significant"
  slowdown in twenty by chance alone. Holm's step-down procedure keeps the chance of any
  false finding across the watched set at the level, and loses little power where one
  effect is large (a trap, a missing index) — the cases that matter.
- `spent` / `look_level`: a verification window is looked at `looks` times, at equal
  fractions of it. An O'Brien-Fleming-type spending function (Lan and DeMets) gives the
  early looks a tiny share of the level — only an overwhelming effect decides there — and
  leaves nearly all of it to the last look. Each look tests at what the spending function
  added since the previous look taken, so skipped looks cost nothing and the level over
  all looks stays within the whole (a union bound).
- `spread` / `noise_floor`: a slowdown counts only when it is larger than the baseline's
  own drift from one sample to the next, measured as the spread of its per-sample means —
  the load of a shared machine moves a sub-millisecond query's mean by more than the
  difference Welch's test can resolve over thousands of calls — and at least the
  machine's drift (`relative_spread`: the median of every query's spread relative to
  its mean), which a steady query's few samples may understate.
- `Stats`, `compare`, `welch_p`, `load_change`, `net_change`: one window's figures per
  query (or pooled writes) and the tests between two windows, which the verdict's rule
  (tuner.verify) weighs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from scipy.special import ndtr, ndtri, stdtr

from tuner.config import Policy
from tuner.models import QueryFigures

K = TypeVar("K")


def holm(p_values: Mapping[K, float], level: float) -> dict[K, float]:
    """Each test's Holm threshold, for the tests it rejects only: {key: threshold}.

    Sorted by p ascending, the i-th (from 0) is compared with level / (m - i); the first
    that fails stops the procedure, and it and every larger p are kept (not rejected).
    """
    ranked = sorted(p_values.items(), key=lambda kv: kv[1])
    m, rejected = len(ranked), {}
    for i, (key, p) in enumerate(ranked):
        threshold = level / (m - i)
        if p >= threshold:
            break
        rejected[key] = threshold
    return rejected


def holm_threshold(count: int, level: float) -> float:
    """The strictest threshold Holm applies to `count` tests (the first step): level / m."""
    return level / max(count, 1)


def spent(fraction: float, level: float) -> float:
    """O'Brien-Fleming-type alpha spent by `fraction` (0..1) of the window: the share of the
    two-sided `level` the looks up to there may use, 2 - 2 Φ(z_{1-level/2} / √fraction)."""
    if fraction <= 0.0:
        return 0.0
    if fraction >= 1.0:
        return level
    z = float(ndtri(1.0 - level / 2.0))
    return float(2.0 - 2.0 * ndtr(z / math.sqrt(fraction)))


def look_level(look: int, looks: int, previous: int, level: float) -> float:
    """The level to test at look `look` of `looks` (1-based; `looks` is the window's end),
    when the last look taken was `previous` (0: none): what the spending function added."""
    if not 0 <= previous < look <= looks:
        raise ValueError(f"look {look} after {previous} of {looks}")
    return spent(look / looks, level) - spent(previous / looks, level)


def spread(samples: Sequence[tuple[int, float]]) -> float | None:
    """Calls-weighted standard deviation of per-sample means, from (calls, mean) pairs;
    None with fewer than three samples that had calls (no spread worth the name)."""
    used = [(n, m) for n, m in samples if n > 0]
    if len(used) < 3:
        return None
    calls = sum(n for n, _ in used)
    mean = sum(n * m for n, m in used) / calls
    variance = sum(n * (m - mean) ** 2 for n, m in used) / calls
    return math.sqrt(variance * len(used) / (len(used) - 1))


def relative_spread(series: Iterable[Sequence[tuple[int, float]]]) -> float | None:
    """The machine's noise: the median over queries of their spread relative to their mean
    (each query's (calls, mean) per sample); None when no query has a spread."""
    ratios = sorted(sd / mean for one in series if (sd := spread(one)) is not None
                    and (mean := _mean(one)) > 0)  # fmt: skip
    return statistics.median(ratios) if ratios else None


def _mean(samples: Sequence[tuple[int, float]]) -> float:
    calls = sum(n for n, _ in samples)
    return sum(n * m for n, m in samples) / calls if calls else 0.0


def noise_floor(
    samples: Sequence[tuple[int, float]], factor: float, relative: float | None = None
) -> float | None:
    """The practical-significance floor (ms) for a slowdown: `factor` times the spread of
    the baseline's per-sample means, or times `relative` (the machine's relative spread)
    times the query's mean where that is larger; None when neither can be measured."""
    sd = spread(samples)
    machine = relative * _mean(samples) if relative is not None else None
    if sd is None and machine is None:
        return None
    return factor * max(sd or 0.0, machine or 0.0)


# --- one window's figures, and the tests between two ----------------------------------------


class EntryLike(Protocol):
    """One pg_stat_statements entry inside a window (`tuner.models.QueryWindow`)."""

    @property
    def queryid(self) -> int: ...
    @property
    def calls(self) -> int: ...
    @property
    def mean_ms(self) -> float: ...
    @property
    def m2(self) -> float: ...  # sum of squared deviations from the window's mean
    @property
    def valid(self) -> bool: ...


class WorkloadLike(Protocol):
    """One window of the workload (`tuner.models.Workload`)."""

    @property
    def stats_reset(self) -> bool: ...
    @property
    def queries(self) -> Sequence[EntryLike]: ...


@dataclass(frozen=True, slots=True)
class Stats:
    """Calls, mean (ms) and sum of squared deviations (ms²) of one sample of executions."""

    calls: int
    mean: float
    m2: float = 0.0

    @property
    def sample_sd(self) -> float:
        """The corrected (n - 1) standard deviation that Welch's t-test takes."""
        return math.sqrt(max(self.m2, 0.0) / (self.calls - 1)) if self.calls > 1 else 0.0


def pooled(parts: Iterable[Stats]) -> Stats:
    """Several samples as one (exact: calls, mean and M2 combined as in Chan's formula)."""
    parts = [p for p in parts if p.calls > 0]
    calls = sum(p.calls for p in parts)
    if calls == 0:
        return Stats(0, 0.0, 0.0)
    mean = sum(p.calls * p.mean for p in parts) / calls
    m2 = sum(p.m2 + p.calls * (p.mean - mean) ** 2 for p in parts)
    return Stats(calls, mean, m2)


def by_queryid(workload: WorkloadLike, queryids: Collection[int]) -> dict[int, Stats]:
    """Each query id's calls in the window, its entries (users, top level or not) pooled."""
    parts: dict[int, list[Stats]] = {}
    for entry in workload.queries:
        if entry.valid and entry.queryid in queryids:
            parts.setdefault(entry.queryid, []).append(Stats(entry.calls, entry.mean_ms, entry.m2))
    return {queryid: pooled(stats) for queryid, stats in parts.items()}


def spoiled(workload: WorkloadLike, queryids: Collection[int]) -> str | None:
    """Why the window cannot be used for these queries (a reset, an evicted entry), or None."""
    if workload.stats_reset:
        return "pg_stat_statements was reset during the window"
    bad = sorted({e.queryid for e in workload.queries if not e.valid and e.queryid in queryids})
    if bad:
        return f"the statistics of query {bad[0]} were reset or evicted during the window"
    return None


def welch_p(before: Stats, after: Stats) -> float:
    """Two-sided p-value of Welch's t-test from the two windows' summary statistics."""
    sd_before, sd_after = before.sample_sd, after.sample_sd
    if sd_before == 0.0 and sd_after == 0.0:
        return 1.0 if before.mean == after.mean else 0.0
    # Welch: t over the unpooled standard error, Welch-Satterthwaite degrees of freedom, and
    # the two-sided tail of Student's t (scipy.special: seconds cheaper to import than stats).
    var_before = sd_before**2 / before.calls
    var_after = sd_after**2 / after.calls
    error = var_before + var_after
    t = (before.mean - after.mean) / math.sqrt(error)
    df = error**2 / (var_before**2 / (before.calls - 1) + var_after**2 / (after.calls - 1))
    p = float(2.0 * stdtr(df, -abs(t)))
    return 1.0 if math.isnan(p) else min(1.0, p)


def compare(
    queryid: int | None, role: str, before: Stats, after: Stats, policy: Policy
) -> QueryFigures:
    """One query's figures; judged (p-value set) only with min_calls calls in each window."""
    min_calls = policy.schedule.min_calls
    if before.calls < min_calls or after.calls < min_calls:
        return QueryFigures(
            queryid, role, before.calls, after.calls, before.mean, after.mean, None, None
        )
    if before.mean > 0:
        change = (after.mean - before.mean) / before.mean
    else:
        change = 0.0 if after.mean == 0 else math.inf
    p = welch_p(before, after)
    significant = p < policy.schedule.significance
    size = effect(before, after)
    return QueryFigures(
        queryid, role, before.calls, after.calls, before.mean, after.mean, change, p, significant,
        size, size is not None and abs(size) < policy.schedule.min_effect,
    )  # fmt: skip


def effect(before: Stats, after: Stats) -> float | None:
    """The change of the mean in calls' standard deviations (Cohen's d over the two
    windows' averaged variance); None when neither window has a spread."""
    spread = math.sqrt((before.sample_sd**2 + after.sample_sd**2) / 2.0)
    return (after.mean - before.mean) / spread if spread > 0 else None


def compare_bound(queryid: int, bound: Stats, after: Stats, policy: Policy) -> QueryFigures:
    """A query whose baseline time is only a lower bound (`bound.mean`), seen `bound.calls`
    times: judged once it ran `min_calls` times after, by a one-sample t-test of the after
    window against the bound (a run that never finished has no spread to pool)."""
    min_calls = policy.schedule.min_calls
    change = (after.mean - bound.mean) / bound.mean if bound.mean > 0 else None
    if after.calls < min_calls or change is None or bound.calls < 1:
        return QueryFigures(
            queryid, "bound", bound.calls, after.calls, bound.mean, after.mean, None, None
        )
    p = one_sample_p(after, bound.mean)
    significant = p < policy.schedule.significance
    return QueryFigures(
        queryid, "bound", bound.calls, after.calls, bound.mean, after.mean, change, p, significant
    )


def load_change(
    before: Mapping[int, Stats], after: Mapping[int, Stats], controls: Iterable[int],
    min_calls: int,
) -> float | None:  # fmt: skip
    """How much slower the control statements ran after the change than before it: their
    time after relative to their time at baseline speed (as `net_change`), over those called
    `min_calls` times in each window; None when there are none.

    A change to one table cannot alter the plans of statements on other tables; when they
    too run slower, the machine is busier (a slow report made fast lets closed-loop clients
    run many more statements, and a read on the table, its plan unchanged, slows with
    them). Only a slowdown scales a guard's baseline: when the controls ran faster (the
    change freed the machine), a guard is judged as it ran, or an index would be rolled
    back for the time it saved others."""
    pairs = [(before[q], after[q]) for q in controls if q in before and q in after
             and before[q].calls >= min_calls and after[q].calls >= min_calls]  # fmt: skip
    at_baseline = sum(a.calls * b.mean for b, a in pairs)
    if at_baseline <= 0:
        return None
    return sum(a.calls * a.mean for _, a in pairs) / at_baseline - 1.0


def scaled(stats: Stats, factor: float) -> Stats:
    """`stats` with every time multiplied by `factor` (mean by it, squares by its square)."""
    return Stats(stats.calls, stats.mean * factor, stats.m2 * factor * factor)


def one_sample_p(sample: Stats, value: float) -> float:
    """Two-sided p-value of a one-sample t-test: does `sample`'s mean differ from `value`?"""
    sd = sample.sample_sd
    if sd == 0.0 or sample.calls < 2:
        return 1.0 if sample.mean == value else 0.0
    t = (sample.mean - value) / (sd / math.sqrt(sample.calls))
    return min(1.0, float(2.0 * stdtr(sample.calls - 1, -abs(t))))


NO_CALLS = Stats(0, 0.0, 0.0)  # a query absent from a window


def net_change(figures: Iterable[QueryFigures]) -> float | None:
    """Time change of the judged queries relative to their time at baseline speed."""
    judged = [f for f in figures if f.measured]
    at_baseline = sum(f.calls_after * f.mean_before for f in judged)
    if not judged or at_baseline <= 0:
        return None
    return sum(f.calls_after * (f.mean_after - f.mean_before) for f in judged) / at_baseline


def baseline_samples(
    windows: Iterable[WorkloadLike], queryids: Collection[int]
) -> tuple[dict[int, Stats], ...]:
    """Each of the baseline's sample-to-sample windows as its queries' figures (for the
    noise floors); a window whose statistics were reset is left out."""
    return tuple(by_queryid(w, queryids) for w in windows if not w.stats_reset)
