"""JSON batching (``POST /v1.0/$batch``) [docs/graph-behaviour.md section 4; throttling inside a batch: section 5].

Every test goes through real HTTP: a started local Graph, a token from ClientSecretCredential, and the
control API to observe what the steps did (the request log, the tenant).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from localgraph.client import ControlClient


def post_batch(http: httpx.Client, steps: list[dict[str, Any]]) -> httpx.Response:
    return http.post("/$batch", json={"requests": steps})


def by_id(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    entries = response.json()["responses"]
    result = {entry["id"]: entry for entry in entries}
    assert len(result) == len(entries)
    return result


def get(step_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "method": "GET", "url": url, **extra}


def user_ids(control: ControlClient, n: int) -> list[str]:
    return [user["id"] for user in control.objects("users")[:n]]


def group_id(control: ControlClient) -> str:
    return next(g["id"] for g in control.objects("groups") if len(g["members"]) >= 2)


def comparable(body: Any) -> Any:
    """A body without what legitimately differs between two calls (request ids, dates, page tokens)."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if "@odata.nextLink" in body:
        body["@odata.nextLink"] = body["@odata.nextLink"].split("$skiptoken=")[0]
    if "error" in body:
        body["error"] = {k: v for k, v in body["error"].items() if k != "innerError"}
    return body


def assert_batch_rejected(control: ControlClient, response: httpx.Response, code: str = "BadRequest") -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    assert control.requests()["batch_steps"] == 0  # no step ran


# ------------------------------------------------------------------------------------ steps and responses


