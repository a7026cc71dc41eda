"""The demo's picture: a self-contained HTML page with one line per query and the actions."""

from __future__ import annotations

import re

from tuner.chart import Marker, Point, render


def test_one_line_per_query_and_a_rule_per_action() -> None:
    points = [Point(s, q, ms) for s in (5, 10, 15) for q, ms in (("a", 40.0), ("b", 0.3))]
    page = render("demo", points, [Marker(8, "built pgt_x"), Marker(12, "rolled back <y>")])
    assert page.startswith("<!doctype html>")
    assert len(re.findall(r"<polyline ", page)) == 2
    assert "built pgt_x" in page
    assert "rolled back &lt;y&gt;" in page  # labels are escaped, the page stays valid
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # no fetches


def test_faster_query_is_drawn_lower_on_the_log_scale() -> None:
    page = render("t", [Point(1, "slow", 100.0), Point(2, "slow", 100.0),
                        Point(1, "fast", 1.0), Point(2, "fast", 1.0)], [])  # fmt: skip
    ys: dict[int, float] = {}
    for match in re.finditer(r'<polyline points="([^"]+)"', page):
        first = match.group(1).split()[0]
        ys[len(ys)] = float(first.split(",")[1])
    # queries are sorted: "fast" first, "slow" second; SVG y grows downwards
    assert ys[0] > ys[1]


def test_empty_series_still_renders() -> None:
    # Tried: no points at all (a demo interrupted before the first sample).
    assert "<svg" in render("empty", [], [])
