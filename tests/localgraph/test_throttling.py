"""Resource-unit costs, the app+tenant budget and 429s, and injected faults [docs/graph-behaviour.md section 5].

The tenant has fewer than 50 users, so its budget is Graph's smallest: 3,500 RU per 10 s.
"""

from __future__ import annotations

import random
import time

import httpx
import pytest

from localgraph.generate import TenantShape

THROTTLE_SCOPE = "Tenant_Application/ReadWrite/{app}/{tenant}"


@pytest.fixture
def graph_shape() -> TenantShape:
    return TenantShape(users=30, seed=2)


def units(response: httpx.Response) -> int:
    return int(response.headers["x-ms-resource-unit"])


def assert_throttled(response: httpx.Response, *, retry_after: bool = True) -> None:
    """Graph's 429 [docs/graph-behaviour.md section 5]."""
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert error["message"] == "Please retry again later."
    inner = error["innerError"]
    assert inner["code"] == "429"
    assert inner["status"] == "429"
    assert inner["message"] == "Please retry after"
    assert {"date", "request-id", "client-request-id"} <= set(inner)
    if retry_after:
        assert response.headers["Retry-After"].isdigit()
        assert int(response.headers["Retry-After"]) >= 1
    else:
        assert "Retry-After" not in response.headers


def group_with_members(control) -> dict:
    return max(control.objects("groups"), key=lambda g: len(g["members"]))


# ------------------------------------------------------------------------------------------------- costs


def test_resource_unit_costs_follow_graphs_table(http, control):
    group = group_with_members(control)
    user = next(u for u in control.objects("users") if u["userType"] == "Member")
    costs = {
        ("/users", ()): 2,
        ("/users", (("$select", "id,displayName"),)): 1,
        ("/users", (("$top", "5"),)): 1,
        ("/users", (("$top", "20"),)): 2,
        ("/users", (("$select", "id"), ("$top", "5"))): 1,  # never below 1
        ("/users", (("$expand", "manager"),)): 3,
        ("/applications", ()): 2,
        (f"/groups/{group['id']}/members", ()): 3,
        (f"/groups/{group['id']}/members", (("$select", "id"),)): 2,
        (f"/groups/{group['id']}/members", (("$select", "id"), ("$top", "3"))): 1,
        (f"/groups/{group['id']}/transitiveMembers", ()): 5,
        (f"/groups/{group['id']}/transitiveMembers", (("$top", "5"),)): 4,
        (f"/users/{user['id']}/memberOf", ()): 2,
        (f"/users/{user['id']}/transitiveMemberOf", ()): 1,  # not in Graph's table: "any other GET"
        (f"/users/{user['id']}", ()): 1,
        (f"/users/{user['id']}", (("$expand", "manager"),)): 2,
        ("/groups", ()): 1,
        ("/devices", ()): 1,
        ("/deviceManagement/managedDevices", ()): 1,
    }
    for (path, params), cost in costs.items():
        response = http.get(path, params=dict(params))
        assert response.status_code == 200, (path, response.text)
        assert units(response) == cost, (path, params)


