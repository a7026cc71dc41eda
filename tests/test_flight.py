"""flight.py with plain values: the retry rule and what the jobs remember between runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from tests.test_journal import ORDERS, create_action, lifecycle
from tests.test_workload import T0, snap
from tests.test_workload import Entry as Entry_
from tuner import watch, workload
from tuner.flight import Change, Entry, Measured, Phase, Recent, may_retry, shield_history
from tuner.journal import Journal
from tuner.models import ActionState, IndexStat, LongRunning, TableRef, Trap
from tuner.recovery import replay
from tuner.sampler import fingerprint


def test_a_rolled_back_index_is_retried_once_after_its_table_changed(tmp_path: Path) -> None:
    """bookings (created_at) slowed a query until (user_id, created_at) existed.

    Tried, in journal order: the rollback alone (no retry), another index on the table
    rolled back too (no retry), another kept (retry), the retry rolled back again (never
    again), and an operator's rollback (never retried).
    """
    j = Journal(tmp_path / "journal.jsonl")
    verified = (ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING,
                ActionState.APPLIED, ActionState.VERIFYING)  # fmt: skip
    lifecycle(j, create_action("a1", "ix_a"), *verified, ActionState.ROLLED_BACK)
    assert not may_retry(replay(j.read())["a1"], replay(j.read()))
    lifecycle(j, create_action("b1", "ix_b"), *verified, ActionState.ROLLED_BACK)
    assert not may_retry(replay(j.read())["a1"], replay(j.read()))
    lifecycle(j, create_action("c1", "ix_c"), *verified, ActionState.KEPT)
    statuses = replay(j.read())
    assert may_retry(statuses["a1"], statuses)
    lifecycle(j, create_action("a2", "ix_a"), *verified, ActionState.ROLLED_BACK)
    statuses = replay(j.read())
    assert not may_retry(statuses["a1"], statuses) and not may_retry(statuses["a2"], statuses)
    lifecycle(j, create_action("d1", "ix_d"), *verified)
    j.append(ActionState.ROLLED_BACK, action_id="d1", figures={"requested_by": "operator:bob"})
    lifecycle(j, create_action("e1", "ix_e"), *verified, ActionState.KEPT)
    statuses = replay(j.read())
    assert not may_retry(statuses["d1"], statuses)


def test_a_trapped_read_is_shielded_and_a_kept_shield_gives_its_index_one_more_try(
    tmp_path: Path,
) -> None:
    """Tried: an index rolled back twice (its tries spent), the second verdict naming two
    trapped reads; a shield for it rolled back (no try); a second shield kept (one try)."""
    j = Journal(tmp_path / "journal.jsonl")
    verified = (ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING,
                ActionState.APPLIED, ActionState.VERIFYING)  # fmt: skip
    lifecycle(j, create_action("a1", "ix_a"), *verified, ActionState.ROLLED_BACK)
    lifecycle(j, create_action("c1", "ix_c"), *verified, ActionState.KEPT)
    lifecycle(j, create_action("a2", "ix_a"), *verified)
    # Tried too: a word that is no query id (a hand-written record), skipped.
    j.append(ActionState.ROLLED_BACK, action_id="a2", figures={"trapped": "42 -7 x-1"})
    statuses = replay(j.read())
    traps, kept = shield_history(j.read(), statuses)
    # The index's own bar figures (create_action: 12 % of the workload, 71 % cheaper).
    assert traps == [Trap(42, ORDERS, "ix_a", 0.12, 0.71), Trap(-7, ORDERS, "ix_a", 0.12, 0.71)]
    assert not kept and not may_retry(statuses["a2"], statuses, kept["ix_a"])

    def shield(action_id: str, outcome: ActionState) -> None:
        j.append(ActionState.PROPOSED, action=create_action(action_id, f"ix_{action_id}"),
                 data={"shields": "ix_a"})  # fmt: skip
        for state in (*verified, outcome):
            j.append(state, action_id=action_id)

    shield("s1", ActionState.ROLLED_BACK)
    statuses = replay(j.read())
    _, kept = shield_history(j.read(), statuses)
    assert not kept and not may_retry(statuses["a2"], statuses, kept["ix_a"])
    shield("s2", ActionState.KEPT)
    statuses = replay(j.read())
    traps, kept = shield_history(j.read(), statuses)
    assert kept == {"ix_a": 1} and may_retry(statuses["a2"], statuses, kept["ix_a"])
    assert len(traps) == 2  # still named: the advisor skips a read its shield now covers


WINDOW, KEEP = timedelta(seconds=3), timedelta(seconds=60)


T, U, V = TableRef("public", "t"), TableRef("public", "u"), TableRef("public", "v")


def index(name: str, valid: bool = True, table: TableRef = T) -> IndexStat:
    return IndexStat(
        indexrelid=1, table=table, schema="public", name=name, definition="",
        method="btree", columns=("k",), include=(), predicate=None, size_bytes=8192,
        idx_scan=0, idx_tup_read=0, idx_tup_fetch=0, is_valid=valid, is_ready=valid,
        is_unique=False, is_primary=False, backs_constraint=False, is_replica_identity=False,
        comment=None,
    )  # fmt: skip


def at(second: float) -> datetime:
    return T0 + timedelta(seconds=second)


def only(*tables: TableRef) -> Callable[[Change], bool]:
    return lambda change: change.table in tables


def test_a_change_restarts_the_baselines_of_its_table_only() -> None:
    """Tried, samples every 2 s with a 3 s window: an index on t that starts building
    (INVALID), turns valid; the tuner's own build on u; a reset of pg_stat_statements.
    An action on t starts after the last change of t, one on u after u's, one on v
    (changed never) at the oldest sample of the window."""
    recent = Recent()
    for second in (0, 2, 4):
        recent.add(at(second), snap(second), WINDOW, KEEP)
    assert recent.state_since() == (T0, recent.samples[0][1])
    recent.add(at(6), snap(6), WINDOW, KEEP)
    assert [t for t, _ in recent.samples] == [at(2), at(4), at(6)]  # one window back, no more
    building = replace(snap(8), indexes=(index("t_k", valid=False),))
    recent.add(at(8), building, WINDOW, KEEP)
    assert recent.state_since(only(T)) == (at(8), building)
    assert recent.state_since(only(V)) == (at(4), recent.samples[0][1])  # not restarted
    built = replace(snap(10), indexes=(index("t_k"),))
    recent.add(at(10), built, WINDOW, KEEP)
    assert recent.state_since(only(T)) == (at(10), built)
    assert recent.state_since(only(U))[0] == at(6)  # type: ignore[index]
    assert [c.what for c in recent.spanned(at(6))] == [
        "public.t_k created (invalid)",
        "public.t_k turned valid",
    ]
    recent.changed(at(10.5), U, "the build of public.u_k")  # before a sample shows it
    assert recent.state_since(only(U)) is None
    assert recent.state_since(only(T)) == (at(10), built)
    assert recent.state_since(only(V))[0] == at(6)  # type: ignore[index]
    after = replace(snap(12), indexes=(index("t_k"), index("u_k", table=U)))
    recent.add(at(12), after, WINDOW, KEEP)
    assert recent.state_since(only(U)) == (at(12), after)
    assert recent.state_since(only(V))[0] == at(8)  # type: ignore[index]
    assert [c.ours for c in recent.spanned(at(10))] == [True, False]  # and the sample saw it
    reset = replace(after, stats_reset=at(13), taken_at=at(14), monotonic=1014.0)
    recent.add(at(14), reset, WINDOW, KEEP)
    assert recent.state_since(only(V)) == (at(14), reset)  # a reset restarts them all
    recent.add(at(30), replace(reset, taken_at=at(30)), WINDOW, KEEP)
    assert [t for t, _ in recent.samples] == [at(14), at(30)]  # at most one window back
    recent.add(at(80), replace(reset, taken_at=at(80)), WINDOW, KEEP)
    assert not recent.spanned(T0)  # changes older than KEEP are forgotten


def test_a_change_on_a_table_that_shares_a_query_restarts_the_baseline() -> None:
    """An action on u: a query joining t and u links t; v shares none of u's queries."""
    joined = Entry_(queryid=7, query="SELECT * FROM t JOIN u ON u.id = t.id").run(1.0).stat()
    alone = Entry_(queryid=8, query="SELECT * FROM v WHERE id = $1").run(1.0).stat()
    statements = watch.parsed(workload.window(None, s) for s in (joined, alone))
    linked = watch.linked(statements, U)
    recent = Recent()
    for second in (0, 2, 4):
        recent.add(at(second), snap(second), WINDOW, KEEP)
    on_v = replace(snap(6), indexes=(index("v_k", table=V),))
    recent.add(at(6), on_v, WINDOW, KEEP)
    assert recent.state_since(linked)[0] == at(2)  # type: ignore[index]
    on_t = replace(on_v, taken_at=at(8), indexes=(*on_v.indexes, index("t_k")))
    recent.add(at(8), on_t, WINDOW, KEEP)
    assert recent.state_since(linked) == (at(8), on_t)


