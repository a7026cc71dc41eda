"""`pg-tuner report [--since 7d] --out report.html`: the journal as one self-contained page.

A timeline of every action (from its proposal to where it stands, marked with its index
name and its verdict), the policy's freeze windows shaded on it, the measured net change
of each verified action (reads and writes apart), and a table of the figures behind each
verdict. Charts by plotly (its JavaScript inlined: the page needs no network).
"""

from __future__ import annotations

import argparse
import html
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tuner import series
from tuner.commands.audit import describe_action, journal_for, parse_since
from tuner.config import Policy, format_size
from tuner.journal import Record
from tuner.series import series_path
from tuner.windows import Calendar, Interval

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
COLOURS = {"kept": "#2e7d32", "rolled_back": "#c62828", "failed": "#6a1b9a",
           "rejected": "#757575", "proposed": "#1565c0", "approved": "#1565c0"}  # fmt: skip
_IN_FLIGHT = "#ef6c00"
_WRITES = ("insert", "update", "delete", "merge", "copy")
_LINES = 12  # statements per latency chart, the busiest
# 12 colours that stay apart (one per statement line in a chart)
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939")  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One action as the report shows it."""

    action_id: str
    what: str
    name: str
    state: str
    start: datetime
    end: datetime
    reason: str
    figures: dict[str, Any]
    applied: datetime | None = None


def latency_figures(points: list[dict[str, Any]], rows: list[Row], go: Any) -> list[Any]:
    """Mean time per statement over time, reads and writes apart, each action marked where
    it was applied with its index name and where it stands."""
    names: dict[str, tuple[str, str]] = {}
    weight: dict[str, float] = {}
    for point in points:
        for qid, pair in (point.get("labels") or {}).items():
            names.setdefault(qid, (str(pair[0]), str(pair[1])))
        for qid, (calls, mean) in point["q"].items():
            weight[qid] = weight.get(qid, 0.0) + calls * mean
    figures = []
    for title, writes in (("Reads: mean time per statement", False),
                          ("Writes: mean time per statement", True)):  # fmt: skip
        kind = {q: names.get(q, ("select",))[0].startswith(_WRITES) for q in weight}
        chosen = [q for q in sorted(weight, key=lambda q: -weight[q]) if kind[q] == writes]
        chosen = chosen[:_LINES]
        figure = go.Figure()
        for n, qid in enumerate(chosen):
            label, text = names.get(qid, (f"query {qid}", ""))
            xs = [p["t"] for p in points if qid in p["q"]]
            ys = [p["q"][qid][1] for p in points if qid in p["q"]]
            colour = _PALETTE[n % len(_PALETTE)]
            figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=label,
                                        hovertext=text, line={"color": colour}))  # fmt: skip
        marked = [r for r in rows if r.applied is not None]
        for k, row in enumerate(marked):  # labels staggered: actions close in time stay legible
            figure.add_vline(x=row.applied.timestamp() * 1000 if row.applied else 0,
                             line_dash="dot", line_color=COLOURS.get(row.state, _IN_FLIGHT),
                             annotation_text=f"{row.name}: {row.state}",
                             annotation_yshift=-16 * (k % 5))  # fmt: skip
        figure.update_layout(title=title, xaxis_title="time (UTC)", showlegend=True,
                             yaxis_title="mean time per call (ms)", height=420)  # fmt: skip
        figures.append(figure)
    return figures


def rows_of(records: list[Record]) -> list[Row]:
    """Each action's span (first record to last) and where it stands, in order of start."""
    by_action: dict[str, list[Record]] = {}
    for record in records:
        if record.action_id:
            by_action.setdefault(record.action_id, []).append(record)
    rows = []
    for action_id, group in by_action.items():
        data = next((r.action for r in reversed(group) if r.action), None) or {}
        last = group[-1]
        verdict = next((r for r in reversed(group) if r.state in ("kept", "rolled_back")), last)
        applied = next((r.when for r in group if r.state == "applied"), None)
        rows.append(Row(
            action_id, describe_action(data), str(data.get("index_name") or data.get("kind")),
            last.state, group[0].when, last.when, verdict.reason, dict(verdict.figures), applied,
        ))  # fmt: skip
    return sorted(rows, key=lambda r: r.start)


def freezes(policy: Policy | None, start: datetime, end: datetime) -> list[Interval]:
    """The policy's freeze windows that overlap [start, end]."""
    if policy is None:
        return []
    found = []
    for rule in Calendar.from_policy(policy)._freeze:
        for interval in rule.occurrences(start):
            if interval.start > end:
                break
            if interval.end >= start:
                found.append(interval)
    return found


def _shade(figure: Any, frozen: list[Interval]) -> None:
    """Freeze windows as grey bands, each named."""
    for interval in frozen:
        figure.add_vrect(x0=interval.start, x1=interval.end, fillcolor="#90a4ae", opacity=0.25,
                         line_width=0, annotation_text=f"freeze: {interval.name}")  # fmt: skip


