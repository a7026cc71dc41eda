"""workload.diff on plain values: exact window statistics, resets and evictions, table rates."""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner import workload
from tuner.models import (
    LongRunning,
    QueryStat,
    QueryWindow,
    ServerStat,
    Snapshot,
    TableRef,
    TableStat,
)
from tuner.sampler import fingerprint

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RESET = datetime(2026, 2, 1, tzinfo=UTC)


@dataclass
class Entry:
    """One pg_stat_statements entry, accumulated the way pgss_store() does it."""

    queryid: int = 42
    query: str = "SELECT * FROM t WHERE id = $1"
    calls: int = 0
    total: float = 0.0
    mean: float = 0.0
    sum_var: float = 0.0
    min: float = 0.0
    max: float = 0.0
    rows: int = 0

    def run(self, *times: float) -> Entry:
        for t in times:
            self.calls += 1
            self.total += t
            self.rows += 1
            if self.calls == 1:
                self.mean = self.min = self.max = t
            else:
                old = self.mean
                self.mean += (t - old) / self.calls
                self.sum_var += (t - old) * (t - self.mean)
                self.min, self.max = min(self.min, t), max(self.max, t)
        return self

    def stat(self) -> QueryStat:
        stddev = math.sqrt(self.sum_var / self.calls) if self.calls > 1 else 0.0
        return QueryStat(
            userid=10, dbid=5, queryid=self.queryid, toplevel=True, query=self.query,
            calls=self.calls, total_exec_time=self.total, mean_exec_time=self.mean,
            stddev_exec_time=stddev, min_exec_time=self.min, max_exec_time=self.max,
            rows=self.rows, shared_blks_hit=10 * self.rows, shared_blks_read=self.rows,
        )  # fmt: skip


def server(**changes: object) -> ServerStat:
    base = ServerStat(
        version_num=150000, version="PostgreSQL 15", database="app", dbid=5,
        settings={"max_connections": "100"}, in_recovery=False, blks_hit=990, blks_read=10,
        xact_commit=1, xact_rollback=0, deadlocks=0, temp_bytes=0,
        sessions_by_state={"active": 1, "idle": 4}, active_sessions=1, total_sessions=5,
        max_connections=100, oldest_xact_age=None, waiting_locks=0, replicas=(), index_builds=(),
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def table(name: str = "t", relid: int = 100, **counts: int) -> TableStat:
    values = dict.fromkeys(
        ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_ins", "n_tup_upd",
         "n_tup_del", "n_tup_hot_upd", "n_mod_since_analyze", "heap_blks_hit", "heap_blks_read",
         "n_dead_tup"), 0,
    )  # fmt: skip
    values.update(counts)
    return TableStat(
        relid=relid, table=TableRef("public", name), size_bytes=8192 * 100, indexes_bytes=8192,
        reltuples=1000.0, n_live_tup=counts.get("n_live_tup", 1000),
        last_vacuum=None, last_autovacuum=T0 - timedelta(hours=1), last_analyze=None,
        last_autoanalyze=T0 - timedelta(hours=1),
        **{k: v for k, v in values.items() if k != "n_live_tup"},
    )  # fmt: skip


def snap(
    seconds: float,
    queries: tuple[QueryStat, ...] = (),
    *,
    stats_reset: datetime | None = RESET,
    dealloc: int = 0,
    tables: tuple[TableStat, ...] = (),
    long_running: tuple[LongRunning, ...] = (),
    **server_changes: object,
) -> Snapshot:
    return Snapshot(
        taken_at=T0 + timedelta(seconds=seconds), monotonic=1000.0 + seconds,
        server=server(**server_changes), queries=queries, stats_reset=stats_reset,
        dealloc=dealloc, tables=tables, indexes=(), long_running=long_running,
    )  # fmt: skip


