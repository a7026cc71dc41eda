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
