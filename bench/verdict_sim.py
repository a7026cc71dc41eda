"""How often verify() rolls back a guard slowed by a partial trap, on known distributions.

    python bench/verdict_sim.py [--verdicts 200] [--seed 11]

Each verdict: a served read 20 → 2 ms (a 10x gain, 300 calls) and 15 unchanged reads of
0.01-5 ms, 30-600 calls, lognormal times of log-sigma 0.3-1.2 (heavy tails), four of them
guards. The first guard is slowed: `factor` times on a `share` of its calls (a trap for some
parameter values), or uniformly. Prints, per `schedule.min_effect`, how many of the
verdicts rolled back. Pure: no database; the figures in bench/RESULTS.md come from here.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_policy import policy
from tests.test_verify import _latencies, entry, window
from tuner.evidence import Stats, pooled
from tuner.models import Outcome
from tuner.verify import Watch, verify

CASES = ((2.0, 0.2), (3.0, 0.3), (5.0, 0.1), (10.0, 0.05), (1.5, 1.0), (1.3, 1.0))


def verdict(rng: random.Random, factor: float, share: float, min_effect: float) -> Outcome:
    before, after = [], []
    for q in range(1000, 1015):
        mean = math.exp(rng.uniform(math.log(0.01), math.log(5.0)))
        calls, spread = rng.randint(30, 600), rng.uniform(0.3, 1.2)
        b = _latencies(rng, calls, mean, spread)
        if q == 1000:  # the trapped guard: `factor` times slower on `share` of its calls
            mu = math.log(mean) - spread**2 / 2
            times = [rng.lognormvariate(mu, spread) for _ in range(calls)]
            a = pooled(Stats(1, t * factor if rng.random() < share else t, 0.0) for t in times)
        else:
            a = _latencies(rng, calls, mean, spread)
        before.append(entry(q, b.calls, b.mean, b.sample_sd))
        after.append(entry(q, a.calls, a.mean, a.sample_sd))
    served_b, served_a = _latencies(rng, 300, 20.0, 0.5), _latencies(rng, 300, 2.0, 0.5)
    before.append(entry(1, served_b.calls, served_b.mean, served_b.sample_sd))
    after.append(entry(1, served_a.calls, served_a.mean, served_a.sample_sd))
    watched = Watch(frozenset({1, *range(1000, 1015)}), guards=frozenset(range(1000, 1004)))
    judged_by = policy(level="moderate", schedule={"min_effect": min_effect})
    return verify(window(*before), window(*after), watched, judged_by).outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verdicts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    print("min_effect factor share rolled_back")
    for min_effect in (0.5, 0.3, 0.0):
        for factor, share in CASES:
            rng = random.Random(args.seed)
            outcomes = [verdict(rng, factor, share, min_effect) for _ in range(args.verdicts)]
            rolled = sum(o is Outcome.ROLLBACK for o in outcomes)
            print(f"{min_effect:10} {factor:6} {share:5} {rolled}/{args.verdicts}")


if __name__ == "__main__":
    main()
