"""Intune's budget is paced, not collected as 429s: the local Graph enforces a small Intune budget (30 requests
per 2 s per app); a generic task with two sub-queries per device needs several times that.

With the connector's budget set to Intune's, the run waits for the budget and is never throttled; with a
budget larger than Intune's (the control), the same run collects 429s, which shows the server does enforce.
"""

from __future__ import annotations

import pytest

from localgraph.context import GraphSettings
from localgraph.generate import TenantShape
from shared.extract.runner import run_task
from shared.runs import RunRequest
from shared.services import Services
from shared.settings import Settings
from tests.integration.test_generic import config_of, device_task


@pytest.fixture
def graph_shape():
    return TenantShape(users=40, groups=8, memberships=100, devices=50, seed=7)


@pytest.fixture
def graph_settings():
    return GraphSettings(intune_app_requests=30, intune_tenant_requests=60, intune_window_s=2.0)


def services_with_budget(environ: dict[str, str], requests: int) -> Services:
    settings = {**environ, "INTUNE_REQUESTS_PER_WINDOW": str(requests), "INTUNE_WINDOW_SECONDS": "2"}
    built = Services(Settings.from_environ(settings), environ=settings)
    built.storage.ensure()
    return built


@pytest.mark.parametrize(("budget", "paced"), [(30, True), (2000, False)])
async def test_intune_requests_wait_for_the_budget_instead_of_being_throttled(graph, environ, budget, paced):
    services = services_with_budget(environ, budget)
    config = config_of(graph.info, device_task("full"))
    outcome = await run_task(services, RunRequest(task="devices"), config=config)
    record = outcome.record
    assert record.status == "succeeded", record.error
    requests = record.requests
    assert requests["paced_requests"] > 2 * 30  # more than two windows' worth of Intune requests
    if paced:
        assert requests["throttled"] == 0, requests
        assert requests["paced_s"] > 2.0  # it waited for the budget instead
    else:
        assert requests["throttled"] > 0, requests  # the server enforces: without pacing, 429s
    await services.aclose()
