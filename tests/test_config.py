"""The policy: a good file resolves, every bad one is refused with FILE:LINE: key: reason."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tuner.cli import main
from tuner.config import Level, Limits, Mode, load_policy
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
