"""Change notifications end to end: the local Graph calls the Function App's real notification handler over
HTTPS (a small uvicorn server that adapts HTTP to ``func.HttpRequest``, as the Functions host does, and
checks the ``code`` key like auth level FUNCTION), the handler queues runs on Azurite, and the test drives the
queue by calling the run handler as the host would. Subscriptions are kept by the upkeep timer's handler.

No test-only relaxation is needed on the Graph side: the endpoint presents a certificate from the CA the
local Graph trusts, so its notification URL is https like Graph requires.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.functions.timer import TimerRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import function_app
import functions.notifications
import functions.scheduling
from localgraph.subscriptions_client import SubscriptionControl
from localgraph.subscriptions_endpoint import EndpointServer
from shared.config import ConfigError, parse_config
from shared.notifications import debounce
from shared.notifications.address import ROUTE, NoPublicHost, notification_url
from shared.notifications.store import SubscriptionStore
from shared.notifications.upkeep import upkeep
from shared.scheduling import tick
from shared.services import Services
from shared.settings import Settings
from shared.storage import blobs
from shared.storage.lease import TaskLease
from shared.storage.queues import RunRequest
from tests.support import USER_MAPPINGS, connector_for, read_records

KEY = "test-function-key"
PATH = f"/api/{ROUTE}"


def handler(name: str):
    """A function's handler, from the app indexed as the host does (a fresh index each time)."""
    app = importlib.reload(function_app).app
    return {f.get_function_name(): f for f in app.get_functions()}[name].get_user_function()


class FunctionsHost:
    """Stands in for the Functions host's HTTP front: auth level FUNCTION (the ``code`` key), then the
    function with a real ``func.HttpRequest``, and its ``func.HttpResponse`` back as HTTP."""

    def __init__(self) -> None:
        self.function = handler("graph_notifications")
        self.calls = 0
        self.answered: list[float] = []  # monotonic times of the answered notification POSTs

    async def handle(self, request: Request) -> Response:
        if request.query_params.get("code") != KEY:
            return Response(status_code=401)
        self.calls += 1
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query_params),
            body=await request.body(),
        )
        answer: func.HttpResponse = await self.function(req)
        if "validationToken" not in request.query_params:
            self.answered.append(time.monotonic())
        return Response(answer.get_body(), answer.status_code, media_type=answer.mimetype)


@pytest.fixture
def host() -> FunctionsHost:
    return FunctionsHost()


@pytest.fixture
def endpoint(graph, host) -> Iterator[EndpointServer]:
    app = Starlette(routes=[Route(PATH, host.handle, methods=["POST"])])
    with EndpointServer(app, graph.tls) as server:
        yield server


@pytest.fixture
def services(environ, endpoint, monkeypatch) -> Services:
    environ = {
        **environ,
        "NOTIFICATION_HOST": endpoint.origin.removeprefix("https://"),
        "NOTIFICATION_FUNCTION_KEY": KEY,
        "SUBSCRIPTION_LIFETIME_MINUTES": "60",
    }
    built = Services(Settings.from_environ(environ), environ=environ)
    built.storage.ensure()
    monkeypatch.setattr(functions.notifications, "services", lambda: built)
    monkeypatch.setattr(functions.scheduling, "services", lambda: built)
    return built


@pytest.fixture
def subs(graph) -> Iterator[SubscriptionControl]:
    client = SubscriptionControl(graph.info)
    client.settings(aggregation_ms=100, retry_first_s=0.5)
    yield client
    client.close()


def config(info, *, enabled: bool = True, interval: int = 5, schedule: str | None = None, **task: Any):
    definition: dict[str, Any] = {
        "name": "people",
        "connector": "local",
        "mode": "incremental",
        "mappings_type": "identity",
        "users": {"mappings": USER_MAPPINGS, "target_template": "account", "target_folder": "accounts"},
        "change_notifications": {"enabled": enabled, "min_interval_seconds": interval},
        **task,
    }
    if schedule:
        definition["schedule"] = schedule
    return parse_config({"connectors": [connector_for(info)], "tasks": [definition]})


async def drain(services: Services) -> list[RunRequest]:
    """Run every visible message on the runs queue with the run handler, as the host would."""
    run = handler("run_task")
    done = []
    while True:
        messages = await asyncio.to_thread(
            lambda: list(services.queue.queue.receive_messages(max_messages=32, visibility_timeout=60))
        )
        if not messages:
            return done
        for message in messages:
            request = RunRequest.model_validate_json(message.content)
            await run(func.QueueMessage(id=message.id, body=message.content.encode()))
            await asyncio.to_thread(services.queue.queue.delete_message, message)
            done.append(request)


