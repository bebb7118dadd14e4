"""Change notifications on the local Graph: /subscriptions with Graph's validation and handshake, delivery
of notifications for changes made through Graph and the control API, lifecycle notifications, and the
delivery switches [docs/graph-behaviour.md section 12]. The endpoint is a real HTTPS server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from localgraph.client import graph_client
from localgraph.generate import TenantShape
from localgraph.subscriptions_client import SubscriptionControl
from localgraph.subscriptions_endpoint import EndpointServer
from tests.support import assert_error


@pytest.fixture
def graph_shape() -> TenantShape:
    return TenantShape(users=40, seed=5)


class Receiver:
    """A notification endpoint that records what it gets and answers as told."""

    def __init__(self) -> None:
        self.validations: list[str] = []
        self.notifications: list[dict[str, Any]] = []  # each POST's JSON body
        self.lifecycle: list[dict[str, Any]] = []
        self.validation_mode = "echo"  # echo | wrong | error | json | slow
        self.answer_status = 202
        self.answer_delay_s = 0.0
        self.lock = threading.Lock()

    async def handle(self, request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            self.validations.append(token)
            if self.validation_mode == "wrong":
                return PlainTextResponse("not the token")
            if self.validation_mode == "error":
                return PlainTextResponse(token, status_code=500)
            if self.validation_mode == "json":
                return Response(f'"{token}"', media_type="application/json")
            return PlainTextResponse(token)
        body = await request.json()
        if self.answer_delay_s:
            import asyncio

            await asyncio.sleep(self.answer_delay_s)
        with self.lock:
            target = self.lifecycle if request.url.path.endswith("/lifecycle") else self.notifications
            target.append(body)
        return Response(status_code=self.answer_status)

    def items(self) -> list[dict[str, Any]]:
        with self.lock:
            return [item for body in self.notifications for item in body["value"]]


@pytest.fixture
def receiver(graph) -> Iterator[tuple[Receiver, EndpointServer]]:
    rec = Receiver()
    app = Starlette(routes=[Route("/{path:path}", rec.handle, methods=["POST"])])
    with EndpointServer(app, graph.tls) as server:
        yield rec, server


@pytest.fixture
def subs(graph) -> Iterator[SubscriptionControl]:
    client = SubscriptionControl(graph.info)
    client.settings(aggregation_ms=50, retry_first_s=0.2)
    yield client
    client.close()


def in_minutes(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def body(server: EndpointServer, **overrides: Any) -> dict[str, Any]:
    return {
        "changeType": "updated,deleted",
        "notificationUrl": server.url("/notifications?code=secret-key"),
        "lifecycleNotificationUrl": server.url("/lifecycle?code=secret-key"),
        "resource": "users",
        "expirationDateTime": in_minutes(600),
        "clientState": "s3cret-state",
        **overrides,
    }


def wait_for(condition, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# ---------------------------------------------------------------------------------------- creation


def test_create_validates_the_endpoint_before_answering_201(graph, http, receiver, subs):
    rec, server = receiver
    response = http.post("/subscriptions", json=body(server))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["@odata.context"].endswith("/$metadata#subscriptions/$entity")
    assert created["resource"] == "users" and created["changeType"] == "updated,deleted"
    assert created["clientState"] == "s3cret-state" and created["applicationId"] == graph.info.client_id
    assert created["notificationUrl"] == server.url("/notifications?code=secret-key")
    # Both URLs were validated, each with the decoded token (it holds spaces and a colon), before the 201.
    assert len(rec.validations) == 2 and all(t.startswith("Validation: ") for t in rec.validations)
    assert [s["id"] for s in subs.subscriptions()] == [created["id"]]


@pytest.mark.parametrize("mode", ["wrong", "error", "json"])
def test_a_failed_handshake_creates_nothing(http, receiver, subs, mode):
    rec, server = receiver
    rec.validation_mode = mode
    response = http.post("/subscriptions", json=body(server))
    assert_error(
        response,
        400,
        "ValidationError",
        "Subscription validation request failed. Notification endpoint must respond with 200 OK to "
        "validation request.",
    )
    assert subs.subscriptions() == []


def test_an_unreachable_endpoint_fails_validation(http, subs):
    response = http.post(
        "/subscriptions",
        json={
            "changeType": "updated",
            "notificationUrl": "https://127.0.0.1:9/notifications",
            "resource": "groups",
            "expirationDateTime": in_minutes(60),
        },
    )
    assert_error(response, 400, "ValidationError")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"changeType": "created"}, "Invalid 'changeType' attribute: 'created'."),
        ({"changeType": "updated,created"}, "Invalid 'changeType' attribute: 'created'."),
        ({"resource": "devices"}, "Invalid 'resource'"),
        ({"resource": "https://graph.microsoft.com/v1.0/users"}, "Invalid 'resource'"),
        ({"notificationUrl": "http://127.0.0.1:1/n"}, "absolute https URL"),
        ({"lifecycleNotificationUrl": "ftp://example.com/x"}, "absolute https URL"),
        # Expiries relative to the request, not to collection (which may be minutes earlier on a busy run).
        ({"expirationDateTime": lambda: in_minutes(41_761)}, "0-41760 minutes"),
        ({"expirationDateTime": lambda: in_minutes(-1)}, "0-41760 minutes"),
        ({"expirationDateTime": "tomorrow"}, "Invalid 'expirationDateTime'"),
        ({"clientState": "x" * 129}, "at most 128 characters"),
        ({"latestSupportedTlsVersion": "v2_0"}, "latestSupportedTlsVersion"),
        ({"includeResourceData": True}, "includeResourceData"),
    ],
)
def test_invalid_subscriptions_are_refused_without_a_handshake(http, receiver, overrides, fragment):
    rec, server = receiver
    overrides = {name: value() if callable(value) else value for name, value in overrides.items()}
    response = http.post("/subscriptions", json=body(server, **overrides))
    error = assert_error(response, 400, "InvalidRequest")
    assert fragment in error["message"]
    assert rec.validations == []


def test_expiry_limits_41760_minutes_accepted_and_under_45_raised_to_45(http, receiver):
    _, server = receiver
    longest = http.post("/subscriptions", json=body(server, expirationDateTime=in_minutes(41_759)))
    assert longest.status_code == 201, longest.text
    short = http.post(
        "/subscriptions", json=body(server, resource="groups", expirationDateTime=in_minutes(5))
    )
    assert short.status_code == 201
    expiry = datetime.fromisoformat(short.json()["expirationDateTime"].replace("Z", "+00:00"))
    assert timedelta(minutes=44) < expiry - datetime.now(UTC) <= timedelta(minutes=45)


def test_every_directory_resource_graph_documents_is_accepted(http, receiver, control):
    _, server = receiver
    user = control.objects("users")[0]["id"]
    group = control.objects("groups")[0]["id"]
    for resource in ("/users", f"users/{user}", "/groups", f"groups/{group}", f"groups/{group}/members",
                     f"/groups/{group}/owners"):  # fmt: skip
        response = http.post("/subscriptions", json=body(server, resource=resource, changeType="updated"))
        assert response.status_code == 201, (resource, response.text)


def test_the_same_change_type_and_resource_twice_is_a_conflict(http, receiver):
    _, server = receiver
    first = http.post("/subscriptions", json=body(server)).json()
    again = http.post("/subscriptions", json=body(server))
    error = assert_error(again, 409, "Conflict")
    assert first["id"] in error["message"]
    assert http.post("/subscriptions", json=body(server, changeType="updated")).status_code == 201


def test_a_subscription_needs_a_read_permission_for_its_resource(graph, control, receiver):
    _, server = receiver
    app = control.add_app(["GroupMember.Read.All"])
    with graph_client(graph.info, client_id=app["client_id"], secret=app["client_secret"]) as other:
        assert_error(other.post("/subscriptions", json=body(server)), 403, "Authorization_RequestDenied")
        # Group.Read.All is what group subscriptions need; GroupMember.Read.All is not enough.
        response = other.post("/subscriptions", json=body(server, resource="groups"))
        assert_error(response, 403, "Authorization_RequestDenied")
    reader = control.add_app(["Group.Read.All"])
    with graph_client(graph.info, client_id=reader["client_id"], secret=reader["client_secret"]) as groups:
        assert groups.post("/subscriptions", json=body(server, resource="/groups")).status_code == 201
        assert_error(groups.post("/subscriptions", json=body(server)), 403, "Authorization_RequestDenied")


def test_quota_of_100_subscriptions_per_app_and_tenant(http, receiver, control):
    _, server = receiver
    users = [u["id"] for u in control.objects("users")]
    combinations = [(f"users/{u}", t) for t in ("updated", "deleted", "updated,deleted") for u in users]
    assert len(combinations) >= 100
    for resource, change_type in combinations[:100]:
        response = http.post("/subscriptions", json=body(server, resource=resource, changeType=change_type))
        assert response.status_code == 201, response.text
    over = http.post("/subscriptions", json=body(server, resource="users"))
    error = assert_error(over, 403, "ExtensionError")
    assert "100" in error["message"]
    # Groups have their own quota.
    assert http.post("/subscriptions", json=body(server, resource="groups")).status_code == 201


# ------------------------------------------------------------------------------ read, renew, delete


def test_list_get_renew_and_delete(graph, http, receiver, subs):
    _, server = receiver
    created = http.post("/subscriptions", json=body(server)).json()
    listed = http.get("/subscriptions").json()["value"]
    assert [s["id"] for s in listed] == [created["id"]] and listed[0]["clientState"] is None
    assert http.get(f"/subscriptions/{created['id']}").json()["resource"] == "users"

    renewed = http.patch(f"/subscriptions/{created['id']}", json={"expirationDateTime": in_minutes(41_000)})
    assert renewed.status_code == 200
    assert renewed.json()["expirationDateTime"] > created["expirationDateTime"]
    refused = http.patch(f"/subscriptions/{created['id']}", json={"clientState": "other"})
    assert_error(refused, 400, "InvalidRequest")
    too_far = http.patch(f"/subscriptions/{created['id']}", json={"expirationDateTime": in_minutes(50_000)})
    assert_error(too_far, 400, "InvalidRequest")

    assert http.delete(f"/subscriptions/{created['id']}").status_code == 204
    assert_error(http.patch(f"/subscriptions/{created['id']}", json={"expirationDateTime": in_minutes(60)}),
                 404, "ResourceNotFound")  # fmt: skip
    assert_error(http.delete(f"/subscriptions/{created['id']}"), 404, "ResourceNotFound")


def test_an_app_sees_only_its_own_subscriptions(graph, http, receiver, control):
    _, server = receiver
    mine = http.post("/subscriptions", json=body(server)).json()
    app = control.add_app(["User.Read.All"])
    with graph_client(graph.info, client_id=app["client_id"], secret=app["client_secret"]) as other:
        assert other.get("/subscriptions").json()["value"] == []
        assert_error(other.delete(f"/subscriptions/{mine['id']}"), 404, "ResourceNotFound")
        # Another app may hold the same combination.
        assert other.post("/subscriptions", json=body(server)).status_code == 201


@pytest.mark.parametrize("how", ["expire", "remove"])
def test_an_expired_or_removed_subscription_answers_404_to_renewal(http, receiver, subs, how):
    _, server = receiver
    created = http.post("/subscriptions", json=body(server)).json()
    getattr(subs, how)(created["id"])
    response = http.patch(f"/subscriptions/{created['id']}", json={"expirationDateTime": in_minutes(600)})
    assert_error(response, 404, "ResourceNotFound")
    assert http.get("/subscriptions").json()["value"] == []


# ----------------------------------------------------------------------------------------- delivery


def test_changes_through_graph_and_the_control_api_are_notified(graph, http, control, receiver, subs):
    rec, server = receiver
    created = http.post("/subscriptions", json=body(server)).json()
    groups = http.post("/subscriptions", json=body(server, resource="groups")).json()
    user = next(u["id"] for u in control.objects("users") if not u.get("onPremisesSyncEnabled"))
    group, members = next((g["id"], g["members"]) for g in control.objects("groups"))
    assert http.patch(f"/users/{user}", json={"jobTitle": "Through Graph"}).status_code == 204
    control.update("users", user, {"department": "Through control"})
    other = next(u["id"] for u in control.objects("users") if u["id"] != user)
    control.delete("users", other, hard=True)
    control.members(group, add=[next(u["id"] for u in control.objects("users") if u["id"] not in members)])

    items = wait_for(lambda: len(rec.items()) >= 4 and rec.items())
    by_sub = {(i["subscriptionId"], i["changeType"], i["resource"]) for i in items}
    assert (created["id"], "updated", f"Users/{user}") in by_sub
    assert (created["id"], "deleted", f"Users/{other}") in by_sub
    assert (groups["id"], "updated", f"Groups/{group}") in by_sub
    first = next(i for i in items if i["resource"] == f"Users/{user}")
    assert first == {
        "subscriptionId": created["id"],
        "subscriptionExpirationDateTime": created["expirationDateTime"],
        "changeType": "updated",
        "resource": f"Users/{user}",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.User",
            "@odata.id": f"Users/{user}",
            "id": user,
            "organizationId": graph.info.tenant_id,
        },
        "clientState": "s3cret-state",
        "tenantId": graph.info.tenant_id,
    }
    deliveries = [d for d in subs.deliveries() if d["kind"] == "notification"]
    assert deliveries and all(d["delivered"] and "code=" not in d["url"] for d in deliveries)


def test_subscriptions_only_see_their_resource_and_change_type(http, control, receiver, subs):
    rec, server = receiver
    user, bystander = (u["id"] for u in control.objects("users")[:2])
    one = http.post(
        "/subscriptions", json=body(server, resource=f"users/{user}", changeType="deleted")
    ).json()
    control.update("users", user, {"jobTitle": "Not a deletion"})
    control.update("users", bystander, {"jobTitle": "Not this user"})
    control.delete("users", bystander, hard=True)
    control.delete("users", user, hard=True)
    wait_for(rec.items)
    time.sleep(0.3)
    assert [(i["subscriptionId"], i["changeType"], i["resource"]) for i in rec.items()] == [
        (one["id"], "deleted", f"Users/{user}")
    ]


def test_a_burst_is_aggregated_into_few_posts(http, control, receiver, subs):
    rec, server = receiver
    subs.settings(aggregation_ms=300, max_items=100)
    http.post("/subscriptions", json=body(server))
    control.churn(0.5, seed=4)  # about 20 user changes at once
    wait_for(lambda: len(rec.items()) >= 15)
    time.sleep(0.5)
    assert len(rec.notifications) <= 3 < len(rec.items())


def test_switches_deliver_twice_late_and_not_at_all(http, control, receiver, subs):
    rec, server = receiver
    http.post("/subscriptions", json=body(server))
    user = control.objects("users")[0]["id"]

    subs.settings(duplicate=True)
    control.update("users", user, {"jobTitle": "Twice"})
    wait_for(lambda: len(rec.notifications) == 2)
    assert rec.notifications[0] == rec.notifications[1]

    subs.settings(duplicate=False, drop=True)
    control.update("users", user, {"jobTitle": "Never"})
    time.sleep(0.4)
    assert len(rec.notifications) == 2

    subs.settings(drop=False, delay_s=1.0)
    started = time.monotonic()
    control.update("users", user, {"jobTitle": "Late"})
    wait_for(lambda: len(rec.notifications) == 3)
    assert time.monotonic() - started >= 1.0


def test_out_of_order_delivery(http, control, receiver, subs):
    rec, server = receiver
    subs.settings(reorder=True, aggregation_ms=300)
    http.post("/subscriptions", json=body(server))
    users = [u["id"] for u in control.objects("users")[:12]]
    for user in users:
        control.update("users", user, {"jobTitle": "Reordered"})
    wait_for(lambda: len(rec.items()) == 12)
    assert sorted(i["resourceData"]["id"] for i in rec.items()) == sorted(users)
    assert [i["resourceData"]["id"] for i in rec.items()] != users


def test_a_failed_delivery_is_retried(http, control, receiver, subs):
    rec, server = receiver
    http.post("/subscriptions", json=body(server))
    rec.answer_status = 503
    control.update("users", control.objects("users")[0]["id"], {"jobTitle": "Retried"})
    wait_for(lambda: len(rec.notifications) >= 1)
    rec.answer_status = 202
    wait_for(lambda: any(d["delivered"] for d in subs.deliveries() if d["kind"] == "notification"))
    attempts = [d for d in subs.deliveries() if d["kind"] == "notification"]
    assert attempts[0]["status"] == 503 and not attempts[0]["delivered"]
    assert attempts[-1]["attempt"] >= 2 and attempts[-1]["delivered"]


def test_an_endpoint_answering_late_is_judged_slow_and_its_notifications_wait(http, control, receiver, subs):
    rec, server = receiver
    # Graph's rules with shorter times: answers over 0.2 s (not 3 s) are slow; slow endpoints wait 60 s.
    subs.settings(answer_within_s=0.2, retry_timeout_s=0.5, retry_first_s=30.0, penalty_s=60.0)
    http.post("/subscriptions", json=body(server))
    user = control.objects("users")[0]["id"]
    rec.answer_delay_s = 0.3
    control.update("users", user, {"jobTitle": "Slow answer"})
    wait_for(lambda: subs.endpoints().get(server.url("/notifications")) == "slow")
    [attempt] = [d for d in subs.deliveries() if d["kind"] == "notification"]
    assert attempt["status"] == 202 and not attempt["delivered"]  # too late to count as delivered
    rec.answer_delay_s = 0.0
    control.update("users", user, {"jobTitle": "Held back"})
    time.sleep(0.5)
    assert len(rec.notifications) == 1


def test_an_endpoint_over_the_timeout_is_dropped_and_nothing_announces_it(http, control, receiver, subs):
    rec, server = receiver
    subs.settings(answer_within_s=0.2, retry_timeout_s=0.5, retry_first_s=30.0, penalty_s=60.0)
    http.post("/subscriptions", json=body(server))
    user = control.objects("users")[0]["id"]
    rec.answer_delay_s = 1.0  # beyond the timeout: every answer (100% > 15%) is too slow
    control.update("users", user, {"jobTitle": "Too slow"})
    wait_for(lambda: subs.endpoints().get(server.url("/notifications")) == "dropped")
    rec.answer_delay_s = 0.0
    time.sleep(1.0)
    count = len(rec.notifications)
    control.update("users", user, {"jobTitle": "Dropped"})
    time.sleep(0.5)
    assert len(rec.notifications) == count and rec.lifecycle == []


def test_reauthorization_required_pauses_delivery_until_reauthorize(graph, http, control, receiver, subs):
    rec, server = receiver
    created = http.post("/subscriptions", json=body(server)).json()
    subs.require_reauthorization(created["id"])
    lifecycle = wait_for(lambda: rec.lifecycle)
    assert lifecycle[0]["value"] == [
        {
            "subscriptionId": created["id"],
            "subscriptionExpirationDateTime": created["expirationDateTime"],
            "tenantId": graph.info.tenant_id,
            "clientState": "s3cret-state",
            "lifecycleEvent": "reauthorizationRequired",
        }
    ]
    user = control.objects("users")[0]["id"]
    control.update("users", user, {"jobTitle": "While paused"})
    time.sleep(0.4)
    assert rec.items() == []
    assert http.post(f"/subscriptions/{created['id']}/reauthorize").status_code == 204
    items = wait_for(rec.items)
    assert [i["resource"] for i in items] == [f"Users/{user}"]
    assert_error(http.post("/subscriptions/00000000-0000-0000-0000-000000000000/reauthorize"), 404,
                 "ResourceNotFound")  # fmt: skip


def test_renewal_also_reauthorizes(http, control, receiver, subs):
    rec, server = receiver
    created = http.post("/subscriptions", json=body(server)).json()
    subs.require_reauthorization(created["id"])
    wait_for(lambda: rec.lifecycle)
    assert subs.subscriptions()[0]["reauthorizationRequired"] is True
    http.patch(f"/subscriptions/{created['id']}", json={"expirationDateTime": in_minutes(900)})
    assert subs.subscriptions()[0]["reauthorizationRequired"] is False
