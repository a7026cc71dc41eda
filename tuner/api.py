"""The read-only JSON API on the metrics listener: what the daemon is doing and did.

GET /status, /actions, /actions/{id}, /proposals and /openapi.json; nothing writes (any
other method is 405). On a loopback address the API is open like /metrics; on any other
address it answers only a bearer token read from `metrics.token_file`, and without such a
file it answers nobody (403, saying how to set one). /livez says the process serves;
/readyz (and its old name /healthz) that the last cycle succeeded and the database answered.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner import __version__
from tuner.journal import Journal
from tuner.ledger import ActionStatus, replay

StatusSource = Callable[[], Mapping[str, Any]]
Reply = tuple[int, Any]  # HTTP status and a JSON-ready body


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Api:
    """Answers GET requests from the journal and the daemon's own status."""

    journal: Path | None
    status: StatusSource
    loopback: bool = True
    token_file: Path | None = None

    def allowed(self, authorization: str | None) -> Reply | None:
        """None when the request may read; else the refusal."""
        if self.loopback:
            return None
        if self.token_file is None:
            return 403, {"error": "the API listens beyond loopback and no metrics.token_file "
                         "is set: set one to read it with a bearer token"}  # fmt: skip
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            return 503, {"error": f"metrics.token_file unreadable: {exc.strerror}"}
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return 401, {"error": "a bearer token is required (Authorization: Bearer …)"}
        return None

    def get(self, path: str, authorization: str | None = None) -> Reply | None:
        """The reply to GET `path`; None when the path is not the API's."""
        if path == "/openapi.json":
            return 200, OPENAPI
        if path not in ("/status", "/actions", "/proposals") and not path.startswith("/actions/"):
            return None
        refused = self.allowed(authorization)
        if refused is not None:
            return refused
        if path == "/status":
            return 200, {"version": __version__, **self.status()}
        statuses = self._statuses()
        if path == "/actions":
            return 200, {"actions": [_summary(s) for s in statuses.values()]}
        if path == "/proposals":
            waiting = [s for s in statuses.values() if s.state.value == "proposed"]
            return 200, {"proposals": [_summary(s) for s in waiting]}
        action_id = path.removeprefix("/actions/")
        status = statuses.get(action_id)
        if status is None:
            return 404, {"error": f"no action {action_id!r} in the journal"}
        records = [r.to_public() for r in self._records() if r.action_id == action_id]
        return 200, {**_summary(status), "records": records}

    def _records(self) -> list[Any]:
        if self.journal is None or not self.journal.exists():
            return []
        return Journal(self.journal).read()

    def _statuses(self) -> dict[str, ActionStatus]:
        return replay(self._records())


def _summary(s: ActionStatus) -> dict[str, Any]:
    typed = s.typed_action
    return {
        "id": s.action_id,
        "state": s.state.value,
        "kind": typed.kind.value if typed else None,
        "table": str(typed.table) if typed else None,
        "index_name": s.index_name,
        "since": s.since,
        "reason": s.reason,
        "figures": s.figures,
    }


_ACTION = {
    "type": "object",
    "required": ["id", "state", "kind", "table", "index_name", "since", "reason", "figures"],
    "properties": {
        "id": {"type": "string"},
        "state": {"type": "string", "enum": ["proposed", "approved", "rejected", "baselined",
                  "applying", "applied", "verifying", "kept", "rolled_back", "failed"]},
        "kind": {"type": ["string", "null"]},
        "table": {"type": ["string", "null"]},
        "index_name": {"type": ["string", "null"]},
        "since": {"type": "string", "format": "date-time"},
        "reason": {"type": "string"},
        "figures": {"type": "object"},
    },
}  # fmt: skip
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _get(summary: str, schema: Mapping[str, Any], *codes: int) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": schema}}}
    }
    for code in codes:
        responses[str(code)] = {
            "description": "refused" if code in (401, 403) else "not found",
            "content": {"application/json": {"schema": _ERROR}},
        }
    return {"get": {"summary": summary, "responses": responses}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "pg-tuner", "version": __version__,
             "description": "Read-only: what the daemon is doing and what it did."},
    "paths": {
        "/status": _get("The daemon now: last verdict, mode, level, database", {
            "type": "object", "required": ["version", "verdict", "mode", "level", "database"],
            "properties": {"version": {"type": "string"}, "verdict": {"type": "string"},
                           "mode": {"type": "string"}, "level": {"type": "string"},
                           "database": {"type": "string"}},
        }, 401, 403),
        "/actions": _get("Every action in the journal, as it stands", {
            "type": "object", "required": ["actions"],
            "properties": {"actions": {"type": "array", "items": _ACTION}},
        }, 401, 403),
        "/actions/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            **_get("One action and its journal records", {
                "allOf": [_ACTION, {"type": "object", "required": ["records"], "properties": {
                    "records": {"type": "array", "items": {"type": "object"}}}}],
            }, 401, 403, 404),
        },
        "/proposals": _get("Actions waiting for pg-tuner approve (recommend mode)", {
            "type": "object", "required": ["proposals"],
            "properties": {"proposals": {"type": "array", "items": _ACTION}},
        }, 401, 403),
        "/livez": {"get": {"summary": "The process serves", "responses": {
            "200": {"description": "alive", "content": {"text/plain": {}}}}}},
        "/readyz": {"get": {"summary": "The last cycle succeeded and the database answered",
                            "responses": {"200": {"description": "ready"},
                                          "503": {"description": "not ready, and why"}}}},
    },
}  # fmt: skip