def figures_html(rows: list[Row], policy: Policy | None, points: list[dict[str, Any]]) -> str:
    """The charts, the first carrying plotly's JavaScript."""
    import plotly.graph_objects as go  # type: ignore[import-untyped]

    timeline = go.Figure()
    for row in rows:
        colour = COLOURS.get(row.state, _IN_FLIGHT)
        timeline.add_trace(go.Scatter(
            x=[row.start, row.end], y=[row.action_id, row.action_id], mode="lines+markers+text",
            line={"color": colour, "width": 6}, name=f"{row.name} ({row.state})",
            text=["", f"{row.name}: {row.state}"], textposition="middle right",
            hovertext=[row.what, row.reason[:300]], hoverinfo="text",
        ))  # fmt: skip
    times = [t for r in rows for t in (r.start, r.end)]
    times += [datetime.fromisoformat(p["t"]) for p in points]
    frozen = freezes(policy, min(times), max(times)) if times else []
    _shade(timeline, frozen)
    timeline.update_layout(
        title="Actions over time (each from its proposal to its last record)",
        xaxis_title="time (UTC)", yaxis_title="action", showlegend=True,
        height=max(320, 60 * len(rows) + 160),
    )  # fmt: skip
    verified = [r for r in rows if isinstance(r.figures.get("net_change"), int | float)]
    change = go.Figure()
    change.add_trace(go.Bar(
        x=[r.name for r in verified], y=[100 * r.figures["net_change"] for r in verified],
        name="reads and writes: net change of the watched time (%)",
        marker_color=[COLOURS.get(r.state, _IN_FLIGHT) for r in verified],
    ))  # fmt: skip
    change.add_trace(go.Bar(
        x=[r.name for r in verified],
        y=[100 * float(r.figures.get("write_change") or 0) for r in verified],
        name="writes to the table: change of their mean time (%)", marker_color="#8d6e63",
    ))  # fmt: skip
    change.update_layout(
        title="Measured change per verified action (negative is faster)",
        xaxis_title="index", yaxis_title="change (%)", barmode="group",
    )  # fmt: skip
    parts = [timeline.to_html(full_html=False, include_plotlyjs=True, div_id="timeline")]
    if points:
        for n, figure in enumerate(latency_figures(points, rows, go)):
            _shade(figure, frozen)
            parts.append(figure.to_html(full_html=False, include_plotlyjs=False,
                                        div_id=f"latency{n}"))  # fmt: skip
    else:
        parts.append("<p>No latency series beside the journal yet: the daemon writes one "
                     "point a minute to JOURNAL.latency.jsonl.</p>")  # fmt: skip
    parts.append(change.to_html(full_html=False, include_plotlyjs=False, div_id="changes"))
    return "".join(str(p) for p in parts)


def table_html(rows: list[Row], tz: ZoneInfo) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("action", "what", "now", "started", "last",
                   "net change", "write change", "size", "why"))  # fmt: skip
    body = []
    for r in rows:
        net, write = r.figures.get("net_change"), r.figures.get("write_change")
        size = r.figures.get("size_bytes")
        cells = (
            r.action_id, r.what, r.state, f"{r.start.astimezone(tz):%Y-%m-%d %H:%M}",
            f"{r.end.astimezone(tz):%Y-%m-%d %H:%M}",
            f"{net:+.1%}" if isinstance(net, int | float) else "-",
            f"{write:+.1%}" if isinstance(write, int | float) else "-",
            format_size(size) if isinstance(size, int) else "-", r.reason,
        )  # fmt: skip
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(
    rows: list[Row],
    policy: Policy | None,
    tz: ZoneInfo,
    source: str,
    points: list[dict[str, Any]] = [],  # noqa: B006 (read only)
) -> str:
    made = datetime.now(UTC).astimezone(tz)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pg-tuner report</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 6px;vertical-align:top;font-size:13px}}</style>
</head><body>
<h1>pg-tuner report</h1>
<p>{len(rows)} action(s) from {html.escape(source)}, made {made:%Y-%m-%d %H:%M %Z}.</p>
{figures_html(rows, policy, points)}
<h2>Each action and the figures behind its verdict</h2>
{table_html(rows, tz)}
</body></html>
"""


def run(args: argparse.Namespace) -> int:
    try:
        import plotly  # noqa: F401
    except ImportError:
        print("pg-tuner report: needs plotly: pip install 'pg-tuner[report]'", file=sys.stderr)
        return EXIT_FAILURE
    journal, policy = journal_for(args)
    tz = policy.tz if policy else ZoneInfo("UTC")
    try:
        since = parse_since(args.since, tz, datetime.now(UTC)) if args.since else None
    except ValueError as exc:
        print(f"pg-tuner report: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not journal.path.exists():
        print(f"pg-tuner report: no journal at {journal.path}", file=sys.stderr)
        return EXIT_BAD_INPUT
    records = [r for r in journal.read() if since is None or r.when >= since]
    rows = rows_of(records)
    points = [p for p in series.read(series_path(journal.path))
              if since is None or datetime.fromisoformat(p["t"]) >= since]  # fmt: skip
    out = Path(args.out)
    out.write_text(page(rows, policy, tz, str(journal.path), points), encoding="utf-8")
    print(f"{out}: {len(rows)} action(s), {out.stat().st_size / 1024:.0f} KiB")
    return EXIT_OK
