"""`pg-tuner report`: one self-contained HTML page from the journal and the latency series.

What a DBA reads after a week of the daemon: each statement's mean latency over time (reads
and writes in two charts), every action drawn where it took effect with its index name and
verdict, freeze windows shaded, and per action a before/after table of the statements it
was watched on — the windows are the ones the journal records (the baseline, then from the
build to the verdict), the figures come from the series.

The charts are matplotlib SVG written into the page, so the file opens anywhere without a
network or a script. Everything that came from the database (statement texts, object
names) is escaped for HTML; matplotlib's math parser is off, so a `$1` stays text.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tuner import series
from tuner.ledger import Record
from tuner.models import ActionData, TransitionData
from tuner.series import Series

LINES_PER_CHART = 8
BUCKETS = 240  # points drawn per line at most: samples are averaged into buckets
_VERB = re.compile(r"^(?:\s|--[^\n]*\n|/\*.*?\*/)*(\w+)", re.S)
_READS, _WRITES = {"select", "with", "values", "table"}, {"insert", "update", "delete", "merge",
                                                          "copy"}  # fmt: skip
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FINAL = {"kept": "#1a7f37", "rolled_back": "#cf222e", "failed": "#9a6700",
          "rejected": "#6e7781"}  # fmt: skip


@dataclass(slots=True)
class ActionView:
    """One action as the report tells it: what, when each state began, and its windows."""

    action_id: str
    what: str
    index_name: str | None
    states: list[tuple[str, datetime, str]] = field(default_factory=list)  # state, when, reason
    watched: list[int] = field(default_factory=list)
    baseline: tuple[datetime, datetime] | None = None
    after: tuple[datetime, datetime] | None = None

    @property
    def state(self) -> str:
        return self.states[-1][0] if self.states else "?"

    def at(self, state: str) -> datetime | None:
        return next((when for s, when, _ in self.states if s == state), None)

    @property
    def effective(self) -> datetime | None:
        """When the change took effect: the build finished (or started, if it never did)."""
        return self.at("applied") or self.at("applying")


def actions(
    records: Iterable[Record], describe: Callable[[ActionData | None], str]
) -> list[ActionView]:
    """The journal's actions in the order they were first recorded."""
    found: dict[str, ActionView] = {}
    for record in records:
        if record.action_id is None or record.action_state is None:
            continue
        view = found.get(record.action_id)
        if view is None:
            typed = record.typed_action
            view = found[record.action_id] = ActionView(
                record.action_id, describe(typed), typed.index_name if typed else None
            )
        view.states.append((record.state, record.when, record.reason))
        if record.state == "baselined":
            seconds = float(record.figures.get("seconds") or 0.0)
            view.baseline = (record.when - timedelta(seconds=seconds), record.when)
            payload = record.payload
            view.watched = list(payload.texts) if isinstance(payload, TransitionData) else []
    for view in found.values():
        start, end = view.effective, _verdict_time(view)
        if start is not None and end is not None and end > start:
            view.after = (start, end)
    return list(found.values())


def _verdict_time(view: ActionView) -> datetime | None:
    return next((when for s, when, _ in view.states if s in _FINAL), None)


def freeze_spans(
    freeze_at: Callable[[datetime], object], start: datetime, end: datetime
) -> list[tuple[datetime, datetime, str]]:
    """The freeze windows between `start` and `end`, from a calendar's `freeze_at`."""
    spans: list[tuple[datetime, datetime, str]] = []
    step, instant = timedelta(minutes=5), start
    while instant < end and len(spans) < 1000:
        found = freeze_at(instant)
        if found is None:
            instant += step
            continue
        until = min(found.end, end)  # type: ignore[attr-defined]
        spans.append((instant, until, str(found.name)))  # type: ignore[attr-defined]
        instant = max(until, instant + timedelta(seconds=1))
    return spans