times = st.floats(min_value=0.001, max_value=5000.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(history=st.lists(times, max_size=200), window=st.lists(times, min_size=1, max_size=200))
def test_window_mean_and_variance_match_a_direct_computation(
    history: list[float], window: list[float]
) -> None:
    entry = Entry().run(*history)
    before = snap(0, (entry.stat(),) if history else ())
    after = snap(60, (entry.run(*window).stat(),))

    result = workload.diff(before, after)

    (q,) = result.queries
    assert q.valid, q.invalid_reason
    assert q.calls == len(window)
    assert q.rows == len(window)
    check_window(q, window, history)


def check_window(q: QueryWindow, window: list[float], history: list[float]) -> None:
    """Rounding in the subtractions is relative to the whole history, not to the window."""
    total = math.fsum(history + window)
    assert q.total_ms == pytest.approx(math.fsum(window), rel=1e-9, abs=1e-12 * total)
    assert q.mean_ms == pytest.approx(
        statistics.fmean(window), rel=1e-9, abs=1e-12 * total / len(window)
    )
    squares = math.fsum(x * x for x in history + window)
    expected = statistics.variance(window) if len(window) > 1 else 0.0
    tolerance = 1e-9 * squares / max(len(window) - 1, 1) + 1e-12
    assert abs(q.variance_ms2 - expected) <= tolerance
    assert q.m2 == pytest.approx(expected * (len(window) - 1), abs=tolerance * len(window))


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.lists(times, min_size=2, max_size=50), min_size=3, max_size=3))
def test_consecutive_windows_each_match_their_own_calls(parts: list[list[float]]) -> None:
    entry = Entry()
    snapshots = [snap(0)]
    for i, part in enumerate(parts, start=1):
        snapshots.append(snap(60 * i, (entry.run(*part).stat(),)))
    for i, (before, after) in enumerate(itertools.pairwise(snapshots)):
        (q,) = workload.diff(before, after).queries
        assert q.calls == len(parts[i])
        check_window(q, parts[i], [x for part in parts[:i] for x in part])


def test_known_window_by_hand() -> None:
    # History 10, 10, 10; window 20, 40: mean 30, sample variance 200.
    entry = Entry().run(10, 10, 10)
    before = snap(0, (entry.stat(),))
    after = snap(30, (entry.run(20, 40).stat(),))
    (q,) = workload.diff(before, after).queries
    assert (q.calls, q.total_ms, q.mean_ms) == (2, 60.0, 30.0)
    assert q.variance_ms2 == pytest.approx(200.0)
    assert q.stddev_ms == pytest.approx(math.sqrt(200.0))


def test_queries_without_calls_in_the_window_are_left_out() -> None:
    busy, idle = Entry(1).run(1, 2), Entry(2, "SELECT 2").run(5)
    before = snap(0, (busy.stat(), idle.stat()))
    after = snap(10, (busy.run(3).stat(), idle.stat()))
    assert [q.queryid for q in workload.diff(before, after).queries] == [1]


def test_a_reset_of_pg_stat_statements_invalidates_every_query() -> None:
    entry = Entry().run(5, 5, 5)
    before = snap(0, (entry.stat(),))
    after = snap(60, (Entry().run(7).stat(),), stats_reset=T0 + timedelta(seconds=30))
    result = workload.diff(before, after)
    assert result.stats_reset
    (q,) = result.queries
    assert not q.valid and q.calls == 0
    assert q.invalid_reason is not None and "reset" in q.invalid_reason
    assert result.total_ms == 0.0


def test_counters_going_backwards_invalidate_the_query() -> None:
    # pg_stat_statements_reset(userid, dbid, queryid) resets one entry; stats_reset stays.
    before = snap(0, (Entry().run(5, 5, 5, 5).stat(),))
    after = snap(60, (Entry().run(9).stat(),))
    (q,) = workload.diff(before, after).queries
    assert not q.valid
    assert q.invalid_reason is not None and "backwards" in q.invalid_reason


def test_an_entry_evicted_and_added_again_with_more_calls_is_caught_by_min_max() -> None:
    # Evicted (dealloc grew) and re-added; it has since run more often than before, so the
    # counters alone look fine, but its max can only have grown if the entry was continuous.
    before = snap(0, (Entry().run(1, 100).stat(),))
    after = snap(60, (Entry().run(2, 3, 40, 90).stat(),), dealloc=3)
    (q,) = workload.diff(before, after).queries
    assert not q.valid
    assert q.invalid_reason is not None and "min/max" in q.invalid_reason


def test_a_query_that_disappeared_is_reported_invalid() -> None:
    before = snap(0, (Entry().run(5).stat(),))
    after = snap(60, (), dealloc=1)
    (q,) = workload.diff(before, after).queries
    assert not q.valid
    assert q.invalid_reason is not None and "evicted" in q.invalid_reason


