"""The exceptions pg-tuner raises on purpose; anything else is a bug."""

from __future__ import annotations


class TunerError(Exception):
    """Root of every error pg-tuner raises deliberately."""


class PolicyError(TunerError):
    """The policy file or its environment overrides are invalid; carries every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class DatabaseUnavailable(TunerError):
    """The target database cannot be reached or went away mid-statement."""


class MissingPrivilege(TunerError):
    """The tuner's role lacks a privilege a feature needs; the feature is switched off."""


class MissingExtension(TunerError):
    """A required extension (pg_stat_statements, HypoPG) is not installed or not preloaded."""


class SandboxError(TunerError):
    """A throwaway PostgreSQL cluster could not be started; says what to install."""


class RefusedStatement(TunerError):
    """The executor refused to run a statement that is not exactly one whitelisted statement."""


class JournalError(TunerError):
    """The journal is unreadable, truncated or fails its hash chain."""


class UntrustedCode(TunerError):
    """Planning a statement could run a function no trusted role provides; it is skipped."""


class QueryFailed(TunerError):
    """The server refused or failed one statement; the database is up. `db` raises it for
    every driver error: it carries the SQLSTATE, the server's message (its text) and the
    driver's name for the error (`UniqueViolation`), so no other module names the driver."""

    def __init__(self, message: str, sqlstate: str | None = None, name: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.name = name or type(self).__name__


class OperationFailed(QueryFailed):
    """Not the statement's fault: a timeout, a cancel, an object not ready, a server short
    of a resource (the driver's OperationalError)."""


class Canceled(OperationFailed):
    """statement_timeout or pg_cancel_backend ended the statement (SQLSTATE 57014)."""


class LockTimeout(OperationFailed):
    """lock_timeout ran out waiting for a lock (SQLSTATE 55P03)."""


class NotInPrerequisiteState(OperationFailed):
    """An object is not in the state the statement needs (SQLSTATE 55000), e.g.
    pg_stat_statements created in the database but not preloaded."""


class UnresolvedType(QueryFailed):
    """PostgreSQL cannot tell a parameter's or a function's type (SQLSTATE 42725, 42P18 or
    42883): the statement may plan once its parameters are declared."""
