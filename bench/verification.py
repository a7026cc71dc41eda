"""The verification benchmark: how often the daemon's verdicts are right, and how soon.

    python bench/verification.py --quick                 (under 10 minutes on 2 cores)
    python bench/verification.py --reps 20               (the full run, ~35 minutes)
    python bench/verification.py --quick --checkout /work/wt/base   (another checkout's daemon)

Each repetition, on one throwaway PostgreSQL 15 (tuner/sandbox.py), three databases side by
side, each with its client threads running all the time, each busy a `--duty` share of it
(0.3 puts the load average near 4, twice 2 cores; back to back the bench alone makes ~11),
and its own `pg-tuner run` — the daemon a user starts, as its own process, from a policy
file (apply mode, level aggressive, baseline and verification windows of `--window`
seconds) — whose first verdict is read from its journal:
  (a) A/A: `accounts` carries (region, score) and (region), near the same size; the planner
      reads (region), the smaller, and the daemon drops it as a prefix of the other
      (allow_drop_foreign). The reads move to (region, score): their plans change, so the
      verdict watches them (7 of the 8) and judges them on their figures, but they run as
      fast as before (one leaf page, the same heap pages). A rollback for a slowdown is a
      false rollback. (Until session 10 this was two identical indexes, the one no read
      used dropped: no plan changed, nothing was watched and the statistics were never
      exercised; see RESULTS.)
  (b) gain: `items` (300,000 rows) is read by k, which no index serves (a sequential scan,
      ~10-50 ms); the daemon builds the index (~0.05 ms, 100-1,000x) and must keep it.
      Four pk lookups that also filter by k are watched as guards.
  (c) harm: tests/trap.py's `orders`: the index on placed_at the daemon builds for the
      report traps the flagship customer's latest orders (0.05 → 10-25 ms); it must be
      rolled back.
`--hogs 0,2` runs the whole set once per load level: that many busy-loop processes beside
the server (the load of a shared machine; the load average is recorded as measured, with
the statements a second each scenario's clients ran).
Per level it prints the false-rollback rate of (a), the share of (b) kept and of (c)
rolled back, and the median seconds from the build's end (`applied`) to the verdict;
the last line sums all levels:
    false_rollback_rate=F gain_kept=K/N harm_rolled_back=H/M median_verdict_s=S
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import trap  # noqa: E402  (the planner's trap, shared with the test suite)
from tuner.sandbox import Sandbox  # noqa: E402

POLICY = """\
# bench/verification.py: apply mode, windows of seconds, min_calls lowered for short windows
target:
  dsn: "{dsn}"
mode: apply
level: aggressive
timezone: UTC
thresholds:
  baseline_window: {window}s
  verification_window: {window}s
  max_indexes_per_day: 100
  max_query_regression: 0.1
  min_net_gain: 0.05
  allow_drop_foreign: true
{extra}limits:
  max_actions_per_day: 200
schedule:
  sample_interval: {sample}s
  advise_interval: {advise}s
  min_calls: {min_calls}
  max_window_extensions: 2
journal:
  path: "{journal}"
metrics:
  listen: null