def test_a_new_query_counts_all_its_calls_unless_entries_were_evicted() -> None:
    new = Entry().run(4, 6).stat()
    (q,) = workload.diff(snap(0), snap(60, (new,))).queries
    assert q.valid and q.calls == 2 and q.mean_ms == 5.0 and q.variance_ms2 == 2.0

    (q,) = workload.diff(snap(0, dealloc=2), snap(60, (new,), dealloc=5)).queries
    assert not q.valid
    assert q.invalid_reason is not None and "evicted 3 entries" in q.invalid_reason


def test_dealloc_growing_while_a_query_calls_dropped_is_invalid() -> None:
    before = snap(0, (Entry().run(5, 6, 7).stat(),), dealloc=0)
    after = snap(60, (Entry().run(5, 6).stat(),), dealloc=10)
    (q,) = workload.diff(before, after).queries
    assert not q.valid


def test_inconsistent_variance_is_invalid_not_negative() -> None:
    # A made-up reading whose M2 shrank far beyond rounding: never report a negative variance.
    entry = Entry().run(1, 100, 1, 100)
    before_stat = entry.stat()
    after_stat = replace(entry.run(50, 50).stat(), stddev_exec_time=0.1)
    (q,) = workload.diff(snap(0, (before_stat,)), snap(60, (after_stat,))).queries
    assert not q.valid
    assert q.invalid_reason is not None and "inconsistent" in q.invalid_reason


def test_table_rates_per_second() -> None:
    before = snap(0, tables=(table(seq_scan=10, idx_scan=100, n_tup_ins=50),))
    after = snap(20, tables=(table(seq_scan=30, idx_scan=300, n_tup_ins=250, n_tup_upd=40,
                                   n_tup_del=20),))  # fmt: skip
    (t,) = workload.diff(before, after).tables
    assert t.valid and t.seconds == 20
    assert (t.seq_scans_per_s, t.idx_scans_per_s) == (1.0, 10.0)
    assert (t.inserts_per_s, t.updates_per_s, t.deletes_per_s) == (10.0, 2.0, 1.0)
    assert t.writes_per_s == 13.0


def test_table_statistics_reset_or_recreated() -> None:
    before = snap(0, tables=(table(seq_scan=10), table("u", relid=200, seq_scan=10)))
    after = snap(10, tables=(table(seq_scan=3), table("u", relid=201, seq_scan=3)))
    windows = {t.table.name: t for t in workload.diff(before, after).tables}
    assert not windows["t"].valid and windows["t"].invalid_reason is not None
    # "u" was dropped and created again: its counters start from zero, all inside the window.
    assert windows["u"].valid and windows["u"].seq_scan == 3


def _long(pid: int, text: str, started: float, duration: float) -> LongRunning:
    return LongRunning(
        pid=pid, user="app", query=text, fingerprint=fingerprint(text),
        started_at=T0 + timedelta(seconds=started), duration=duration, state="active",
        wait_event=None,
    )  # fmt: skip


def test_long_running_statements_are_folded_by_fingerprint() -> None:
    slow = "SELECT * FROM orders WHERE note LIKE '%late%' AND id > 10"
    other_literals = "select *  from orders where note like '%early%' and id > 99"
    before = snap(0, long_running=(_long(7, slow, -10, 10.0),))
    after = snap(60, long_running=(_long(7, slow, -10, 70.0), _long(8, other_literals, 50, 10.0),
                                   _long(9, "VACUUM orders", 0, 60.0)))  # fmt: skip
    groups = workload.diff(before, after).long_running
    assert len(groups) == 2
    orders = next(g for g in groups if "orders" in g.example and "VACUUM" not in g.example)
    assert orders.count == 2  # pid 7 seen twice is one execution
    assert orders.max_duration == 70.0
    assert orders.durations == (70.0, 10.0)


def test_diff_refuses_snapshots_of_other_databases_or_out_of_order() -> None:
    # Tried: two databases, and `after` taken before `before`.
    with pytest.raises(ValueError, match="different databases"):
        workload.diff(snap(0), snap(10, dbid=6))
    with pytest.raises(ValueError, match="not taken after"):
        workload.diff(snap(10), snap(0))


# --- one snapshot: the window since the statements' reset -------------------------------------


