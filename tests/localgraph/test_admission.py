"""Request admission in the local Graph's pipeline (localgraph.admission): application permissions and the
replication window are checked before any handler runs, for direct requests and ``$batch`` steps alike, and
the eventual consistency of writes [docs/graph-behaviour.md sections 7 and 11].

Every test goes through real HTTP: a started local Graph and a token from ClientSecretCredential.
"""

from __future__ import annotations

import ast
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from localgraph.client import graph_client
from shared.retry import RetryPolicy
from tests.support import assert_error

GRAPH = "https://graph.microsoft.com/v1.0"
DENIED = "Insufficient privileges to complete the operation."
NOT_REPLICATED = "The source resource object or one of the objects being referenced don't exist."
LOCALGRAPH = Path(__file__).resolve().parents[2] / "localgraph"


@pytest.fixture
def domain(graph) -> str:
    return graph.info.tenant_domain


def ref(object_id: str) -> dict[str, str]:
    return {"@odata.id": f"{GRAPH}/directoryObjects/{object_id}"}


def new_group() -> dict[str, Any]:
    nickname = f"sg{uuid.uuid4().hex[:8]}"
    return {"displayName": "Ops", "mailEnabled": False, "mailNickname": nickname, "securityEnabled": True}


def new_user(domain: str) -> dict[str, Any]:
    alias = f"adm.{uuid.uuid4().hex[:8]}"
    return {
        "accountEnabled": True,
        "displayName": "Admission Test",
        "mailNickname": alias,
        "userPrincipalName": f"{alias}@{domain}",
        "passwordProfile": {"password": "xWwvJ]6NMw+bWH-d"},
    }


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


def step_answer(http: httpx.Client, method: str, url: str, body: Any = None) -> httpx.Response:
    """One request sent as the only step of a ``$batch``, its answer as an httpx.Response."""
    step: dict[str, Any] = {"id": "1", "method": method, "url": url}
    if body is not None:
        step.update(body=body, headers={"Content-Type": "application/json"})
    batch = http.post("/$batch", json={"requests": [step]})
    assert batch.status_code == 200, batch.text
    [answer] = batch.json()["responses"]
    return httpx.Response(answer["status"], json=answer.get("body"), headers=answer.get("headers"))


def both_ways(http: httpx.Client, method: str, url: str, body: Any = None) -> list[httpx.Response]:
    """The same request sent directly and as a ``$batch`` step."""
    direct = http.request(method, url, json=body)
    return [direct, step_answer(http, method, url.lstrip("/"), body)]


# ---------------------------------------------------------------------------------------- permissions


def test_handler_modules_make_no_admission_checks_of_their_own():
    """Admission lives in the pipeline: no module that serves routes imports the permission rules or the
    replication window (so a new handler cannot forget them or apply them twice)."""
    # Every module that declares routes (a Router), found rather than listed, so a new one is covered too;
    # the server is the pipeline itself.
    handler_modules = [
        path
        for path in sorted([*LOCALGRAPH.glob("*.py"), *(LOCALGRAPH / "writes").glob("*.py")])
        if path.name != "server.py" and "Router()" in path.read_text(encoding="utf-8")
    ]
    assert {"reads.py", "delta.py", "batch.py", "intune.py", "subscriptions.py", "users.py"} <= {
        path.name for path in handler_modules
    }
    offenders = []
    for path in handler_modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [
                f"{path.name}: {name}"
                for name in names
                if name.startswith(("localgraph.permissions", "localgraph.admission"))
            ]
    assert offenders == []


def test_app_only_refusals_answer_the_same_directly_and_in_a_batch(http, control, domain):
    device = {
        "accountEnabled": False,
        "alternativeSecurityIds": [{"type": 2, "key": "dGVzdA=="}],
        "deviceId": str(uuid.uuid4()),
        "displayName": "Test device",
        "operatingSystem": "linux",
        "operatingSystemVersion": "1",
    }
    for response in both_ways(http, "POST", "/devices", device):
        assert_error(response, 403, "Authorization_RequestDenied", DENIED)
    # Properties that "can't be set with app permissions" [docs/graph-behaviour.md section 7].
    user = created(http.post("/users", json=new_user(domain)))
    for response in both_ways(http, "PATCH", f"/users/{user['id']}", {"aboutMe": "hi"}):
        assert_error(response, 403, "Authorization_RequestDenied", DENIED)
    for response in both_ways(http, "POST", "/users", {**new_user(domain), "skills": ["x"]}):
        assert_error(response, 403, "Authorization_RequestDenied", DENIED)
    assert http.get(f"/users/{user['id']}", params={"$select": "aboutMe"}).json().get("aboutMe") is None
    assert not [d for d in control.objects("devices") if d["deviceId"] == device["deviceId"]]


def test_group_photo_delete_is_refused_to_app_only_callers_in_a_batch_too(http, control):
    group = control.objects("groups")[0]
    for response in both_ways(http, "DELETE", f"/groups/{group['id']}/photo/$value"):
        assert_error(response, 403, "Authorization_RequestDenied", DENIED)


def test_restoring_a_deleted_object_needs_the_permission_for_its_kind(graph, http, control, domain):
    user = created(http.post("/users", json=new_user(domain)))
    assert http.delete(f"/users/{user['id']}").status_code == 204
    # Group.ReadWrite.All may restore groups, not users; the check follows the deleted object's kind.
    app = control.add_app(["Group.ReadWrite.All", "User.Read.All"])
    with graph_client(graph.info, client_id=app["client_id"], secret=app["client_secret"]) as groups_only:
        for response in both_ways(groups_only, "POST", f"/directory/deletedItems/{user['id']}/restore", {}):
            assert_error(response, 403, "Authorization_RequestDenied", DENIED)
        # Not a deleted object: the handler's 404, not a 403.
        missing = str(uuid.uuid4())
        assert_error(
            groups_only.post(f"/directory/deletedItems/{missing}/restore"), 404, "Request_ResourceNotFound"
        )
    assert http.post(f"/directory/deletedItems/{user['id']}/restore").status_code == 200