"""

DUTY = 0.3  # the share of the time each client is busy: see Clients
VERDICTS = {"kept", "rolled_back"}
SLOWDOWN = ("slowed beyond", "looks slower")  # a rollback for a slowdown, not for no gain

# --- the three scenarios: their data and their statements ------------------------------------


def _misc(conn: psycopg.Connection[Any]) -> None:
    """A small table beside each scenario's: its lookups are the load's controls."""
    conn.execute("CREATE TABLE misc (id int PRIMARY KEY, v text)")
    conn.execute("INSERT INTO misc SELECT g, md5(g::text) FROM generate_series(1, 10000) g")


def load_aa(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, region int NOT NULL, "
                 "score int NOT NULL, email text, note text)")  # fmt: skip
    conn.execute("INSERT INTO accounts SELECT g, g % 2000, (g / 2000) % 5, 'u' || g || '@x.org', "
                 "repeat(md5(g::text), 2) FROM generate_series(1, 200000) g")  # fmt: skip
    # Five scores a region, so (region, score) deduplicates as (region) does: 1.6 and 1.4 MB,
    # a region's entries on one leaf page in each (with a score a row, (region, score) was
    # three times the size and a count of a region's rows ran 0.22 -> 0.25 ms on it). The
    # planner reads (region), the smaller; the daemon drops it as the other's prefix and
    # the reads move, no slower. (A WITH (deduplicate_items = off) the daemon refuses to
    # drop: its rollback could not recreate it.)
    conn.execute("CREATE INDEX accounts_region_score ON accounts (region, score)")
    conn.execute("CREATE INDEX accounts_region ON accounts (region)")
    _misc(conn)
    conn.execute("VACUUM ANALYZE")


AA_READS = (  # whole rows: no index of three columns covers them, nothing to build
    "SELECT * FROM accounts WHERE region = %s",
    "SELECT * FROM accounts WHERE region = %s AND id > 0",
    "SELECT * FROM accounts WHERE region = %s AND note IS NOT NULL",
    "SELECT * FROM accounts WHERE region = %s AND email LIKE 'u%%'",
    "SELECT *, length(note) FROM accounts WHERE region = %s",
    "SELECT * FROM accounts WHERE region = %s AND score < 1000",
    "SELECT count(note) FROM accounts WHERE region = %s",
    "SELECT *, upper(email) FROM accounts WHERE region = %s",
)


def run_aa(conn: psycopg.Connection[Any], rnd: random.Random) -> None:
    if rnd.random() < 0.1:
        conn.execute("UPDATE accounts SET score = score + 1 WHERE id = %s",
                     (rnd.randint(1, 200000),))  # fmt: skip
    elif rnd.random() < 0.1:
        conn.execute("SELECT v FROM misc WHERE id = %s", (rnd.randint(1, 10000),)).fetchall()
    else:
        conn.execute(rnd.choice(AA_READS), (rnd.randrange(2000),)).fetchall()


def load_gain(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE items (id int PRIMARY KEY, k int NOT NULL, payload text)")
    conn.execute("INSERT INTO items SELECT g, (g::bigint * 7919) % 100000, md5(g::text) "
                 "FROM generate_series(1, 300000) g")  # fmt: skip
    _misc(conn)
    conn.execute("VACUUM ANALYZE")


GAIN_GUARDS = (
    "SELECT payload FROM items WHERE id = %s AND k >= 0",
    "SELECT k FROM items WHERE id = %s AND k <> -1",
    "SELECT payload FROM items WHERE id = %s AND k < 1000000",
    "SELECT id FROM items WHERE id = %s AND k > -5",
)


def run_gain(conn: psycopg.Connection[Any], rnd: random.Random) -> None:
    roll = rnd.random()
    if roll < 0.3:
        conn.execute("SELECT id, payload FROM items WHERE k = %s",
                     (rnd.randrange(100000),)).fetchall()  # fmt: skip
    elif roll < 0.4:
        conn.execute("SELECT v FROM misc WHERE id = %s", (rnd.randint(1, 10000),)).fetchall()
    else:
        conn.execute(rnd.choice(GAIN_GUARDS), (rnd.randint(1, 300000),)).fetchall()


def load_harm(conn: psycopg.Connection[Any]) -> None:
    trap.make_orders(conn, "customer, placed_at")
    _misc(conn)
    conn.execute("VACUUM ANALYZE misc")


def run_harm(conn: psycopg.Connection[Any], rnd: random.Random) -> None:
    roll = rnd.random()
    if roll < 0.5:
        conn.execute(trap.LATEST, (trap.FLAGSHIP,)).fetchall()
    elif roll < 0.6:
        conn.execute(trap.LATEST, (rnd.randint(2, 2001),)).fetchall()
    elif roll < 0.7:
        conn.execute("SELECT v FROM misc WHERE id = %s", (rnd.randint(1, 10000),)).fetchall()
    else:
        conn.execute(trap.REPORT).fetchall()


Runner = Callable[[psycopg.Connection[Any], random.Random], None]
SCENARIOS: dict[str, tuple[Callable[[psycopg.Connection[Any]], None], Runner]] = {
    "aa": (load_aa, run_aa),
    "gain": (load_gain, run_gain),
    "harm": (load_harm, run_harm),
}
KIND = {"aa": "drop_index", "gain": "create_index", "harm": "create_index"}
# The A/A database's daemon may only drop: an index it built first would make its reads'
# baseline a different database from the one the drop is verified in.
EXTRA = {"aa": "  create_indexes: false\n", "gain": "", "harm": ""}

# --- clients, hogs, the daemon -----------------------------------------------------------------


class Clients:
    """`threads` closed-loop clients on one database; a new session for each 200 statements
    (a pool's recycled connections; no server-side prepare: every call is planned anew).
    Each client is busy a `duty` share of the time: after a statement of t seconds it waits
    t * (1/duty - 1). The wait scales with the statement, so the load falls alike in every
    scenario (a fixed wait would thin the A/A's 0.3 ms reads a hundredfold and leave the
    100 ms scans and reports that make the load as they are)."""

    def __init__(self, dsn: str, run: Runner, threads: int, seed: int, duty: float = 1) -> None:
        self.dsn, self.run, self.stop_flag = dsn, run, threading.Event()
        self.idle, self.errors, self.counts = 1 / duty - 1, 0, [0] * threads
        self.threads = [threading.Thread(target=self._work, args=(seed + i, i), daemon=True)
                        for i in range(threads)]  # fmt: skip

    def start(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=30)

    @property
    def calls(self) -> int:
        """Statements run so far, by all the threads."""
        return sum(self.counts)

    def _work(self, seed: int, slot: int) -> None:
        rnd = random.Random(seed)
        while not self.stop_flag.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None) as conn:
                    for _ in range(200):
                        if self.stop_flag.is_set():
                            return
                        took = time.perf_counter()
                        self.run(conn, rnd)
                        took = time.perf_counter() - took
                        self.counts[slot] += 1
                        if self.idle:
                            self.stop_flag.wait(took * self.idle)
            except psycopg.Error:
                self.errors += 1  # a dropped index mid-statement, a cancelled build
                time.sleep(0.1)


def start_hogs(count: int) -> list[subprocess.Popen[bytes]]:
    """Busy-loop processes beside the server: the load of a shared machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def start_daemon(checkout: Path, policy: Path, log: Path) -> subprocess.Popen[bytes]:
    """`pg-tuner run --policy P` of `checkout`, as its own process (its log in `log`)."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with log.open("wb") as out:
        command = [sys.executable, "-m", "tuner", "run", "--policy", str(policy)]
        return subprocess.Popen(command, cwd=checkout, env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def first_verdict(journal: Path, kind: str, log: Path | None = None) -> dict[str, Any] | None:
    """The first kept or rolled-back action of `kind` in the journal, with the seconds from
    its `applied` record to the verdict, and how it was decided where the journal says."""
    if not journal.exists():
        return None
    applied: dict[str, datetime] = {}
    for line in journal.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        state, action = record.get("state"), record.get("action_id")
        when = datetime.fromisoformat(record["time"])
        if state == "applied" and action and (record.get("action") or {}).get("kind") == kind:
            applied[action] = when
        figures = record.get("figures") or {}
        if state == "verifying" and figures.get("outcome") == "rollback":
            state = "rolled_back"  # decided, the undo waits (a twin makes it refuse)
        if state in VERDICTS and action in applied:
            return {
                "state": state,
                "seconds": (when - applied[action]).total_seconds(),
                "reason": record.get("reason", ""),
                "decided": figures.get("decided"),
                "action": (record.get("action") or {}).get("index_name"),
            }
    return waiting(log, applied) if log is not None else None


def waiting(log: Path, applied: dict[str, datetime]) -> dict[str, Any] | None:
    """A rollback decided whose undo waits, where the journal does not record it (a daemon
    before this change): its log's first `VERIFYING: rollback of ... waits` line."""
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        if '"VERIFYING: rollback of' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        for action, built in applied.items():
            if f"[{action}]" in entry.get("verdict", ""):
                when = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
                return {"state": "rolled_back", "seconds": (when - built).total_seconds(),
                        "reason": "(not journaled) " + entry["verdict"], "decided": None,
                        "action": action}  # fmt: skip
    return None


@dataclass
class Level:
    hogs: int
    results: list[dict[str, Any]] = field(default_factory=list)
    load: list[float] = field(default_factory=list)


def repetition(sandbox: Sandbox, args: argparse.Namespace, rep: int, work: Path,
               level: Level) -> None:  # fmt: skip
    """One of each scenario, side by side; their first verdicts appended to `level`."""
    dsns, daemons, journals, logs = {}, [], {}, {}
    clients: dict[str, Clients] = {}
    try:
        for name in args.scenarios:
            load, run = SCENARIOS[name]
            dbname = f"{name}_{level.hogs}_{rep}"
            dsns[name] = sandbox.create_database(dbname)
            with psycopg.connect(dsns[name], autocommit=True) as conn:
                load(conn)
            clients[name] = Clients(dsns[name], run, args.threads, rep * 100, args.duty)
        started = time.monotonic()
        for c in clients.values():
            c.start()
        time.sleep(3)  # warm up
        for name, dsn in dsns.items():
            journals[name] = work / f"{name}_{level.hogs}_{rep}.jsonl"
            policy = work / f"{name}_{level.hogs}_{rep}.yaml"
            policy.write_text(POLICY.format(dsn=dsn, window=args.window, sample=args.sample,
                                            advise=args.advise, min_calls=args.min_calls,
                                            journal=journals[name],
                                            extra=EXTRA[name]))  # fmt: skip
            logs[name] = work / f"{name}_{level.hogs}_{rep}.log"
            daemons.append(start_daemon(args.checkout, policy, logs[name]))
        deadline = time.monotonic() + args.timeout
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(dsns)
        while time.monotonic() < deadline and any(v is None for v in found.values()):
            time.sleep(1)
            level.load.append(os.getloadavg()[0])
            for name in found:
                if found[name] is None:
                    found[name] = first_verdict(journals[name], KIND[name], logs[name])
        elapsed = time.monotonic() - started
        for name, verdict in found.items():
            rate = clients[name].calls / elapsed  # statements a second, the clients together
            row = {"scenario": name, "rep": rep, "per_s": round(rate),
                   **(verdict or {"state": "none"})}  # fmt: skip
            level.results.append(row)
            print(f"  rep {rep} {name:<4} {row['state']:<11} {row.get('action')} "
                  f"{row.get('seconds', float('nan')):6.1f}s {rate:6.0f}/s  "
                  f"{row.get('reason', '')[:150]}", flush=True)  # fmt: skip
    finally:
        stop_all(daemons)
        for c in clients.values():
            c.stop()
        for name in dsns:
            try:
                sandbox.drop_database(f"{name}_{level.hogs}_{rep}")
            except Exception as exc:  # a leftover database is harmless here
                print(f"  (could not drop {name}: {exc})")


def tally(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    aa = [r for r in results if r["scenario"] == "aa"]
    gain = [r for r in results if r["scenario"] == "gain"]
    harm = [r for r in results if r["scenario"] == "harm"]
    # A drop has no gain to prove: its rollbacks are for a slowdown (a daemon before this
    # change left the reason of one whose undo waits out of the journal: counted too).
    false = [r for r in aa if r["state"] == "rolled_back" and any(
        s in r.get("reason", "") for s in (*SLOWDOWN, "(not journaled)"))]  # fmt: skip
    times = [r["seconds"] for r in results if "seconds" in r]
    gain_times = [r["seconds"] for r in gain if r["state"] == "kept"]
    return {
        "false_rollbacks": len(false), "aa": len(aa),
        "gain_kept": sum(r["state"] == "kept" for r in gain), "gain": len(gain),
        "harm_rolled_back": sum(r["state"] == "rolled_back" for r in harm), "harm": len(harm),
        "median_verdict_s": statistics.median(times) if times else float("nan"),
        "median_gain_kept_s": statistics.median(gain_times) if gain_times else float("nan"),
    }  # fmt: skip


def line(t: dict[str, Any]) -> str:
    rate = t["false_rollbacks"] / t["aa"] if t["aa"] else float("nan")
    return (f"false_rollback_rate={rate:.2f} gain_kept={t['gain_kept']}/{t['gain']} "
            f"harm_rolled_back={t['harm_rolled_back']}/{t['harm']} "
            f"median_verdict_s={t['median_verdict_s']:.1f}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 repetitions, no hogs, 20 s windows",
    )
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--hogs", default="0", help="busy-loop processes per load level")
    parser.add_argument("--window", type=int, default=30, help="baseline/verification (s)")
    parser.add_argument("--sample", type=int, default=2, help="sample interval (s)")
    parser.add_argument("--advise", type=int, default=6, help="advise interval (s)")
    parser.add_argument("--min-calls", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="clients per scenario")
    parser.add_argument(
        "--duty",
        type=float,
        default=DUTY,
        help="share of the time each client is busy (1: back to back)",
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="which to run, of " + ",".join(SCENARIOS))  # fmt: skip
    parser.add_argument("--timeout", type=float, help="seconds to wait for a verdict")
    parser.add_argument(
        "--checkout",
        type=Path,
        default=ROOT,
        help="the checkout whose daemon runs (default: this one)",
    )
    parser.add_argument("--json", type=Path, help="write every verdict here")
    parser.add_argument("--keep", type=Path, help="keep the daemons' logs and journals here")
    args = parser.parse_args(argv)
    args.scenarios = args.scenarios.split(",")
    if not 0 < args.duty <= 1:
        parser.error("--duty must be in (0, 1]")
    if unknown := set(args.scenarios) - SCENARIOS.keys():
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.quick:
        args.reps, args.window = min(args.reps, 3), 20
    args.timeout = args.timeout or 5 * args.window + 40
    levels = [Level(int(h)) for h in args.hogs.split(",")]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pgt-verification-") as tmp, Sandbox() as sandbox:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for level in levels:
            hogs = start_hogs(level.hogs)
            try:
                print(f"load level: {level.hogs} hog(s), load average {os.getloadavg()[0]:.1f}",
                      flush=True)  # fmt: skip
                for rep in range(args.reps):
                    repetition(sandbox, args, rep, work, level)
            finally:
                stop_all(hogs)
    every: list[dict[str, Any]] = []
    print(f"\ncheckout {args.checkout}, window {args.window}s, {args.reps} repetition(s), "
          f"duty {args.duty:g}, {time.monotonic() - started:.0f}s in all")  # fmt: skip
    for level in levels:
        t = tally(level.results)
        load = statistics.mean(level.load) if level.load else float("nan")
        spread = f"({min(level.load):.1f}-{max(level.load):.1f})" if level.load else ""
        print(f"hogs={level.hogs} load_avg={load:.1f}{spread} {line(t)} "
              f"median_gain_kept_s={t['median_gain_kept_s']:.1f}")  # fmt: skip
        every += level.results
    if args.json:
        args.json.write_text(json.dumps(
            [{"hogs": lv.hogs, "load_avg": lv.load, "results": lv.results} for lv in levels],
            indent=1))  # fmt: skip
    print(line(tally(every)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
