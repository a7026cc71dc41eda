"""The policy: a good file resolves, every bad one is refused with FILE:LINE: key: reason."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.config import Level, Limits, Mode, Weekday, load_policy
from tuner.errors import PolicyError

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "policy.yaml"
GOOD = """\
target:
  dsn: "host=127.0.0.1 dbname=app user=tuner"
mode: apply
level: moderate
timezone: Europe/Berlin
thresholds:
  min_cost_reduction: 0.4
freeze:
  - name: nights
    days: [Mon, tue]
    from: "22:00"
    to: 06:00
  - name: year-end
    from: 2026-12-20 00:00:00
    to: 2027-01-03 00:00:00
  - name: billing
    cron: "0 0 1 * *"
    duration: 6h
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return [p.replace(str(path), "FILE") for p in info.value.problems]


def test_example_policy_is_valid_and_check_policy_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-policy", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "thresholds.min_cost_reduction" in out and "0.5" in out


def test_level_preset_with_override(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.mode is Mode.APPLY and policy.level is Level.MODERATE
    resolved = policy.resolved
    assert resolved.min_cost_reduction == 0.4  # overridden
    assert resolved.min_workload_share == 0.01  # moderate's preset
    assert resolved.verification_window == timedelta(minutes=30)
    assert resolved.drop_unused_after == timedelta(days=30)
    assert [w.kind for w in policy.freeze] == ["weekly", "absolute", "cron"]
    assert str(policy.freeze[0].end) == "06:00:00"  # unquoted 06:00 is a time, not base-60


def test_unquoted_evening_time_is_not_read_as_a_number(tmp_path: Path) -> None:
    # YAML 1.1 reads 18:00 as the integer 1080; the policy must read it as 18:00.
    policy = load_policy(write(tmp_path, GOOD.replace('"22:00"', "18:00")))
    assert str(policy.freeze[0].start) == "18:00:00"


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNER_MODE", "observe")
    monkeypatch.setenv("TUNER_THRESHOLDS__MIN_NET_GAIN", "0.33")
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.mode is Mode.OBSERVE
    assert policy.resolved.min_net_gain == 0.33


def test_bad_environment_override_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tried: TUNER_LEVEL set to a level that does not exist.
    monkeypatch.setenv("TUNER_LEVEL", "reckless")
    found = problems(tmp_path, GOOD)
    assert any(p.startswith("TUNER_LEVEL: level: ") for p in found), found


def test_yaml_syntax_error(tmp_path: Path) -> None:
    # Tried: an unclosed flow sequence on line 3.
    found = problems(tmp_path, 'target:\n  dsn: "x=1"\nfreeze: [a, b\nmode: apply\n')
    assert len(found) == 1 and found[0].startswith("FILE:")
    assert "YAML syntax error" in found[0]


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    # Tried: a typo'd threshold key on line 6.
    found = problems(tmp_path, GOOD.replace("min_cost_reduction", "min_cost_reducton"))
    assert found == [
        "FILE:7: thresholds.min_cost_reducton: unknown key (did you mean 'min_cost_reduction'?)"
    ]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    # Tried: `modes:` instead of `mode:`.
    found = problems(tmp_path, GOOD.replace("mode: apply", "modes: apply"))
    assert found[0].startswith("FILE:3: modes: unknown key")


def test_wrong_type(tmp_path: Path) -> None:
    # Tried: a word where a number of indexes per day belongs.
    found = problems(tmp_path, GOOD + "limits:\n  max_actions_per_day: many\n")
    assert found == [
        "FILE:20: limits.max_actions_per_day: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]


def test_hash_indexes_can_be_turned_off_and_only_by_a_boolean(tmp_path: Path) -> None:
    # Tried: `sometimes` where a boolean belongs.
    assert load_policy(write(tmp_path, GOOD + "limits:\n  hash_indexes: false\n")).limits == (
        Limits(hash_indexes=False)
    )
    assert load_policy(write(tmp_path, GOOD)).limits.hash_indexes
    found = problems(tmp_path, GOOD + "limits:\n  hash_indexes: sometimes\n")
    assert found == ["FILE:20: limits.hash_indexes: Input should be a valid boolean, unable to "
                     "interpret input"]  # fmt: skip


def test_negative_duration(tmp_path: Path) -> None:
    # Tried: a verification window of minus five minutes.
    text = GOOD.replace(
        "min_cost_reduction: 0.4", "min_cost_reduction: 0.4\n  verification_window: -5m"
    )
    found = problems(tmp_path, text)
    assert found == ["FILE:8: thresholds.verification_window: a duration cannot be negative"]


def test_unknown_level(tmp_path: Path) -> None:
    # Tried: level: yolo.
    found = problems(tmp_path, GOOD.replace("level: moderate", "level: yolo"))
    assert found == ["FILE:4: level: Input should be 'conservative', 'moderate' or 'aggressive'"]


def test_unknown_time_zone(tmp_path: Path) -> None:
    # Tried: a time zone that is not in the IANA database.
    found = problems(tmp_path, GOOD.replace("Europe/Berlin", "Mars/Olympus_Mons"))
    assert len(found) == 1 and found[0].startswith("FILE:5: timezone: unknown time zone")


def test_end_before_start(tmp_path: Path) -> None:
    # Tried: an absolute freeze window whose end is three weeks before its start.
    found = problems(tmp_path, GOOD.replace("2027-01-03", "2026-12-01"))
    assert len(found) == 1 and found[0].startswith("FILE:13: freeze.1: 'to'")
    assert "is not after 'from'" in found[0]


def test_malformed_cron(tmp_path: Path) -> None:
    # Tried: minute 61 in a cron expression.
    found = problems(tmp_path, GOOD.replace('"0 0 1 * *"', '"61 0 1 * *"'))
    assert len(found) == 1 and found[0].startswith("FILE:17: freeze.2.cron: malformed cron")


def test_cron_with_too_few_fields(tmp_path: Path) -> None:
    # Tried: a three-field cron expression.
    found = problems(tmp_path, GOOD.replace('"0 0 1 * *"', '"0 0 1"'))
    assert "Wrong number of fields" in found[0]


def test_password_in_the_dsn(tmp_path: Path) -> None:
    # Tried: a password inside the target's connection string; it must not be echoed back.
    found = problems(tmp_path, GOOD.replace("user=tuner", "user=tuner password=hunter22"))
    assert len(found) == 1 and found[0].startswith(
        "FILE:2: target.dsn: the DSN contains a password"
    )
    assert "hunter22" not in found[0]


def test_password_in_a_uri(tmp_path: Path) -> None:
    # Tried: postgresql://user:secret@host/db.
    found = problems(
        tmp_path,
        GOOD.replace(
            '"host=127.0.0.1 dbname=app user=tuner"', '"postgresql://tuner:s3cr3t@db/app"'
        ),
    )
    assert any("contains a password" in p for p in found)
    assert not any("s3cr3t" in p for p in found)


def test_password_key_in_the_yaml(tmp_path: Path) -> None:
    # Tried: a `password:` key under target.
    found = problems(tmp_path, GOOD.replace("target:\n", "target:\n  password: hunter22\n"))
    assert any(p.startswith("FILE:2: target.password: passwords are never read") for p in found)
    assert not any("hunter22" in p for p in found)


def test_empty_file(tmp_path: Path) -> None:
    # Tried: a file with nothing but a comment.
    assert problems(tmp_path, "# nothing here\n") == [
        "FILE:1: (policy): the file is empty; see config/policy.yaml for every key"
    ]


def test_not_a_mapping(tmp_path: Path) -> None:
    # Tried: a YAML list at the top level.
    assert problems(tmp_path, "- a\n- b\n")[0].startswith("FILE:1: (policy): expected a mapping")


def test_missing_target(tmp_path: Path) -> None:
    # Tried: a policy without the one required key.
    assert problems(tmp_path, "mode: apply\n") == ["FILE:1: target: Field required"]


def test_duplicate_key(tmp_path: Path) -> None:
    # Tried: `mode` given twice; YAML would silently keep the second.
    found = problems(tmp_path, GOOD + "mode: observe\n")
    assert found == ["FILE:19: mode: key given twice (the second would silently win)"]


def test_fraction_out_of_range(tmp_path: Path) -> None:
    # Tried: a cost reduction of 150 %.
    found = problems(tmp_path, GOOD.replace("0.4", "1.5"))
    assert found == [
        "FILE:7: thresholds.min_cost_reduction: Input should be less than or equal to 1"
    ]


def test_bad_size_unit(tmp_path: Path) -> None:
    # Tried: a storage budget in furlongs.
    found = problems(tmp_path, GOOD + "limits:\n  index_storage_budget: 5 furlongs\n")
    assert found == [
        "FILE:20: limits.index_storage_budget: unknown unit 'furlongs'; use kB, MB, GB or TB"
    ]


def test_cron_window_without_duration(tmp_path: Path) -> None:
    # Tried: a cron window that never says how long it lasts.
    found = problems(tmp_path, GOOD.replace("    duration: 6h\n", ""))
    assert found == ["FILE:16: freeze.2: a cron window needs a positive 'duration', e.g. 4h"]


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    # Tried: four independent mistakes in one file; all four must be listed, in file order.
    text = (
        GOOD.replace("mode: apply", "mode: aply")
        .replace("level: moderate", "level: 9")
        .replace("Europe/Berlin", "Nowhere/Land")
        .replace("0.4", "-1")
    )
    found = problems(tmp_path, text)
    assert [p.split(":")[1] for p in found] == ["3", "4", "5", "7"]


def test_unreadable_file(tmp_path: Path) -> None:
    # Tried: a path that does not exist.
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "missing.yaml")
    assert "cannot read the file" in info.value.problems[0]


@pytest.mark.parametrize("flag", ["--help", "check-policy --help"])
def test_cli_help_works(flag: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", *flag.split()], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert "pg-tuner" in proc.stdout


def test_check_policy_cli_exit_2_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("level: moderate", "level: yolo"))
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "check-policy", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"{path}:4: level: Input should be 'conservative', 'moderate' or 'aggressive'"
    )


