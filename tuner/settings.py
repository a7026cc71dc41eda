"""The policy's sections, one frozen model each, and the levels' presets (DESIGN.md's table).

`config.Policy` puts them together and `config.load_policy` reads them from YAML and the
environment; the size and duration fields parse through `tuner.units`.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tuner.dsn import dsn_has_password, redact, valid_dsn
from tuner.policyfile import (
    listen_problem,
    not_a_file_path,
    parse_listen,
)
from tuner.units import parse_duration, parse_size

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
    verification_looks: Annotated[int, Field(ge=1, le=20)] = 8
    # a slowdown counts only above this many spreads of the baseline's per-sample means
    # (when the policy sets no read/write_regression_floor_ms)
    noise_floor_factor: Annotated[float, Field(ge=0.0)] = 2.0
    # before the window's end a slowdown rolls back only when the query (or the writes)
    # takes at least this much longer (1.0: twice as long, an obvious harm such as a trap's
    # 0.04 → 50 ms); a smaller one waits for the window's end
    obvious_harm: Annotated[float, Field(ge=0.0)] = 1.0
    # a slowdown short of `obvious_harm` counts only when the mean moved at least this many
    # of a call's standard deviations (Cohen's d): with thousands of calls a shift of a
    # fifth of the spread is significant, and no harm worth a rollback
    min_effect: Annotated[float, Field(ge=0.0)] = 0.5

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
