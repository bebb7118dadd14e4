"""The control API (``/_control``): what tests, the benchmark and the demo use to act as an administrator.

Each endpoint of :mod:`localgraph.control`'s docstring, checked against what Graph then serves.
"""

from __future__ import annotations

import httpx
import jwt
import pytest
from azure.identity import ClientSecretCredential

from localgraph.client import ControlClient
from localgraph.generate import TenantShape
from localgraph.server import LocalGraph

COLLECTIONS = ("users", "groups", "devices", "applications", "servicePrincipals", "contacts")


@pytest.fixture
def graph_shape() -> TenantShape:
    return TenantShape(users=80, seed=4)


def raw(graph, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{graph.info.control_url}{path}", verify=graph.info.tls_context(), **kwargs)


def graph_ids(http: httpx.Client, path: str) -> list[str]:
    items = []
    url = path
    params = {"$top": "999"}
    while url:
        body = http.get(url, params=params).json()
        items.extend(item["id"] for item in body["value"])
        url, params = body.get("@odata.nextLink"), None
    return sorted(items)


# ---------------------------------------------------------------------------------------------- info


def test_info_counts_match_the_tenant(graph, control, http):
    info = control.tenant_info()
    assert info["tenant_id"] == graph.info.tenant_id
    assert info["domain"] == graph.info.tenant_domain
    assert graph.info.client_id in info["apps"]
    for collection in COLLECTIONS:
        assert (
            info["counts"][collection]
            == len(control.objects(collection))
            == len(graph_ids(http, f"/{collection}"))
        )
    assert info["counts"]["users"] == 80
    assert info["memberships"] == sum(len(g["members"]) for g in control.objects("groups"))
    assert info["managed_devices"] == len(graph_ids(http, "/deviceManagement/managedDevices"))


def test_info_seq_and_memberships_follow_changes(control):
    before = control.tenant_info()
    group = control.objects("groups")[0]
    control.delete("groups", group["id"])
    after = control.tenant_info()
    assert after["seq"] > before["seq"]
    assert after["counts"]["groups"] == before["counts"]["groups"] - 1
    assert after["memberships"] == before["memberships"] - len(group["members"])


# ---------------------------------------------------------------------------------------------- requests


def test_request_log_summary_and_clear(http, control):
    control.clear_requests()
    http.get("/users")
    http.get("/users")
    http.get("/groups/00000000-0000-4000-8000-000000000000")
    summary = control.requests()
    assert summary["http_calls"] == 3
    assert summary["by_path"] == {"GET /users": 2, "GET /groups/{id}": 1}
    assert summary["statuses"] == {"200": 2, "404": 1}
    assert summary["resource_units"] == 5
    control.clear_requests()
    cleared = control.requests()
    assert cleared["http_calls"] == 0
    assert cleared["by_path"] == {}


# ---------------------------------------------------------------------------------------------- settings


def test_settings_patch_changes_behaviour(http, control):
    changed = control.settings(default_page_size=7, latency_ms=0)
    assert changed["default_page_size"] == 7
    assert changed["latency_ms"] == 0.0
    assert isinstance(changed["latency_ms"], float)
    assert len(http.get("/users").json()["value"]) == 7
    assert control.settings()["default_page_size"] == 7


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"no_such_setting": 1}, "unknown settings: no_such_setting"),
        ({"default_page_size": "7"}, "setting default_page_size must be int"),
        ({"default_page_size": True}, "setting default_page_size must be int"),
        ({"premium_licence": 1}, "setting premium_licence must be bool"),
        ({"default_page_size": 0}, "setting default_page_size must be at least 1"),
        ({"latency_ms": -5}, "setting latency_ms must be at least 0"),
        (
            {"delta_token_failure": "whatever"},
            "setting delta_token_failure must be syncStateNotFound or reset",
        ),
    ],
)
def test_settings_patch_validation_errors(graph, control, changes, message):
    response = raw(graph, "PATCH", "/settings", json=changes)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message


def test_settings_patch_is_all_or_nothing(graph, control):
    response = raw(graph, "PATCH", "/settings", json={"default_page_size": 5, "max_page_size": "x"})
    assert response.status_code == 400
    assert control.settings()["default_page_size"] == 100


# ---------------------------------------------------------------------------------------------- faults


def test_faults_put_get_delete(http, control):
    described = control.set_faults({"status": 503, "path": "^/users$", "count": 1})["rules"]
    assert described[0]["status"] == 503 and described[0]["count"] == 1 and described[0]["fired"] == 0
    assert http.get("/users").status_code == 503
    assert control._call("GET", "/faults")["rules"][0]["fired"] == 1
    control.clear_faults()
    assert control._call("GET", "/faults") == {"rules": []}