async def output(services: Services) -> dict[str, dict[str, Any]]:
    latest = json.loads(
        await asyncio.to_thread(
            lambda: services.extracts.download_blob(blobs.latest_name("people")).readall()
        )
    )
    return await read_records(services, latest["files"]["users"]["path"])


async def first_run_and_subscribe(services: Services, info) -> None:
    await services.config_store.save(config(info))
    await services.queue.enqueue(RunRequest(task="people", trigger="manual"))
    assert [r.trigger for r in await drain(services)] == ["manual"]
    await handler("subscription_upkeep")(TimerRequest(past_due=False))


def cloud_user(control) -> dict[str, Any]:
    return next(u for u in control.objects("users") if not u.get("onPremisesSyncEnabled"))


async def wait_until(condition, within: float = 15.0, services: Services | None = None):
    """Poll ``condition`` (sync or async); with ``services``, run what the queue holds meanwhile."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if services is not None:
            await drain(services)
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


async def notification_runs(services: Services) -> list:
    return [r for r in await services.history.list("people", limit=100) if r.trigger == "notification"]


# --------------------------------------------------------------------------------------------- tests


async def test_a_change_reaches_the_output_within_seconds_without_a_schedule(graph, control, services, subs):
    await first_run_and_subscribe(services, graph.info)
    [users] = [s for s in subs.subscriptions() if s["resource"] == "users"]
    assert users["changeType"] == "updated,deleted" and users["notificationUrl"].endswith(
        f"{PATH}?code={KEY}"
    )
    user = cloud_user(control)

    started = time.monotonic()
    control.update("users", user["id"], {"jobTitle": "Changed in Entra"})

    async def changed() -> bool:
        return (await output(services)).get(user["id"], {}).get("title") == "Changed in Entra"

    await wait_until(changed, within=10, services=services)
    elapsed = time.monotonic() - started
    assert elapsed < 10
    runs = await notification_runs(services)
    assert any(r.status == "succeeded" and r.mode == "incremental" for r in runs), runs
    # Graph delivers again an answer it judged late (over 3 s on a loaded machine): such a delivery may queue
    # a run an interval (5 s) after the last one, up to an interval ahead of now; more would be the debounce
    # failing.
    assert len(runs) <= (time.monotonic() - started) / 5 + 2, runs
    assert {r.trigger for r in await services.history.list("people")} == {"manual", "notification"}


async def test_the_validation_handshake_and_the_function_key(graph, services, endpoint, host):
    token = "Validation: Testing client application reachability for subscription Request-Id: 1 & 2"
    async with httpx.AsyncClient(verify=graph.info.tls_context()) as client:
        answer = await client.post(endpoint.url(PATH), params={"validationToken": token, "code": KEY})
        assert answer.status_code == 200 and answer.text == token
        assert answer.headers["content-type"].startswith("text/plain")
        refused = await client.post(endpoint.url(PATH), params={"validationToken": token})
        assert refused.status_code == 401 and host.calls == 1


async def test_a_forged_notification_starts_nothing(graph, control, services, subs, endpoint):
    await first_run_and_subscribe(services, graph.info)
    [users] = [s for s in subs.subscriptions() if s["resource"] == "users"]
    user = cloud_user(control)["id"]
    forged = {"value": [
        {"subscriptionId": users["id"], "clientState": "guessed", "changeType": "updated",
         "resource": f"Users/{user}", "resourceData": {"id": user}, "tenantId": graph.info.tenant_id},
        {"subscriptionId": "00000000-0000-0000-0000-000000000000", "clientState": "guessed",
         "changeType": "updated", "resource": f"Users/{user}"},
        {"subscriptionId": users["id"], "changeType": "updated", "resource": f"Users/{user}"},
    ]}  # fmt: skip
    async with httpx.AsyncClient(verify=graph.info.tls_context()) as client:
        answer = await client.post(endpoint.url(PATH), params={"code": KEY}, json=forged)
        assert answer.status_code == 202  # acknowledged as Graph's guidance says, and ignored
        garbage = await client.post(endpoint.url(PATH), params={"code": KEY}, content=b"not json")
        assert garbage.status_code == 202
    assert await drain(services) == []
    assert await notification_runs(services) == []
    with pytest.raises(Exception, match=r"ResourceNotFound|Not Found|not found"):
        services.state.table.get_entity(debounce.PARTITION, "people")


async def test_a_burst_of_1000_changes_causes_a_handful_of_runs(graph, control, services, subs, host):
    await first_run_and_subscribe(services, graph.info)
    users = [u for u in control.objects("users") if not u.get("onPremisesSyncEnabled")]
    started = time.monotonic()
    for index in range(1000):
        control.update("users", users[index % len(users)]["id"], {"jobTitle": f"Burst {index}"})
    burst_s = time.monotonic() - started
    last = {users[i % len(users)]["id"]: f"Burst {i}" for i in range(1000)}

    async def settled() -> bool:
        records = await output(services)
        return all(records[user_id]["title"] == title for user_id, title in last.items())

    await wait_until(settled, within=30 + burst_s, services=services)
    await asyncio.sleep(6)  # one more interval: a run still planned would show up now
    await drain(services)
    runs = await notification_runs(services)
    # At most one run per 5 s interval over the time notifications kept arriving (which outlasts the burst
    # itself when Graph retries or a loaded machine delivers late), plus the first.
    arriving_s = max(host.answered) - min(host.answered)
    assert 1 <= len(runs) <= arriving_s / 5 + 2, (len(runs), arriving_s, burst_s)
    assert len(runs) * 20 <= 1000, len(runs)  # a handful, not one per change
    assert all(r.status in ("succeeded", "skipped") for r in runs)
    delivered = sum(d["items"] for d in subs.deliveries() if d["kind"] == "notification" and d["delivered"])
    assert delivered >= 1000


async def test_a_change_notified_while_another_run_holds_the_lease_still_reaches_the_output(
    graph, control, services, subs
):
    await first_run_and_subscribe(services, graph.info)
    running = TaskLease(services.leases, "people", services.settings.lease_s)
    assert await running.acquire()  # another run of the task is in progress
    user = cloud_user(control)
    control.update("users", user["id"], {"jobTitle": "Changed during a run"})

    async def met_the_lease() -> bool:
        return bool(await notification_runs(services))

    await wait_until(met_the_lease, services=services)
    await drain(services)  # the notification's run, queued by now, meets the held lease
    await running.release()  # that run ends; it read the user before the change

    async def changed() -> bool:
        return (await output(services))[user["id"]]["title"] == "Changed during a run"

    await wait_until(changed, within=15, services=services)


async def test_dropped_notifications_are_caught_up_by_the_next_scheduled_run(graph, control, services, subs):
    await first_run_and_subscribe(services, graph.info)
    await services.config_store.save(config(graph.info, schedule="0 * * * * *"))
    subs.settings(drop=True)  # Graph loses them, and says nothing (no "missed" for users)
    user = cloud_user(control)
    control.update("users", user["id"], {"jobTitle": "Never notified"})
    await asyncio.sleep(1.0)
    assert await drain(services) == [] and await notification_runs(services) == []

    sent = await tick(services, datetime.now(UTC) + timedelta(minutes=1))
    assert [r.trigger for r in sent] == ["timer"]
    await drain(services)
    assert (await output(services))[user["id"]]["title"] == "Never notified"
    triggers = sorted(r.trigger for r in await services.history.list("people"))
    assert triggers == ["manual", "timer"]


async def test_reauthorization_on_request(graph, control, services, subs):
    await first_run_and_subscribe(services, graph.info)
    [users] = [s for s in subs.subscriptions() if s["resource"] == "users"]
    subs.require_reauthorization(users["id"])
    # The endpoint answers the lifecycle notification and reauthorizes at once.
    await wait_until(lambda: not subs.subscriptions()[0]["reauthorizationRequired"])
    record = (await SubscriptionStore(services.state.table).list())["local|users"]
    assert record.reauthorize_requested_at is None and record.reauthorized_at is not None
    # Delivery resumes.
    user = cloud_user(control)
    control.update("users", user["id"], {"jobTitle": "After reauthorization"})

    async def changed() -> bool:
        return (await output(services))[user["id"]]["title"] == "After reauthorization"

    await wait_until(changed, services=services)


async def test_a_deferred_reauthorization_is_done_by_the_upkeep_timer(graph, services, subs):
    await first_run_and_subscribe(services, graph.info)
    store = SubscriptionStore(services.state.table)
    record = (await store.list())["local|users"]
    record.reauthorize_requested_at = datetime.now(UTC)  # as if the endpoint's attempt had not fit in time
    await store.put(record)
    subs.settings(drop=True)  # the lifecycle notification is lost: only the row knows
    subs.require_reauthorization(record.subscription_id)
    report = await upkeep(services)
    assert report.reauthorized == ["local|users"] and not report.failed
    assert not next(s for s in subs.subscriptions() if s["resource"] == "users")["reauthorizationRequired"]


async def test_renewed_before_it_expires_and_recreated_after_a_404(graph, services, subs):
    await first_run_and_subscribe(services, graph.info)
    [created] = subs.subscriptions()
    expiry = datetime.fromisoformat(created["expirationDateTime"].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < expiry - datetime.now(UTC) <= timedelta(minutes=60)

    # Early in its life nothing is due.
    assert (await upkeep(services)).summary() == "nothing to do"
    # Past half its lifetime (60 minutes here): renewed, the same subscription with a later expiry.
    later = datetime.now(UTC) + timedelta(minutes=31)
    report = await upkeep(services, now=later)
    assert report.renewed == ["local|users"]
    [renewed] = subs.subscriptions()
    assert renewed["id"] == created["id"] and renewed["expirationDateTime"] > created["expirationDateTime"]

    # Graph removes it: the next renewal gets 404 and creates it again, with a new secret.
    store = SubscriptionStore(services.state.table)
    before = (await store.list())["local|users"]
    subs.remove(created["id"])
    report = await upkeep(services, now=datetime.now(UTC) + timedelta(minutes=40))
    assert report.recreated == ["local|users"] and not report.failed
    [recreated] = subs.subscriptions()
    after = (await store.list())["local|users"]
    assert recreated["id"] == after.subscription_id != created["id"]
    assert after.client_state != before.client_state


async def test_a_leftover_subscription_is_replaced_only_when_it_calls_this_endpoint(
    graph, http, services, subs
):
    await first_run_and_subscribe(services, graph.info)
    store = SubscriptionStore(services.state.table)
    lost = (await store.list())["local|users"]
    await store.delete(lost)  # the row (and the secret) is gone; Graph still has the subscription
    report = await upkeep(services)
    assert report.created == ["local|users"] and not report.failed  # Graph's 409, the leftover deleted
    [kept] = subs.subscriptions()
    assert kept["id"] != lost.subscription_id

    # Another deployment of the same app registration (another host) holds the groups subscription: it is
    # left alone, and the failure says why.
    elsewhere = kept["notificationUrl"].replace("https://127.0.0.1:", "https://localhost:")
    other = http.post(
        "/subscriptions",
        json={
            "changeType": "updated,deleted",
            "notificationUrl": elsewhere,
            "resource": "groups",
            "expirationDateTime": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
        },
    )
    assert other.status_code == 201, other.text
    groups = {"mappings": [{"external": "displayName", "local": "name"}], "target_template": "entitlement",
              "target_folder": "entitlements"}  # fmt: skip
    await services.config_store.save(config(graph.info, mappings_type="identity_and_access", groups=groups))
    report = await upkeep(services)
    assert "another endpoint (https://localhost:" in report.failed["local|groups"]
    assert other.json()["id"] in {s["id"] for s in subs.subscriptions()}
    assert "another endpoint" in (await store.list())["local|groups"].last_error


async def test_subscriptions_follow_the_tasks_that_watch(graph, services, subs):
    info = graph.info
    both = config(info, mappings_type="identity_and_access", groups={
        "mappings": [{"external": "displayName", "local": "name"}, {"external": "members", "local": "members"}],
        "target_template": "entitlement", "target_folder": "entitlements"})  # fmt: skip
    await services.config_store.save(both)
    report = await upkeep(services)
    assert sorted(report.created) == ["local|groups", "local|users"]
    assert sorted(s["resource"] for s in subs.subscriptions()) == ["groups", "users"]
    # Stops watching: both are deleted, in Graph and in the table.
    await services.config_store.save(config(info, enabled=False))
    report = await upkeep(services)
    assert sorted(report.deleted) == ["local|groups", "local|users"]
    assert subs.subscriptions() == [] and await SubscriptionStore(services.state.table).list() == {}
    # A task without a public host name cannot subscribe, and says why.
    await services.config_store.save(config(info))
    bare = Services(Settings.from_environ({**services.environ, "NOTIFICATION_HOST": ""}), environ={})
    report = await upkeep(bare)
    assert "NOTIFICATION_HOST" in report.failed["local|users"]


async def test_concurrent_instances_queue_one_run_per_slot(services):
    now = datetime.now(UTC)
    queued = await asyncio.gather(
        *(debounce.request_run(services.state.table, services.queue, "people", 30, now) for _ in range(6))
    )
    [first] = [q for q in queued if q is not None]
    assert first.trigger == "notification" and first.planned_at == now
    # A change after the first run started: one more run, an interval after the first.
    later = await asyncio.gather(
        *(debounce.request_run(services.state.table, services.queue, "people", 30, now + timedelta(seconds=1))
          for _ in range(4))
    )  # fmt: skip
    [second] = [q for q in later if q is not None]
    assert second.planned_at == now + timedelta(seconds=30)
    # Until then, changes are absorbed: the planned run will see them.
    assert (
        await debounce.request_run(
            services.state.table, services.queue, "people", 30, now + timedelta(seconds=20)
        )
        is None
    )
    visible = services.queue.queue.peek_messages(max_messages=32)
    assert [RunRequest.model_validate_json(m.content).run_id for m in visible] == [first.run_id]


async def test_a_notified_run_of_a_renamed_task_is_queued_under_its_stable_id(graph, services):
    """The endpoint passes the task's stable id with the request: the queued history row lands under the id,
    where the run's own rows go (not under the new name), and the debounce slot is keyed by it too."""
    from shared.notifications.endpoint import receive
    from shared.notifications.store import SubscriptionRecord

    await services.config_store.save(config(graph.info, name="staff", id="people"))  # renamed, id kept
    record = SubscriptionRecord(
        connector="local",
        resource="users",
        client_state="s3cret",
        subscription_id="sub-1",
        tasks={"staff": 5},
    )
    await SubscriptionStore(services.state.table).put(record)
    body = {"value": [{"subscriptionId": "sub-1", "clientState": "s3cret", "changeType": "updated"}]}
    assert (await receive(services, {}, json.dumps(body).encode())).status == 202
    [message] = services.queue.queue.peek_messages(max_messages=32)
    request = RunRequest.model_validate_json(message.content)
    assert (request.task, request.task_key, request.trigger) == ("staff", "people", "notification")
    queued = await services.history.get("people", request.run_id)
    assert queued is not None and (queued.status, queued.trigger) == ("queued", "notification")
    assert await services.history.list("staff") == []
    assert services.state.table.get_entity(debounce.PARTITION, "people")["run_id"] == request.run_id