def test_deleting_a_member_object_needs_the_permission_for_the_members_kind(graph, http, control, domain):
    group = created(http.post("/groups", json=new_group()))
    user = created(http.post("/users", json=new_user(domain)))
    assert http.post(f"/groups/{group['id']}/members/$ref", json=ref(user["id"])).status_code == 204
    app = control.add_app(["GroupMember.ReadWrite.All", "Group.ReadWrite.All", "User.Read.All"])
    with graph_client(graph.info, client_id=app["client_id"], secret=app["client_secret"]) as members_only:
        url = f"/groups/{group['id']}/members/{user['id']}"
        for response in both_ways(members_only, "DELETE", url):
            assert_error(response, 403, "Authorization_RequestDenied", DENIED)
        # Removing the link (with $ref) is what this app may do.
        assert members_only.delete(f"{url}/$ref").status_code == 204
    assert http.get(f"/users/{user['id']}").status_code == 200


# -------------------------------------------------------------------------------- replication window


def test_a_just_created_group_refuses_members_within_the_window_then_accepts_them(http, control):
    window_s = 1.5
    control.settings(replication_delay_ms=window_s * 1000)
    member = control.objects("users")[0]
    created_at = time.monotonic()
    group = created(http.post("/groups", json=new_group()))
    assert_error(
        http.post(f"/groups/{group['id']}/members/$ref", json=ref(member["id"])),
        400,
        "Request_ResourceNotFound",
        NOT_REPLICATED,
    )
    assert_error(
        step_answer(http, "POST", f"groups/{group['id']}/members/$ref", ref(member["id"])),
        400,
        "Request_ResourceNotFound",
        NOT_REPLICATED,
    )
    bind = {"members@odata.bind": [f"{GRAPH}/users/{member['id']}"]}
    assert_error(
        http.patch(f"/groups/{group['id']}", json=bind), 400, "Request_ResourceNotFound", NOT_REPLICATED
    )
    assert_error(http.get(f"/groups/{group['id']}"), 404, "Request_ResourceNotFound")
    # A property change is no link: the window does not refuse it.
    assert http.patch(f"/groups/{group['id']}", json={"description": "x"}).status_code == 204
    assert not control_members(control, group["id"])

    time.sleep(max(0.0, window_s - (time.monotonic() - created_at)) + 0.1)
    assert http.post(f"/groups/{group['id']}/members/$ref", json=ref(member["id"])).status_code == 204
    assert http.get(f"/groups/{group['id']}").status_code == 200
    assert control_members(control, group["id"]) == [member["id"]]


def test_a_just_created_member_is_refused_within_the_window(http, control, domain):
    group = control.objects("groups")[0]
    control.settings(replication_delay_ms=600_000)
    user = created(http.post("/users", json=new_user(domain)))
    assert_error(
        http.post(f"/groups/{group['id']}/members/$ref", json=ref(user["id"])),
        400,
        "Request_ResourceNotFound",
        NOT_REPLICATED,
    )
    control.settings(replication_delay_ms=0)  # the window is off: the link is made
    assert http.post(f"/groups/{group['id']}/members/$ref", json=ref(user["id"])).status_code == 204


def test_existing_groups_take_members_at_once_while_the_window_is_on(http, control):
    control.settings(replication_delay_ms=600_000)
    group = control.objects("groups")[0]
    member = next(u for u in control.objects("users") if u["id"] not in control_members(control, group["id"]))
    assert http.post(f"/groups/{group['id']}/members/$ref", json=ref(member["id"])).status_code == 204


def test_a_batch_step_gets_the_window_too(http, control, domain):
    control.settings(replication_delay_ms=600_000)
    user = created(http.post("/users", json=new_user(domain)))
    assert_error(step_answer(http, "GET", f"users/{user['id']}"), 404, "Request_ResourceNotFound")
    assert_error(
        step_answer(http, "GET", f"users/{user['userPrincipalName']}"), 404, "Request_ResourceNotFound"
    )


def test_a_client_retrying_with_backoff_adds_the_member(http, control):
    """What the write-side activities must do: retry the window's 400 after a backoff (Learn
    group-post-members: "Retry after a brief delay"), branching on the error code, not the message."""
    control.settings(replication_delay_ms=1200)
    member = control.objects("users")[0]
    group = created(http.post("/groups", json=new_group()))
    policy = RetryPolicy(backoff_base_s=0.1, backoff_cap_s=1.0)
    answers = []
    deadline = time.monotonic() + 15
    while True:
        response = http.post(f"/groups/{group['id']}/members/$ref", json=ref(member["id"]))
        answers.append(response.status_code)
        retryable = (
            response.status_code == 400 and response.json()["error"]["code"] == "Request_ResourceNotFound"
        )
        if not retryable or time.monotonic() > deadline:
            break
        time.sleep(policy.backoff(len(answers)))
    assert answers[0] == 400 and answers[-1] == 204, answers
    assert control_members(control, group["id"]) == [member["id"]]


@pytest.mark.parametrize("delay_ms", [0, 600_000])
def test_objects_not_created_through_graph_are_never_in_the_window(http, control, delay_ms):
    control.settings(replication_delay_ms=delay_ms)
    user = control.objects("users")[0]
    assert http.get(f"/users/{user['id']}").status_code == 200


def control_members(control, group_id: str) -> list[str]:
    return control.get("groups", group_id)["members"]
