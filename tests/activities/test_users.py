"""User activities through the Function App's handlers, against the local Graph; the tenant is checked
through the control API afterwards."""

from __future__ import annotations

import pytest

from tests.activities.conftest import DEFAULT_PASSWORD


def find_user(control, upn: str) -> dict | None:
    return next((u for u in control.objects("users") if u["userPrincipalName"].lower() == upn.lower()), None)


def password_of(graph, user_id: str) -> str | None:
    """The password the local Graph keeps for a user (Graph never returns it; the control API neither)."""
    return graph.ctx.tenant.objects[user_id].password


def must_change_password(graph, user_id: str) -> bool:
    """passwordProfile.forceChangePasswordNextSignIn as last sent to the local Graph (Graph never returns it)."""
    return graph.ctx.tenant.objects[user_id].password_flags["forceChangePasswordNextSignIn"]


def new_user_values(info, local: str = "ada.obrien", **extra) -> dict:
    return {
        "login": f"{local}@{info.tenant_domain}",
        "name": "Ada O'Brien",
        "nickname": local.replace(".", ""),
        "title": "Engineer",
        "department": 'R&D "Core"',
        "ext1": "EXT-1",
        "hired": "01.02.2026 08:30",
        **extra,
    }


async def test_create_user_writes_mapped_attributes_and_the_default_password(call, control, graph):
    values = new_user_values(graph.info, cost_center="CC-42")
    status, body, headers = await call("users.create", {"task": "people", "values": values})
    assert status == 201, body
    assert body["status"] == "Completed" and body["outcome"] == "Completed" and body["exception"] is None
    user = find_user(control, values["login"])
    assert user is not None
    assert body["object_id"] == user["id"] and body["result"]["object_id"] == user["id"]
    assert user["displayName"] == "Ada O'Brien"
    assert user["department"] == 'R&D "Core"'
    assert user["onPremisesExtensionAttributes"]["extensionAttribute1"] == "EXT-1"
    assert user["employeeHireDate"].startswith("2026-02-01T08:30:00")
    assert [v for k, v in user.items() if k.endswith("_costCenter")] == ["CC-42"]
    assert user["accountEnabled"] is True
    assert password_of(graph, user["id"]) == DEFAULT_PASSWORD
    assert must_change_password(graph, user["id"]) is True  # force_change_password defaults to true
    assert body["result"]["login"] == values["login"] and "password" not in str(body)
    assert body["graph_request_ids"] and "total;dur=" in headers["Server-Timing"]


async def test_create_user_with_a_workflow_password_and_no_change_at_next_sign_in(call, control, graph):
    values = new_user_values(graph.info, "grace.h", hired="2026-02-01T08:30:00Z")  # the task's default format
    status, body, _ = await call(
        "users.create",
        {"task": "hires", "values": values, "password": "Gen3rated!Pass-99", "force_change_password": False},
    )
    assert status == 201, body
    assert password_of(graph, body["object_id"]) == "Gen3rated!Pass-99"
    assert must_change_password(graph, body["object_id"]) is False


async def test_create_user_names_every_missing_piece(call, control, graph):
    status, body, headers = await call(
        "users.create", {"task": "hires", "values": {"title": "x", "unknown": 1}}
    )
    assert status == 400 and headers["Content-Type"] == "application/problem+json"
    assert body["outcome"] == "Exception" and body["status"] == 400
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"values.unknown", "values.login", "values.name", "values.nickname"}
    assert "not mapped in event task hires" in body["exception"]
    values = new_user_values(graph.info, hired="2026-02-01T08:30:00Z")
    status, body, _ = await call("users.create", {"task": "hires", "values": values})
    assert status == 400 and [e["field"] for e in body["errors"]] == ["password"]
    assert find_user(control, values["login"]) is None
    status, body, _ = await call(
        "users.create", {"task": "people", "values": {**values, "hired": "2026-02-01"}}
    )
    assert status == 400 and body["errors"] == [
        {"field": "values.hired", "message": "not a date-time in the format %d.%m.%Y %H:%M"}
    ]


