"""The evidence a verdict needs, with plain values and seeded simulations (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.evidence import (
    holm,
    holm_threshold,
    look_level,
    noise_floor,
    relative_spread,
    spent,
    spread,
)
from tuner.verify import Stats, welch_p

RNG_SEED = 20261206


def sample(rng: np.random.Generator, calls: int, mean: float, sd: float) -> Stats:
    """`calls` executions drawn from a normal distribution, as a window's summary."""
    times = rng.normal(mean, sd, calls)
    return Stats(calls, float(times.mean()), float(((times - times.mean()) ** 2).sum()))


def test_holm_rejects_step_down_and_stops_at_the_first_kept() -> None:
    # Sorted: 0.005 <= 0.05/4, 0.01 <= 0.05/3, then 0.03 > 0.05/2 stops (0.04 is kept too).
    found = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005}, 0.05)
    assert found == {"d": pytest.approx(0.0125), "a": pytest.approx(0.05 / 3)}
    assert holm({}, 0.05) == {}
    assert holm({"only": 0.049}, 0.05) == {"only": 0.05}
    assert holm_threshold(16, 0.05) == pytest.approx(0.003125)


def test_holm_holds_the_family_error_where_testing_each_query_alone_does_not() -> None:
    # 15 watched queries, nothing changed (A/A), 1,000 verdicts: testing each at 5 % rolls
    # back about 1 - 0.95^15 = 54 % of them; Holm at most about 5 %.
    rng = np.random.default_rng(RNG_SEED)
    alone = corrected = 0
    for _ in range(1000):
        ps = {q: welch_p(sample(rng, 40, 0.3, 0.1), sample(rng, 40, 0.3, 0.1)) for q in range(15)}
        alone += any(p < 0.05 for p in ps.values())
        corrected += bool(holm(ps, 0.05))
    assert 0.45 < alone / 1000 < 0.62
    assert corrected / 1000 <= 0.065


def test_holm_still_finds_a_real_harm_among_many_unchanged_queries() -> None:
    # One query really slowed 0.3 → 0.6 ms among 14 unchanged: found in nearly every verdict.
    rng = np.random.default_rng(RNG_SEED + 1)
    found = 0
    for _ in range(300):
        ps = {q: welch_p(sample(rng, 40, 0.3, 0.1), sample(rng, 40, 0.3, 0.1)) for q in range(14)}
        ps[99] = welch_p(sample(rng, 40, 0.3, 0.1), sample(rng, 40, 0.6, 0.1))
        found += 99 in holm(ps, 0.05)
    assert found / 300 >= 0.98


def test_the_spending_function_spends_little_early_and_all_by_the_end() -> None:
    assert spent(0.0, 0.05) == 0.0 and spent(1.0, 0.05) == 0.05
    # 2 - 2 Φ(1.96 / √0.25) = 2 - 2 Φ(3.92) ≈ 8.9e-5; at half the window ≈ 0.0056.
    assert spent(0.25, 0.05) == pytest.approx(8.86e-5, rel=0.01)
    assert spent(0.5, 0.05) == pytest.approx(0.00558, rel=0.01)
    levels = [look_level(j, 4, j - 1, 0.05) for j in range(1, 5)]
    assert levels == sorted(levels) and sum(levels) == pytest.approx(0.05)
    # A skipped look (the job ran late) hands its share to the next one taken.
    assert look_level(3, 4, 1, 0.05) == pytest.approx(levels[1] + levels[2])
    with pytest.raises(ValueError, match="look 2 after 2 of 4"):
        look_level(2, 4, 2, 0.05)  # tried: a look repeated


def test_looking_four_times_at_a_growing_window_keeps_the_error_at_the_level() -> None:
    # A/A, the window's calls arriving in four quarters; each look tests everything so far
    # at its spent share: over 2,000 verdicts the rate of any rejection stays near 5 %.
    rng = np.random.default_rng(RNG_SEED + 2)
    rejected = 0
    base = sample(rng, 200, 1.0, 0.3)
    for _ in range(2000):
        times = rng.normal(1.0, 0.3, 200)
        for look in range(1, 5):
            part = times[: 50 * look]
            now = Stats(len(part), float(part.mean()), float(((part - part.mean()) ** 2).sum()))
            if welch_p(base, now) < look_level(look, 4, look - 1, 0.05):
                rejected += 1
                break
    assert rejected / 2000 <= 0.065


def test_an_overwhelming_effect_passes_the_first_looks_small_level() -> None:
    # 20 ms → 0.05 ms over a quarter of the window's calls: p is far below 9e-5.
    rng = np.random.default_rng(RNG_SEED + 3)
    p = welch_p(sample(rng, 50, 20.0, 4.0), sample(rng, 50, 0.05, 0.01))
    assert p < look_level(1, 4, 0, 0.05)


def test_the_noise_floor_is_the_spread_of_the_baselines_per_sample_means() -> None:
    # Means 1.0, 1.2, 0.8 with equal calls: variance of the means 0.04 (n - 1), spread 0.2.
    assert spread([(10, 1.0), (10, 1.2), (10, 0.8)]) == pytest.approx(0.2)
    assert noise_floor([(10, 1.0), (10, 1.2), (10, 0.8)], 2.0) == pytest.approx(0.4)
    # Samples without calls do not count; fewer than three with calls: no floor.
    assert noise_floor([(10, 1.0), (0, 0.0), (10, 1.2)], 2.0) is None
    assert noise_floor([], 2.0) is None
    # A steady query has a floor near zero, so a real slowdown of it still counts.
    assert noise_floor([(100, 0.05)] * 5, 2.0) == pytest.approx(0.0)


def test_the_machines_relative_spread_lifts_the_floor_of_a_steady_query() -> None:
    # Two queries drift by 10 % and 20 % of their means from sample to sample; a third,
    # 0.018 ms, agrees with itself to the microsecond: its floor is the machine's 15 %.
    noisy = [(10, 1.0), (10, 1.1), (10, 0.9)]  # spread 0.1 on a mean of 1.0
    noisier = [(10, 2.0), (10, 2.4), (10, 1.6)]  # spread 0.4 on 2.0
    steady = [(10, 0.018), (10, 0.018), (10, 0.018)]
    relative = relative_spread([noisy, noisier, steady])
    assert relative == pytest.approx(0.1)  # the median of 0.1, 0.2 and 0.0
    assert noise_floor(steady, 2.0, relative) == pytest.approx(2 * 0.1 * 0.018)
    assert noise_floor(noisier, 2.0, relative) == pytest.approx(0.8)  # its own is larger
    assert noise_floor([(10, 0.5)], 2.0, relative) == pytest.approx(0.1)  # one sample
    assert relative_spread([]) is None
