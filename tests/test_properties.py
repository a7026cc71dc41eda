"""Property tests of the parsers of outside input: the policy (YAML file and TUNER_*
environment) and the journal's records. Whatever hypothesis feeds them — random text,
random structures under the policy's real keys, a journal cut or damaged anywhere — they
may only succeed or raise the project's own errors (tuner.errors.TunerError), never a
Python exception a person would see as a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner.cli import main
from tuner.config import Policy, load_policy
from tuner.errors import PolicyError, TunerError
from tuner.journal import Journal, check, record_hash, replay
from tuner.models import Action, ActionKind, ActionState, IndexSpec, TableRef

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh directory per example (pytest's tmp_path is one per test)."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


# --- the policy --------------------------------------------------------------------------------

KEYS = ["target", "dsn", "password_file", "mode", "level", "timezone", "thresholds", "freeze",
        "maintenance", "limits", "timeouts", "load", "health", "schedule", "journal", "metrics",
        "name", "days", "from", "to", "cron", "duration", "min_cost_reduction",
        "verification_window", "index_storage_budget", "lock_timeout", "statement_timeout",
        "sample_interval", "path", "listen", "max_actions_per_day", "significance",
        "_secrets_dir", "password"]  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(["1s", "0s", "-5m", "99999999999d", ".inf", "500MB", "1e999GB", "22:00",
                     "2026-12-20 00:00", "0 2 * * sat", "apply", "moderate", "Europe/Berlin",
                     "127.0.0.1:0", "not-an-address", "/dev/null", "/", "host=127.0.0.1"]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)
    ),
    max_leaves=25,
)
SECTIONS = {name: model for name in ("thresholds", "limits", "timeouts", "load", "health",
            "schedule", "journal", "metrics", "target")
            if isinstance(model := getattr(Policy.model_fields[name].annotation, "model_fields",
                                           None), dict)}  # fmt: skip
# the real shape (each section with its own keys) with hostile values, or any shape at all
SHAPED = st.fixed_dictionaries(
    {"target": st.just({"dsn": "host=127.0.0.1"})},
    optional={
        name: st.dictionaries(st.sampled_from(sorted(keys)), VALUES, max_size=4)
        for name, keys in SECTIONS.items()
        if name != "target"
    }
    | {"mode": SCALARS, "level": SCALARS, "timezone": SCALARS, "freeze": VALUES},
)
POLICIES = SHAPED | st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8)


def load_or_refuse(path: Path) -> None:
    try:
        load_policy(path)
    except PolicyError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@SETTINGS
@given(text=st.text(max_size=400))
def test_any_text_is_a_policy_or_refused(text: str) -> None:
    with scratch() as tmp:
        (tmp / "p.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
        load_or_refuse(tmp / "p.yaml")


@SETTINGS
@given(data=POLICIES, cut=st.integers(min_value=0, max_value=2000), junk=st.binary(max_size=8))
def test_any_structure_under_the_real_keys_is_a_policy_or_refused(
    data: dict[str, Any], cut: int, junk: bytes
) -> None:
    # Tried: random values under the policy's own keys, whole, and cut with junk appended.
    text = yaml.safe_dump(data, allow_unicode=True).encode()
    with scratch() as tmp:
        for content in (text, text[:cut] + junk):
            (tmp / "p.yaml").write_bytes(content)
            load_or_refuse(tmp / "p.yaml")


ENV_NAMES = ["TUNER_MODE", "TUNER_FREEZE", "TUNER_LIMITS", "TUNER_TARGET", "TUNER_TIMEZONE",
             "TUNER_TIMEOUTS__LOCK_TIMEOUT", "TUNER_THRESHOLDS__MIN_NET_GAIN",
             "TUNER_METRICS__LISTEN", "TUNER_JOURNAL__PATH", "TUNER_SCHEDULE",
             "TUNER_FREEZE__0__NAME"]  # fmt: skip
ENV_VALUES = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
            max_size=40),
    VALUES.map(lambda v: json.dumps(v)),
    st.sampled_from(["not json", "[" * 3000, "{}", "[]", "null", "1e999", '{"a": 1}']),
)  # fmt: skip


@SETTINGS
@given(env=st.dictionaries(st.sampled_from(ENV_NAMES), ENV_VALUES, max_size=3))
def test_any_environment_is_applied_or_refused_by_name(env: dict[str, str]) -> None:
    with scratch() as tmp, pytest.MonkeyPatch.context() as patch:
        (tmp / "p.yaml").write_text('target: {dsn: "host=127.0.0.1"}\nmetrics: {listen: null}\n')
        for name, value in env.items():
            patch.setenv(name, value)
        load_or_refuse(tmp / "p.yaml")


# --- the journal --------------------------------------------------------------------------------


def journal_bytes() -> bytes:
    """A small journal as the tuner writes it: an index's life, an analyze, a rejection."""
    with scratch() as tmp:
        j = Journal(tmp / "j.jsonl")
        orders = TableRef("public", "orders")
        a1 = Action("a1", ActionKind.CREATE_INDEX, orders,
                    IndexSpec(orders, ("customer_id",), include=("total",)),
                    index_name="pgt_orders_customer_id", reason="71% cheaper",
                    figures={"cost_reduction": 0.71})  # fmt: skip
        j.append(ActionState.PROPOSED, action=a1)
        for state in (ActionState.APPROVED, ActionState.APPLYING, ActionState.APPLIED):
            j.append(state, action=a1, reason=state.value)
        j.append("rollback_requested", action_id="a1", actor="operator:alice")
        a2 = Action("a2", ActionKind.ANALYZE, orders, reason="stale")
        j.append(ActionState.PROPOSED, action=a2)
        j.append(ActionState.REJECTED, action_id="a2", actor="operator:bob", reason="no")
        return j.path.read_bytes()