def test_every_response_carries_its_resource_units(http):
    missing = http.get("/users/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert units(missing) == 1
    bad = http.get("/users", params={"$top": "1000"})
    assert bad.status_code == 400
    assert units(bad) == 2
    count = http.get("/users/$count", headers={"ConsistencyLevel": "eventual"})
    assert units(count) == 1


def test_request_log_sums_the_units_charged(http, control):
    group = group_with_members(control)
    control.clear_requests()
    http.get("/users")
    http.get(f"/groups/{group['id']}/transitiveMembers")
    summary = control.requests()
    assert summary["resource_units"] == 7
    assert summary["http_calls"] == 2
    assert summary["by_path"] == {"GET /users": 1, "GET /groups/{id}/transitiveMembers": 1}


# ----------------------------------------------------------------------------------------------- budget


def test_small_tenant_budget_is_3500_units_then_429(graph, http, control):
    """With the refill slowed to nothing, exactly 3,500 RU of 5-RU requests get through."""
    control.settings(resource_unit_window_s=1e7)
    group = group_with_members(control)
    path = f"/groups/{group['id']}/transitiveMembers"
    served = 0
    percentages = set()
    while True:
        response = http.get(path)
        if response.status_code != 200:
            break
        assert units(response) == 5
        served += 1
        if "x-ms-throttle-limit-percentage" in response.headers:
            percentages.add(response.headers["x-ms-throttle-limit-percentage"])
        assert served <= 700
    assert served == 700
    assert_throttled(response)
    assert response.headers["x-ms-throttle-scope"] == THROTTLE_SCOPE.format(
        app=graph.info.client_id, tenant=graph.info.tenant_id
    )
    assert response.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    assert units(response) == 5
    assert percentages and all(0.8 <= float(p) <= 1.8 for p in percentages)  # only above 80% use
    cheap = http.get("/users/00000000-0000-4000-8000-000000000000")
    assert_throttled(cheap)  # the whole app+tenant pair is throttled, whatever the request
    assert control.requests()["throttled"] == 2


def test_retry_before_retry_after_is_throttled_again_and_after_it_succeeds(http, control):
    """Dev Proxy's RetryAfterPlugin pattern [docs/graph-behaviour.md section 5]: the pair stays throttled until
    Retry-After has elapsed, even when the bucket alone would already hold enough."""
    # 50 RU per 10 s refills 5 RU per second: a 2-RU list of users fits again after 0.4 s,
    # but Retry-After is whole seconds (1), and a retry at 0.6 s is still refused.
    control.settings(resource_unit_budget=50)
    served = 0
    while (first := http.get("/users")).status_code == 200:  # 25 fit, a few more if the machine is slow
        served += 1
        assert served < 60
    throttled_at = time.monotonic()
    assert served >= 25
    assert_throttled(first)
    assert first.headers["Retry-After"] == "1"
    time.sleep(max(0.0, throttled_at + 0.6 - time.monotonic()))
    early = http.get("/users")
    assert_throttled(early)
    assert early.headers["Retry-After"] == "1"
    time.sleep(max(0.0, throttled_at + 1.05 - time.monotonic()))
    assert http.get("/users").status_code == 200


def test_throttling_without_retry_after(http, control):
    control.settings(resource_unit_budget=10, throttle_retry_after=False)
    responses = [http.get("/users") for _ in range(6)]
    assert [r.status_code for r in responses[:5]] == [200] * 5
    assert_throttled(responses[5], retry_after=False)
    assert responses[5].headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"


def test_budgets_can_be_switched_off(http, control):
    control.settings(resource_unit_budget=4, enforce_budgets=False)
    assert all(http.get("/users").status_code == 200 for _ in range(5))


# ------------------------------------------------------------------------------------------------ faults


def test_count_limited_503_burst_then_success(http, control):
    control.set_faults({"status": 503, "count": 2, "path": "^/users$", "retry_after": 3})
    first, second, third = (http.get("/users") for _ in range(3))
    for response in (first, second):
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "ServiceUnavailable"
        assert response.headers["Retry-After"] == "3"
    assert third.status_code == 200
    rules = control._call("GET", "/faults")["rules"]
    assert rules[0]["fired"] == 2


def test_every_nth_request_is_429(http, control):
    control.set_faults({"status": 429, "every": 3, "retry_after": 2})
    responses = [http.get("/groups") for _ in range(9)]
    assert [r.status_code for r in responses] == [200, 200, 429] * 3
    assert_throttled(responses[2])
    assert responses[2].headers["Retry-After"] == "2"


def test_fault_retry_after_may_be_fractional_or_missing(http, control):
    control.set_faults({"status": 429, "count": 1, "retry_after": 2.128})
    assert http.get("/users").headers["Retry-After"] == "2.128"
    control.set_faults({"status": 429, "count": 1, "retry_after": None})
    assert_throttled(http.get("/users"), retry_after=False)
    control.set_faults({"status": 504, "count": 1, "retry_after": None})
    response = http.get("/users")
    assert response.status_code == 504
    assert "Retry-After" not in response.headers


def test_probability_faults_are_reproducible_from_the_seed(http, control):
    rule = {"status": 500, "probability": 0.4, "seed": 7}
    rng = random.Random(7)
    expected = [500 if rng.random() < 0.4 else 200 for _ in range(25)]
    assert 200 in expected and 500 in expected
    for _ in range(2):
        control.set_faults(rule)
        assert [http.get("/devices").status_code for _ in range(25)] == expected


def test_fault_rules_match_path_and_method(http, control):
    control.set_faults(
        {"status": 503, "method": "GET", "path": "^/groups"}, {"status": 500, "method": "POST"}
    )
    assert http.get("/users").status_code == 200
    assert http.get("/groups").status_code == 503
    group = control.objects("groups")[0]
    assert http.get(f"/groups/{group['id']}/members").status_code == 503
    control.clear_faults()
    assert http.get("/groups").status_code == 200


def test_fault_rules_can_spare_batch_steps(http, control):
    control.set_faults({"status": 503, "path": "^/users$", "in_batch": False})
    assert http.get("/users").status_code == 503
    batch = http.post("/$batch", json={"requests": [{"id": "1", "method": "GET", "url": "/users"}]})
    assert batch.status_code == 200, batch.text
    assert batch.json()["responses"][0]["status"] == 200
    control.set_faults({"status": 503, "path": "^/users$", "in_batch": True})
    batch = http.post("/$batch", json={"requests": [{"id": "1", "method": "GET", "url": "/users"}]})
    assert batch.status_code == 200
    assert batch.json()["responses"][0]["status"] == 503


@pytest.mark.parametrize(
    "rule",
    [
        {"status": 200},
        {"status": 503, "path": "("},
        {"status": 503, "count": 0},
        {"status": 503, "probability": 2},
        {"status": 503, "colour": "red"},
    ],
)
def test_invalid_fault_rules_are_refused(graph, rule):
    response = httpx.put(
        f"{graph.info.control_url}/faults", json={"rules": [rule]}, verify=graph.info.tls_context()
    )
    assert response.status_code == 400
