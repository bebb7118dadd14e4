"""The admin API fuzzed from the app's OpenAPI document (its ``admin`` operations), the way the activities are:
valid and invalid requests through the real app to Azurite and the local Graph. No answer may be a 5xx, every
answer must match the document, and every 4xx is a problem. ``FUZZ_EXAMPLES`` raises the examples per operation."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from schemathesis.core import NotSet

from shared.admin.app import build_app
from shared.openapi import build
from tests.support import task_config

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_every_admin_operation(graph, services, loop, mode):
    loop.run_until_complete(services.config_store.save(task_config(graph.info)))
    app = build_app(services, mode="development", environ={}, root="/api/mgmt")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://connector.example")
    schema = schemathesis.openapi.from_dict(build())
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if "admin" in op.definition.raw.get("tags", [])]
    assert len(operations) >= 25
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    seen: dict[int, int] = {}
    for operation in operations:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  derandomize=True)  # fmt: skip
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            has_body = case.body is not None and not isinstance(case.body, NotSet)
            body = None
            if has_body and case.method.upper() in ("POST", "PUT"):
                body = case.body if isinstance(case.body, bytes) else json.dumps(case.body)
            headers = {k: str(v) for k, v in (case.headers or {}).items()}
            query = {
                k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (case.query or {}).items()
            }
            response = loop.run_until_complete(
                client.request(
                    case.method.upper(), case.formatted_path, params=query, content=body, headers=headers
                )
            )
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (
                case.formatted_path,
                response.text,
            )
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json", (
                    case.method,
                    case.formatted_path,
                )
                assert response.json()["status"] == response.status_code
            case.validate_response(response, checks=checks)

        run()
    loop.run_until_complete(client.aclose())
    loop.run_until_complete(services.aclose())
    assert sum(seen.values()) >= len(operations)
