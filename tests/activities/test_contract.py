"""The API's contract: Idempotency-Key, usage counters, problem details, the committed OpenAPI document, the
Function App's index of the activity functions."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.core.exceptions import HttpResponseError

from shared.activities.api import ActivityApi, activity_api
from shared.activities.catalog import ACTIVITIES
from shared.activities.idempotency import (
    MAX_KEPT_BODY_BYTES,
    AnswerTooLarge,
    IdempotencyStore,
    Reservation,
    StoredAnswer,
)
from shared.activities.usage import UsageStore
from shared.openapi import OPENAPI_PATH, render
from shared.settings import Settings, SettingsError
from tests.activities.test_users import find_user, new_user_values


async def test_same_key_and_body_replays_the_first_outcome_without_calling_graph(call, control, graph):
    request = {"task": "people", "values": new_user_values(graph.info, "idem.potent")}
    headers = {"Idempotency-Key": "create-idem-1"}
    first = await call("users.create", request, headers)
    assert first[0] == 201, first[1]
    control.clear_requests()
    # Same body, other JSON formatting: the same request.
    again = await call("users.create", json.dumps(request, indent=3).encode(), headers)
    assert again[0] == 201 and again[1] == first[1]
    assert again[2]["Idempotent-Replayed"] == "true"
    assert control.requests()["http_calls"] == 0
    assert sum(1 for u in control.objects("users") if u["userPrincipalName"].startswith("idem.potent@")) == 1


async def test_same_key_with_another_body_is_refused(call, control, graph):
    headers = {"Idempotency-Key": "create-idem-2"}
    request = {"task": "people", "values": new_user_values(graph.info, "key.one")}
    assert (await call("users.create", request, headers))[0] == 201
    other = {"task": "people", "values": new_user_values(graph.info, "key.two")}
    status, body, _ = await call("users.create", other, headers)
    assert status == 422 and body["outcome"] == "Exception" and "another request body" in body["exception"]
    assert find_user(control, other["values"]["login"]) is None


async def test_an_invalid_request_does_not_use_up_its_key(call, graph):
    headers = {"Idempotency-Key": "create-idem-3"}
    status, _, _ = await call("users.create", {"task": "people", "values": {"title": "x"}}, headers)
    assert status == 400
    request = {"task": "people", "values": new_user_values(graph.info, "key.three")}
    assert (await call("users.create", request, headers))[0] == 201


async def test_graph_refusals_are_kept_and_replayed(call, control):
    user = control.objects("users")[0]["id"]
    headers = {"Idempotency-Key": "verify-7"}
    request = {"task": "people", "user": user, "groups": ["00000000-0000-4000-8000-000000000002"]}
    first = await call("memberships.add", request, headers)
    assert first[0] == 404
    control.clear_requests()
    again = await call("memberships.add", request, headers)
    assert again[0] == 404 and again[1] == first[1] and control.requests()["http_calls"] == 0


async def test_large_answers_are_kept_up_to_the_tables_limits(api):
    store = await api.idempotency()
    largest = ('{"x": "' + "é" * (MAX_KEPT_BODY_BYTES // 2 - 10) + '"}').encode()
    assert len(largest) <= MAX_KEPT_BODY_BYTES
    assert (await store.reserve("graph.call", "large", "d")).conflict is None
    await store.complete("graph.call", "large", "d", StoredAnswer(200, largest, {"Location": "x"}))
    replay = (await store.reserve("graph.call", "large", "d")).replay
    assert replay == StoredAnswer(200, largest, {"Location": "x"})
    with pytest.raises(AnswerTooLarge):
        await store.complete(
            "graph.call", "large", "d", StoredAnswer(200, b"x" * (MAX_KEPT_BODY_BYTES + 1), {})
        )


async def test_an_answer_too_large_to_keep_releases_its_key(call, monkeypatch):
    # A repeat then runs again, instead of meeting "still being processed" until the reservation lapses.
    monkeypatch.setattr("shared.activities.idempotency.MAX_KEPT_BODY_BYTES", 100)
    headers = {"Idempotency-Key": "large-get"}
    request = {"task": "people", "method": "GET", "url": "users?$top=5&$select=id,displayName"}
    first = await call("graph.call", request, headers)
    assert first[0] == 200 and len(json.dumps(first[1])) > 100
    again = await call("graph.call", request, headers)
    assert again[0] == 200 and "Idempotent-Replayed" not in again[2]


async def test_keys_expire(api):
    await api.idempotency()
    table = api.services.storage.tables.get_table_client(api._idempotency_table)
    expiring, lasting = IdempotencyStore(table, ttl=timedelta(0)), IdempotencyStore(table)
    for store, key in ((expiring, "short"), (lasting, "long")):
        assert await store.reserve("users.read", key, "digest-a") == Reservation()
        await store.complete("users.read", key, "digest-a", StoredAnswer(200, b"{}", {}))
    # Within its lifetime a key replays its answer, and refuses another body.
    assert (await lasting.reserve("users.read", "long", "digest-a")).replay == StoredAnswer(200, b"{}", {})
    assert (await lasting.reserve("users.read", "long", "digest-b")).conflict[0] == 422
    # Expired (ttl 0): the key may be used again, even with another body; expired records are purged.
    assert await expiring.reserve("users.read", "short", "digest-b") == Reservation()
    assert await lasting.purge_expired(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert [row["RowKey"] for row in table.list_entities()] == [IdempotencyStore._row("long")]


def test_the_activity_tables_are_app_settings_of_the_settings_model(api, environ):
    # Read through the one settings model (set by the Bicep and local.settings.example.json), validated there.
    assert api._idempotency_table == environ["ACTIVITY_IDEMPOTENCY_TABLE"]
    assert api._usage_table == environ["ACTIVITY_USAGE_TABLE"]
    defaults = Settings.from_environ({})
    assert (defaults.idempotency_table, defaults.usage_table) == ("activityidempotency", "activityusage")
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({"ACTIVITY_IDEMPOTENCY_TABLE": "no_such-name", "ACTIVITY_USAGE_TABLE": "x"})
    assert {name for name, _ in raised.value.problems} == {
        "ACTIVITY_IDEMPOTENCY_TABLE",
        "ACTIVITY_USAGE_TABLE",
    }


async def test_usage_is_counted_per_event_task_and_activity(call, services, control):
    user = control.objects("users")[0]["id"]
    for _ in range(3):
        await call("users.read", {"task": "people", "user": user})
    await call("users.read", {"task": "people", "user": "00000000-0000-4000-8000-000000000003"})
    await activity_api(services).flush_usage()  # counts are written in the background every few seconds
    usage = {(u.task, u.activity): u for u in await (await activity_api(services).usage()).list("people")}
    read = usage[("people", "users.read")]
    assert (read.calls, read.completed, read.exceptions, read.last_status) == (4, 3, 1, 404)
    assert read.last_call_at is not None


async def test_counts_are_written_soon_without_a_later_call(services, stored, control):
    # A burst, then silence: the counts are written within the flush interval anyway (an idle instance may
    # be stopped, and the admin views read the table).
    api = ActivityApi(services, usage_flush_s=0.5)
    body = json.dumps({"task": "people", "user": control.objects("users")[0]["id"]}).encode()
    for _ in range(3):
        assert (await api.handle("users.read", body, {})).status == 200
    table = services.storage.tables.get_table_client(api._usage_table)
    for _ in range(50):
        rows = {row["RowKey"]: row for row in table.query_entities("PartitionKey eq 'people'")}
        if rows.get("users.read", {}).get("calls") == 3:
            break
        await asyncio.sleep(0.1)
    assert rows["users.read"]["calls"] == 3


async def test_counts_a_write_fails_to_store_are_kept_for_the_next(api):
    store = await api.usage()
    missing = UsageStore(api.services.storage.tables.get_table_client("nosuchtable"))
    missing.note("t2", "users.read", 200)
    with pytest.raises(HttpResponseError):  # the table does not exist
        await missing.flush()
    missing.table = store.table
    missing.note("t2", "users.read", 404)
    await missing.flush()
    [usage] = await store.list("t2")
    assert (usage.calls, usage.completed, usage.exceptions, usage.last_status) == (2, 1, 1, 404)


async def test_concurrent_instances_are_all_counted(api):
    import asyncio

    table = api.services.storage.tables.get_table_client(api._usage_table)
    await api.usage()
    instances = [UsageStore(table) for _ in range(6)]  # as six Function App instances would
    await asyncio.gather(
        *(store.record("t1", "users.read", 200 if n % 3 else 404) for n, store in enumerate(instances))
    )
    [usage] = await instances[0].list("t1")
    assert (usage.calls, usage.completed, usage.exceptions) == (6, 4, 2)


async def test_problems_name_every_invalid_field_and_unknown_tasks(call):
    status, body, headers = await call(
        "memberships.add", {"task": "bad name!", "user": "x", "groups": [], "extra": 1}
    )
    assert status == 400 and headers["Content-Type"] == "application/problem+json"
    assert {e["field"] for e in body["errors"]} == {"task", "user", "groups", "extra"}
    assert body["type"].endswith(":invalid-request") and body["title"] and body["detail"] == body["exception"]
    status, body, _ = await call("users.read", b"{not json")
    assert status == 400 and body["errors"][0]["field"] == "(body)"
    status, body, _ = await call(
        "users.read", {"task": "ghost", "user": "00000000-0000-4000-8000-000000000003"}
    )
    assert status == 400 and body["errors"] == [{"field": "task", "message": "no event task named ghost"}]
    status, body, _ = await call(
        "users.read", {"task": "off", "user": "00000000-0000-4000-8000-000000000003"}
    )
    assert status == 400 and "disabled" in body["exception"]
    status, body, _ = await call(
        "users.read", {"task": "nightly", "user": "00000000-0000-4000-8000-000000000003"}
    )
    assert status == 400 and "nightly is a scheduled task, not an event task" in body["exception"]


async def test_throttling_is_a_503_with_retry_after(call, control, services):
    control.set_faults({"status": 429, "retry_after": 1, "path": "^/users/", "count": 1000})
    user = control.objects("users")[0]["id"]
    services_api = ActivityApi(services)
    from shared.activities import calls

    calls_deadline = calls.CALL_DEADLINE_S
    calls.CALL_DEADLINE_S = 2.5
    try:
        answer = await services_api.handle(
            "users.read", json.dumps({"task": "people", "user": user}).encode(), {}
        )
    finally:
        calls.CALL_DEADLINE_S = calls_deadline
    assert answer.status == 503, answer.body
    assert answer.headers["Retry-After"] and answer.json["graph_code"] == "TooManyRequests"


def test_the_committed_openapi_document_is_current():
    assert OPENAPI_PATH.read_text(encoding="utf-8") == render(), "stale: run make openapi"


async def test_the_openapi_endpoint_serves_the_document(handlers):
    request = func.HttpRequest(
        method="GET", url="https://connector.example/api/v1/activities/openapi.json", body=b""
    )
    response = await handlers["activities_openapi"](request)
    document = json.loads(response.get_body())
    assert document["openapi"] == "3.1.0"
    assert {f"/api/{a.route}" for a in ACTIVITIES} <= set(document["paths"])


def test_every_activity_is_its_own_function_with_function_auth(handlers):
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    import functions.activities

    app.register_functions(functions.activities.bp)
    indexed = {f.get_function_name(): f for f in app.get_functions()}
    for activity in ACTIVITIES:
        function = indexed[activity.function_name]
        trigger = json.loads(function.get_raw_bindings()[0])
        assert trigger["route"] == activity.route and trigger["methods"] == ["POST"]
        assert trigger["authLevel"] == "FUNCTION"


async def test_logs_name_task_activity_and_request_id_but_never_secrets(call, graph, control, caplog):
    import base64
    import logging

    from shared import logs
    from tests.activities.test_objects_and_calls import image_bytes

    logs.attach_to_root()  # as the Function App does when it starts (functions/runtime.py)
    handler_filter = logs.ContextFilter()
    caplog.handler.addFilter(handler_filter)
    caplog.set_level(logging.DEBUG)
    values = new_user_values(graph.info, "log.check")
    created = await call(
        "users.create", {"task": "hires", "values": {**values, "hired": None}, "password": "S3cret!Pass-77"}
    )
    assert created[0] == 201, created  # the secrets did reach Graph
    user = find_user(control, values["login"])
    photo = base64.b64encode(image_bytes("PNG", (200, 200))).decode()
    assert (await call("users.set-photo", {"task": "hires", "user": user["id"], "photo": photo}))[0] == 200
    assert (await call("users.reset-password", {"task": "people", "user": user["id"]}))[0] == 200
    assert (await call("users.read", {"task": "people", "user": values["login"]}))[0] == 200
    verify = [{"code": "name", "value": values["name"]}, {"code": "login", "value": values["login"]}]
    assert (await call("users.verify", {"task": "people", "conditions": verify}))[0] == 200
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "S3cret!Pass-77" not in text and "Welcome-2026!Graph" not in text and photo[:40] not in text
    # Our records at every level, anyone's at INFO and above (MSAL's own DEBUG records name the token type).
    ours_or_info = [
        r for r in caplog.records if r.name.startswith(("shared", "functions")) or r.levelno >= logging.INFO
    ]
    assert not [r.getMessage() for r in ours_or_info if "Bearer" in r.getMessage() or "eyJ" in r.getMessage()]
    # Nor personal data: user principal names and filter values (httpx's own request lines held them).
    login = values["login"].split("@")[0]
    assert not [
        r.getMessage() for r in ours_or_info if login in r.getMessage() or "O%27%27Brien" in r.getMessage()
    ]
    answers = [r for r in caplog.records if r.getMessage().startswith("activity users.create")]
    assert answers and answers[0].task == "hires" and answers[0].activity == "users.create"
    assert "request-ids " in answers[0].getMessage() and answers[0].getMessage().split("request-ids ")[1]


async def test_a_connector_app_without_write_permission_gets_graphs_403(graph, control, environ):
    from shared.config import parse_config
    from shared.services import Services
    from shared.settings import Settings
    from tests.activities.conftest import activity_config

    app = control.add_app(roles=["User.Read.All"], display_name="Read only")
    data = activity_config(graph.info, control)
    data["connectors"][0]["client_id"] = app["client_id"]
    weak_environ = {**environ, "LOCALGRAPH_CLIENT_SECRET": app["client_secret"]}
    weak = Services(Settings.from_environ(weak_environ), environ=weak_environ)
    weak.storage.ensure()
    await weak.config_store.save(parse_config(data))
    user = next(u for u in control.objects("users") if not u.get("onPremisesSyncEnabled"))
    try:
        answer = await ActivityApi(weak).handle(
            "users.update",
            json.dumps({"task": "people", "user": user["id"], "values": {"title": "x"}}).encode(),
            {},
        )
    finally:
        await weak.aclose()
    assert answer.status == 403 and answer.json["graph_code"] == "Authorization_RequestDenied"
    assert app["client_secret"] not in answer.body.decode()
    assert control.get("users", user["id"])["jobTitle"] != "x"


async def test_a_key_in_use_by_a_running_call_answers_409(call, api, graph):
    body = {"task": "people", "values": new_user_values(graph.info, "busy.key")}
    store = await api.idempotency()
    from shared.activities.idempotency import body_digest

    assert (
        await store.reserve("users.create", "busy-1", body_digest(json.dumps(body).encode()))
    ).conflict is None
    status, problem, _ = await call("users.create", body, {"Idempotency-Key": "busy-1"})
    assert status == 409 and "still being processed" in problem["exception"]
