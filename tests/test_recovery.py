"""Replay and recovery: each action's state read back from the journal, and what a restart
interrupted settled from the catalog (with plain values, then against a real server)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.test_journal import ORDERS, create_action, drop_action, lifecycle
from tuner import db
from tuner.errors import QueryFailed
from tuner.journal import EntryKind, Journal
from tuner.models import ActionState, IndexSpec
from tuner.recovery import ActionStatus, recover, replay


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.jsonl"


def test_replay_gives_each_actions_latest_state_and_data(jpath: Path) -> None:
    j = Journal(jpath)
    lifecycle(j, create_action("a1"), ActionState.APPROVED, ActionState.BASELINED,
              ActionState.APPLYING)  # fmt: skip
    lifecycle(j, create_action("a2", "ix_b"), ActionState.REJECTED)
    lifecycle(j, drop_action("d1"), ActionState.APPROVED, ActionState.BASELINED,
              ActionState.APPLYING, ActionState.APPLIED, ActionState.VERIFYING)  # fmt: skip
    j.append(EntryKind.ROLLBACK_REQUESTED, action_id="d1", actor="operator:bob", reason="slow")
    statuses = replay(j.read())
    assert list(statuses) == ["a1", "a2", "d1"]
    assert statuses["a1"].state is ActionState.APPLYING and statuses["a1"].in_flight
    assert statuses["a1"].index_name == "ix_orders_customer_id"
    assert statuses["a1"].history[-2:] == (ActionState.BASELINED, ActionState.APPLYING)
    assert statuses["a2"].state is ActionState.REJECTED and not statuses["a2"].in_flight
    pending = statuses["d1"].rollback_requested
    assert pending is not None and pending.actor == "operator:bob"
    assert statuses["d1"].to_action() == drop_action("d1")
    assert statuses["a1"].to_action() == create_action("a1")
    hashed = replace(create_action("h1", "ix_h"), index=IndexSpec(ORDERS, ("ref",), method="hash"))
    lifecycle(j, hashed, ActionState.APPROVED)
    assert replay(j.read())["h1"].to_action() == hashed  # the method survives the journal
    j.append(ActionState.ROLLED_BACK, action_id="d1")
    assert replay(j.read())["d1"].rollback_requested is None


def test_recover_settles_in_flight_actions_with_plain_values(jpath: Path) -> None:
    j = Journal(jpath)
    flight = (ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING)
    lifecycle(j, create_action("built", "ix_built"), *flight)
    lifecycle(j, create_action("broken", "ix_broken"), *flight)
    lifecycle(j, create_action("never", "ix_never"), *flight)
    lifecycle(j, drop_action("dropped"), *flight)
    lifecycle(j, create_action("watching", "ix_w"), *flight, ActionState.APPLIED,
              ActionState.VERIFYING)  # fmt: skip
    lifecycle(j, create_action("waiting", "ix_wait"), ActionState.APPROVED, ActionState.BASELINED)
    lifecycle(j, create_action("done", "ix_done"), *flight, ActionState.APPLIED,
              ActionState.VERIFYING, ActionState.KEPT)  # fmt: skip
    catalog = {"ix_built": "valid", "ix_broken": "invalid", "ix_old": "missing"}
    dropped: list[str] = []

    results = recover(
        j,
        lambda name: catalog.get(name, "missing"),  # type: ignore[arg-type, return-value]
        lambda status: dropped.append(status.index_name or ""),
    )

    outcomes = {r.action_id: r.outcome for r in results}
    assert outcomes == {
        "built": "applied", "broken": "failed", "never": "failed", "dropped": "applied",
        "watching": "resume_verification", "waiting": "rebaseline",
    }  # fmt: skip
    assert dropped == ["ix_broken"]
    states = {k: v.state for k, v in replay(j.read()).items()}
    assert states["built"] is ActionState.APPLIED and states["broken"] is ActionState.FAILED
    assert states["done"] is ActionState.KEPT and states["watching"] is ActionState.VERIFYING
    assert "INVALID" in replay(j.read())["broken"].reason
    assert j.verify().ok


def test_recover_without_a_cleaner_leaves_an_invalid_index_for_later(jpath: Path) -> None:
    j = Journal(jpath)
    lifecycle(j, create_action("broken", "ix_broken"), ActionState.APPLYING)
    results = recover(j, lambda name: "invalid")
    assert [r.outcome for r in results] == ["needs_cleanup"]
    assert replay(j.read())["broken"].state is ActionState.APPLYING  # nothing journaled


def _catalog_lookup(conn: Any) -> Any:
    def lookup(name: str) -> str:
        rows = db.fetch(
            conn,
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s",
            (name,),
        )
        if not rows:
            return "missing"
        return "valid" if rows[0]["indisvalid"] else "invalid"

    return lookup


def test_recover_against_the_catalog_of_a_real_server(jpath: Path, conn: Any) -> None:
    db.execute(conn, "CREATE TABLE orders (customer_id int, total numeric)")
    db.execute(conn, "INSERT INTO orders SELECT g % 50, g FROM generate_series(1, 1000) g")
    db.execute(conn, "CREATE INDEX CONCURRENTLY ix_good ON orders (total)")
    # duplicates: the concurrent unique build fails midway and leaves its index INVALID
    with pytest.raises(QueryFailed, match="could not create unique index"):
        db.execute(conn, "CREATE UNIQUE INDEX CONCURRENTLY ix_bad ON orders (customer_id)")
    lookup = _catalog_lookup(conn)
    assert (lookup("ix_good"), lookup("ix_bad"), lookup("ix_none")) == (
        "valid", "invalid", "missing",
    )  # fmt: skip
    j = Journal(jpath)
    flight = (ActionState.APPROVED, ActionState.BASELINED, ActionState.APPLYING)
    lifecycle(j, create_action("good", "ix_good"), *flight)
    lifecycle(j, create_action("bad", "ix_bad"), *flight)

    def drop_invalid(status: ActionStatus) -> None:
        db.execute(conn, db.SQL("DROP INDEX CONCURRENTLY {}.{}").format(
            db.Identifier("public"), db.Identifier(status.index_name or "")))  # fmt: skip

    results = recover(j, lookup, drop_invalid)

    assert {r.action_id: r.outcome for r in results} == {"good": "applied", "bad": "failed"}
    assert lookup("ix_bad") == "missing", "the INVALID index must be gone"
    assert lookup("ix_good") == "valid"
    assert j.verify().ok
