"""The policy: one YAML file plus TUNER_* environment overrides, validated into a frozen model.

A level (conservative, moderate, aggressive) is a preset of every threshold in DESIGN.md's
table; `thresholds:` in the YAML overrides any of them. Every problem is reported as
`FILE:LINE: key.path: reason`, all of them at once, and nothing is applied.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from tuner.errors import PolicyError
from tuner.policyfile import (
    UnsafeYaml,
    check_yaml_shape,
    listen_problem,
    read_policy_text,
)
from tuner.settings import (
    ENV_PREFIX as ENV_PREFIX,
)
from tuner.settings import (
    PASSWORD_HINT as PASSWORD_HINT,
)
from tuner.settings import (
    PG_MAX_TIMEOUT_MS as PG_MAX_TIMEOUT_MS,
)
from tuner.settings import (
    PRESETS as PRESETS,
)
from tuner.settings import (
    Count as Count,
)
from tuner.settings import (
    Duration as Duration,
)
from tuner.settings import (
    Floor as Floor,
)
from tuner.settings import (
    Fraction as Fraction,
)
from tuner.settings import (
    Frozen as Frozen,
)
from tuner.settings import (
    HealthSettings as HealthSettings,
)
from tuner.settings import (
    JournalSettings as JournalSettings,
)
from tuner.settings import (
    Level as Level,
)
from tuner.settings import (
    Limits as Limits,
)
from tuner.settings import (
    Load as Load,
)
from tuner.settings import (
    MetricsSettings as MetricsSettings,
)
from tuner.settings import (
    Mode as Mode,
)
from tuner.settings import (
    Schedule as Schedule,
)
from tuner.settings import (
    Size as Size,
)
from tuner.settings import (
    Target as Target,
)
from tuner.settings import (
    ThresholdOverrides as ThresholdOverrides,
)
from tuner.settings import (
    Thresholds as Thresholds,
)
from tuner.settings import (
    Timeouts as Timeouts,
)
from tuner.settings import (
    Weekday as Weekday,
)
from tuner.settings import (
    WindowRule as WindowRule,
)
from tuner.settings import (
    as_datetime as as_datetime,
)
from tuner.units import format_duration, format_size


class Policy(BaseSettings):
    """The whole policy, resolved and frozen."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True,
        populate_by_name=True,
    )  # fmt: skip

    target: Target
    mode: Mode = Mode.RECOMMEND
    level: Level = Level.CONSERVATIVE
    timezone: str = "UTC"
    thresholds: ThresholdOverrides = ThresholdOverrides()
    freeze: tuple[WindowRule, ...] = ()
    maintenance: tuple[WindowRule, ...] = ()
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    load: Load = Load()
    health: HealthSettings = HealthSettings()
    schedule: Schedule = Schedule()
    journal: JournalSettings = JournalSettings()
    metrics: MetricsSettings = MetricsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """TUNER_* variables override the YAML (which arrives as init arguments)."""
        return env_settings, init_settings

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
            ) from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def resolved(self) -> Thresholds:
        """The level's preset with the YAML's overrides applied."""
        overrides = self.thresholds.model_dump(exclude_none=True)
        return PRESETS[self.level].model_copy(update=overrides)


# --- loading with line numbers -------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 integers, so `to: 18:00` stays a time; a value
    its constructors cannot build (`2026-13-45`, an int of 5,000 digits) is a YAML error
    with its line, not a ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark
            ) from None


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)

Path_ = tuple[str | int, ...]


def _index_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int], dups: list[str]) -> None:
    """Record the 1-based line of every key path; note keys given twice."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                dups.append(
                    f"{key_node.start_mark.line + 1}: {_dotted((*path, key))}: "
                    "key given twice (the second would silently win)"
                )
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*path, key), lines, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), lines, dups)


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "(policy)"


def _find_passwords(data: Any, path: Path_ = ()) -> list[Path_]:
    found: list[Path_] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if "password" in str(key).lower() and str(key) != "password_file":
                found.append((*path, key))
            found += _find_passwords(value, (*path, key))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            found += _find_passwords(item, (*path, i))
    return found


def _all_field_names(model: type[BaseModel], seen: set[str] | None = None) -> set[str]:
    names = seen if seen is not None else set()
    for name, info in model.model_fields.items():
        names.add(info.alias or name)
        for arg in getattr(info.annotation, "__args__", ()) or (info.annotation,):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _all_field_names(arg, names)
    return names


def _reason(error: Any, loc: Path_) -> str:
    if error["type"] == "extra_forbidden":
        known = _all_field_names(Policy) | _all_field_names(WindowRule)
        close = difflib.get_close_matches(str(loc[-1]), sorted(known), n=1)
        return "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _clean_loc(loc: tuple[Any, ...]) -> Path_:
    """Drop pydantic's union-member and validator markers from an error location."""
    return tuple(
        p
        for p in loc
        if isinstance(p, int) or not any(m in str(p) for m in ("[", "function-", "tagged-union"))
    )