# --- hostile policy input: every case exit 2, FILE:LINE (or the variable) and a reason -------


def check_policy_cli(
    path: Path | str, env: dict[str, str] | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    """`pg-tuner check-policy PATH` as a process, with 30 s and 1.5 GB it must stay under."""

    def cap_memory() -> None:
        limit = 1536 * 1024**2
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    try:
        return subprocess.run(
            [sys.executable, "-m", "tuner", *(args or ("check-policy",)), str(path)],
            capture_output=True, text=True, check=False, timeout=30, preexec_fn=cap_memory,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"check-policy {path} did not return within 30 s")


def refused(proc: subprocess.CompletedProcess[str], where: str, reason: str) -> None:
    """Exit 2, one problem line `WHERE: ... REASON ...`, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Error:" not in proc.stderr.split(": ", 1)[0]
    assert any(line.startswith(where) and reason in line for line in proc.stderr.splitlines()), (
        proc.stderr[-2000:]
    )


BOMB = """\
target: {dsn: "host=127.0.0.1 dbname=app"}
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_a_yaml_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    # Tried: 1 kB of nested aliases that expand to 9^9 = 387 million strings.
    assert len(BOMB) < 1024
    proc = check_policy_cli(write(tmp_path, BOMB))
    refused(proc, f"{tmp_path / 'policy.yaml'}:", "(policy): refused: expands to more than")


def test_a_recursive_alias_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    # Tried: an alias inside its own anchor, and a list nested 5,000 deep.
    assert problems(tmp_path, GOOD + "x: &loop [1, *loop]\n") == [
        "FILE:19: (policy): refused: alias *loop refers to itself or to nothing"
    ]
    found = problems(tmp_path, GOOD + "x: " + "[" * 5000 + "]" * 5000 + "\n")
    assert found == ["FILE:19: (policy): refused: nested more than 32 levels deep"]


def test_aliases_that_stay_small_still_work(tmp_path: Path) -> None:
    # Sharing one window's days between two windows is what anchors are for.
    text = GOOD.replace("days: [Mon, tue]", "days: &nights [Mon, tue]")
    text += "maintenance:\n  - {name: m, days: *nights, from: '01:00', to: '02:00'}\n"
    assert load_policy(write(tmp_path, text)).maintenance[0].days == (Weekday.MON, Weekday.TUE)


@pytest.mark.parametrize(
    ("key", "value", "line", "reason"),
    [
        ("thresholds.verification_window", ".inf", 8, "a duration must be a finite number"),
        ("thresholds.baseline_window", ".nan", 8, "a duration must be a finite number"),
        ("limits.index_storage_budget", ".inf", 20, "a size must be a finite number"),
        ("limits.max_table_size", "1.0e+400", 20, "a size must be a finite number"),
        ("timeouts.statement_timeout", "99999999999d", 20, "cannot be longer than 36500d"),
        ("timeouts.statement_timeout", "0s", 20, "0 means no limit to PostgreSQL"),
        ("timeouts.lock_timeout", "0s", 20, "0 means no limit to PostgreSQL"),
        ("timeouts.lock_timeout", "0.4ms", 20, "0 means no limit to PostgreSQL"),
        ("timeouts.statement_timeout", "30d", 20, "PostgreSQL takes at most 2147483647ms"),
        ("timeouts.maintenance_work_mem", "3TB", 20, "PostgreSQL takes 1MB to 2147483647kB"),
        ("schedule.sample_interval", "0s", 20, "must be at least 1s"),
        ("schedule.advise_interval", "0", 20, "must be at least 1s"),
        ("thresholds.write_regression_floor_ms", ".inf", 8, "Input should be a finite number"),
        ("metrics.listen", "not-an-address", 20, "'not-an-address' is not HOST:PORT"),
        ("metrics.listen", "192.0.2.1:9187", 20, "cannot listen on 192.0.2.1"),
        ("metrics.listen", "no-such-host.invalid:9187", 20, "cannot resolve 'no-such-host"),
    ],
)
def test_values_that_would_fail_at_run_time_are_refused_at_check_time(
    tmp_path: Path, key: str, value: str, line: int, reason: str
) -> None:
    # Tried: each value here; before, each one either ended in an OverflowError or
    # ValueError traceback, or was accepted and failed (or waited unbounded) at run time.
    section, name = key.split(".")
    if section == "thresholds":
        line_of = f"min_cost_reduction: 0.4\n  {name}: {value}"
        text = GOOD.replace("min_cost_reduction: 0.4", line_of)
    else:
        text = GOOD + f"{section}:\n  {name}: {value}\n"
    path = write(tmp_path, text)
    refused(check_policy_cli(path), f"{path}:{line}: {key}: ", reason)


def test_unreadable_values_name_their_line(tmp_path: Path) -> None:
    # Tried: a date with month 13, and an integer of 5,000 digits (both ValueErrors in PyYAML).
    found = problems(tmp_path, GOOD.replace("2027-01-03 00:00:00", "2027-13-45 00:00:00"))
    assert found == ["FILE:15: (policy): YAML syntax error: cannot read this value: "
                     "month must be in 1..12"]  # fmt: skip
    found = problems(tmp_path, GOOD + "limits:\n  max_actions_per_day: " + "9" * 4100 + "\n")
    assert found == ["FILE:20: (policy): refused: a value of 4100 characters (at most 4096)"]


def test_loader_options_are_not_keys_of_a_policy(tmp_path: Path) -> None:
    # Tried: `_cli_parse_args` and `_secrets_dir`, which pydantic-settings reads as its own
    # options when they arrive as arguments.
    found = problems(tmp_path, GOOD + "_cli_parse_args: true\n_secrets_dir: /etc\n")
    assert found == ["FILE:19: _cli_parse_args: unknown key", "FILE:20: _secrets_dir: unknown key"]


def test_a_section_from_the_environment_that_is_not_json(tmp_path: Path) -> None:
    # Tried: TUNER_FREEZE='not json' (pydantic-settings raised a SettingsError traceback).
    proc = check_policy_cli(write(tmp_path, GOOD), {"TUNER_FREEZE": "not json"})
    refused(proc, "TUNER_FREEZE: freeze: ", "not valid JSON")
    proc = check_policy_cli(write(tmp_path, GOOD), {"TUNER_LIMITS": "[" * 100_000})
    refused(proc, "TUNER_LIMITS: limits: ", "not valid JSON")


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "directory", "2 MB"])
def test_a_policy_path_that_is_no_policy_file_returns_at_once(tmp_path: Path, kind: str) -> None:
    # Tried: an endless device, a named pipe nobody writes to, a directory, a 2 MB file.
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif kind == "directory":
        path = tmp_path
    elif kind == "2 MB":
        path = write(tmp_path, GOOD + "#" * (2 * 1024 * 1024) + "\n")
    else:
        path = Path(kind)
    reason = {"directory": "it is a directory", "2 MB": "larger than 1024 kB"}
    refused(check_policy_cli(path), f"{path}:0: (policy): cannot read the file: ",
            reason.get(kind, "not a regular file"))  # fmt: skip