async def test_create_user_passes_on_graphs_refusal_of_a_duplicate(call, control, graph):
    existing = control.objects("users")[0]
    values = new_user_values(graph.info)
    values["login"] = existing["userPrincipalName"]
    status, body, _ = await call("users.create", {"task": "people", "values": values})
    assert status == 409, body
    assert body["graph_code"] == "Request_BadRequest" and body["graph_request_id"]
    assert "userPrincipalName" in body["exception"]


async def test_create_with_unknown_outcome_is_resolved_by_lookup_not_by_sending_again(call, control, graph):
    values = new_user_values(graph.info, "lin.ye")
    # The user exists (as if the first POST reached Graph) while the answer to the POST is lost (504).
    control.create(
        "users",
        {"userPrincipalName": values["login"], "displayName": values["name"], "mailNickname": "linye",
         "accountEnabled": True},
    )  # fmt: skip
    control.set_faults({"status": 504, "method": "POST", "path": "^/users$", "count": 1})
    control.clear_requests()
    status, body, _ = await call("users.create", {"task": "people", "values": values})
    assert status == 201, body
    assert body["result"]["resolved_by_lookup"] is True
    assert body["object_id"] == find_user(control, values["login"])["id"]
    posts = {k: v for k, v in control.requests()["by_path"].items() if k.startswith("POST")}
    assert posts == {"POST /users": 1}


async def test_an_older_user_with_the_upn_is_not_taken_for_the_created_one(call, control, graph):
    # The answer to the POST is lost, and the user Graph shows was there before the call: the POST did not
    # create it (its outcome was a conflict), so the call is not Completed.
    values = new_user_values(graph.info, "long.here")
    old = control.create(
        "users",
        {"userPrincipalName": values["login"], "displayName": "Long Here", "mailNickname": "longhere",
         "accountEnabled": True, "createdDateTime": "2021-03-01T00:00:00Z"},
    )  # fmt: skip
    control.set_faults({"status": 504, "method": "POST", "path": "^/users$", "count": 1})
    status, body, _ = await call("users.create", {"task": "people", "values": values})
    assert status == 409 and body["outcome"] == "Exception", body
    assert old["id"] in body["exception"] and "already existed before the call" in body["exception"]


async def test_create_user_then_join_groups_waits_for_replication(call, control, graph):
    control.settings(replication_delay_ms=1500.0)
    groups = [g["id"] for g in control.objects("groups")[:2]]
    values = new_user_values(graph.info, "new.joiner")
    control.clear_requests()
    status, body, _ = await call("users.create", {"task": "people", "values": values, "groups": groups})
    assert status == 201, body
    # Graph refused the first links with its replication 400, and the activity tried again.
    log = control.requests()
    assert log["statuses"]["400"] >= 1 and log["statuses"]["204"] == 2
    user_id = body["object_id"]
    for group in groups:
        assert user_id in control.get("groups", group)["members"]


async def test_update_user_writes_values_and_refuses_nothing_else(call, control):
    user = next(u for u in control.objects("users") if not u.get("onPremisesSyncEnabled"))
    status, body, _ = await call(
        "users.update",
        {
            "task": "people",
            "user": user["userPrincipalName"],
            "values": {"title": "Chief O'Neil", "ext1": None},
        },
    )
    assert status == 200, body
    changed = control.get("users", user["id"])
    assert changed["jobTitle"] == "Chief O'Neil"
    status, body, _ = await call("users.update", {"task": "people", "user": user["id"], "values": {}})
    assert status == 400 and body["errors"][0]["field"] == "values"