def test_steps_answer_exactly_like_the_same_direct_requests(http, control):
    first, second = user_ids(control, 2)
    group = group_id(control)
    urls = {
        "user": f"/users/{first}?$select=id,displayName,mail",
        "no-leading-slash": f"users/{second}",
        "page": "/users?$top=3&$select=id,userPrincipalName",
        "members": f"/groups/{group}/members?$top=1",
        "missing": "/users/00000000-0000-0000-0000-000000000000",
        "bad-segment": "/nonsense",
    }
    responses = by_id(post_batch(http, [get(step_id, url) for step_id, url in urls.items()]))
    assert set(responses) == set(urls)
    for step_id, url in urls.items():
        direct = http.get(url if url.startswith("/") else f"/{url}")
        step = responses[step_id]
        assert step["status"] == direct.status_code, step_id
        assert step["headers"]["Content-Type"] == direct.headers["content-type"], step_id
        assert step["headers"]["x-ms-resource-unit"] == direct.headers["x-ms-resource-unit"], step_id
        assert comparable(step["body"]) == comparable(direct.json()), step_id
    assert responses["missing"]["status"] == 404
    assert responses["missing"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert responses["bad-segment"]["status"] == 400


def test_a_next_link_from_a_step_is_absolute_and_works_directly(graph, http):
    step = by_id(post_batch(http, [get("1", "/users?$top=2")]))["1"]
    link = step["body"]["@odata.nextLink"]
    assert link.startswith(f"{graph.info.graph_base_url}/users?$top=2&$skiptoken=")
    page = http.get(link)
    assert page.status_code == 200
    assert len(page.json()["value"]) == 2
    assert {u["id"] for u in page.json()["value"]}.isdisjoint({u["id"] for u in step["body"]["value"]})


def test_responses_come_back_shuffled_and_correlate_by_id(http, control):
    ids = user_ids(control, 6)
    steps = [get(f"step-{n}", f"/users/{user_id}?$select=id") for n, user_id in enumerate(ids)]
    orders = []
    for _ in range(6):
        entries = post_batch(http, steps).json()["responses"]
        orders.append([entry["id"] for entry in entries])
        for entry in entries:  # each answer belongs to its step, whatever the order
            assert entry["body"]["id"] == ids[int(entry["id"].split("-")[1])]
    expected = [step["id"] for step in steps]
    assert all(sorted(order) == sorted(expected) for order in orders)
    assert any(order != expected for order in orders)


def test_responses_keep_the_request_order_when_shuffling_is_off(http, control):
    control.settings(shuffle_batch_responses=False)
    steps = [get(f"s{n}", f"/users/{user_id}") for n, user_id in enumerate(user_ids(control, 8))]
    for _ in range(3):
        assert [entry["id"] for entry in post_batch(http, steps).json()["responses"]] == [
            s["id"] for s in steps
        ]


def test_a_count_step_answers_its_text_body(http, control):
    responses = by_id(
        post_batch(http, [get("count", "/users/$count", headers={"ConsistencyLevel": "eventual"})])
    )
    count = responses["count"]
    assert count["status"] == 200
    assert count["headers"]["Content-Type"].startswith("text/plain")
    assert count["body"] == str(control.tenant_info()["counts"]["users"])


# ------------------------------------------------------------------------------------ whole-batch errors


def test_twenty_steps_are_accepted(http, control):
    ids = user_ids(control, 20)
    responses = by_id(post_batch(http, [get(str(n), f"/users/{uid}") for n, uid in enumerate(ids)]))
    assert len(responses) == 20
    assert {entry["status"] for entry in responses.values()} == {200}


def test_twenty_one_steps_are_a_400_maximum_value_exceeded(http, control):
    ids = user_ids(control, 21)
    response = post_batch(http, [get(str(n), f"/users/{uid}") for n, uid in enumerate(ids)])
    assert_batch_rejected(control, response, code="MaximumValueExceeded")
    assert (
        response.json()["error"]["message"]
        == "Number of batch request steps exceeds the maximum value of 20."
    )


def test_ids_that_differ_only_in_case_are_duplicates_and_fail_the_batch(http, control):
    response = post_batch(http, [get("abc", "/users"), get("ABC", "/groups")])
    assert_batch_rejected(control, response)
    assert response.json()["error"]["message"] == "Request Id ABC has to be unique in a batch."


def test_an_absolute_step_url_fails_the_batch(http, control):
    response = post_batch(http, [get("1", "/users"), get("2", "https://graph.microsoft.com/v1.0/users")])
    assert_batch_rejected(control, response)


def test_a_step_with_a_body_but_no_content_type_fails_the_whole_batch(http, control):
    # Real Graph rejects the batch itself, and none of the steps runs (third-party captures; see batch.py).
    users_before = control.tenant_info()["counts"]["users"]
    body = {"displayName": "No Header", "mailNickname": "noheader", "accountEnabled": True}
    response = post_batch(
        http,
        [get("1", "/users"), {"id": "2", "method": "POST", "url": "/users", "body": body}],
    )
    assert_batch_rejected(control, response)
    assert (
        response.json()["error"]["message"]
        == "Write request id : 2 does not contain Content-Type header or body."
    )
    assert control.tenant_info()["counts"]["users"] == users_before


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"{not json", id="malformed-json"),
        pytest.param(b"", id="empty-body"),
        pytest.param({"steps": []}, id="no-requests-array"),
        pytest.param({"requests": {"id": "1"}}, id="requests-not-an-array"),
        pytest.param({"requests": []}, id="empty-requests"),
        pytest.param({"requests": ["GET /users"]}, id="step-not-an-object"),
        pytest.param({"requests": [{"method": "GET", "url": "/users"}]}, id="missing-id"),
        pytest.param({"requests": [{"id": 1, "method": "GET", "url": "/users"}]}, id="id-not-a-string"),
        pytest.param({"requests": [{"id": "1", "url": "/users"}]}, id="missing-method"),
        pytest.param({"requests": [{"id": "1", "method": "FETCH", "url": "/users"}]}, id="unknown-method"),
        pytest.param({"requests": [{"id": "1", "method": "GET"}]}, id="missing-url"),
        pytest.param(
            {"requests": [{"id": "1", "method": "GET", "url": "//graph.example/users"}]}, id="net-path"
        ),
        pytest.param({"requests": [get("1", "/users", dependsOn=["9"])]}, id="depends-on-unknown-id"),
        pytest.param(
            {"requests": [get("1", "/users", dependsOn=["2"]), get("2", "/groups")]}, id="forward-dependency"
        ),
        pytest.param({"requests": [get("1", "/users", dependsOn=["1"])]}, id="depends-on-itself"),
        pytest.param({"requests": [get("1", "/users", dependsOn="2")]}, id="depends-on-not-a-list"),
        pytest.param(
            {
                "requests": [
                    {
                        "id": "1",
                        "method": "POST",
                        "url": "/$batch",
                        "body": {"requests": []},
                        "headers": {"Content-Type": "application/json"},
                    }
                ]
            },
            id="nested-batch",
        ),
        pytest.param(
            {
                "requests": [
                    {
                        "id": "1",
                        "method": "PATCH",
                        "url": "/users/x",
                        "headers": {"Content-Type": "application/json"},
                    }
                ]
            },
            id="write-without-body",
        ),
        pytest.param(
            {"requests": [get("1", "/users", headers=["ConsistencyLevel: eventual"])]},
            id="headers-not-object",
        ),
    ],
)
def test_a_malformed_batch_is_a_400_and_runs_no_step(http, control, payload):
    if isinstance(payload, bytes):
        response = http.post("/$batch", content=payload, headers={"Content-Type": "application/json"})
    else:
        response = http.post("/$batch", json=payload)
    assert_batch_rejected(control, response)