def clean(text: str, limit: int) -> str:
    """A one-line, printable form of a database text, cut at `limit` characters."""
    flat = " ".join(_UNPRINTABLE.sub("\N{REPLACEMENT CHARACTER}", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def kind(text: str) -> str | None:
    """ "read", "write", or None for utility statements (DDL, SET, EXPLAIN…): not charted."""
    found = _VERB.match(text)
    verb = found.group(1).lower() if found else ""
    return "read" if verb in _READS else "write" if verb in _WRITES else None


def render(
    data: Series,
    views: Sequence[ActionView],
    *,
    title: str,
    freezes: Sequence[tuple[datetime, datetime, str]] = (),
    generated: datetime,
) -> str:
    """The whole page."""
    totals = series.statements(data.points)
    busiest = sorted(totals, key=lambda q: -totals[q][1])
    kinds = {q: kind(data.texts.get(q, "")) for q in busiest}
    reads = [q for q in busiest if kinds[q] == "read"][:LINES_PER_CHART]
    writes = [q for q in busiest if kinds[q] == "write"][:LINES_PER_CHART]
    watched = {q for v in views for q in v.watched}
    labels = {q: f"Q{n}" for n, q in enumerate(_ordered(busiest, watched), 1)}
    parts = [_HEAD.format(title=html.escape(title))]
    parts.append(f"<h1>{html.escape(title)}</h1>")
    parts.append(_summary(data, views, generated))
    if data.points:
        parts.append("<h2>Reads: mean latency per call</h2>")
        parts.append(_chart(data, reads, labels, views, freezes, "reads"))
        parts.append("<h2>Writes: mean latency per call</h2>")
        parts.append(_chart(data, writes, labels, views, freezes, "writes"))
    else:
        parts.append("<p class=note>The latency series is empty: the daemon writes it beside "
                     "the journal while it runs (as the leader).</p>")  # fmt: skip
    parts.append("<h2>Actions</h2>")
    parts.extend(_action(v, data, labels) for v in views)
    if not views:
        parts.append("<p class=note>No actions in this period.</p>")
    parts.append("<h2>Statements</h2>")
    parts.append(_statements(data, labels, totals))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _ordered(busiest: list[int], watched: set[int]) -> list[int]:
    return [*busiest, *sorted(watched - set(busiest))]


def _summary(data: Series, views: Sequence[ActionView], generated: datetime) -> str:
    counts: dict[str, int] = {}
    for view in views:
        counts[view.state] = counts.get(view.state, 0) + 1
    states = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(counts.items()))
    span = "no samples"
    if data.points:
        first, last = data.points[0].at, data.points[-1].at
        span = f"{_t(first)} to {_t(last)} ({len(data.points)} samples)"
    skipped = f"; {data.unreadable} unreadable line(s) skipped" if data.unreadable else ""
    return (
        f"<p>Generated {_t(generated)}. Series: {span}{skipped}. "
        f"Actions: {len(views)}{' (' + states + ')' if states else ''}.</p>"
    )


def _t(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _chart(
    data: Series,
    queries: list[int],
    labels: dict[int, str],
    views: Sequence[ActionView],
    freezes: Sequence[tuple[datetime, datetime, str]],
    what: str,
) -> str:
    if not queries:
        return f"<p class=note>No {what} in the series.</p>"
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates, pyplot, ticker

    def x(moment: datetime) -> float:
        return float(dates.date2num(moment))  # type: ignore[no-untyped-call]

    pyplot.rcParams.update({"svg.fonttype": "none", "text.parse_math": False})
    figure, axes = pyplot.subplots(figsize=(11, 4.2), layout="constrained")
    start, end = data.points[0].at, data.points[-1].at
    width = max((end - start) / BUCKETS, timedelta(seconds=1))
    colours = pyplot.get_cmap("tab20").colors  # type: ignore[attr-defined]
    for n, queryid in enumerate(queries):
        xs, ys = _line(data, queryid, start, width)
        text = clean(data.texts.get(queryid, "(text not recorded)"), 48)
        axes.plot([x(t) for t in xs], ys, color=colours[(2 * n) % 20],
                  linestyle=("-", "--")[n // 10 % 2], linewidth=1.4,
                  marker="." if len(xs) < 30 else None,
                  label=f"{labels[queryid]}  {text}")  # fmt: skip
    for begin, until, name in freezes:
        axes.axvspan(x(begin), x(until), color="#8c959f", alpha=0.18, linewidth=0)
        axes.text(x(begin), 1.0, f" frozen: {clean(name, 30)}",
                  transform=axes.get_xaxis_transform(), fontsize=7, va="top",
                  color="#57606a")  # fmt: skip
    for view in views:
        when = view.effective
        if when is None or not start <= when <= end:
            continue
        colour = _FINAL.get(view.state, "#0969da")
        axes.axvline(x(when), color=colour, linewidth=1.2, linestyle=":")
        name = clean(view.index_name or view.what, 64)
        axes.text(x(when), 0.98, f" {name}: {view.state.replace('_', ' ')}", rotation=90,
                  transform=axes.get_xaxis_transform(), fontsize=7, va="top", ha="right",
                  color=colour)  # fmt: skip
    locator = dates.AutoDateLocator()  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    formatter = dates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(formatter)
    axes.set_yscale("log")
    # Plain numbers on the latency axis: the math parser that writes 10^2 is off.
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(ticker.NullFormatter())
    axes.set_ylabel("mean latency per call (ms, log scale)")
    axes.set_xlabel("time (UTC)")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    out = io.StringIO()
    figure.savefig(out, format="svg")
    pyplot.close(figure)
    svg = out.getvalue()
    return svg[svg.index("<svg") :]


def _line(
    data: Series, queryid: int, start: datetime, width: timedelta
) -> tuple[list[datetime], list[float]]:
    """Mean latency of `queryid` per bucket of `width` (buckets without calls left out)."""
    buckets: dict[int, tuple[int, float]] = {}
    for point in data.points:
        calls, total = point.queries.get(queryid, (0, 0.0))
        if calls:
            n = int((point.at - start) / width)
            c, t = buckets.get(n, (0, 0.0))
            buckets[n] = (c + calls, t + total)
    xs = [start + width * (n + 0.5) for n in sorted(buckets)]
    ys = [max(buckets[n][1] / buckets[n][0], 1e-4) for n in sorted(buckets)]
    return xs, ys


def _action(view: ActionView, data: Series, labels: dict[int, str]) -> str:
    rows = "".join(
        f"<li>{html.escape(_t(when))}: <b>{html.escape(state.replace('_', ' '))}</b>"
        f" {html.escape(clean(reason, 300))}</li>"
        for state, when, reason in view.states
    )
    colour = _FINAL.get(view.state, "#0969da")
    out = [
        f"<section class=action id='action-{html.escape(view.action_id, quote=True)}'>",
        f"<h3><span style='color:{colour}'>{html.escape(view.state.replace('_', ' '))}</span>"
        f" {html.escape(view.action_id)}: {html.escape(clean(view.what, 300))}</h3>",
        f"<ul>{rows}</ul>",
    ]
    if view.watched and view.baseline and view.after:
        out.append(_before_after(view, data, labels))
    elif view.watched:
        out.append("<p class=note>No verdict window yet, or the series does not cover it.</p>")
    out.append("</section>")
    return "\n".join(out)


def _before_after(view: ActionView, data: Series, labels: dict[int, str]) -> str:
    assert view.baseline is not None and view.after is not None
    rows = []
    for queryid in view.watched:
        before = data.mean_ms(queryid, *view.baseline)
        after = data.mean_ms(queryid, *view.after)
        change = ""
        if before and after and before[1] > 0:
            change = f"{100.0 * (after[1] - before[1]) / before[1]:+.1f} %"
        text = clean(data.texts.get(queryid, ""), 90)
        rows.append(
            f"<tr><td>{labels.get(queryid, str(queryid))}</td><td>{html.escape(text)}</td>"
            f"<td class=n>{_ms(before)}</td><td class=n>{_ms(after)}</td>"
            f"<td class=n>{change}</td></tr>"
        )
    return (
        "<table><tr><th>query</th><th>text</th><th>before: mean ms (calls)</th>"
        "<th>after: mean ms (calls)</th><th>change</th></tr>" + "".join(rows) + "</table>"
        f"<p class=note>Before: the baseline window, {_t(view.baseline[0])} to "
        f"{_t(view.baseline[1])}; after: from the build to the verdict, {_t(view.after[0])}"
        f" to {_t(view.after[1])}. Samples ending in each window.</p>"
    )


def _ms(figure: tuple[int, float] | None) -> str:
    return "-" if figure is None else f"{figure[1]:.3f} ({figure[0]})"


def _statements(data: Series, labels: dict[int, str], totals: dict[int, tuple[int, float]]) -> str:
    rows = []
    for queryid, label in labels.items():
        calls, total = totals.get(queryid, (0, 0.0))
        mean = f"{total / calls:.3f}" if calls else "-"
        text = html.escape(clean(data.texts.get(queryid, "(text not recorded)"), 600))
        rows.append(
            f"<tr><td>{label}</td><td class=n>{queryid}</td><td class=n>{calls}</td>"
            f"<td class=n>{mean}</td><td><code>{text}</code></td></tr>"
        )
    return (
        "<table><tr><th>label</th><th>queryid</th><th>calls</th><th>mean ms</th>"
        "<th>normalized text</th></tr>" + "".join(rows) + "</table>"
    )


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #1f2328; max-width: 1400px; }}
table {{ border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }}
td, th {{ border: 1px solid #d0d7de; padding: 0.25em 0.5em; text-align: left;
  vertical-align: top; }}
td.n {{ text-align: right; white-space: nowrap; }}
code {{ white-space: pre-wrap; word-break: break-all; }}
.note {{ color: #57606a; font-size: 0.9em; }}
section.action {{ border-top: 1px solid #d0d7de; margin-top: 1em; }}
svg {{ max-width: 100%; height: auto; }}
</style></head><body>"""