async def test_enable_disable_reset_password_and_delete(call, control, graph):
    user = next(
        u for u in control.objects("users") if not u.get("onPremisesSyncEnabled") and u["accountEnabled"]
    )
    assert (await call("users.disable", {"task": "people", "user": user["id"]}))[0] == 200
    assert control.get("users", user["id"])["accountEnabled"] is False
    assert (await call("users.enable", {"task": "people", "user": user["id"]}))[0] == 200
    assert control.get("users", user["id"])["accountEnabled"] is True
    status, body, _ = await call(
        "users.reset-password", {"task": "people", "user": user["id"], "force_change_password": False}
    )
    assert status == 200, body
    assert password_of(graph, user["id"]) == DEFAULT_PASSWORD
    assert must_change_password(graph, user["id"]) is False
    status, body, _ = await call(
        "users.reset-password", {"task": "people", "user": user["id"], "force_change_password": True}
    )
    assert status == 200 and body["result"] == {"forceChangePasswordNextSignIn": True}, body
    assert must_change_password(graph, user["id"]) is True
    status, body, _ = await call("users.delete", {"task": "people", "user": user["id"]})
    assert status == 200, body
    assert all(u["id"] != user["id"] for u in control.objects("users") if not u.get("deletedDateTime"))
    status, body, _ = await call("users.delete", {"task": "people", "user": user["id"]})
    assert status == 404 and body["graph_code"] == "Request_ResourceNotFound"


async def test_read_user_returns_mapped_attributes_by_local_code(call, control):
    user = next(u for u in control.objects("users") if u.get("onPremisesExtensionAttributes"))
    status, body, _ = await call("users.read", {"task": "people", "user": user["id"]})
    assert status == 200, body
    result = body["result"]
    assert result["login"] == user["userPrincipalName"]
    assert result["name"] == user["displayName"]
    assert result["object_id"] == user["id"]
    assert result["ext1"] == user["onPremisesExtensionAttributes"].get("extensionAttribute1")
    assert set(result) >= {"login", "name", "title", "cost_center", "hired"}


@pytest.mark.parametrize("operator", ["equal", "not_equal"])
async def test_verify_user_with_an_apostrophe(call, control, graph, operator):
    values = new_user_values(graph.info, "sean.obrien", name="Seán O'Brien")
    assert (await call("users.create", {"task": "people", "values": values}))[0] == 201
    conditions = [
        {"code": "login", "operator": "equal", "value": values["login"]},
        {"code": "name", "operator": operator, "value": "Seán O'Brien"},
    ]
    status, body, _ = await call("users.verify", {"task": "people", "conditions": conditions})
    assert status == 200, body
    assert body["found"] is (operator == "equal")
    assert (
        "displayName " + ("eq" if operator == "equal" else "ne") + " 'Seán O''Brien'"
        in body["result"]["filter"]
    )
    assert body["result"]["advanced_query"] is (operator == "not_equal")


async def test_verify_user_refuses_unmapped_codes(call):
    status, body, _ = await call(
        "users.verify", {"task": "people", "conditions": [{"code": "nope", "value": "x"}, {"code": "login"}]}
    )
    assert status == 400
    assert {e["field"] for e in body["errors"]} == {"conditions[1].value"}
    status, body, _ = await call(
        "users.verify", {"task": "people", "conditions": [{"code": "nope", "value": "x"}]}
    )
    assert status == 400 and body["errors"][0]["field"] == "conditions[0].code"


async def test_verify_compares_dates_in_the_event_tasks_format(call, graph):
    # The workflow's values are in the task's date-time format; Graph compares employeeHireDate with a
    # DateTimeOffset literal (unquoted, ISO 8601), as users/create wrote it.
    values = new_user_values(graph.info, "hire.date", hired="01.02.2026 08:30")
    assert (await call("users.create", {"task": "people", "values": values}))[0] == 201
    conditions = [
        {"code": "login", "operator": "equal", "value": values["login"]},
        {"code": "hired", "operator": "equal", "value": "01.02.2026 08:30"},
    ]
    status, body, _ = await call("users.verify", {"task": "people", "conditions": conditions})
    assert status == 200, body
    assert body["found"] is True and "employeeHireDate eq 2026-02-01T08:30:00Z" in body["result"]["filter"]
    conditions[1]["value"] = "02.02.2026 08:30"
    status, body, _ = await call("users.verify", {"task": "people", "conditions": conditions})
    assert status == 200 and body["found"] is False, body
    conditions[1]["value"] = "2026-02-01"
    status, body, _ = await call("users.verify", {"task": "people", "conditions": conditions})
    assert status == 400 and body["errors"] == [
        {"field": "conditions[1].value", "message": "not a date-time in the format %d.%m.%Y %H:%M"}
    ], body
