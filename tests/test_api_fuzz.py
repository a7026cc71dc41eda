"""The read-only JSON API fuzzed from its own OpenAPI document (schemathesis): every
documented operation, with generated path parameters (ids of any length and alphabet,
hostile ones included), must answer as the document says — a documented status and
content type, a body that conforms to the documented schema, never a server error — on a
running daemon with a journal behind it; each action the journal holds answers 200 with a
body that conforms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from tests.test_api import running


def test_every_operation_answers_as_its_document_says(tmp_path: Path, dsn: str) -> None:
    for _, url in running(tmp_path, dsn, listen="127.0.0.1:0"):
        schema = schemathesis.openapi.from_url(url + "/openapi.json")
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), f"the document is not valid OpenAPI: {result}"
            operations.append(result.ok())
        assert {op.path for op in operations} >= {"/status", "/actions", "/actions/{id}"}
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=40, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def answers(case: Any) -> None:  # a schemathesis.Case
                case.call_and_validate()

            answers()
            # and each journaled action's own page (a1 kept, a2 proposed, a3 rejected)
            if "{id}" in operation.path:
                for known in ("a1", "a2", "a3"):
                    response = operation.Case(path_parameters={"id": known}).call_and_validate()
                    assert response.status_code == 200, response.text