# ---------------------------------------------------------------------------------------------- objects


def test_objects_export_includes_members_and_manager(http, control):
    users = control.objects("users")
    assert all(u["@odata.type"] == "#microsoft.graph.user" and "manager" in u for u in users)
    user = next(u for u in users if u["manager"])
    assert http.get(f"/users/{user['id']}/manager").json()["id"] == user["manager"]
    for group in control.objects("groups")[:5]:
        assert group["@odata.type"] == "#microsoft.graph.group"
        assert sorted(group["members"]) == graph_ids(http, f"/groups/{group['id']}/members")
    device = control.objects("devices")[0]
    assert device["@odata.type"] == "#microsoft.graph.device"
    assert control.get("devices", device["id"])["displayName"] == device["displayName"]


def test_create_update_soft_delete_restore_and_hard_delete(graph, http, control):
    user = control.create(
        "users",
        {"displayName": "Control Made", "userPrincipalName": "control.made@x.example", "jobTitle": "A"},
    )
    assert http.get(f"/users/{user['id']}").json()["displayName"] == "Control Made"
    group = control.objects("groups")[0]
    control.members(group["id"], add=[user["id"]])

    updated = control.update("users", user["id"], {"jobTitle": "B", "department": "Legal"})
    assert updated["jobTitle"] == "B"
    assert (
        http.get(f"/users/{user['id']}", params={"$select": "jobTitle,department"}).json()["department"]
        == "Legal"
    )

    control.delete("users", user["id"])
    assert http.get(f"/users/{user['id']}").status_code == 404
    deleted = http.get("/directory/deletedItems/microsoft.graph.user").json()["value"]
    assert user["id"] in [item["id"] for item in deleted]
    assert control.get("users", user["id"])["deletedDateTime"]

    restored = control.restore("users", user["id"])
    assert "deletedDateTime" not in restored
    assert http.get(f"/users/{user['id']}").status_code == 200
    assert user["id"] in graph_ids(http, f"/groups/{group['id']}/members")  # memberships come back

    control.delete("users", user["id"], hard=True)
    assert http.get(f"/users/{user['id']}").status_code == 404
    assert user["id"] not in [
        i["id"] for i in http.get("/directory/deletedItems/microsoft.graph.user").json()["value"]
    ]
    assert raw(graph, "GET", f"/objects/users/{user['id']}").status_code == 404


def test_hard_delete_from_deleted_items(graph, control):
    user = control.objects("users")[0]
    control.delete("users", user["id"])
    control.delete("users", user["id"], hard=True)
    assert user["id"] not in [u["id"] for u in control.objects("users")]
    response = raw(graph, "POST", f"/objects/users/{user['id']}/restore")
    assert response.status_code == 404


def test_object_errors(graph, control):
    missing = "00000000-0000-4000-8000-000000000000"
    assert raw(graph, "GET", "/objects/shoes").status_code == 404
    assert raw(graph, "PATCH", f"/objects/users/{missing}", json={"jobTitle": "x"}).status_code == 404
    assert raw(graph, "DELETE", f"/objects/users/{missing}").status_code == 404
    user = control.objects("users")[0]
    duplicate = raw(graph, "POST", "/objects/users", json={"userPrincipalName": user["userPrincipalName"]})
    assert duplicate.status_code == 400
    assert duplicate.json()["error"]["details"][0]["code"] == "ObjectConflict"
    restore_live = raw(graph, "POST", f"/objects/users/{user['id']}/restore")
    assert restore_live.status_code == 400


def test_members_add_and_remove(graph, http, control):
    group = control.objects("groups")[5]
    outsider = next(u for u in control.objects("users") if u["id"] not in group["members"])
    members = control.members(group["id"], add=[outsider["id"]])
    assert outsider["id"] in members
    assert outsider["id"] in graph_ids(http, f"/groups/{group['id']}/members")
    assert group["id"] in graph_ids(http, f"/users/{outsider['id']}/memberOf")
    members = control.members(group["id"], remove=[outsider["id"]])
    assert outsider["id"] not in members
    assert sorted(graph_ids(http, f"/groups/{group['id']}/members")) == sorted(group["members"])
    again = raw(graph, "POST", f"/groups/{group['id']}/members", json={"remove": [outsider["id"]]})
    assert again.status_code == 404
    member = group["members"][0]
    twice = raw(graph, "POST", f"/groups/{group['id']}/members", json={"add": [member]})
    assert twice.status_code == 400