def test_the_tuners_change_moves_only_the_baselines_of_the_queries_it_watches() -> None:
    """The tuner's build on t is verified on the queries whose plans it changed: when the
    query joining t and u is not among them, u's baseline spans the build; when it is
    (the build changed the join's plan), u's baseline starts again."""
    joined = Entry_(queryid=7, query="SELECT * FROM t JOIN u ON u.id = t.id").run(1.0).stat()
    on_t = Entry_(queryid=9, query="SELECT * FROM t WHERE k = $1").run(1.0).stat()
    statements = watch.parsed(workload.window(None, s) for s in (joined, on_t))
    linked = watch.linked(statements, U)
    recent = Recent()
    for second in (0, 2, 4):
        recent.add(at(second), snap(second), WINDOW, KEEP)
    recent.changed(at(5), T, "the build of public.t_k")
    assert recent.state_since(linked) is None  # not yet known what it is verified on
    recent.watching(T, {9})
    assert recent.state_since(linked)[0] == T0  # type: ignore[index]
    recent.changed(at(5.5), T, "the rollback of public.t_k", watched={7, 9})
    assert recent.state_since(linked) is None


def test_a_query_the_tuners_change_moved_is_measured_again_from_after_it() -> None:
    """Queries of t: 7 (a lookup the tuner's build on t served), 8 (an update), 9 (a read
    it left alone). Samples every 2 s, 3 s window. The samples see the build (its index
    created invalid, then valid): that is the tuner's change, not an operator's, which
    would restart them all. 9 keeps the whole window; 7 and 8 restart after the build,
    and again after its rollback; an operator's index on t restarts all of them."""
    texts = ("SELECT * FROM t WHERE k = $1", "UPDATE t SET v = $1 WHERE id = $2",
             "SELECT count(*) FROM t")  # fmt: skip
    entries = [Entry_(queryid=7 + i, query=text).run(1.0).stat() for i, text in enumerate(texts)]
    moves = watch.moves(watch.parsed(workload.window(None, s) for s in entries), T)
    all_moved = lambda c: moves(c) is None  # noqa: E731
    recent = Recent()
    recent.add(at(0), snap(0), WINDOW, KEEP)
    recent.add(at(2), replace(snap(2), indexes=(index("t_k", valid=False),)), WINDOW, KEEP)
    recent.changed(at(3), T, "the build of public.t_k", index="public.t_k")
    built = replace(snap(4), indexes=(index("t_k"),))
    recent.add(at(4), built, WINDOW, KEEP)
    assert recent.state_since(all_moved) == (at(4), built)  # not yet known what it moved
    recent.watching(T, {7, 8}, unmoved={9})
    assert recent.state_since(all_moved)[0] == T0  # type: ignore[index]
    assert recent.restarts(moves, T0) == {7: (at(4), built), 8: (at(4), built)}
    assert [c.what for c in recent.spanned(T0)] == ["the build of public.t_k"]
    recent.add(at(6), replace(built, taken_at=at(6)), WINDOW, KEEP)
    recent.changed(at(6.5), T, "the rollback of public.t_k", {7, 8}, {9}, "public.t_k")
    assert recent.restarts(moves, at(2)) == {7: None, 8: None}  # no sample since
    gone = snap(8)
    recent.add(at(8), gone, WINDOW, KEEP)
    assert recent.restarts(moves, at(2)) == {7: (at(8), gone), 8: (at(8), gone)}
    assert recent.state_since(all_moved)[0] == at(4)  # type: ignore[index]  # none moved all
    theirs = replace(gone, taken_at=at(10), indexes=(index("t_theirs"),))
    recent.add(at(10), theirs, WINDOW, KEEP)
    assert recent.state_since(all_moved) == (at(10), theirs)


