"""`pg-tuner status`: the database read at a glance (or as JSON).

Health and its reasons, the top statements by time since pg_stat_statements was last reset
(or, with `--window S`, inside a live window of S seconds between two samples), tables
that need ANALYZE or VACUUM, unused / duplicate / invalid indexes, index builds in progress
and long-running statements. Read-only: it runs nothing but the sampler's SELECTs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Any, TextIO

from tuner.commands import target_arg, terminal_width
from tuner.config import HealthSettings
from tuner.errors import JournalError
from tuner.health import (
    cache_hit_ratio,
    classify,
    floor_percent,
    index_findings,
    table_findings,
)
from tuner.journal import Journal
from tuner.labels import label, shorten
from tuner.ledger import replay
from tuner.models import ActionState, HealthReport, Snapshot, Workload
from tuner.sampler import Sampler, major_version, version_warning
from tuner.units import format_size
from tuner.workload import diff, since_reset

TOP = 10
QUERY_MIN = 32  # the statement column never gets narrower than this
MAX_WINDOW = 3600.0


def run(args: argparse.Namespace) -> int:
    if args.window is not None and not 0 < args.window <= MAX_WINDOW:
        print(f"pg-tuner status: --window must be more than 0 and at most {MAX_WINDOW:g} "
              f"seconds (got {args.window:g})", file=sys.stderr)  # fmt: skip
        return 2
    target = target_arg(args)
    policy = target.policy
    with Sampler.from_dsn(target.dsn, password=target.password, policy=policy) as sampler:
        if args.window is None:
            after = sampler.sample()
            window = since_reset(after)
        else:
            before = sampler.sample()
            countdown(args.window)
            after = sampler.sample()
            window = diff(before, after)
    health = classify(after, window, policy.health if policy else HealthSettings())
    content = report(after, window, health, policy.health if policy else HealthSettings())
    content["since_reset"] = args.window is None
    if policy is not None:
        content["in_flight"] = in_flight(Journal(policy.journal.path), after)
        stuck = [a for a in content["in_flight"] if a["stuck"]]
        content["health"]["reasons"] += [f"action {a['id']} stuck: {a['stuck']}" for a in stuck]
    if args.json:
        print(json.dumps(content, indent=2, default=str))
    else:
        print(render(content, terminal_width()))
    return 0


def countdown(seconds: float, stream: TextIO | None = None) -> None:
    """Wait `seconds`, saying so on stderr: a ticking count on a terminal, one line elsewhere."""
    stream = stream or sys.stderr
    end = time.monotonic() + seconds
    if not stream.isatty():
        print(f"sampling the statements for {seconds:g} s …", file=stream, flush=True)
        time.sleep(seconds)
        return
    while (left := end - time.monotonic()) > 0:
        print(f"\rsampling the statements: {left:4.0f} s left ", end="", file=stream, flush=True)
        time.sleep(min(left, 1.0))
    print("\r" + " " * 40 + "\r", end="", file=stream, flush=True)


def report(
    snapshot: Snapshot, window: Workload, health: HealthReport, policy: HealthSettings
) -> dict[str, Any]:
    """Everything `status` shows, as plain JSON-ready values."""
    server = snapshot.server
    ratio = cache_hit_ratio(snapshot, window)  # the one health judged, not another
    valid = window.valid_queries
    invalid = [q for q in window.queries if not q.valid]
    return {
        "database": server.database,
        "server_version": server.settings.get("server_version", str(server.version_num)),
        "server_major": major_version(server.version_num),
        "version_warning": version_warning(server.version_num),
        "role": "standby" if server.in_recovery else "primary",
        "taken_at": snapshot.taken_at.isoformat(),
        "window_seconds": round(window.seconds, 3),
        "window_started_at": window.started_at.isoformat(),
        "health": {"status": health.status.value, "reasons": list(health.reasons)},
        "server": {
            "connections": server.total_sessions,
            "max_connections": server.max_connections,
            "sessions_by_state": server.sessions_by_state,
            "active_sessions": server.active_sessions,
            "cache_hit_ratio": round(ratio, 4) if ratio is not None else None,
            "oldest_transaction_seconds": server.oldest_xact_age,
            "waiting_locks": server.waiting_locks,
            "replicas": [
                {"name": r.name, "client": r.client, "state": r.state, "lag_seconds": r.replay_lag}
                for r in server.replicas
            ],
        },
        "window_total_ms": round(window.total_ms, 3),
        "top_queries": [
            {
                "queryid": str(q.queryid),  # int8: above 2^53 a JSON number loses digits
                "label": label(q.query),
                "query": q.query,
                "calls": q.calls,
                "total_ms": round(q.total_ms, 3),
                "mean_ms": round(q.mean_ms, 3),
                "stddev_ms": round(q.stddev_ms, 3),
                "rows": q.rows,
                "share": round(q.total_ms / window.total_ms, 4) if window.total_ms else None,
            }
            for q in sorted(valid, key=lambda q: -q.total_ms)[:TOP]
        ],
        "invalid_windows": [
            {
                "queryid": str(q.queryid),
                "label": label(q.query),
                "query": q.query,
                "reason": q.invalid_reason,
            }
            for q in invalid
        ],
        "tables": [
            {"table": str(f.table), "action": f.action.value.upper(), "detail": f.detail}
            for f in table_findings(snapshot, policy)
        ],
        "indexes": [
            {
                "index": f.index,
                "table": str(f.table),
                "finding": f.kind,
                "detail": f.detail,
                "size_bytes": f.size_bytes,
                "other": f.other,
                "droppable": f.droppable,
            }
            for f in index_findings(snapshot)
        ],
        "index_builds": [
            {
                "pid": b.pid,
                "index": b.index,
                "table": str(b.table) if b.table else None,
                "command": b.command,
                "phase": b.phase,
                "percent": round(b.percent, 1) if b.percent is not None else None,
            }
            for b in server.index_builds
        ],
        "long_running": [
            {
                "fingerprint": g.fingerprint,
                "example": g.example,
                "count": g.count,
                "max_seconds": round(g.max_duration, 1),
            }
            for g in window.long_running
        ],
        "not_visible": list(snapshot.disabled),
    }


def in_flight(journal: Journal, snapshot: Snapshot) -> list[dict[str, Any]]:
    """The journal's actions between approval and verdict; `stuck` says why one in
    `applying` is not moving (no build of its index runs), else None."""
    states = (ActionState.BASELINED, ActionState.APPLYING, ActionState.APPLIED,
              ActionState.VERIFYING)  # fmt: skip
    try:
        statuses = replay(journal.read())
    except JournalError:
        return []
    building = {b.index for b in snapshot.server.index_builds}
    found = []
    for status in statuses.values():
        if status.state not in states:
            continue
        typed = status.typed_action
        schema = typed.table.schema if typed else "?"
        index = f"{schema}.{status.index_name}" if status.index_name else None
        stuck = None
        if status.state is ActionState.APPLYING and index not in building:
            stuck = f"applying since {status.since} with no build in progress"
        found.append({"id": status.action_id, "state": status.state.value, "since": status.since,
                      "index": index, "stuck": stuck})  # fmt: skip
    return found


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S %Z")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _table(
    headers: list[str], rows: list[list[str]], right: set[int], width: int | None = None
) -> list[str]:
    """Aligned columns; with `width`, the last column (a statement's text) is shortened to
    fit, or, where too little room is left for it, goes on its own line under its row."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str], sizes: list[int]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in
               enumerate(zip(cells, sizes, strict=True))]  # fmt: skip
        return "  " + "  ".join(out).rstrip()

    if width is None:
        return [line(headers, widths), *(line(r, widths) for r in rows)]
    room = width - 2 - sum(w + 2 for w in widths[:-1])
    if room >= QUERY_MIN:
        rows = [[*r[:-1], shorten(r[-1], room)] for r in rows]
        widths[-1] = max(len(headers[-1]), *(len(r[-1]) for r in rows))
        return [line(headers, widths), *(line(r, widths) for r in rows)]
    if len(widths) > 2 and 2 + sum(w + 2 for w in widths[:-1]) > width:
        # Even alone the row is too wide: its column before the text (a label) gives way.
        spare = max(width - 4 - sum(w + 2 for w in widths[:-2]), 16)
        rows = [[*r[:-2], _fit(r[-2], spare), r[-1]] for r in rows]
        widths[-2] = max(len(headers[-2]), *(len(r[-2]) for r in rows))
    out = [line(headers[:-1], widths[:-1])]
    for r in rows:
        out += [line(r[:-1], widths[:-1]), "      " + shorten(r[-1], max(width - 6, QUERY_MIN))]
    return out


