"""Directory reads: paging, ``$top``, ``$select``, single objects, relationships [docs/graph-behaviour.md section 1, 6] (Intune:
test_intune.py).

Expected results come from the control API's export (``control.objects``), never from the code under test.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest

from localgraph.context import GraphSettings
from localgraph.generate import TenantShape
from tests.support import assert_error

DEFAULT_USER_PROPERTIES = {
    "businessPhones", "displayName", "givenName", "id", "jobTitle", "mail", "mobilePhone", "officeLocation",
    "preferredLanguage", "surname", "userPrincipalName",
}  # fmt: skip
NOT_FOUND = "Resource '{}' does not exist or one of its queried reference-property objects are not present."


@pytest.fixture
def graph_shape() -> TenantShape:
    return TenantShape(users=230, seed=5)


@pytest.fixture
def graph_settings() -> GraphSettings:
    return GraphSettings(enforce_budgets=False)


def follow(http: httpx.Client, path: str, params=None, headers=None) -> tuple[list[dict], list[dict]]:
    """Every item and every page body of a list, following nextLinks verbatim."""
    response = http.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    pages = [response.json()]
    while "@odata.nextLink" in pages[-1]:
        response = http.get(pages[-1]["@odata.nextLink"], headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
    return [item for page in pages for item in page["value"]], pages


def ids(items) -> list[str]:
    return [item["id"] for item in items]


def by_id(objects: list[dict]) -> dict[str, dict]:
    return {obj["id"]: obj for obj in objects}


def extension_name(control, name: str = "costCenter") -> str:
    app = next(
        a for a in control.objects("applications") if a["displayName"] == "Tenant Schema Extension App"
    )
    return f"extension_{app['appId'].replace('-', '')}_{name}"


# ------------------------------------------------------------------------------------------------ paging


def test_default_page_is_100_users_with_a_next_link(http):
    body = http.get("/users").json()
    assert len(body["value"]) == 100
    assert "@odata.nextLink" in body
    assert "@odata.count" not in body


def test_top_999_is_accepted_and_returns_everything_on_one_page(http, control):
    body = http.get("/users", params={"$top": "999"}).json()
    assert sorted(ids(body["value"])) == sorted(ids(control.objects("users")))
    assert "@odata.nextLink" not in body


@pytest.mark.parametrize("top", ["1000", "0", "-1"])
def test_top_outside_1_to_999_is_request_unsupported_query(http, top):
    assert_error(
        http.get("/users", params={"$top": top}),
        400,
        "Request_UnsupportedQuery",
        f"Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive.",
    )


def test_top_outside_range_is_refused_on_groups_and_relationships_too(http, control):
    group = control.objects("groups")[0]
    for path in ("/groups", f"/groups/{group['id']}/members", f"/users/{group['members'][0]}/memberOf"):
        assert_error(http.get(path, params={"$top": "1000"}), 400, "Request_UnsupportedQuery")


def test_sign_in_activity_allows_pages_of_500_at_most(http):
    ok = http.get("/users", params={"$select": "id,signInActivity", "$top": "500"})
    assert ok.status_code == 200
    assert all(set(user) == {"id", "signInActivity"} for user in ok.json()["value"])
    assert_error(
        http.get("/users", params={"$select": "id,signInActivity", "$top": "501"}),
        400,
        "Request_UnsupportedQuery",
        "Invalid page size specified: '501'. Must be between 1 and 500 inclusive.",
    )


def test_sign_in_activity_without_a_premium_licence_is_403(http, control):
    control.settings(premium_licence=False)
    for params in (
        {"$select": "id,signInActivity"},
        {"$filter": "signInActivity/lastSignInDateTime le 2030-01-01T00:00:00Z"},
    ):
        assert_error(
            http.get("/users", params=params),
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        )
    assert http.get("/users", params={"$select": "id,displayName"}).status_code == 200
    user = control.objects("users")[0]
    assert_error(
        http.get(f"/users/{user['id']}", params={"$select": "id,signInActivity"}),
        403,
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
    )


def test_next_link_is_absolute_and_keeps_every_original_option_plus_skiptoken(graph, http):
    params = {"$select": "id,displayName,mail", "$top": "7"}
    link = http.get("/users", params=params).json()["@odata.nextLink"]
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{graph.info.graph_base_url}/users"
    query = parse_qsl(parts.query)
    assert [name for name, _ in query] == ["$select", "$top", "$skiptoken"]
    assert dict(query[:2]) == params
    assert query[2][1]


def test_following_next_links_returns_every_user_exactly_once(http, control):
    items, pages = follow(http, "/users", params={"$top": "7", "$select": "id,displayName"})
    assert len(pages) == -(-len(control.objects("users")) // 7)
    assert all(len(page["value"]) == 7 for page in pages[:-1])
    assert sorted(ids(items)) == sorted(ids(control.objects("users")))
    assert len(set(ids(items))) == len(items)


def test_following_next_links_over_groups_devices_and_contacts(http, control):
    for collection in ("groups", "devices", "contacts", "applications", "servicePrincipals"):
        items, _ = follow(http, f"/{collection}", params={"$top": "3"})
        assert sorted(ids(items)) == sorted(ids(control.objects(collection))), collection


def test_next_link_round_trips_through_httpx_unchanged(http, control):
    control.create(
        "users", {"displayName": "Siobhán O'Brien", "userPrincipalName": "siobhan.obrien1@x.example"}
    )
    control.create(
        "users", {"displayName": "Siobhán O'Brien", "userPrincipalName": "siobhan.obrien2@x.example"}
    )
    params = {"$filter": "displayName eq 'Siobhán O''Brien'", "$top": "1", "$select": "id,displayName"}
    first = http.get("/users", params=params)
    link = first.json()["@odata.nextLink"]
    second = http.get(link)
    assert str(second.request.url) == link
    assert second.status_code == 200
    assert dict(parse_qsl(urlsplit(link).query))["$filter"] == "displayName eq 'Siobhán O''Brien'"


def test_next_link_round_trips_values_with_url_delimiters(http, control):
    name = 'A&B=C+D #1 100% Ünïcode/"x"'
    for n in range(3):
        control.create("users", {"displayName": name, "userPrincipalName": f"delims{n}@x.example"})
    escaped = name.replace("'", "''")
    params = {"$filter": f"displayName eq '{escaped}'", "$top": "1", "$select": "id,displayName"}
    items, pages = follow(http, "/users", params=params)
    assert len(items) == 3 and {item["displayName"] for item in items} == {name}
    for page in pages[:-1]:
        link = page["@odata.nextLink"]
        assert str(http.build_request("GET", link).url) == link
        assert dict(parse_qsl(urlsplit(link).query))["$filter"] == params["$filter"]


def test_tampered_skiptoken_is_directory_expired_page_token(http):
    link = http.get("/users", params={"$top": "5"}).json()["@odata.nextLink"]
    token = dict(parse_qsl(urlsplit(link).query))["$skiptoken"]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert_error(
        http.get("/users", params={"$top": "5", "$skiptoken": tampered}),
        400,
        "Directory_ExpiredPageToken",
        "The specified page token value has expired and can no longer be included in your request.",
    )
    assert_error(
        http.get("/users", params={"$top": "5", "$skiptoken": "RFNwdAIAAQAAAD8"}),
        400,
        "Directory_ExpiredPageToken",
    )


def test_skiptoken_from_another_query_is_refused(http):
    link = http.get("/users", params={"$top": "5"}).json()["@odata.nextLink"]
    token = dict(parse_qsl(urlsplit(link).query))["$skiptoken"]
    for path, params in (
        ("/users", {"$top": "6"}),
        ("/groups", {"$top": "5"}),
        ("/users", {"$top": "5", "$select": "id"}),
    ):
        response = http.get(path, params={**params, "$skiptoken": token})
        assert_error(response, 400, "Directory_ExpiredPageToken")


def test_skip_is_not_supported(http):
    assert_error(
        http.get("/users", params={"$skip": "5"}),
        400,
        "Request_BadRequest",
        "'$skip' is not supported by the service.",
    )


def test_selective_filter_gives_short_and_empty_pages_that_still_carry_a_next_link(http, control):
    control.settings(filter_scan_per_page=10)
    guests = sorted(u["id"] for u in control.objects("users") if u["userType"] == "Guest")
    assert guests
    items, pages = follow(http, "/users", params={"$filter": "userType eq 'Guest'", "$top": "5"})
    assert sorted(ids(items)) == guests
    empty_with_link = [page for page in pages if not page["value"] and "@odata.nextLink" in page]
    assert empty_with_link, "a scan of 10 users per page must give empty pages for a rare filter"
    assert all(len(page["value"]) <= 5 for page in pages)


# ------------------------------------------------------------------------------------------------ $select


def test_without_select_users_have_exactly_the_11_default_properties(http, control):
    users = by_id(control.objects("users"))
    for user in http.get("/users", params={"$top": "50"}).json()["value"]:
        assert set(user) == DEFAULT_USER_PROPERTIES
        exported = users[user["id"]]
        assert user["displayName"] == exported["displayName"]
        assert user["businessPhones"] == exported.get("businessPhones", [])
        assert user["jobTitle"] == exported.get("jobTitle")


def test_select_returns_exactly_the_selected_properties_plus_id(http, control):
    users = by_id(control.objects("users"))
    body = http.get(
        "/users", params={"$select": "displayName,companyName,otherMails,employeeId", "$top": "999"}
    )
    for user in body.json()["value"]:
        assert set(user) == {"id", "displayName", "companyName", "otherMails", "employeeId"}
        exported = users[user["id"]]
        assert user["companyName"] == exported.get("companyName")
        assert user["otherMails"] == exported.get("otherMails", [])
        assert user["employeeId"] == exported.get("employeeId")


def test_selected_properties_that_are_unset_are_null_and_collections_empty(http, control):
    user = control.create("users", {"displayName": "Bare User", "userPrincipalName": "bare@x.example"})
    body = http.get(
        f"/users/{user['id']}", params={"$select": "displayName,department,otherMails,assignedLicenses"}
    )
    assert body.status_code == 200
    assert {k: v for k, v in body.json().items() if not k.startswith("@")} == {
        "id": user["id"],
        "displayName": "Bare User",
        "department": None,
        "otherMails": [],
        "assignedLicenses": [],
    }


def test_on_premises_extension_attributes_always_has_15_keys(http, control):
    users = by_id(control.objects("users"))
    body = http.get("/users", params={"$select": "id,onPremisesExtensionAttributes", "$top": "999"}).json()
    keys = {f"extensionAttribute{n}" for n in range(1, 16)}
    with_values = 0
    for user in body["value"]:
        attributes = user["onPremisesExtensionAttributes"]
        assert set(attributes) == keys
        exported = users[user["id"]].get("onPremisesExtensionAttributes") or {}
        assert {k: v for k, v in attributes.items() if v is not None} == exported
        with_values += bool(exported)
    assert with_values


def test_extension_properties_come_back_only_when_selected(http, control):
    name = extension_name(control)
    users = by_id(control.objects("users"))
    holders = {uid for uid, user in users.items() if name in user}
    assert holders
    for user in http.get("/users", params={"$top": "999"}).json()["value"]:
        assert name not in user
    selected = http.get("/users", params={"$select": f"id,{name}", "$top": "999"}).json()["value"]
    for user in selected:
        if user["id"] in holders:
            assert user == {"id": user["id"], name: users[user["id"]][name]}
        else:
            assert user == {"id": user["id"]}  # an unset extension is left out, not null


def test_unknown_select_property_is_400(http):
    response = http.get("/users", params={"$select": "displayName,shoeSize"})
    error = assert_error(response, 400, "Request_BadRequest")
    assert error["message"] == (
        "Parsing OData Select and Expand failed: Could not find a property named 'shoeSize' on type "
        "'microsoft.graph.user'."
    )
    assert http.get("/groups", params={"$select": "shoeSize"}).status_code == 400


@pytest.mark.parametrize("prop", ["aboutMe", "birthday", "hireDate", "skills", "mailboxSettings"])
def test_single_user_only_property_on_the_collection_is_501(http, control, prop):
    error = assert_error(http.get("/users", params={"$select": f"id,{prop}"}), 501, "NotImplemented")
    assert prop in error["message"]
    user = control.objects("users")[0]
    assert http.get(f"/users/{user['id']}", params={"$select": f"id,{prop}"}).status_code == 200


def test_odata_context_forms(graph, http, control):
    base = graph.info.graph_base_url
    user = control.objects("users")[0]
    group = next(g for g in control.objects("groups") if g["members"])
    expected = {
        ("/users", None): f"{base}/$metadata#users",
        ("/users", "displayName,mail"): f"{base}/$metadata#users(displayName,mail)",
        (f"/users/{user['id']}", None): f"{base}/$metadata#users/$entity",
        (f"/users/{user['id']}", "displayName"): f"{base}/$metadata#users(displayName)/$entity",
        ("/groups", None): f"{base}/$metadata#groups",
        (f"/groups/{group['id']}/members", None): f"{base}/$metadata#directoryObjects",
        (f"/groups/{group['id']}/members/microsoft.graph.user", None): f"{base}/$metadata#users",
        (f"/users/{user['id']}/memberOf", None): f"{base}/$metadata#directoryObjects",
    }
    for (path, select), context in expected.items():
        params = {"$select": select} if select else None
        response = http.get(path, params=params)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["@odata.context"] == context, path


# ------------------------------------------------------------------------------------------ single objects


def test_user_by_id_and_by_user_principal_name(http, control):
    member = next(u for u in control.objects("users") if u["userType"] == "Member")
    by_key = http.get(f"/users/{member['id']}").json()
    assert by_key["id"] == member["id"]
    assert by_key["userPrincipalName"] == member["userPrincipalName"]
    by_upn = http.get(f"/users/{member['userPrincipalName']}").json()
    assert by_upn["id"] == member["id"]
    assert http.get(f"/users/{member['userPrincipalName'].upper()}").json()["id"] == member["id"]


def test_guest_by_user_principal_name_with_ext_marker(http, control):
    guest = next(u for u in control.objects("users") if u["userType"] == "Guest")
    assert "#EXT#" in guest["userPrincipalName"]
    response = http.get(f"/users/{quote(guest['userPrincipalName'], safe='@')}")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == guest["id"]


def test_missing_object_is_404_request_resource_not_found(http):
    missing = "00000000-0000-4000-8000-000000000000"
    for path in (
        f"/users/{missing}",
        f"/groups/{missing}",
        f"/devices/{missing}",
        f"/groups/{missing}/members",
    ):
        assert_error(http.get(path), 404, "Request_ResourceNotFound", NOT_FOUND.format(missing))
    assert_error(http.get("/users/nobody@nowhere.example"), 404, "Request_ResourceNotFound")


def test_malformed_group_id_is_400_invalid_object_identifier(http):
    assert_error(
        http.get("/groups/not-a-guid"), 400, "Request_BadRequest", "Invalid object identifier 'not-a-guid'."
    )


def test_soft_deleted_user_is_gone_from_reads(http, control):
    user = control.objects("users")[0]
    control.delete("users", user["id"])
    assert http.get(f"/users/{user['id']}").status_code == 404
    assert user["id"] not in ids(follow(http, "/users", params={"$top": "999"})[0])


def test_unknown_segment_is_400_bad_request(http):
    assert_error(http.get("/usres"), 400, "BadRequest", "Resource not found for the segment 'usres'.")
    user_id = "00000000-0000-4000-8000-000000000000"
    assert_error(http.get(f"/users/{user_id}/shoes"), 400, "BadRequest")


def test_wrong_method_is_405(http):
    assert_error(
        http.delete("/users"),
        405,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
    )


def test_groups_have_their_default_properties(http, control):
    groups = by_id(control.objects("groups"))
    for group in http.get("/groups").json()["value"]:
        assert group["displayName"] == groups[group["id"]]["displayName"]
        assert group["groupTypes"] == groups[group["id"]]["groupTypes"]
        assert "members" not in group


# ---------------------------------------------------------------------------------------- relationships


def transitive_members(groups: dict[str, dict], group_id: str) -> set[str]:
    seen: set[str] = set()
    stack = [group_id]
    while stack:
        for member in groups[stack.pop()]["members"]:
            if member not in seen:
                seen.add(member)
                if member in groups:
                    stack.append(member)
    return seen


def test_group_members_are_typed_directory_objects(http, control):
    groups = by_id(control.objects("groups"))
    users = by_id(control.objects("users"))
    group = max(groups.values(), key=lambda g: sum(m in groups for m in g["members"]))
    items, pages = follow(http, f"/groups/{group['id']}/members", params={"$top": "10"})
    assert sorted(ids(items)) == sorted(group["members"])
    assert all(page["@odata.context"].endswith("$metadata#directoryObjects") for page in pages)
    for item in items:
        expected = "#microsoft.graph.user" if item["id"] in users else "#microsoft.graph.group"
        assert item["@odata.type"] == expected


def test_members_cast_to_users_returns_only_users(http, control):
    groups = by_id(control.objects("groups"))
    group = next(g for g in groups.values() if any(m in groups for m in g["members"]))
    items, _ = follow(http, f"/groups/{group['id']}/members/microsoft.graph.user")
    assert sorted(ids(items)) == sorted(m for m in group["members"] if m not in groups)
    groups_only, _ = follow(http, f"/groups/{group['id']}/members/microsoft.graph.group")
    assert sorted(ids(groups_only)) == sorted(m for m in group["members"] if m in groups)


def test_transitive_members_flatten_nested_groups(http, control):
    groups = by_id(control.objects("groups"))
    nested = [g for g in groups.values() if any(m in groups and groups[m]["members"] for m in g["members"])]
    assert nested, "the generated tenant has nested groups"
    group = nested[0]
    expected = transitive_members(groups, group["id"])
    assert expected > set(group["members"])
    items, _ = follow(http, f"/groups/{group['id']}/transitiveMembers", params={"$top": "25"})
    assert sorted(ids(items)) == sorted(expected)
    assert all("@odata.type" in item for item in items)


def test_member_of_and_transitive_member_of(http, control):
    groups = by_id(control.objects("groups"))
    parents: dict[str, set[str]] = {}
    for group in groups.values():
        for member in group["members"]:
            parents.setdefault(member, set()).add(group["id"])
    deep = next(
        member
        for member, direct in parents.items()
        if member not in groups and any(parents.get(g) for g in direct)
    )
    direct, _ = follow(http, f"/users/{deep}/memberOf")
    assert sorted(ids(direct)) == sorted(parents[deep])
    assert {item["@odata.type"] for item in direct} == {"#microsoft.graph.group"}
    expected: set[str] = set()
    stack = list(parents[deep])
    while stack:
        group_id = stack.pop()
        if group_id not in expected:
            expected.add(group_id)
            stack.extend(parents.get(group_id, ()))
    transitive, _ = follow(http, f"/users/{deep}/transitiveMemberOf")
    assert sorted(ids(transitive)) == sorted(expected)
    assert expected > parents[deep]


def test_manager_is_returned_with_its_type(http, control):
    users = by_id(control.objects("users"))
    user = next(u for u in users.values() if u["manager"])
    response = http.get(f"/users/{user['id']}/manager")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == user["manager"]
    assert body["@odata.type"] == "#microsoft.graph.user"
    assert body["displayName"] == users[user["manager"]]["displayName"]
    selected = http.get(f"/users/{user['id']}/manager", params={"$select": "id,department"}).json()
    assert selected["department"] == users[user["manager"]].get("department")


def test_missing_manager_is_404_resource_manager(http, control):
    user = next(u for u in control.objects("users") if not u["manager"])
    assert_error(
        http.get(f"/users/{user['id']}/manager"), 404, "Request_ResourceNotFound", NOT_FOUND.format("manager")
    )


def test_manager_in_deleted_items_is_no_manager(http, control):
    user = next(u for u in control.objects("users") if u["manager"])
    control.delete("users", user["manager"])
    assert_error(http.get(f"/users/{user['id']}/manager"), 404, "Request_ResourceNotFound")
    assert control.get("users", user["id"])["manager"] is None


def test_expand_manager_on_a_user_and_on_the_list(http, control):
    users = by_id(control.objects("users"))
    user = next(u for u in users.values() if u["manager"])
    body = http.get(f"/users/{user['id']}", params={"$expand": "manager"}).json()
    assert body["manager"]["id"] == user["manager"]
    assert body["manager"]["@odata.type"] == "#microsoft.graph.user"
    nested = http.get(f"/users/{user['id']}", params={"$expand": "manager($select=id,displayName)"}).json()
    assert {k: v for k, v in nested["manager"].items() if k != "@odata.type"} == {
        "id": user["manager"],
        "displayName": users[user["manager"]]["displayName"],
    }
    listed = http.get("/users", params={"$expand": "manager", "$select": "id", "$top": "999"}).json()["value"]
    for item in listed:
        assert item.get("manager", {}).get("id") == users[item["id"]]["manager"]


def test_direct_reports(http, control):
    users = by_id(control.objects("users"))
    manager_id = next(u["manager"] for u in users.values() if u["manager"])
    items, _ = follow(http, f"/users/{manager_id}/directReports")
    assert sorted(ids(items)) == sorted(uid for uid, u in users.items() if u["manager"] == manager_id)
