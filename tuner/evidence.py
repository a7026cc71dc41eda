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
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from scipy.special import ndtr, ndtri

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
