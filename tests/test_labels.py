"""Statement labels and shortened texts: what a person reads instead of a queryid."""

from __future__ import annotations

import re

from tuner.labels import describe, label, shorten

JOIN = (
    "SELECT b.id, b.guest_id, b.room_id, b.check_in, b.check_out, r.price FROM bookings b "
    "JOIN rooms r ON r.id = b.room_id WHERE b.guest_id = $1 ORDER BY b.check_in DESC LIMIT $2"
)


def test_a_label_names_the_verb_and_tables_and_is_stable() -> None:
    name = label(JOIN)
    assert name.startswith("select bookings,rooms #")
    assert len(name.split("#")[1]) == 6
    assert label(JOIN) == name, "the same text, the same label"
    assert label(JOIN.replace(" ", "\n  ").lower()) == name, "whitespace and case do not count"
    assert label("/* app */ -- x\n(SELECT 1 FROM bookings)").startswith("select bookings #")
    assert label("INSERT INTO bookings (guest_id) VALUES ($1)").startswith("insert bookings #")


def test_two_statements_on_the_same_tables_get_different_labels() -> None:
    one = "SELECT id FROM orders WHERE customer_id = $1"
    two = "SELECT id FROM orders WHERE status = $1"
    assert label(one) != label(two)
    assert label(one).split("#")[0] == label(two).split("#")[0] == "select orders "


def test_many_tables_are_counted_not_listed() -> None:
    text = "SELECT 1 FROM a JOIN b USING (x) JOIN c USING (x) JOIN d USING (x) JOIN e USING (x)"
    assert label(text).startswith("select a,b,c+2 #")


def test_an_unparsable_text_still_gets_a_label() -> None:
    assert label("VACUUM (VERBOSE) orders").startswith("vacuum #")
    assert label("").startswith("? #")


def test_a_hostile_table_name_is_escaped_in_labels_and_texts() -> None:
    text = 'SELECT * FROM "evil\x1b[2Jname" WHERE id = $1'  # bad input: a terminal escape
    assert "\x1b" not in label(text) and "\\x1b" in label(text)
    assert "\x1b" not in shorten(text, 200)


def test_shorten_keeps_tables_and_predicates_before_the_select_list() -> None:
    short = shorten(JOIN, 80)
    assert len(short) <= 80
    assert short.startswith("SELECT … FROM bookings b JOIN rooms r")
    assert short.endswith("…")
    assert shorten("SELECT 1", 80) == "SELECT 1"
    assert shorten("SELECT   a\n FROM\tt", 80) == "SELECT a FROM t", "one line"


def test_shorten_cuts_at_a_word_within_the_width() -> None:
    text = "UPDATE orders SET " + ", ".join(f"column_{i} = ${i}" for i in range(1, 40))
    short = shorten(text, 60)
    assert len(short) <= 60 and short.endswith("…")
    assert short[:-1] == text[: len(short) - 1].rstrip(), "a prefix of the text, cut at a word"


def test_shorten_never_ends_on_a_figure() -> None:
    """`WHERE package_id = $1…` reads as a number cut short (`$12`, `$123`): cut before it."""
    text = ("SELECT id, user_id, status, check_in, amount FROM bookings WHERE package_id = $1"
            " ORDER BY created_at DESC LIMIT $2 OFFSET 1000")  # fmt: skip
    for width in range(24, len(text)):
        short = shorten(text, width)
        assert len(short) <= width and not re.search(r"\d…", short), (width, short)
    assert shorten("x" * 20 + " " + "1234567890" * 4, 40).endswith("x…")


def test_describe_fits_the_width() -> None:
    line = describe(JOIN, 90)
    assert line.startswith(label(JOIN) + "  SELECT … FROM bookings")
    assert len(line) <= 90
