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
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from tuner.dsn import dsn_has_password, redact, valid_dsn
from tuner.errors import PolicyError
from tuner.policyfile import (
    UnsafeYaml,
    check_yaml_shape,
    listen_problem,
    not_a_file_path,
    parse_listen,
    read_policy_text,
)
from tuner.units import format_duration, format_size, parse_duration, parse_size

ENV_PREFIX = "TUNER_"
PASSWORD_HINT = (
    "passwords are never read from the policy; set TUNER_PASSWORD, point target.password_file "
    "at a file (or systemd's LoadCredential), or use ~/.pgpass / PGPASSFILE"
)
# PostgreSQL keeps lock_timeout and statement_timeout in an int of milliseconds, and 0 there
# means "no limit": a bound must be 1 ms to this many
PG_MAX_TIMEOUT_MS = 2**31 - 1

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
Floor = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class Level(StrEnum):
    CONSERVATIVE = "conservative"
    MODERATE = "moderate"
    AGGRESSIVE = "aggressive"


class Mode(StrEnum):
    OBSERVE = "observe"
    RECOMMEND = "recommend"
    APPLY = "apply"


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """Monday is 0, as in `datetime.weekday()`."""
        return list(Weekday).index(self)


class Frozen(BaseModel):
    """Base of every policy section: immutable, and a typo'd key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Thresholds(Frozen):
    """Every level-dependent threshold, resolved (the table in DESIGN.md)."""

    create_indexes: bool
    min_cost_reduction: Fraction
    min_workload_share: Fraction
    max_indexes_per_day: Count
    max_concurrent_builds: Annotated[int, Field(ge=1, le=1)] = 1
    max_tuner_indexes_per_table: Count
    drop_unused_after: Duration | None
    allow_drop_foreign: bool = False
    analyze: bool
    vacuum: bool
    reindex: bool
    baseline_window: Duration
    verification_window: Duration
    max_query_regression: Fraction
    # the writes to the table may slow by this much (None: max_query_regression): index
    # maintenance adds a fixed cost per written row, large relative to a fast insert
    max_write_regression: Fraction | None = None
    # ...and only when each write also takes this much longer. None (the default): the
    # baseline's own noise, `schedule.noise_floor_factor` times the spread of its per-sample
    # means (`tuner.evidence.noise_floor`); 0: any significant slowdown beyond the bound. A
    # team whose commits wait for a disk flush may set 0.25; the extra write time still
    # counts in the net gain
    write_regression_floor_ms: Floor | None = None
    # the same for each read. pg_stat_statements' mean of a read of a few microseconds moves
    # by more than the bound between two windows with nothing changed (a 0.018 ms index-only
    # scan read 0.026 ms in the next window, p = 4e-16): a fixed 0 rolled back good indexes
    # on busy servers, so by default the floor is measured as for the writes
    read_regression_floor_ms: Floor | None = None
    min_net_gain: Fraction
    # in mode apply, build without approval an index HypoPG cannot cost (gin): its gain is
    # estimated from measured time and the planner's row estimates (confidence measured-only)
    apply_measured_only: bool = False


class ThresholdOverrides(Frozen):
    """The same keys as Thresholds, each optional: what the YAML sets over the level."""

    create_indexes: bool | None = None
    min_cost_reduction: Fraction | None = None
    min_workload_share: Fraction | None = None
    max_indexes_per_day: Count | None = None
    max_concurrent_builds: Annotated[int, Field(ge=1, le=1)] | None = None
    max_tuner_indexes_per_table: Count | None = None
    drop_unused_after: Duration | None = None
    allow_drop_foreign: bool | None = None
    analyze: bool | None = None
    vacuum: bool | None = None
    reindex: bool | None = None
    baseline_window: Duration | None = None
    verification_window: Duration | None = None
    max_query_regression: Fraction | None = None
    max_write_regression: Fraction | None = None
    write_regression_floor_ms: Floor | None = None
    read_regression_floor_ms: Floor | None = None
    min_net_gain: Fraction | None = None
    apply_measured_only: bool | None = None


def _preset(**values: Any) -> Thresholds:
    return Thresholds.model_validate(values)


PRESETS: dict[Level, Thresholds] = {
    Level.CONSERVATIVE: _preset(
        create_indexes=True, min_cost_reduction=0.50, min_workload_share=0.05,
        max_indexes_per_day=1, max_tuner_indexes_per_table=3, drop_unused_after=None,
        analyze=True, vacuum=False, reindex=False, baseline_window="60m",
        verification_window="60m", max_query_regression=0.05, min_net_gain=0.20,
    ),
    Level.MODERATE: _preset(
        create_indexes=True, min_cost_reduction=0.30, min_workload_share=0.01,
        max_indexes_per_day=3, max_tuner_indexes_per_table=5, drop_unused_after="30d",
        analyze=True, vacuum=True, reindex=False, baseline_window="30m",
        verification_window="30m", max_query_regression=0.10, min_net_gain=0.10,
        apply_measured_only=True,
    ),
    Level.AGGRESSIVE: _preset(
        create_indexes=True, min_cost_reduction=0.10, min_workload_share=0.001,
        max_indexes_per_day=10, max_tuner_indexes_per_table=10, drop_unused_after="7d",
        analyze=True, vacuum=True, reindex=True, baseline_window="15m",
        verification_window="15m", max_query_regression=0.20, min_net_gain=0.05,
        apply_measured_only=True,
    ),
}  # fmt: skip


class WindowRule(Frozen):
    """A freeze or maintenance window: weekly times, an absolute range, or cron + duration.

    weekly:   {name, days: [mon, ...], from: "22:00", to: "06:00"}   (to <= from: over midnight)
    absolute: {name, from: 2026-12-20 00:00, to: 2027-01-03 00:00}
    cron:     {name, cron: "0 2 * * sat", duration: 4h}
    """

    name: Annotated[str, Field(min_length=1)]
    days: tuple[Weekday, ...] | None = None
    start: time | datetime | date | None = Field(None, alias="from")
    end: time | datetime | date | None = Field(None, alias="to")
    cron: str | None = None
    duration: Duration | None = None

    @field_validator("days", mode="before")
    @classmethod
    def _lower_days(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [v.lower()[:3] if isinstance(v, str) else v for v in value]
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                CronTrigger.from_crontab(value)
            except ValueError as exc:
                raise ValueError(f"malformed cron expression {value!r}: {exc}") from None
        return value

    @property
    def kind(self) -> Literal["weekly", "absolute", "cron"]:
        if self.cron is not None:
            return "cron"
        return "weekly" if isinstance(self.start, time) else "absolute"

    @model_validator(mode="after")
    def _consistent(self) -> WindowRule:
        if self.cron is not None:
            if self.start is not None or self.end is not None or self.days is not None:
                raise ValueError("a cron window takes 'cron' and 'duration', not from/to/days")
            if not self.duration:
                raise ValueError("a cron window needs a positive 'duration', e.g. 4h")
            return self
        if self.duration is not None:
            raise ValueError("'duration' goes with 'cron'; use from/to for other windows")
        if self.start is None or self.end is None:
            raise ValueError("a window needs 'from' and 'to' (or 'cron' and 'duration')")
        weekly = isinstance(self.start, time), isinstance(self.end, time)
        if weekly[0] != weekly[1]:
            raise ValueError("'from' and 'to' must both be times (weekly) or both dates")
        if weekly[0]:
            if self.start == self.end:
                raise ValueError("'from' and 'to' are the same time: the window is empty")
            return self
        if self.days is not None:
            raise ValueError("'days' goes with weekly times, not with absolute dates")
        if as_datetime(self.end) <= as_datetime(self.start):  # type: ignore[arg-type]
            raise ValueError(f"'to' ({self.end}) is not after 'from' ({self.start})")
        return self


def as_datetime(value: date | datetime) -> datetime:
    """A date means its midnight; time zones are applied by the windows module."""
    return value if isinstance(value, datetime) else datetime.combine(value, time())


class Target(Frozen):
    """The database to tune. The password never lives here."""

    dsn: Annotated[str, Field(min_length=1)]
    password_file: Path | None = None
    # Roles whose functions the planner may run while the tuner plans a statement (besides
    # superusers' and the tuner's own): planning folds IMMUTABLE calls with the tuner's rights.
    trusted_roles: tuple[str, ...] = ()

    @field_validator("dsn")
    @classmethod
    def _no_password(cls, value: str) -> str:
        if dsn_has_password(value):
            raise ValueError(f"the DSN contains a password; {PASSWORD_HINT}")
        if reason := valid_dsn(value):
            raise ValueError(f"not a valid libpq connection string: {reason}")
        return value

    @property
    def redacted(self) -> str:
        return redact(self.dsn)


class Limits(Frozen):
    """Hard limits that hold at every level."""

    index_storage_budget: Size = parse_size("10GB")
    max_table_size: Size = parse_size("100GB")
    max_actions_per_day: Count = 20
    max_index_width: Annotated[int, Field(ge=1, le=8)] = 3
    include_columns: bool = True
    hash_indexes: bool = True  # a hash where a btree on a random key serves only `=`


class Timeouts(Frozen):
    """Every statement the tuner runs is fenced by these."""

    lock_timeout: Duration = timedelta(seconds=5)
    # CREATE/DROP/REINDEX INDEX CONCURRENTLY wait, under lock_timeout, for every transaction
    # that may use the table to end. Those waits hold up no reads or writes (only other DDL,
    # VACUUM and ANALYZE of that table), so they get this longer bound: behind 30 s queries,
    # a 5 s lock_timeout fails every build and every rollback.
    concurrent_lock_timeout: Duration = timedelta(minutes=10)
    statement_timeout: Duration = timedelta(hours=2)
    query_timeout: Duration = timedelta(seconds=30)
    maintenance_work_mem: Size = parse_size("256MB")
    shutdown_grace: Duration = timedelta(seconds=60)

    @field_validator("lock_timeout", "concurrent_lock_timeout", "statement_timeout",
                     "query_timeout")  # fmt: skip
    @classmethod
    def _bounded(cls, value: timedelta) -> timedelta:
        """Each one becomes a PostgreSQL setting in whole milliseconds, where 0 is no limit."""
        ms = int(value.total_seconds() * 1000)
        if ms < 1:
            raise ValueError(
                "0 means no limit to PostgreSQL (a statement would wait unbounded); "
                "give a bound of at least 1ms"
            )
        if ms > PG_MAX_TIMEOUT_MS:
            raise ValueError(f"PostgreSQL takes at most {PG_MAX_TIMEOUT_MS}ms (about 24.8d) here")
        return value

    @field_validator("maintenance_work_mem")
    @classmethod
    def _pg_memory(cls, value: int) -> int:
        if not 1024**2 <= value <= (2**31 - 1) * 1024:
            raise ValueError("PostgreSQL takes 1MB to 2147483647kB (about 2TB) here")
        return value


class Load(Frozen):
    """No action starts while the server is busier than this."""

    max_active_sessions: Count = 64
    max_replication_lag: Duration = timedelta(seconds=60)
    max_transaction_age: Duration = timedelta(minutes=30)
    max_waiting_locks: Count = 5


class HealthSettings(Frozen):
    """Where `status` says degraded or unhealthy."""

    min_cache_hit_ratio: Fraction = 0.95
    max_connection_use: Fraction = 0.80
    long_transaction: Duration = timedelta(hours=1)
    max_replication_lag: Duration = timedelta(minutes=5)
    stale_statistics_ratio: Fraction = 0.20
    dead_tuple_ratio: Fraction = 0.20


class Schedule(Frozen):
    """How often each job runs and how verification decides."""

    sample_interval: Duration = timedelta(seconds=60)
    advise_interval: Duration = timedelta(minutes=15)
    long_query: Duration = timedelta(seconds=5)
    min_calls: Annotated[int, Field(ge=2)] = 30
    max_window_extensions: Count = 2
    significance: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    # the level holds across all the queries one verdict watches (Holm); "none": each alone
    correction: Literal["holm", "none"] = "holm"
    # looks at a verification window, at equal fractions of it (1: only at its end); the
    # level is spent over them O'Brien-Fleming-style, so only overwhelming evidence decides
    # early (`tuner.evidence.look_level`)
    verification_looks: Annotated[int, Field(ge=1, le=20)] = 4
    # a slowdown counts only above this many spreads of the baseline's per-sample means
    # (when the policy sets no read/write_regression_floor_ms)
    noise_floor_factor: Annotated[float, Field(ge=0.0)] = 2.0
    # before the window's end a slowdown rolls back only when the query (or the writes)
    # takes at least this much longer (1.0: twice as long, an obvious harm such as a trap's
    # 0.04 → 50 ms); a smaller one waits for the window's end
    obvious_harm: Annotated[float, Field(ge=0.0)] = 1.0

    @field_validator("sample_interval", "advise_interval")
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s (0 would sample or advise without pause)")
        return value


class JournalSettings(Frozen):
    path: Path = Path("/var/lib/pg-tuner/journal.jsonl")

    @field_validator("path")
    @classmethod
    def _a_file(cls, value: Path) -> Path:
        """The file may not exist yet (it is created with its directory), but what is
        there must be a regular file, inside a directory."""
        if reason := not_a_file_path(value):
            raise ValueError(reason)
        return value


class MetricsSettings(Frozen):
    listen: str | None = "127.0.0.1:8187"  # not 9187: postgres_exporter's
    token_file: Path | None = None  # the JSON API's bearer token, beyond loopback

    @field_validator("listen")
    @classmethod
    def _listenable(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
            if reason := listen_problem(value, port_too=False):
                raise ValueError(reason)
        return value


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
