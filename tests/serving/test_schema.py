"""Schemathesis against the served OpenAPI schema: whatever a client sends, never a 5xx.

Cases are drawn per operation with Hypothesis directly: schemathesis' own pytest loader
(`from_fixture`) fails on pytest 9 ('Function' object has no attribute '_nodeid').
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

EXAMPLES = 12  # per operation and mode: ~10 operations stay within a few seconds each


@pytest.fixture(scope="module")
def operations(api_url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_gives_a_server_error(operations: list[Any], sample_lake: Any, mode: GenerationMode) -> None:
    headers = sample_lake.auth(f"fuzzer-{mode.value}")
    for operation in operations:
        limits = {"max_examples": EXAMPLES, "deadline": None, "database": None}

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(**limits, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            call()
        except Unsatisfiable:  # an operation without inputs (GET /health) has no invalid request
            assert mode is GenerationMode.NEGATIVE, operation.label
