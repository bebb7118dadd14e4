"""The activities API fuzzed from its own OpenAPI document (schemathesis): valid and invalid requests for every
operation go through the Function App's real handlers (real ``func.HttpRequest``) to the local Graph and
Azurite. No answer may be a 5xx other than Graph's own trouble (there is none here), every answer must match
the document (status, content type, body schema), and every 4xx is a problem naming what is wrong.

Kept short (a few examples per operation) to fit the test budget; ``FUZZ_EXAMPLES`` raises it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import timedelta

import azure.functions as func
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance

import functions.activities
from shared.config import parse_config
from shared.openapi import build
from tests.activities.conftest import activity_config

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
TASKS = ["people", "apps", "hires", "contacts", "nightly", "ghost"]


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def fuzz_target(graph, control, services, handlers, monkeypatch, loop):
    loop.run_until_complete(services.config_store.save(parse_config(activity_config(graph.info, control))))
    monkeypatch.setattr(functions.activities, "services", lambda: services)
    routes = {}
    for name, handler in handlers.items():
        routes[name] = handler
    yield routes
    loop.run_until_complete(services.aclose())


def handler_for(routes, case) -> tuple[str, dict[str, str]]:
    operation_id = case.operation.definition.raw["operationId"]
    return operation_id, dict(case.path_parameters or {})


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_every_operation(fuzz_target, loop, mode, control):
    schema = schemathesis.openapi.from_dict(build())
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [
        op for op in operations if op.path.startswith("/api/v1/activities/")
    ]  # the admin API has its own
    operations = [op for op in operations if "admin" not in op.definition.raw.get("tags", [])]  # tests/admin
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    seen_statuses: dict[int, int] = {}
    durations: dict[str, float] = {}

    for operation in operations:
        strategy = operation.as_strategy(generation_mode=mode)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(case=strategy, task=st.sampled_from(TASKS))
        def run(case, task):
            if isinstance(case.body, dict) and "task" in case.body and mode is GenerationMode.POSITIVE:
                case.body["task"] = task  # reach the event tasks (and Graph), not only "no such task"
            operation_id, route_params = handler_for(fuzz_target, case)
            if case.body is None or case.method.upper() == "GET":
                body = b""
            elif isinstance(case.body, bytes):
                body = case.body  # negative mode: not JSON at all
            else:
                body = json.dumps(case.body).encode()
            headers = {k: str(v) for k, v in (case.headers or {}).items()}
            url = "https://connector.example" + case.formatted_path
            request = func.HttpRequest(
                method=case.method.upper(),
                url=url,
                headers=headers,
                params={},
                route_params=route_params,
                body=body,
            )
            response = loop.run_until_complete(fuzz_target[operation_id](request))
            status = response.status_code
            seen_statuses[status] = seen_statuses.get(status, 0) + 1
            content = response.get_body()
            assert status < 500, (operation_id, case.body, content)
            if status >= 400:
                problem = json.loads(content)
                assert response.headers["Content-Type"] == "application/problem+json"
                assert (
                    problem["outcome"] == "Exception" and problem["exception"] and problem["status"] == status
                )
                if problem["type"].endswith(":invalid-request"):
                    assert problem["errors"], problem
            answer = httpx.Response(
                status,
                headers=dict(response.headers),
                content=content,
                request=httpx.Request(case.method.upper(), url),
            )
            answer._elapsed = timedelta(0)  # schemathesis reads it; there was no network round trip
            case.validate_response(answer, checks=checks)

        started = time.perf_counter()
        run()
        durations[operation.label] = time.perf_counter() - started

    print(sorted(durations.items(), key=lambda kv: -kv[1])[:5], seen_statuses)
    assert sum(seen_statuses.values()) >= len(operations)