GOOD = journal_bytes()
LINES = GOOD.splitlines(keepends=True)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=10,
)  # fmt: skip
FIELDS = ["seq", "time", "actor", "action_id", "state", "action", "reason", "figures", "undo",
          "data", "prev", "hash", "kind", "table", "columns", "index_name",
          "fragments"]  # fmt: skip


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """The journal cut, overwritten, reordered, or with one field of one record replaced
    (its hash recomputed or not: a careless edit and a careful forgery)."""
    how = draw(st.sampled_from(["cut", "bytes", "lines", "field"]))
    if how == "cut":
        return GOOD[: draw(st.integers(0, len(GOOD)))]
    if how == "bytes":
        at = draw(st.integers(0, len(GOOD)))
        return GOOD[:at] + draw(st.binary(min_size=1, max_size=20)) + GOOD[at + 5 :]
    if how == "lines":
        lines = draw(st.permutations(LINES))
        keep = draw(st.integers(0, len(lines)))
        extra = draw(st.lists(st.sampled_from(LINES), max_size=2))
        return b"".join([*lines[:keep], *extra])
    n = draw(st.integers(0, len(LINES) - 1))
    body = json.loads(LINES[n])
    target = body
    path = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3))
    for key in path[:-1]:
        inner = target.get(key)
        if not isinstance(inner, dict):
            break
        target = inner
    target[path[-1]] = draw(JSON)
    if draw(st.booleans()):
        body["hash"] = record_hash(body)
    line = json.dumps(body, ensure_ascii=False).encode() + b"\n"
    return b"".join([*LINES[:n], line, *LINES[n + 1 :]])


def quietly(*argv: str) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        return main(list(argv))


@SETTINGS
@given(content=damaged())
def test_a_damaged_journal_is_read_verified_audited_and_appended_to(content: bytes) -> None:
    with scratch() as tmp:
        path = tmp / "j.jsonl"
        path.write_bytes(content)
        journal = Journal(path)
        try:
            records = journal.read()
            check(journal.scan())
            for status in replay(records).values():
                status.to_action()
            assert quietly("audit", "--journal", str(path)) in (0, 1, 2)
            assert quietly("audit", "--journal", str(path), "--json") in (0, 1, 2)
            assert quietly("audit", "--journal", str(path), "--verify") in (0, 1)
            assert quietly("audit", "--journal", str(path), "--since", "1d") in (0, 1, 2)
            journal.append(ActionState.PROPOSED, action_id="a9", reason="after the damage")
        except TunerError:
            pass
        # whatever was there before stays there: the file is only ever appended to
        assert path.read_bytes().startswith(content)


@pytest.mark.parametrize(
    "fragments", [5, "abc", [5], [{"offset": [1]}], [{"offset": "x", "base64": 3}], [{}]]
)
def test_a_forged_repair_record_is_a_bad_line(fragments: Any) -> None:
    # Tried: a journal_repair record, correctly hashed and chained, whose fragments are
    # not a list of {offset: int, base64: str} (before: TypeError/ValueError in verify).
    with scratch() as tmp:
        journal = Journal(tmp / "j.jsonl")
        first = journal.append(ActionState.PROPOSED, action_id="a1", reason="x")
        body = {**first.to_dict(), "seq": 2, "prev": first.hash, "state": "journal_repair",
                "data": {"fragments": fragments}}  # fmt: skip
        body["hash"] = record_hash(body)
        with journal.path.open("a") as fh:
            fh.write(json.dumps(body) + "\n")
        result = journal.verify()
        assert not result.ok and result.records == 1
        assert "a journal_repair whose fragments are malformed" in result.problems[0]
        assert quietly("audit", "--journal", str(journal.path), "--verify") == 1


def test_the_undamaged_journal_verifies() -> None:
    with scratch() as tmp:
        (tmp / "j.jsonl").write_bytes(GOOD)
        result = Journal(tmp / "j.jsonl").verify()
        assert result.ok and result.records == len(LINES), result.problems