def test_a_journal_path_that_cannot_be_a_file(tmp_path: Path) -> None:
    # Tried: a directory as journal.path, and a path under a regular file.
    (tmp_path / "plain").write_text("x")
    path = write(tmp_path, GOOD + f"journal:\n  path: {tmp_path}\n")
    refused(check_policy_cli(path), f"{path}:20: journal.path: ", "is a directory; name a file")
    path = write(tmp_path, GOOD + f"journal:\n  path: {tmp_path}/plain/journal.jsonl\n")
    refused(check_policy_cli(path), f"{path}:20: journal.path: ", "plain' is not a directory")


def test_a_metrics_port_in_use_is_refused_by_check_policy_and_at_daemon_start(
    tmp_path: Path,
) -> None:
    # Tried: metrics.listen on a port another program listens on (before: the daemon
    # started and ended in an OSError traceback when it opened its metrics server).
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        path = write(tmp_path, GOOD + f"metrics:\n  listen: 127.0.0.1:{port}\n")
        refused(check_policy_cli(path), f"{path}:20: metrics.listen: ", "Address already in use")
        proc = check_policy_cli(path, None, "run", "--policy")
        refused(proc, f"{path}:20: metrics.listen: ", "Address already in use")


def test_the_running_pg_tuners_own_port_is_not_in_use(tmp_path: Path) -> None:
    # Checking a changed policy before `systemctl reload`: its port is the running daemon's.
    from tuner.metrics import Liveness, Metrics, MetricsServer

    server = MetricsServer(Metrics(), Liveness(stale_after=60), "127.0.0.1:0").start()
    try:
        path = write(tmp_path, GOOD + f"metrics:\n  listen: 127.0.0.1:{server.address[1]}\n")
        proc = check_policy_cli(path)
        assert proc.returncode == 0, proc.stderr
    finally:
        server.stop()