# ------------------------------------------------------------------------------ pure parts, no services


def test_the_notification_url_comes_from_the_host_name_and_the_function_key():
    local = Settings.from_environ(
        {"NOTIFICATION_HOST": "abc.devtunnels.ms", "NOTIFICATION_FUNCTION_KEY": "k/y=="}
    )
    assert notification_url(local, {}) == "https://abc.devtunnels.ms/api/notifications/graph?code=k%2Fy%3D%3D"
    azure = Settings.from_environ({"NOTIFICATION_FUNCTION_KEY": "key"})
    assert (
        notification_url(azure, {"WEBSITE_HOSTNAME": "func-x.azurewebsites.net"})
        == "https://func-x.azurewebsites.net/api/notifications/graph?code=key"
    )
    with pytest.raises(NoPublicHost, match="NOTIFICATION_HOST"):
        notification_url(Settings.from_environ({}), {})
    with pytest.raises(NoPublicHost, match="https"):
        notification_url(Settings.from_environ({"NOTIFICATION_HOST": "http://example.com"}), {})
    # What App Service leaves in the setting when it cannot resolve the Key Vault reference: never a key.
    unresolved = Settings.from_environ(
        {
            "NOTIFICATION_FUNCTION_KEY": "@Microsoft.KeyVault(VaultName=kv-x;SecretName=notification-function-key)"
        }
    )
    with pytest.raises(NoPublicHost, match="unresolved Key Vault reference") as caught:
        notification_url(unresolved, {"WEBSITE_HOSTNAME": "func-x.azurewebsites.net"})
    assert "kv-x" not in str(caught.value)


def test_change_notifications_config_is_validated(graph):
    with pytest.raises(ConfigError) as caught:
        config(graph.info, interval=1, extra_field=None)
    paths = [issue.path for issue in caught.value.errors]
    assert (
        "tasks[0].change_notifications.min_interval_seconds" in paths and "tasks[0].extra_field" in paths
    ), paths
    parsed = config(graph.info).tasks[0]
    assert parsed.change_notifications.enabled and parsed.change_notifications.min_interval_seconds == 5