def load_policy(path: str | Path, *, check_port: bool = False) -> Policy:
    """Read, check and resolve the policy at `path`, or raise PolicyError with every problem.

    With `check_port` (check-policy, daemon start; not a reload, whose daemon holds it), the
    metrics port must also be free."""
    name = str(path)
    try:
        text = read_policy_text(Path(path))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PolicyError([f"{name}:0: (policy): cannot read the file: {reason}"]) from None
    try:
        check_yaml_shape(text, _Loader)
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader) if root is not None else None
    except UnsafeYaml as exc:
        raise PolicyError([f"{name}:{exc.line}: (policy): refused: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError([f"{name}:{line}: (policy): YAML syntax error: {problem}"]) from None
    if root is None or data is None:
        raise PolicyError(
            [f"{name}:1: (policy): the file is empty; see config/policy.yaml for every key"]
        )
    if not isinstance(data, dict):
        raise PolicyError(
            [f"{name}:1: (policy): expected a mapping of keys, got {type(data).__name__}"]
        )
    lines: dict[Path_, int] = {}
    duplicates: list[str] = []
    _index_lines(root, (), lines, duplicates)
    problems = [f"{name}:{d}" for d in duplicates]
    problems += [
        f"{name}:{lines.get(p, 1)}: {_dotted(p)}: {PASSWORD_HINT}" for p in _find_passwords(data)
    ]
    # pydantic-settings reads `_`-prefixed arguments as its own options (`_secrets_dir`,
    # `_cli_parse_args`): from a file they are unknown keys, never settings of the loader
    fields = {str(k): v for k, v in data.items()}
    for key in [k for k in fields if k.startswith("_")]:
        problems.append(f"{name}:{lines.get((key,), 1)}: {key}: unknown key")
        del fields[key]
    env_problems = _environment_problems()
    if env_problems:
        raise PolicyError(_by_line(problems) + env_problems)
    env_values = EnvSettingsSource(Policy)()
    try:
        policy = Policy(**fields)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _clean_loc(error["loc"])
            where = _locate(name, loc, lines, env_values)
            problems.append(f"{where}: {_dotted(loc)}: {_reason(error, loc)}")
        raise PolicyError(_by_line(problems)) from None
    listen = policy.metrics.listen
    if check_port and listen and (busy := listen_problem(listen, port_too=True)):
        loc = ("metrics", "listen")
        problems.append(f"{_locate(name, loc, lines, env_values)}: metrics.listen: {busy}")
    if problems:
        raise PolicyError(_by_line(problems))
    return policy


def _environment_problems() -> list[str]:
    """TUNER_* variables that cannot be read at all: a section or list given as text that is
    not JSON (pydantic-settings would raise instead of naming the variable)."""
    problems: list[str] = []
    for variable, value in sorted(os.environ.items()):
        key = variable[len(ENV_PREFIX) :].lower() if variable.startswith(ENV_PREFIX) else ""
        info = Policy.model_fields.get(key)
        if info is None or info.annotation in (str, Mode, Level):
            continue
        try:
            json.loads(value)
        except (ValueError, RecursionError) as exc:
            problems.append(
                f"{variable}: {key}: not valid JSON ({str(exc)[:80]}); a section or a list "
                f"from the environment is JSON, e.g. {_ENV_EXAMPLES.get(key, '{}')}, or set "
                f"one key as {variable}__KEY"
            )
    if not problems:
        try:
            EnvSettingsSource(Policy)()
        except SettingsError as exc:  # anything else it cannot parse
            problems.append(f"{ENV_PREFIX}*: (environment): {exc}")
    return problems


_ENV_EXAMPLES = {
    "freeze": '[{"name": "nights", "days": ["mon"], "from": "22:00", "to": "06:00"}]',
    "maintenance": '[{"name": "sat", "cron": "0 2 * * sat", "duration": "4h"}]',
}


def _by_line(problems: list[str]) -> list[str]:
    """Problems in file order; those from the environment last."""

    def line(problem: str) -> int:
        match = re.match(r"^.*?:(\d+): ", problem)
        return int(match.group(1)) if match else 1 << 30

    return sorted(problems, key=line)


def _locate(name: str, loc: Path_, lines: dict[Path_, int], env: dict[str, Any]) -> str:
    """`FILE:LINE` of the closest key the YAML has for `loc`, or the env variable it came from."""
    node: Any = env
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            break
    else:
        return ENV_PREFIX + "__".join(str(p).upper() for p in loc)
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return f"{name}:{lines[loc[:end]]}"
    return f"{name}:1"


def policy_from_env_path() -> Path | None:
    """The policy path from TUNER_POLICY, if set."""
    value = os.environ.get("TUNER_POLICY")
    return Path(value) if value else None


def describe(policy: Policy) -> list[tuple[str, str]]:
    """(key, value) rows of the resolved policy, as `check-policy` prints them."""
    rows: list[tuple[str, str]] = [
        ("target.dsn", policy.target.redacted),
        ("mode", policy.mode.value),
        ("level", policy.level.value),
        ("timezone", policy.timezone),
    ]
    overridden = policy.thresholds.model_dump(exclude_none=True)
    resolved = policy.resolved.model_dump()
    for key, value in resolved.items():
        mark = "  (override)" if key in overridden else ""
        shown = _show(value)
        if key == "max_write_regression" and value is None:  # unset: the read bound holds
            shown = f"same as max_query_regression ({resolved['max_query_regression']})"
        rows.append((f"thresholds.{key}", shown + mark))
    for section in ("limits", "timeouts", "load", "health", "schedule", "journal", "metrics"):
        for key, value in getattr(policy, section).model_dump().items():
            shown = format_size(value) if key in _SIZE_KEYS else _show(value)
            rows.append((f"{section}.{key}", shown))
    for kind in ("freeze", "maintenance"):
        for window in getattr(policy, kind):
            rows.append((f"{kind}", f"{window.name} ({window.kind})"))
    return rows


_SIZE_KEYS = {"index_storage_budget", "max_table_size", "maintenance_work_mem"}


def _show(value: Any) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    if value is None:
        return "never"
    return str(value)
