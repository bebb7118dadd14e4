"""OData type casts by the schema's namespace and by its alias.

Graph's v1.0 schema declares ``<Schema Namespace="microsoft.graph" Alias="graph">`` (the committed metadata
extract keeps the alias), so ``graph.user`` and ``microsoft.graph.user`` name the same cast; Microsoft's SDKs
send the alias form (``GET /groups/{id}/members/graph.user``, OpenAPI operation ``groups.ListMembers.AsUser``).
Expected results come from the control API's export, never from the code under test.
"""

from __future__ import annotations

import pytest

from localgraph.context import GraphSettings
from localgraph.generate import TenantShape
from tests.support import assert_error

EVENTUAL = {"ConsistencyLevel": "eventual"}


@pytest.fixture
def graph_shape() -> TenantShape:
    return TenantShape(users=120, seed=11)


@pytest.fixture
def graph_settings() -> GraphSettings:
    return GraphSettings(enforce_budgets=False)


def all_ids(http, path: str, params=None, headers=None) -> list[str]:
    response = http.get(path, params=params, headers=headers)
    found = []
    while True:
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        found.extend(item["id"] for item in body["value"])
        if "@odata.nextLink" not in body:
            return found
        response = http.get(body["@odata.nextLink"], headers=headers)


def kinds_by_id(control) -> dict[str, str]:
    kinds = {}
    for collection in ("users", "groups", "devices", "contacts", "servicePrincipals", "applications"):
        for obj in control.objects(collection):
            kinds[obj["id"]] = obj["@odata.type"].removeprefix("#microsoft.graph.")
    return kinds


@pytest.mark.parametrize("form", ["graph", "microsoft.graph", "Microsoft.Graph", "GRAPH"])
def test_group_members_cast_in_every_form(http, control, form):
    kinds = kinds_by_id(control)
    group = max(
        (g for g in control.objects("groups") if any(kinds[m] == "group" for m in g["members"])),
        key=lambda g: len(g["members"]),
    )
    users = all_ids(http, f"/groups/{group['id']}/members/{form}.user")
    groups = all_ids(http, f"/groups/{group['id']}/members/{form}.group")
    assert sorted(users) == sorted(m for m in group["members"] if kinds[m] == "user")
    assert sorted(groups) == sorted(m for m in group["members"] if kinds[m] == "group")
    assert users and groups


def test_alias_and_namespace_forms_agree_on_every_relationship(http, control):
    kinds = kinds_by_id(control)
    groups = control.objects("groups")
    parent = next(g for g in groups if any(kinds[m] == "group" for m in g["members"]))
    child = next(m for m in parent["members"] if kinds[m] == "group")
    user = next(m for g in groups for m in g["members"] if kinds[m] == "user")
    paths = {
        f"/groups/{parent['id']}/members/{{}}.group": True,
        f"/groups/{parent['id']}/transitiveMembers/{{}}.user": True,
        f"/groups/{parent['id']}/owners/{{}}.user": False,
        f"/users/{user}/memberOf/{{}}.group": True,
        f"/users/{user}/transitiveMemberOf/{{}}.group": True,
        f"/groups/{child}/memberOf/{{}}.group": True,
        f"/groups/{child}/transitiveMemberOf/{{}}.group": True,
    }
    for template, non_empty in paths.items():
        alias = all_ids(http, template.format("graph"))
        assert alias == all_ids(http, template.format("microsoft.graph")), template
        assert bool(alias) or not non_empty, template


def test_cast_body_names_the_cast_type_and_has_no_other_types(graph, http, control):
    group = max(control.objects("groups"), key=lambda g: len(g["members"]))
    body = http.get(f"/groups/{group['id']}/members/graph.user", params={"$top": "5"}).json()
    assert body["@odata.context"] == f"{graph.info.graph_base_url}/$metadata#users"
    assert body["value"] and all("@odata.type" not in item for item in body["value"])


def test_cast_count_in_both_forms(http, control):
    kinds = kinds_by_id(control)
    group = max(control.objects("groups"), key=lambda g: len(g["members"]))
    expected = str(sum(1 for m in group["members"] if kinds[m] == "user"))
    for form in ("graph.user", "microsoft.graph.user"):
        response = http.get(f"/groups/{group['id']}/members/{form}/$count", headers=EVENTUAL)
        assert response.status_code == 200, response.text
        assert response.text == expected


def test_deleted_items_by_cast_in_both_forms(http, control):
    users = control.objects("users")
    group = control.objects("groups")[0]
    for user in users[:3]:
        control.delete("users", user["id"])
    control.delete("groups", group["id"])
    deleted_users = sorted(u["id"] for u in users[:3])
    for form in ("graph", "microsoft.graph"):
        assert sorted(all_ids(http, f"/directory/deletedItems/{form}.user")) == deleted_users
        assert all_ids(http, f"/directory/deletedItems/{form}.group") == [group["id"]]
    # The object by id is still served on the same path shape.
    single = http.get(f"/directory/deletedItems/{users[0]['id']}")
    assert single.status_code == 200 and single.json()["id"] == users[0]["id"]


def test_single_directory_object_cast(http, control):
    user = control.objects("users")[0]
    for form in ("graph.user", "microsoft.graph.user"):
        response = http.get(f"/directoryObjects/{user['id']}/{form}")
        assert response.status_code == 200, response.text
        assert response.json()["id"] == user["id"]
    assert http.get(f"/directoryObjects/{user['id']}/graph.group").status_code == 404


@pytest.mark.parametrize("cast", ["graph.calendar", "microsoft.graph.drive", "graph.User2"])
def test_cast_to_a_type_that_is_not_a_member_type_is_resource_not_found_for_the_segment(http, control, cast):
    group = control.objects("groups")[0]
    assert_error(
        http.get(f"/groups/{group['id']}/members/{cast}"),
        400,
        "BadRequest",
        f"Resource not found for the segment '{cast}'.",
    )


def test_a_cast_is_never_taken_for_an_object_id(http, control):
    """Before the alias was known, ``/directory/deletedItems/graph.user`` was read as a lookup of the
    deleted object ``graph.user`` (404); a cast-shaped segment now never fills an id parameter."""
    response = http.get("/directory/deletedItems/graph.user")
    assert response.status_code == 200 and response.json()["value"] == []
    group = control.objects("groups")[0]
    # No route takes a cast where it takes an object id: the members' {memberId}/$ref does not match.
    response = http.delete(f"/groups/{group['id']}/members/graph.user/$ref")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_casts_in_batch_steps(http, control):
    group = max(control.objects("groups"), key=lambda g: len(g["members"]))
    body = {
        "requests": [
            {"id": "1", "method": "GET", "url": f"/groups/{group['id']}/members/graph.user?$select=id"},
            {"id": "2", "method": "GET", "url": "/directory/deletedItems/graph.group"},
        ]
    }
    answers = {r["id"]: r for r in http.post("/$batch", json=body).json()["responses"]}
    assert answers["1"]["status"] == 200 and answers["1"]["body"]["value"]
    assert answers["2"]["status"] == 200 and answers["2"]["body"]["value"] == []