def _fit(cell: str, width: int) -> str:
    """`cell` within `width` characters; a label keeps its `#hash`, which tells it apart."""
    if len(cell) <= width:
        return cell
    name, sep, tag = cell.rpartition(" #")
    if sep and len(tag) + 3 < width:
        return name[: width - len(tag) - 3] + "… #" + tag
    return cell[: width - 1] + "…"


def render(content: dict[str, Any], width: int = 100) -> str:
    """The report as a DBA reads it: verdict first, then what to look at."""
    s = content["server"]
    since_reset = content.get("since_reset", False)
    if since_reset:
        span = (f"statements since their reset {_when(content['window_started_at'])} "
                f"({_age(content['window_seconds'])} ago)")  # fmt: skip
        top = f"TOP STATEMENTS BY TOTAL TIME SINCE THE RESET ({content['window_total_ms']:,.1f} ms)"
        empty = "  (no statements counted since the reset)"
    else:
        span = f"live window {content['window_seconds']:g} s"
        top = f"TOP STATEMENTS BY TOTAL TIME IN THE WINDOW ({content['window_total_ms']:,.1f} ms)"
        empty = "  (no statements ran in the window; without --window: since the reset)"
    out = [
        f"{content['database']} on PostgreSQL {content['server_version'].split()[0]} "
        f"({content['role']}), {_when(content['taken_at'])}, {span}",
        *([f"WARNING: {content['version_warning']}"] if content.get("version_warning") else []),
        "",
        f"HEALTH: {content['health']['status'].upper()}",
        *(f"  - {reason}" for reason in content["health"]["reasons"]),
        "",
    ]
    ratio = s["cache_hit_ratio"]
    oldest = s["oldest_transaction_seconds"]
    out.append(
        f"connections {s['connections']}/{s['max_connections']} ({s['active_sessions']} active)"
        f", cache hit {floor_percent(ratio) if ratio is not None else 'n/a'}"
        f", oldest transaction {f'{oldest:.0f}s' if oldest is not None else 'none'}"
        f", waiting locks {s['waiting_locks']}, standbys {len(s['replicas'])}"
    )
    for replica in s["replicas"]:
        lag = replica["lag_seconds"]
        out.append(f"  standby {replica['name'] or replica['client']}: {replica['state']}, "
                   f"lag {f'{lag:.1f}s' if lag is not None else 'n/a'}")  # fmt: skip
    out += ["", top]
    if content["top_queries"]:
        rows = [[f"{q['total_ms']:.1f}", f"{(q['share'] or 0):.0%}", str(q["calls"]),
                 f"{q['mean_ms']:.2f}", f"{q['stddev_ms']:.2f}", str(q["rows"]), q["label"],
                 q["query"]] for q in content["top_queries"]]  # fmt: skip
        out += _table(["total ms", "share", "calls", "mean ms", "stddev", "rows", "statement",
                       "text"], rows, right={0, 1, 2, 3, 4, 5}, width=width)  # fmt: skip
    else:
        out.append(empty)
    if content["invalid_windows"]:
        reasons = sorted({q["reason"] for q in content["invalid_windows"]})
        out.append(f"  {len(content['invalid_windows'])} statement(s) not measurable in this "
                   f"window: {'; '.join(reasons)}")  # fmt: skip
    out += ["", "TABLES NEEDING MAINTENANCE"]
    if content["tables"]:
        out += _table(["action", "table", "why"],
                      [[t["action"], t["table"], t["detail"]] for t in content["tables"]],
                      right=set())  # fmt: skip
    else:
        out.append("  (none)")
    out += ["", "INDEXES: UNUSED, DUPLICATE, INVALID"]
    if content["indexes"]:
        rows = [[i["finding"], i["index"], format_size(i["size_bytes"]), i["detail"]
                 + ("" if i["droppable"] else " (backs a constraint: keep)")]
                for i in content["indexes"]]  # fmt: skip
        out += _table(["finding", "index", "size", "detail"], rows, right={2})
    else:
        out.append("  (none)")
    if content["index_builds"]:
        out += ["", "INDEX BUILDS IN PROGRESS"]
        rows = [[b["index"] or "?", b["table"] or "?", b["command"], b["phase"],
                 f"{b['percent']:.0f}%" if b["percent"] is not None else "-"]
                for b in content["index_builds"]]  # fmt: skip
        out += _table(["index", "table", "command", "phase", "done"], rows, right={4})
    if content["long_running"]:
        out += ["", "LONG-RUNNING STATEMENTS"]
        rows = [[f"{g['max_seconds']:.0f}s", str(g["count"]), g["example"]]
                for g in content["long_running"]]  # fmt: skip
        out += _table(["longest", "seen", "statement (with its literals)"], rows, right={0, 1},
                      width=width)  # fmt: skip
    if content.get("in_flight"):
        out += ["", "TUNER ACTIONS IN FLIGHT (journal)"]
        rows = [[a["id"], a["state"].upper(), a["since"], a["index"] or "-",
                 f"STUCK: {a['stuck']}" if a["stuck"] else ""]
                for a in content["in_flight"]]  # fmt: skip
        out += _table(["action", "state", "since", "index", ""], rows, right=set())
    if content["not_visible"]:
        out += ["", "NOT VISIBLE TO THIS ROLE", *(f"  - {r}" for r in content["not_visible"])]
    return "\n".join(out)