def test_since_reset_prices_the_statements_writes_not_the_tables_history() -> None:
    """A table loaded with 400,000 rows before the statements' reset: its counters keep them,
    the window holds 60 inserted and 5 updated rows; only those are the window's writes."""
    insert = Entry(queryid=1, query="INSERT INTO t (a) VALUES ($1)").run(*[0.1] * 60).stat()
    update = Entry(queryid=2, query="UPDATE public.t SET a = $1 WHERE id = $2").run(0.2, 0.2)
    update.run(0.2, 0.2, 0.2)
    read = Entry(queryid=3, query="SELECT a FROM t WHERE a = $1").run(30.0, 40.0).stat()
    loaded = table("t", n_tup_ins=400_060, n_tup_upd=5)
    window = workload.since_reset(snap(3600, (insert, update.stat(), read), tables=(loaded,)))
    assert window.seconds == (T0 + timedelta(seconds=3600) - RESET).total_seconds()
    [t] = window.tables
    assert (t.n_tup_ins, t.n_tup_upd, t.n_tup_del) == (60, 5, 0)
    [activity] = workload.table_activity(snap(3600, tables=(loaded,)), window)
    assert activity.n_tup_ins == 60 and activity.seconds == window.seconds
    assert [q.queryid for q in window.queries] == [3, 1, 2]  # busiest first


def test_since_reset_leaves_nested_entries_out_of_the_statements_but_counts_their_writes() -> None:
    """A trigger's INSERT (a nested entry under track = all) writes its table; the nested
    copy of a client's SELECT (an EXPLAIN's inner query) is no statement of its own."""
    nested_insert = replace(
        Entry(queryid=4, query="INSERT INTO audit (a) VALUES ($1)").run(0.1, 0.1).stat(),
        toplevel=False,
    )
    nested_read = replace(Entry(queryid=3, query="SELECT 1 FROM t").run(0.0).stat(), toplevel=False)
    window = workload.since_reset(
        snap(60, (nested_insert, nested_read), tables=(table("t"), table("audit", relid=7)))
    )
    assert window.queries == ()
    assert {t.table.name: t.n_tup_ins for t in window.tables} == {"t": 0, "audit": 2}


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("COPY t FROM STDIN", {"t": 9}),
        ('copy "Odd ""name""" (a, b) from stdin', {'Odd "name"': 9}),
        ("COPY t TO STDOUT", {}),
        ("DELETE FROM other.t WHERE id = $1", {}),  # no such table: nothing attributed
        ("DELETE FROM t WHERE id = $1", {"t": 9}),
        ("INSERT INTO twice (a) VALUES ($1)", {}),  # in two schemas: no guess
        ("SELECT * FROM t", {}),
        ("not sql at all ((", {}),
    ],
)
def test_statement_writes_attribute_rows_only_where_the_table_is_certain(
    text: str, written: dict[str, int]
) -> None:
    tables = [TableRef("public", "t"), TableRef("public", 'Odd "name"'),
              TableRef("a", "twice"), TableRef("b", "twice")]  # fmt: skip
    entry = Entry(queryid=1, query=text).run(*[1.0] * 9).stat()
    found = workload.statement_writes([workload.window(None, entry)], tables, 60.0)
    got = {t.table.name: t.n_tup_ins + t.n_tup_upd + t.n_tup_del for t in found}
    assert {k: v for k, v in got.items() if v} == written


def test_merged_folds_one_text_under_two_queryids_exactly() -> None:
    """psycopg's int2 and int4 parameters: one text, two entries; the fold's mean and
    variance are those of all the calls together."""
    small = [1.0, 2.0, 3.0, 10.0]
    large = [5.0, 6.0, 7.5]
    text = "SELECT * FROM t WHERE id = $1"
    a = workload.window(None, Entry(queryid=1, query=text).run(*small).stat())
    b = workload.window(None, Entry(queryid=2, query=text + "  ").run(*large).stat())
    other = workload.window(None, Entry(queryid=3, query="SELECT 2").run(1.0).stat())
    folded = workload.merged([a, other, b])
    assert [q.queryid for q in folded] == [1, 3]  # the busier entry lends its id
    both = small + large
    assert folded[0].calls == 7
    assert folded[0].mean_ms == pytest.approx(statistics.fmean(both))
    assert folded[0].variance_ms2 == pytest.approx(statistics.variance(both))
    assert folded[0].rows == 7
