"""flight.py with plain values: the retry rule and what the jobs remember between runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from tests.test_journal import ORDERS, create_action, lifecycle
from tests.test_workload import T0, snap
from tuner.flight import Entry, Measured, Phase, Recent, may_retry, shield_history
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


def index(name: str, valid: bool = True) -> IndexStat:
    return IndexStat(
        indexrelid=1, table=TableRef("public", "t"), schema="public", name=name, definition="",
        method="btree", columns=("k",), include=(), predicate=None, size_bytes=8192,
        idx_scan=0, idx_tup_read=0, idx_tup_fetch=0, is_valid=valid, is_ready=valid,
        is_unique=False, is_primary=False, backs_constraint=False, is_replica_identity=False,
        comment=None,
    )  # fmt: skip


def test_the_baseline_starts_at_the_newest_sample_a_window_old_of_the_current_state() -> None:
    """Tried: samples every 2 s; an index that starts building (INVALID), turns valid; a reset
    of pg_stat_statements; the tuner's own change."""
    recent = Recent()
    for second in (0, 2, 4):
        recent.add(T0 + timedelta(seconds=second), snap(second), WINDOW, KEEP)
    assert recent.state_since() is not None and recent.state_since()[0] == T0  # type: ignore[index]
    recent.add(T0 + timedelta(seconds=6), snap(6), WINDOW, KEEP)
    assert recent.state_since()[0] == T0 + timedelta(seconds=2)  # type: ignore[index]
    building = replace(snap(8), indexes=(index("t_k", valid=False),))
    recent.add(T0 + timedelta(seconds=8), building, WINDOW, KEEP)
    assert recent.state_since()[1] is building  # type: ignore[index]
    built = replace(snap(10), indexes=(index("t_k"),))
    recent.add(T0 + timedelta(seconds=10), built, WINDOW, KEEP)
    assert recent.state_since()[1] is built  # type: ignore[index]
    reset = replace(snap(12, stats_reset=T0 + timedelta(seconds=11)), indexes=(index("t_k"),))
    recent.add(T0 + timedelta(seconds=12), reset, WINDOW, KEEP)
    assert recent.state_since()[1] is reset  # type: ignore[index]
    recent.changed()
    assert recent.state_since() is None


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