def run(pid: int, started: int, seconds: float, text: str) -> LongRunning:
    return LongRunning(
        pid=pid, user="app", query=text, fingerprint=fingerprint(text),
        started_at=T0 + timedelta(seconds=started), duration=seconds, state="active",
        wait_event=None,
    )  # fmt: skip


def test_long_statements_keep_their_longest_view_and_finished_ones_are_left_out() -> None:
    slow, done = "SELECT * FROM t WHERE k = 5", "SELECT * FROM u WHERE x = 7"
    recent = Recent()
    recent.add(T0, snap(0, long_running=(run(1, 0, 1.0, slow), run(2, 0, 3.0, done))),
               WINDOW, KEEP)  # fmt: skip
    recent.add(T0 + timedelta(seconds=5),
               snap(5, long_running=(run(1, 0, 6.0, slow), run(3, 4, 1.0, slow))),
               WINDOW, KEEP)  # fmt: skip
    # pg_stat_statements counted `done` (with a placeholder), never `slow`.
    [group] = recent.captured(T0, ["SELECT * FROM u WHERE x = $1"])
    assert group.fingerprint == fingerprint(slow)
    assert (group.count, group.durations) == (2, (6.0, 1.0))
    assert recent.captured(T0 + timedelta(seconds=1), []) != []  # pid 1 was seen at 5 s too
    recent.add(T0 + timedelta(seconds=70), snap(70), WINDOW, KEEP)
    assert recent.captured(T0, []) == []  # older than KEEP: forgotten


def test_a_flights_phase_is_named_by_the_strings_older_journals_and_logs_used() -> None:
    assert [p.value for p in Phase] == ["baseline", "applying", "verify"]
    assert Phase("verify") is Phase.VERIFY and str(Phase.VERIFY) == "verify"


def test_what_a_baseline_measured_survives_the_journal() -> None:
    measured = Measured((Entry(7, 12, 0.5, 0.01), Entry(9, 3, 2.0, 0.0, False)), True, 61.25)
    assert Measured.from_data(measured.to_data()) == measured
