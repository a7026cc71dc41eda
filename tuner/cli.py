"""`pg-tuner`: arguments → policy → logging → command. Exit 0 ok, 1 failure, 2 bad input
(3: `advise --queries --fail-on-missing` found a statement that needs an index)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Sequence

from tuner import __version__, log, terminal
from tuner.config import describe, load_policy
from tuner.db import server_error, translated
from tuner.dsn import redact
from tuner.errors import DatabaseUnavailable, PolicyError, QueryFailed, TunerError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, what `| head` leaves of any other Unix tool
MAX_WINDOW = 3600.0

DESCRIPTION = """\
pg-tuner watches a PostgreSQL database's workload (pg_stat_statements), decides which
indexes would pay for themselves (HypoPG what-if costing), builds them with CREATE INDEX
CONCURRENTLY, measures whether they helped, and drops them again when they did not.
It acts only as its policy file allows: in `mode: apply`, outside freeze windows, within
daily and storage limits, and it writes every decision to an append-only audit journal.

What it may run on your database: CREATE/DROP INDEX CONCURRENTLY, ANALYZE, VACUUM (never
FULL), REINDEX INDEX CONCURRENTLY. It marks its indexes with COMMENT ON INDEX and drops
only those, unless the policy allows more.

Stop it:   systemctl stop pg-tuner@NAME   (or Ctrl-C / SIGTERM: running builds are
           finished or cancelled and cleaned up, the journal is written)
Pause it:  set `mode: observe` in the policy and `systemctl reload pg-tuner@NAME`
Undo:      pg-tuner rollback ID   (see `pg-tuner audit` for the IDs and their undo commands)
"""


def _window_seconds(text: str) -> float:
    """--window: a finite number of seconds, 0 to an hour (nan and inf are floats too)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_WINDOW:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 to {MAX_WINDOW:.0f} seconds")
    return value


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dsn",
        help="connection string of the database (no password in it; "
        "use TUNER_PASSWORD or ~/.pgpass); default: the policy's target",
    )
    p.add_argument("--policy", help="policy YAML (default: $TUNER_POLICY)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pg-tuner", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"pg-tuner {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning",
                        "error"], help="default: info")  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("check-policy", help="validate a policy file and print what it resolves to",
                       description="Validate a policy file without touching any database. "
                       "Exit 0 and the resolved thresholds when it is good; every problem as "
                       "FILE:LINE: key: reason and exit 2 when it is not.")  # fmt: skip
    p.add_argument("file", help="the policy YAML")

    p = sub.add_parser("status", help="health, top queries, index and table findings (read-only)",
                       description="Read-only: health with its reasons, the top statements "
                       "since pg_stat_statements was last reset (or in a live --window), tables "
                       "that need ANALYZE or VACUUM, unused/duplicate/invalid indexes, builds in "
                       "progress. Needs pg_monitor and pg_stat_statements.")  # fmt: skip
    _add_target(p)
    p.add_argument(
        "--window",
        type=_window_seconds,
        metavar="S",
        help="top statements of a live window: two samples S seconds apart, with a countdown "
        "on stderr (default: everything since the statements' last reset)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("advise", help="one-shot index advice; changes nothing",
                       description="Read-only: which indexes would pay for themselves for the "
                       "workload in pg_stat_statements, costed with HypoPG's hypothetical "
                       "indexes (they exist only in this session and are removed). Without "
                       "HypoPG, a heuristic marked low confidence.")  # fmt: skip
    _add_target(p)
    p.add_argument("--budget", help="index storage budget, e.g. 500MB (default: the policy's)")
    p.add_argument("--max-width", type=int, help="columns per index (default: the policy's, 3)")
    p.add_argument("--queries", metavar="FILE", help="advise on the statements in FILE instead "
                   "of pg_stat_statements (a .sql file split at `;`, or one statement a line): "
                   "statements that have not run yet, e.g. before a deploy")  # fmt: skip
    p.add_argument("--server-log", metavar="FILE", help="the server's log, for statements a "
                   "timeout cancelled (default: read through the server when it may)")  # fmt: skip
    p.add_argument("--fail-on-missing", action="store_true", help="with --queries: exit 3 when "
                   "a statement would need an index above the policy's bar")  # fmt: skip
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("explain", help="one statement: plans now and with advised indexes, "
                       "anti-patterns (read-only)",
                       description="Read-only: EXPLAIN (never ANALYZE) of one statement now "
                       "and with the indexes the advisor would add (HypoPG's hypothetical "
                       "indexes), those indexes' DDL, and anti-patterns that keep an index "
                       "from helping, each with a reason and a fix. Costs are planner "
                       "estimates.")  # fmt: skip
    _add_target(p)
    p.add_argument("sql", nargs="?", help="the statement (literals or $1 parameters)")
    p.add_argument("--file", help="read the statement from this file instead")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("run", help="the daemon: sample, advise, act, verify, as the policy says",
                       description="The daemon. In mode apply it creates, verifies and rolls "
                       "back indexes on its own, within the policy's limits and windows; in "
                       "recommend it journals proposals for `pg-tuner approve`; in observe it "
                       "only samples. SIGTERM stops it cleanly; SIGHUP re-reads the policy."
    )  # fmt: skip
    p.add_argument("--policy", help="policy YAML (default: $TUNER_POLICY)")
    p.add_argument("--once", action="store_true", help="run one full cycle and exit")

    p = sub.add_parser("demo", help="a throwaway PostgreSQL with a booking workload, tuned live",
                       description="Starts its own PostgreSQL 15 in a temporary directory "
                       "(no existing database is touched), loads a booking application, runs a "
                       "workload and the daemon in apply mode for about five minutes, and leaves "
                       "a report, the journal and an HTML report in --out.")  # fmt: skip
    p.add_argument(
        "--scale",
        type=float,
        default=0.5,
        help="data size (default 0.5: 2.3 million rows; 1.0: 4.6 million)",
    )
    p.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    p.add_argument("--out", default="pg-tuner-demo", help="where the journal and report.html go")

    p = sub.add_parser("audit", help="what the tuner did and why, from its journal",
                       description="Reads the journal file only: every action with who, when, "
                       "why, the figures that decided it, and the command that undoes it."
    )  # fmt: skip
    p.add_argument("--policy", help="policy YAML, for the journal path")
    p.add_argument("--journal", help="journal file (default: the policy's journal.path)")
    p.add_argument("--since", help="only records after this ISO date-time or age, e.g. 2d")
    p.add_argument("--action", help="only this action ID")
    p.add_argument("--json", action="store_true", help="print the records as JSON lines")
    p.add_argument(
        "--verify",
        action="store_true",
        help="check the hash chain; exit 1 on tampering or truncation",
    )
    p.add_argument(
        "--acknowledge",
        action="store_true",
        help="journal that you have seen the chain's problems; apply mode acts again",
    )
    p.add_argument("--reason", default="", help="with --acknowledge: why, for the journal")

    p = sub.add_parser("report", help="an HTML page of latency over time and every action",
                       description="Reads the journal and the latency series the daemon keeps "
                       "beside it (<journal>.latency.jsonl); writes one self-contained HTML file: "
                       "mean latency per statement over time (reads and writes apart), each "
                       "action marked with its index name and verdict, freeze windows shaded, "
                       "and a before/after table per action. Connects to no database."
    )  # fmt: skip
    p.add_argument("--policy", help="policy YAML, for the journal path and the freeze windows")
    p.add_argument("--journal", help="journal file (default: the policy's journal.path)")
    p.add_argument("--since", help="only what happened after this ISO date-time or age, e.g. 7d")
    p.add_argument("--out", default="pg-tuner-report.html", help="the HTML file to write")
    p.add_argument("--title", default="pg-tuner report", help="the page's title")

    verbs = (
        ("approve", "approve a proposed action (recommend mode)",
         "Appends an approval to the journal; the daemon then carries the action out."),
        ("reject", "reject a proposed action",
         "Appends a rejection to the journal; the action is never carried out."),
        ("rollback", "undo an applied action now",
         "Undoes an applied action now (DROP INDEX CONCURRENTLY of an index it built, or "
         "re-creating an index it dropped from the journaled definition), unless a freeze "
         "window is on or a running daemon leads the database: then the request is journaled "
         "and the daemon undoes it as soon as it may."),
    )  # fmt: skip
    for verb, text, description in verbs:
        p = sub.add_parser(verb, help=text, description=description)
        p.add_argument("id", help="the action ID, from `pg-tuner audit`")
        p.add_argument("--policy", help="policy YAML (default: $TUNER_POLICY)")
        p.add_argument("--journal", help="journal file (default: the policy's journal.path)")
        p.add_argument("--reason", default="", help="why, for the journal")
    return parser