def test_manager_set_and_clear(http, control):
    users = control.objects("users")
    user = next(u for u in users if not u["manager"])
    boss = next(u for u in users if u["id"] != user["id"])
    control.set_manager(user["id"], boss["id"])
    assert http.get(f"/users/{user['id']}/manager").json()["id"] == boss["id"]
    assert control.get("users", user["id"])["manager"] == boss["id"]
    control.set_manager(user["id"], None)
    assert http.get(f"/users/{user['id']}/manager").status_code == 404
    assert control.get("users", user["id"])["manager"] is None


# ---------------------------------------------------------------------------------------------- churn


def test_churn_reports_counts_that_match_the_change(http, control):
    before_info = control.tenant_info()
    before_users = {u["id"] for u in control.objects("users")}
    before_groups = {g["id"]: set(g["members"]) for g in control.objects("groups")}
    done = control.churn(0.2, seed=3)
    assert done["seconds"] >= 0
    after_users = {u["id"] for u in control.objects("users")}
    after_groups = {g["id"]: set(g["members"]) for g in control.objects("groups")}

    gone_users = before_users - after_users
    assert len(gone_users) == done["users_soft_deleted"] + done["users_hard_deleted"]
    assert len(after_users - before_users) == done["users_created"]
    assert done["users_updated"] > 0 and done["users_soft_deleted"] > 0 and done["users_hard_deleted"] > 0
    soft = {item["id"] for item in http.get("/directory/deletedItems/microsoft.graph.user").json()["value"]}
    assert len(soft & gone_users) == done["users_soft_deleted"]

    gone_groups = set(before_groups) - set(after_groups)
    assert len(gone_groups) == done["groups_deleted"]
    assert len(set(after_groups) - set(before_groups)) == done["groups_created"]
    info = control.tenant_info()
    assert info["counts"]["users"] == before_info["counts"]["users"] - len(gone_users) + done["users_created"]
    assert (
        info["counts"]["groups"]
        == before_info["counts"]["groups"] - len(gone_groups) + done["groups_created"]
    )

    # Membership changes beyond those that deletions imply are exactly the reported adds and removes.
    gone = gone_users | gone_groups
    net = sum(len(after_groups[g]) - len(before_groups.get(g, set()) - gone) for g in after_groups)
    assert net == done["members_added"] - done["members_removed"]
    assert done["members_added"] > 0 and done["members_removed"] > 0


def test_churn_is_deterministic_for_a_seed(graph_shape, tls_dir, control):
    done = control.churn(0.1, seed=9)
    with LocalGraph(graph_shape, state_dir=tls_dir) as twin:
        twin_control = ControlClient(twin.info)
        try:
            assert twin_control.churn(0.1, seed=9) | {"seconds": 0} == done | {"seconds": 0}
            for collection in ("users", "groups"):
                mine = {o["id"]: strip_times(o) for o in control.objects(collection)}
                theirs = {o["id"]: strip_times(o) for o in twin_control.objects(collection)}
                kept = set(mine) - created(mine)
                assert kept == set(theirs) - created(theirs)
                assert len(mine) == len(theirs)
                if collection == "users":
                    assert all(mine[i] == theirs[i] for i in kept)
        finally:
            twin_control.close()


def strip_times(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("createdDateTime", "id")}


def created(objects: dict[str, dict]) -> set[str]:
    """Objects churn created (random ids)."""
    return {i for i, o in objects.items() if o.get("displayName", "").startswith("Churn ")}


# ------------------------------------------------------------------------------------------ delta and apps


def test_delta_invalidate_bumps_the_generation(graph, control):
    first = control.invalidate_delta_tokens()
    assert first == {"generation": 1, "mode": "syncStateNotFound"}
    second = control.invalidate_delta_tokens("reset")
    assert second == {"generation": 2, "mode": "reset"}
    assert control.settings()["delta_token_failure"] == "reset"
    assert graph.ctx.delta_generation == 2
    assert raw(graph, "POST", "/delta/invalidate", json={"mode": "later"}).status_code == 400


def test_apps_registers_an_app_that_can_sign_in(graph, control):
    app = control.add_app(["User.Read.All"], display_name="Reader")
    assert app["roles"] == ["User.Read.All"]
    info = graph.info
    with ClientSecretCredential(
        info.tenant_id,
        app["client_id"],
        app["client_secret"],
        authority=info.authority_url,
        disable_instance_discovery=True,
        connection_verify=info.ca_file,
    ) as credential:
        token = credential.get_token(f"{info.graph_url}/.default").token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["appid"] == app["client_id"]
    assert claims["roles"] == ["User.Read.All"]
    response = httpx.get(
        f"{info.graph_base_url}/users",
        headers={"Authorization": f"Bearer {token}"},
        verify=info.tls_context(),
    )
    assert response.status_code == 200
    assert app["client_id"] in control.tenant_info()["apps"]
