"""Baseline vs verification window: keep the change, roll it back, or wait (pure).

The recipe:
  1. Which queries to watch: those whose plan shape (node types, index names) the change
     altered — `affected(plans_before, plans_after)` from EXPLAIN before and after — plus the
     ones the advisor expected to serve, plus (for a new index) the reads that filter, join,
     sort or group by its leading column, whose plans for some values may change even when
     the generic plan does not (`may_use`); and the writes to the table (INSERT, UPDATE, DELETE
     statements on it: `write_queries`), pooled into one write path.
  2. Per watched query, and for the write path: calls, mean before and after, change, and
     Welch's t-test from the windows' summary statistics. A query with fewer than
     `schedule.min_calls` calls in either window is not judged ("too few calls").
  3. Any significant slowdown beyond `max_query_regression`, of one query or of the writes
     (their own `max_write_regression` when set) — significant across the whole watched
     set: Holm's step-down over every test of the verdict at `schedule.significance`
     (`evidence.holm`; one of fifteen unchanged queries looks slower at 5 % in half the
     verdicts), and only when each write also takes `write_regression_floor_ms` longer, each
     read `read_regression_floor_ms`; unset, each floor is the baseline's own noise,
     `noise_floor_factor` times the spread of its per-sample means (`evidence.noise_floor`);
     and, short of `obvious_harm` (twice as long), only when the mean moved at least
     `min_effect` of a call's standard deviation (`QueryFigures.effect`: thousands of calls
     make a shift of a fifth of the spread significant, as a lookup's few microseconds
     when the machine gets busier; a trap moves its read by several spreads) →
     rollback at once, naming it. A team may set the floor where a commit's disk flush
     dwarfs +0.1 ms of execution per write; what it costs in all is still weighed by the
     net change. When another read got significantly faster and the writes did not slow
     beyond the bound, the slowed reads are the verdict's `trapped`: the daemon may shield
     them and try the index again (`Advisor.shields`).
  4. Net change: sum(calls_after * (mean_after - mean_before)) over the judged queries and the
     write path, divided by sum(calls_after * mean_before) — the time they took relative to
     what they would have taken at baseline speed, with the verification window's mix of
     calls (so a busier window is not mistaken for a slower one). The reads watched only
     because they may use the index (`Watch.guards`) are left out: a long report joining
     on the new index's leading column, its plan unchanged, would outweigh the gain of the
     query the index was built for by its size and its drift alone.
     A guard is judged against its baseline scaled by the load (`load_change`): how much
     the busiest statements on other tables (`Watch.controls`, which the change cannot
     have touched) slowed between the same windows (never scaled down when they ran
     faster). A planner's trap slows its read many times over, beyond any load; a read
     that slowed about as much as every other statement did was slowed by the machine.
     A change that adds no index (a drop; `by_load`) has every watched read and the writes
     judged so: it takes work away, so the machine is no slower for it, and the queries
     it moves to another index slow together with everything else when the machine does
     (an A/A of identical twins, tests/test_verify_live.py: eight reads ±30 % together
     between windows a second apart, one of them past Holm's threshold in one run of 25).
  5. Keep when every watched query was judged, the net change is a fall of at least
     `min_net_gain`, and at least one read other than a guard got significantly faster.
     When some watched query has too few calls, or the gain is not yet significant:
     undecided, extend the window, up to `schedule.max_window_extensions` times. After
     that, undecided becomes a rollback — "could not prove a gain": an index stays only
     when it is shown to pay. A query still too rare to test then rolls back by its mean
     beyond the bound — unless it ran once in the baseline and a one-sample t-test puts
     that time within the spread of its calls after, or twice or more (and twice after)
     and Welch's test finds no difference at `schedule.significance`. A guard too rare to
     test rolls back only by an obvious harm (`obvious_harm`, as at an interim look): its
     plan did not change, and a gain that frees the clients multiplies its calls and the
     machine's work after, so its few baseline calls are no measure of its speed (bench/
     verification.py: 16 calls before, 600 after, +35 %); a trap slows it 2-1,000x.
     With every query judged and the net gain short of the bar: rollback.
     A drop (`gain_needed` False) has no gain to prove — what it saves, storage and write
     time, was weighed before it was approved (an index unused for `drop_unused_after`, or
     one that another index duplicates) — so it is kept once every watched query was judged
     (or the window extensions ran out) and none slowed significantly beyond the bound. Its
     net change is reported, not judged: a rise of many watched queries' time together,
     each within the bound or not significant, is the machine's (bench/RESULTS.md has the
     measurements that showed it, for a dropped duplicate and for a shield). Nor has a shield
     (`Advisor.shields`): its gain is the index it lets back in, which is then tried again
     and must prove its own; the read it covers may already be fast without either.
  6. A statement that never finished in the baseline (cancelled by a statement_timeout, or
     still running; the sampler captured it with its literals) has no baseline in
     pg_stat_statements: its longest observed durations are a lower bound of its time
     (`bounds`). Once it finishes after the change, it is judged against that bound by a
     one-sample t-test; only a gain is inferred from it, never a slowdown.
  7. The window is the longest a verdict takes: it is looked at `verification_looks` times
     (`look`), each look testing at the share of the level an O'Brien-Fleming spending
     function adds there (`evidence.look_level`). At an interim look a slowdown that passes
     and takes at least `obvious_harm` longer (twice as long) rolls back at once; a
     gain keeps only when every watched query frequent in the baseline has its `min_calls`,
     the net change makes the bar, and no query looks slower beyond the bound even at the
     whole level, uncorrected. Anything less waits; a drop or a
     shield waits for the window's end, unless it watches nothing (no plan changed, no
     write it could slow: an unused index, or a duplicate whose keeper answers its
     lookups), which no window could show anything of. Each verdict says how it was decided
     (`Verdict.method`: the test, the look, the level, the threshold, the floors).
A verification window whose statistics were reset is discarded (undecided, `discarded`), and
does not count as an extension. A reset baseline cannot be verified against: rollback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from tuner import evidence
from tuner.config import Policy

# The figures and the statistics moved to tuner.evidence, what to watch to tuner.watch;
# importable from here as before.
from tuner.evidence import NO_CALLS
from tuner.evidence import EntryLike as EntryLike
from tuner.evidence import Stats as Stats
from tuner.evidence import WorkloadLike as WorkloadLike
from tuner.evidence import baseline_samples as baseline_samples
from tuner.evidence import by_queryid as by_queryid
from tuner.evidence import compare as compare
from tuner.evidence import compare_bound as compare_bound
from tuner.evidence import load_change as load_change
from tuner.evidence import net_change as net_change
from tuner.evidence import one_sample_p as one_sample_p
from tuner.evidence import pooled as pooled
from tuner.evidence import scaled as scaled
from tuner.evidence import spoiled as spoiled
from tuner.evidence import welch_p as welch_p
from tuner.models import Method, Outcome, QueryFigures, Verdict
from tuner.watch import Watch as Watch
from tuner.watch import affected as affected
from tuner.watch import may_use as may_use
from tuner.watch import plan_shape as plan_shape
from tuner.watch import watch as watch
from tuner.watch import watched_queries as watched_queries
from tuner.watch import write_queries as write_queries

# --- the verdict -----------------------------------------------------------------------------


def verify(
    baseline: WorkloadLike,
    after: WorkloadLike,
    watched: Watch,
    policy: Policy,
    extensions: int = 0,
    bounds: Mapping[int, Stats] | None = None,
    gain_needed: bool = True,
    samples: Sequence[Mapping[int, Stats]] = (),
    look: int | None = None,
    previous: int = 0,
    by_load: bool = False,
) -> Verdict:
    """keep | rollback | undecided, with the figures that decided it (see the module recipe).

    `extensions` is how many times this verification window has already been extended;
    `bounds` the lower-bound baselines of statements that never finished before (step 6);
    `gain_needed` False for a drop or a shield (step 5); `samples` the baseline's
    per-sample figures, for the noise floors (step 3); `look` an interim look at the window
    (1 .. verification_looks - 1; None: the window's end), `previous` the last look taken
    (step 7: an interim look decides only on overwhelming evidence, else undecided);
    `by_load` judges every watched read and the writes against the load, as guards are
    (step 4: for a change that adds no index, as a drop).
    """
    ids = watched_queries(watched)
    if (why := spoiled(after, ids)) is not None:
        return Verdict(
            Outcome.UNDECIDED,
            f"verification window discarded: {why}",
            extensions=extensions,
            discarded=True,
        )
    if (why := spoiled(baseline, ids)) is not None:
        return Verdict(
            Outcome.ROLLBACK,
            f"could not prove a gain: the baseline window is unusable: {why}",
            extensions=extensions,
        )
    t, schedule = policy.resolved, policy.schedule
    stats_before, stats_after = by_queryid(baseline, ids), by_queryid(after, ids)
    load = load_change(stats_before, stats_after, watched.controls, schedule.min_calls)
    reads = []
    for queryid in sorted(watched.reads):
        before, now = stats_before.get(queryid, NO_CALLS), stats_after.get(queryid, NO_CALLS)
        if (by_load or queryid in watched.guards) and load is not None and load > 0:
            before = scaled(before, 1.0 + load)  # its baseline at the load after
        if before.calls or now.calls:
            reads.append(compare(queryid, "read", before, now, policy))
    found_after = by_queryid(after, (bounds or {}).keys())
    for queryid, lower in sorted((bounds or {}).items()):
        now = found_after.get(queryid, NO_CALLS)
        if queryid not in stats_before and now.calls and now.mean < lower.mean:
            reads.append(compare_bound(queryid, lower, now, policy))  # only ever a gain
    writes: QueryFigures | None = None
    w_before = pooled(stats_before[q] for q in watched.writes if q in stats_before)
    if by_load and load is not None and load > 0:
        w_before = scaled(w_before, 1.0 + load)
    w_after = pooled(stats_after[q] for q in watched.writes if q in stats_after)
    if w_before.calls or w_after.calls:
        writes = compare(None, "write", w_before, w_after, policy)
    looks = schedule.verification_looks
    level = evidence.look_level(min(look or looks, looks), looks, min(previous, looks - 1),
                                schedule.significance)  # fmt: skip
    figures = [*reads, *((writes,) if writes else ())]
    p_values = {i: f.p_value for i, f in enumerate(figures) if f.p_value is not None}
    if schedule.correction == "holm":
        passed = evidence.holm(p_values, level)
        test = f"Welch t, Holm over {len(p_values)} test{'s' if len(p_values) != 1 else ''}"
    else:
        passed = {i: level for i, p in p_values.items() if p < level}
        test = "Welch t, each query alone"
    figures = [_significance(f, i in passed) for i, f in enumerate(figures)]
    thresholds = {_key(figures[i]): threshold for i, threshold in passed.items()}
    reads, writes = figures[: len(reads)], (figures[-1] if writes is not None else None)
    everything = [*reads, *((writes,) if writes else ())]
    net = net_change(f for f in everything if f.queryid not in watched.guards)
    floors = _floors(samples, watched, policy)

    def floor_of(f: QueryFigures) -> float:
        return floors.get(_key(f), 0.0)

    def decided(by: Sequence[QueryFigures] = ()) -> Method:
        """How this verdict was reached: the strictest threshold of the figures that decided
        it (none: no test did) and the floors it applied."""
        used = [thresholds[_key(f)] for f in by if _key(f) in thresholds]
        deciding = [f for f in by if f.role != "write" and _key(f) in floors]
        read_floors = [floors[_key(f)] for f in deciding or reads if _key(f) in floors
                       and f.role != "write"]  # fmt: skip
        write_floor = floors.get(_key(writes)) if writes is not None else None
        source = "policy" if _policy_floors(policy) else "measured" if floors else "none"
        return Method(test, look or looks, looks, level, min(used) if used else None,
                        max(read_floors) if read_floors else None,
                        write_floor, source, "every query" if by_load else "guards")  # fmt: skip

    def verdict(
        outcome: Outcome, reason: str, trapped: tuple[int, ...] = (),
        by: Sequence[QueryFigures] = (),
    ) -> Verdict:  # fmt: skip
        return Verdict(outcome, reason, tuple(reads), writes, net, extensions, trapped=trapped,
                       load_change=load, method=decided(by))  # fmt: skip

    if not everything:
        if not gain_needed and not watched.reads and not watched.writes:
            # Nothing a window could show: decided at the first look.
            return verdict(Outcome.KEEP, "nothing to watch: no query's plan changed, and no "
                           "write can be slowed by it")  # fmt: skip
        if not gain_needed and look is not None and look < schedule.verification_looks:
            return verdict(Outcome.UNDECIDED, f"look {look}: a drop or a shield waits for the "
                           "window's end")  # fmt: skip
        if not gain_needed:
            return verdict(Outcome.KEEP, "no watched query ran: nothing it served was slowed")
        return verdict(Outcome.ROLLBACK, "could not prove a gain: no watched query ran")
    bound = t.max_query_regression
    write_bound = bound if t.max_write_regression is None else t.max_write_regression

    def beyond(f: QueryFigures, change: float) -> bool:
        write = f.role == "write"
        if f.mean_after - f.mean_before <= floor_of(f):
            return False  # within the floor: only the net gain weighs it
        if f.small and change < schedule.obvious_harm:
            return False  # a small effect: only the net gain weighs it
        return change > (write_bound if write else bound)

    interim = look is not None and look < looks

    def obvious(f: QueryFigures) -> bool:
        """At an interim look only an obvious harm rolls back: a query that takes at least
        `obvious_harm` longer (1.0: twice as long). The first seconds after a build are not
        the steady state: fast lookups may run a few microseconds slower at the first look,
        significantly, beside a gain thousands of times larger (bench/verification.py); a
        trap is 2-1,000x."""
        return not interim or (f.change is not None and f.change >= schedule.obvious_harm)

    regressed = [
        f for f in everything
        if f.significant and f.change is not None and beyond(f, f.change) and obvious(f)
    ]  # fmt: skip
    faster = [
        f
        for f in reads
        if f.significant and f.change is not None and f.change < 0
        and f.queryid not in watched.guards  # a guard's drift proves nothing either way
    ]  # fmt: skip
    if regressed:
        worst = ", ".join(f.describe() for f in regressed)
        shown = (
            f"{bound:.0%}" if write_bound == bound else f"{bound:.0%} (writes {write_bound:.0%})"
        )
        # Trapped: reads slowed by an index that serves others; not when the writes also
        # slowed beyond the bound (no shield would let that index stay).
        slowed = tuple(f.queryid for f in regressed if f.queryid is not None and f.role == "read")
        writes_too = any(f.role == "write" for f in regressed)
        whose = "the baselines" if by_load else "a guard's baseline"
        loaded = (
            f" ({whose} scaled by the load: statements on other tables ran {load:+.1%} in "
            "the same windows)"
            if load is not None
            and load > 0
            and (by_load or any(f.queryid in watched.guards for f in regressed))
            else ""
        )
        return verdict(
            Outcome.ROLLBACK,
            f"slowed beyond the {shown} bound: {worst}{loaded}",
            trapped=slowed if faster and not writes_too else (),
            by=regressed,
        )
    pending = [f for f in everything if not f.measured]
    if interim:
        # An interim look: only overwhelming evidence keeps (the gain passed this look's
        # small level, and no watched query looks slower beyond the bound even at the whole
        # level, uncorrected); a drop or a shield, with no gain to show, waits for the end.
        doubtful = [f for f in everything if f.p_value is not None and f.change is not None
                    and f.p_value < schedule.significance and beyond(f, f.change)]  # fmt: skip
        net_gain = net is not None and net <= -t.min_net_gain
        # A query rare in the baseline is not waited for (the baseline never grows), but
        # must not look slower; one the after window has not yet caught up with is.
        waited = [f for f in pending if f.calls_before >= schedule.min_calls
                  or f.role == "bound" or (_looks_slower(f) and beyond(f, _change(f)))]  # fmt: skip
        if gain_needed and not waited and not doubtful and net_gain and faster:
            gains = ", ".join(f.describe() for f in faster)
            return verdict(
                Outcome.KEEP,
                f"net change {net:+.1%} of the watched queries' time by look {look} of "
                f"{looks}; {gains}{_small(everything, schedule.min_effect)}",
                by=faster,
            )
        return verdict(Outcome.UNDECIDED, f"look {look} of {looks}: evidence not yet decisive")
    # A rare query cannot be tested; after the last extension (or when only the baseline,
    # which never grows, is short of calls) its point estimate still may not exceed the bound
    # — unless one baseline call is all there is, and it lies within the after window's spread.
    waiting_helps = any(f.calls_before >= schedule.min_calls or f.role == "bound" for f in pending)
    final = extensions >= schedule.max_window_extensions or not waiting_helps

    def within_spread(f: QueryFigures) -> bool:
        """One baseline call has no spread of its own: its time is judged against the after
        window's (a 200 ms report once before and 237 ± 40 ms six times after is noise).
        With two calls or more on each side, Welch's test judges it all the same: a heavy
        report's mean from a few calls moves by a fifth with the machine (bench/daemon.py
        run Q: 374 → 452 ms on 2/5 calls), a trap by many spreads."""
        if f.queryid is not None:
            before = stats_before.get(f.queryid, NO_CALLS)
            after_stats = stats_after.get(f.queryid, NO_CALLS)
        else:
            before, after_stats = w_before, w_after
        if after_stats.calls < 2 or f.calls_before < 1:
            return False
        if f.calls_before == 1:
            return one_sample_p(after_stats, f.mean_before) >= schedule.significance
        # at the mean it was judged by (a guard's scaled by the load)
        before = scaled(before, f.mean_before / before.mean) if before.mean > 0 else before
        return welch_p(before, after_stats) >= schedule.significance

    if pending and final:
        slower = [
            f
            for f in pending
            if _looks_slower(f) and beyond(f, _change(f)) and not within_spread(f)
            and (f.queryid not in watched.guards or _change(f) >= schedule.obvious_harm)
        ]  # fmt: skip
        if slower:
            worst = ", ".join(_point(f) for f in slower)
            return verdict(
                Outcome.ROLLBACK,
                f"a rarely called query looks slower beyond the {bound:.0%} bound (too few "
                f"calls to test): {worst}",
                by=slower,
            )
    net_text = "no judged queries" if net is None else f"net change {net:+.1%}"
    if not gain_needed and (not pending or final):
        rare = f"; {len(pending)} rarely called, none looks slower" if pending else ""
        # Kept whatever the net change: a drop or a shield has no gain to prove (what a
        # drop saves was weighed when it was approved; a shield's gain is the index it
        # lets back in), only that nothing it watches slowed beyond the bound.
        together = (
            ""
            if net is None
            else f"; their net change {net:+.1%} (each query within "
            "the bound or not significantly slower) is reported, not judged: a drop or a "
            "shield needs no gain"
        )
        return verdict(
            Outcome.KEEP,
            f"none of the watched queries slowed significantly beyond the {bound:.0%} "
            f"bound{together}{rare}",
        )
    if (not pending or final) and net is not None and net > -t.min_net_gain:
        return verdict(
            Outcome.ROLLBACK,
            f"{net_text} of the watched queries' time; keeping needs a fall of "
            f"{t.min_net_gain:.0%}",
        )
    if (not pending or final) and net is not None and faster:
        gains = ", ".join(f.describe() for f in faster)
        rare = f"; {len(pending)} rarely called, none looks slower" if pending else ""
        return verdict(
            Outcome.KEEP,
            f"{net_text} of the watched queries' time; {gains}{rare}"
            f"{_small(everything, schedule.min_effect)}",
            by=faster,
        )
    if pending:
        missing = f"{len(pending)} watched quer{'y has' if len(pending) == 1 else 'ies have'} "
        why = missing + f"fewer than {schedule.min_calls} calls in a window; {net_text}"
    else:
        why = f"{net_text} but no query is significantly faster"
    if extensions < schedule.max_window_extensions:
        return verdict(Outcome.UNDECIDED, f"extend the window: {why}")
    return verdict(
        Outcome.ROLLBACK,
        f"could not prove a gain after {extensions} extensions: {why}",
    )


def _small(figures: Sequence[QueryFigures], min_effect: float) -> str:
    """The significant slowdowns that a keep let pass as small effects."""
    small = [f for f in figures if f.significant and f.small and (f.change or 0.0) > 0]
    if not small:
        return ""
    slowed = ", ".join(f"{f.describe()}, effect {f.effect:.2f}" for f in small)
    return (
        f"; slower, significantly but by a small effect (under {min_effect:g} of a "
        f"call's standard deviation): {slowed}"
    )


def _significance(f: QueryFigures, significant: bool) -> QueryFigures:
    return f if f.significant == significant else replace(f, significant=significant)


def _key(f: QueryFigures) -> int | None:
    """A figure's key among the verdict's: its query id, None for the pooled writes."""
    return f.queryid if f.role != "write" else None


def _policy_floors(policy: Policy) -> bool:
    t = policy.resolved
    return t.read_regression_floor_ms is not None or t.write_regression_floor_ms is not None


def _floors(
    samples: Sequence[Mapping[int, Stats]], watched: Watch, policy: Policy
) -> dict[int | None, float]:
    """The floor (ms) each watched read's slowdown must clear, and the writes' (key None):
    the policy's where set, else the baseline's noise (`evidence.noise_floor`): the query's
    own spread, and at least the machine's — the median relative spread of all the queries
    the samples hold, times the query's mean (a steady 0.018 ms read whose own samples
    agree to 1.5 µs still moves by the load's 15 % between windows); a key left out has no
    floor (too few samples to measure one)."""
    t, factor = policy.resolved, policy.schedule.noise_floor_factor
    series: dict[int | None, list[tuple[int, float]]] = {
        q: [(s[q].calls, s[q].mean) for s in samples if q in s]
        for q in {q for s in samples for q in s}
    }
    if watched.writes:
        paths = [pooled(s[q] for q in watched.writes if q in s) for s in samples]
        series[None] = [(p.calls, p.mean) for p in paths]
    relative = evidence.relative_spread(series.values())
    floors: dict[int | None, float] = {}
    for key in (*watched.reads, None):
        fixed = t.read_regression_floor_ms if key is not None else t.write_regression_floor_ms
        if fixed is not None:
            floors[key] = fixed
        elif key in series and (floor := evidence.noise_floor(series[key], factor,
                                                               relative)) is not None:  # fmt: skip
            floors[key] = floor
    return floors


def _looks_slower(f: QueryFigures) -> bool:
    """An untested query whose mean rose (it ran in both windows)."""
    return bool(f.calls_before and f.calls_after and f.mean_before > 0) and _change(f) > 0


def _change(f: QueryFigures) -> float:
    return (f.mean_after - f.mean_before) / f.mean_before


def _point(f: QueryFigures) -> str:
    what = "writes" if f.queryid is None else f"query {f.queryid}"
    change = _change(f)
    return (
        f"{what}: {f.mean_before:.3f} → {f.mean_after:.3f} ms ({change:+.1%}, "
        f"{f.calls_before}/{f.calls_after} calls)"
    )