def test_a_delete_step_needs_no_body(http, control):
    # DELETE has no body: the step runs (here: 404 for a missing user) and the batch is 200.
    responses = by_id(post_batch(http, [{"id": "1", "method": "DELETE", "url": "/users/missing-user"}]))
    assert responses["1"]["status"] == 404
    assert responses["1"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert control.requests()["batch_steps"] == 1


def test_a_batch_without_a_token_is_401(graph, control):
    with httpx.Client(base_url=graph.info.graph_base_url, verify=graph.info.tls_context()) as anonymous:
        response = anonymous.post("/$batch", json={"requests": [get("1", "/users")]})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert control.requests()["batch_steps"] == 0


# -------------------------------------------------------------------------------------------- dependsOn


def test_dependents_of_a_failed_step_answer_424_and_are_not_run(http, control):
    users_before = control.tenant_info()["counts"]["users"]
    new_user = {
        "accountEnabled": True,
        "displayName": "Should Not Exist",
        "mailNickname": "should.not.exist",
        "userPrincipalName": f"should.not.exist@{control.tenant_info()['domain']}",
        "passwordProfile": {"password": "xWwvJ]6NMw+bWH-d", "forceChangePasswordNextSignIn": True},
    }
    control.clear_requests()
    responses = by_id(
        post_batch(
            http,
            [
                get("lookup", "/users/00000000-0000-0000-0000-000000000000"),
                {
                    "id": "create",
                    "method": "POST",
                    "url": "/users",
                    "body": new_user,
                    "headers": {"Content-Type": "application/json"},
                    "dependsOn": ["lookup"],
                },
                get("after-create", "/groups?$top=1", dependsOn=["CREATE"]),  # ids are not case-sensitive
                get("independent", "/groups?$top=1"),
            ],
        )
    )
    assert responses["lookup"]["status"] == 404
    for step_id in ("create", "after-create"):
        assert responses[step_id]["status"] == 424
        assert responses[step_id]["body"]["error"]["code"] == "FailedDependency"
        assert responses[step_id]["headers"]["Content-Type"].startswith("application/json")
    assert responses["independent"]["status"] == 200
    log = control.requests()
    assert log["batched_by_path"] == {"GET /users/{id}": 1, "GET /groups": 1}
    assert control.tenant_info()["counts"]["users"] == users_before


def test_a_step_whose_dependencies_succeeded_runs(http, control):
    first, second = user_ids(control, 2)
    responses = by_id(
        post_batch(
            http,
            [
                get("1", f"/users/{first}"),
                get("2", f"/users/{second}", dependsOn=["1"]),
                get("3", "/users?$top=1", dependsOn=["1", "2"]),
            ],
        )
    )
    assert [responses[i]["status"] for i in ("1", "2", "3")] == [200, 200, 200]
    assert responses["2"]["body"]["id"] == second


def test_a_throttled_dependency_fails_its_dependents_with_424(http, control):
    first, second = user_ids(control, 2)
    control.set_faults({"status": 429, "retry_after": 3, "path": "^/users/", "count": 1, "in_batch": True})
    responses = by_id(
        post_batch(http, [get("1", f"/users/{first}"), get("2", f"/users/{second}", dependsOn=["1"])])
    )
    assert responses["1"]["status"] == 429
    assert responses["2"]["status"] == 424


# ------------------------------------------------------------------------------------------- throttling


def test_a_throttled_step_answers_429_with_its_own_retry_after_while_the_batch_is_200(http, control):
    ids = user_ids(control, 3)
    control.set_faults({"status": 429, "retry_after": 3, "path": "^/users/", "count": 2, "in_batch": True})
    response = post_batch(
        http, [get(str(n), f"/users/{uid}") for n, uid in enumerate(ids)] + [get("g", "/groups")]
    )
    assert response.status_code == 200
    assert "retry-after" not in response.headers
    responses = by_id(response)
    for step_id in ("0", "1"):  # steps run in array order: the first two matching steps are throttled
        step = responses[step_id]
        assert step["status"] == 429
        assert step["headers"]["Retry-After"] == "3"
        assert step["body"]["error"]["code"] == "TooManyRequests"
    assert responses["2"]["status"] == 200
    assert "Retry-After" not in responses["2"]["headers"]
    assert responses["g"]["status"] == 200
    assert control.requests()["throttled"] == 2


def test_a_throttled_step_can_come_without_retry_after(http, control):
    (user_id,) = user_ids(control, 1)
    control.set_faults({"status": 429, "retry_after": None, "path": "^/users/", "count": 1, "in_batch": True})
    responses = by_id(post_batch(http, [get("1", f"/users/{user_id}")]))
    assert responses["1"]["status"] == 429
    assert "Retry-After" not in responses["1"]["headers"]
    assert responses["1"]["body"]["error"]["code"] == "TooManyRequests"


def test_a_fault_for_direct_requests_only_leaves_batch_steps_alone(http, control):
    (user_id,) = user_ids(control, 1)
    control.set_faults({"status": 503, "path": "^/users/", "in_batch": False})
    assert by_id(post_batch(http, [get("1", f"/users/{user_id}")]))["1"]["status"] == 200
    assert http.get(f"/users/{user_id}").status_code == 503


def test_steps_spend_the_budget_one_by_one(http, control):
    # A batch saves round trips, not budget [docs/graph-behaviour.md section 4]: once the RU bucket is empty, the remaining steps
    # are throttled individually (real 429s from the bucket, with Retry-After) and the batch answers 200.
    control.settings(resource_unit_budget=50, resource_unit_window_s=3600.0)  # 50 RU, no refill to speak of
    group = group_id(control)
    steps = [get(str(n), f"/groups/{group}/transitiveMembers") for n in range(20)]  # 5 RU each
    response = post_batch(http, steps)
    assert response.status_code == 200
    responses = by_id(response)
    statuses = [responses[str(n)]["status"] for n in range(20)]
    assert statuses == [200] * 10 + [429] * 10
    for n in range(10, 20):
        headers = responses[str(n)]["headers"]
        assert int(headers["Retry-After"]) >= 1
        assert headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    log = control.requests()
    assert log["throttled"] == 10
    assert log["resource_units"] == 50


# ------------------------------------------------------------------------------------- headers per step


def test_an_advanced_query_needs_consistency_level_in_the_step_headers(http, control):
    url = "/users?$filter=endsWith(mail,'@contoso.example')&$count=true&$select=id,mail&$top=999"
    expected = sum(1 for u in control.objects("users") if (u.get("mail") or "").endswith("@contoso.example"))
    # The outer request's ConsistencyLevel does not reach the steps.
    response = http.post(
        "/$batch",
        json={"requests": [get("without", url), get("with", url, headers={"ConsistencyLevel": "eventual"})]},
        headers={"ConsistencyLevel": "eventual"},
    )
    responses = by_id(response)
    assert responses["without"]["status"] == 400
    assert responses["without"]["body"]["error"]["code"] == "Request_UnsupportedQuery"
    assert responses["with"]["status"] == 200
    assert responses["with"]["body"]["@odata.count"] == expected
    assert len(responses["with"]["body"]["value"]) == expected
    assert all(u["mail"].endswith("@contoso.example") for u in responses["with"]["body"]["value"])


def test_a_step_client_request_id_is_echoed_in_its_error(http, control):
    step = get("1", "/users/missing", headers={"client-request-id": "my-correlation-id"})
    body = by_id(post_batch(http, [step]))["1"]["body"]
    assert body["error"]["innerError"]["client-request-id"] == "my-correlation-id"


# -------------------------------------------------------------------------------- request log and costs


def test_the_request_log_counts_the_batch_once_and_every_step(http, control):
    first, second = user_ids(control, 2)
    control.clear_requests()
    by_id(post_batch(http, [get("1", f"/users/{first}"), get("2", f"/users/{second}"), get("3", "/groups")]))
    log = control.requests()
    assert log["http_calls"] == 1
    assert log["batch_steps"] == 3
    assert log["by_path"] == {"POST /$batch": 1}
    assert log["batched_by_path"] == {"GET /users/{id}": 2, "GET /groups": 1}


def test_each_step_is_charged_its_own_resource_units_and_the_envelope_nothing(http, control):
    user_id = user_ids(control, 1)[0]
    group = group_id(control)
    steps = [
        get("list-users", "/users"),  # 2
        get("members", f"/groups/{group}/members"),  # 3
        get("transitive", f"/groups/{group}/transitiveMembers"),  # 5
        get("member-of", f"/users/{user_id}/memberOf"),  # 2
        get("user", f"/users/{user_id}"),  # 1
        get("user-select", f"/users/{user_id}?$select=id"),  # 1 (never below 1)
        get("small-page", "/users?$top=5&$select=id"),  # 2 - 1 ($select) - 1 ($top < 20), never below 1
    ]
    control.clear_requests()
    response = post_batch(http, steps)
    assert response.headers["x-ms-resource-unit"] == "0"
    responses = by_id(response)
    units = {step_id: int(entry["headers"]["x-ms-resource-unit"]) for step_id, entry in responses.items()}
    assert units == {
        "list-users": 2,
        "members": 3,
        "transitive": 5,
        "member-of": 2,
        "user": 1,
        "user-select": 1,
        "small-page": 1,
    }
    assert control.requests()["resource_units"] == sum(units.values())


# ------------------------------------------------------------------------------------------- write steps


def test_a_write_step_answers_201_with_its_location_and_changes_the_tenant(http, control):
    domain = control.tenant_info()["domain"]
    new_user = {
        "accountEnabled": True,
        "displayName": "Batch Created",
        "mailNickname": "batch.created",
        "userPrincipalName": f"batch.created@{domain}",
        "passwordProfile": {"password": "xWwvJ]6NMw+bWH-d", "forceChangePasswordNextSignIn": True},
    }
    step = {"id": "1", "method": "POST", "url": "/users", "body": new_user,
            "headers": {"Content-Type": "application/json"}}  # fmt: skip
    created = by_id(post_batch(http, [step]))["1"]
    assert created["status"] == 201, created
    assert f"/directoryObjects/{created['body']['id']}/" in created["headers"]["Location"]
    assert created["headers"]["x-ms-resource-unit"] == "1"
    assert control.get("users", created["body"]["id"])["userPrincipalName"] == f"batch.created@{domain}"


def test_a_no_content_step_has_no_body(http, control):
    user_id = user_ids(control, 1)[0]
    step = {"id": "1", "method": "PATCH", "url": f"/users/{user_id}", "body": {"jobTitle": "Batched"},
            "headers": {"Content-Type": "application/json"}}  # fmt: skip
    patched = by_id(post_batch(http, [step]))["1"]
    assert patched["status"] == 204
    assert "body" not in patched
    assert "Content-Type" not in patched["headers"]
    assert control.get("users", user_id)["jobTitle"] == "Batched"


# ------------------------------------------------------------------------------------------ binary bodies


def test_a_binary_step_body_is_base64_both_ways(http, control):
    user_id = user_ids(control, 1)[0]
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) + b"\xff\xd9"
    put = {"id": "put", "method": "PUT", "url": f"/users/{user_id}/photo/$value",
           "headers": {"Content-Type": "image/jpeg"}, "body": base64.b64encode(jpeg).decode()}  # fmt: skip
    responses = by_id(
        post_batch(http, [put, get("get", f"/users/{user_id}/photo/$value", dependsOn=["put"])])
    )
    assert responses["put"]["status"] == 200, responses["put"]
    assert "body" not in responses["put"]
    assert responses["get"]["status"] == 200
    assert responses["get"]["headers"]["Content-Type"].startswith("image/jpeg")
    assert base64.b64decode(responses["get"]["body"]) == jpeg
    assert http.get(f"/users/{user_id}/photo/$value").content == jpeg  # the PUT step stored the bytes
