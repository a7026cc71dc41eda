"""`pg-tuner report`: the journal and the latency series as one self-contained HTML file."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tuner import report, series
from tuner.commands.audit import EXIT_BAD_INPUT, EXIT_OK, describe_action, journal_for, parse_since
from tuner.windows import Calendar


def run(args: argparse.Namespace) -> int:
    journal, policy = journal_for(args)
    tz = policy.tz if policy else ZoneInfo("UTC")
    now = datetime.now(UTC)
    try:
        since = parse_since(args.since, tz, now) if args.since else None
    except (ValueError, OverflowError) as exc:
        print(f"pg-tuner report: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = Path(args.out)
    if out.is_dir():
        print(f"pg-tuner report: --out {out} is a directory; name the HTML file", file=sys.stderr)
        return EXIT_BAD_INPUT
    records = [r for r in journal.read() if since is None or r.when >= since] if (
        journal.path.exists()) else []  # fmt: skip
    data = series.read(journal.path, since)
    views = report.actions(records, describe_action)
    moments = [p.at for p in data.points] + [when for v in views for _, when, _ in v.states]
    freezes: list[tuple[datetime, datetime, str]] = []
    if policy is not None and moments:
        calendar = Calendar.from_policy(policy)
        freezes = report.freeze_spans(calendar.freeze_at, min(moments), max(moments))
    page = report.render(data, views, title=args.title, freezes=freezes, generated=now)
    partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, out)  # a reader never sees half a page
    print(
        f"wrote {out}: {len(views)} action(s), {len(data.points)} latency sample(s)"
        + ("" if data.points else f" (no series beside {journal.path} yet)")
    )
    return EXIT_OK