def check_policy(args: argparse.Namespace) -> int:
    """Print the resolved thresholds of a good policy; problems and exit 2 for a bad one."""
    policy = load_policy(args.file, check_port=True)
    print(f"{args.file}: OK")
    rows = describe(policy)
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    return EXIT_OK


def _handler(command: str) -> Callable[[argparse.Namespace], int] | None:
    if command == "check-policy":
        return check_policy
    module = f"tuner.commands.{command.replace('-', '_')}"
    if importlib.util.find_spec(module) is None:
        return None
    run: Callable[[argparse.Namespace], int] = importlib.import_module(module).run
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Every command's output goes through terminal.printable (names in the database are
    hostile input); a reader that goes away (`| head`) ends the command quietly."""
    saved = terminal.install()
    try:
        status = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        return status
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_PIPE_CLOSED
    finally:
        sys.stdout, sys.stderr = saved


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or bad arguments (2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if not args.command:
        parser.print_help()
        return EXIT_BAD_INPUT
    log.configure(args.log_level)
    handler = _handler(args.command)
    if handler is None:
        print(f"pg-tuner {args.command}: not available in this version", file=sys.stderr)
        return EXIT_FAILURE
    try:
        with translated():  # a driver error no module translated still reads as ours
            return handler(args)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    except DatabaseUnavailable as exc:
        print(f"pg-tuner: database unavailable: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except QueryFailed as exc:  # the server refused a statement; the database is up
        print(f"pg-tuner: server error: {server_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except TunerError as exc:
        print(f"pg-tuner: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
